"""ai4lab: an AI/ML platform for science around JupyterHub."""

__version__ = "0.1.0"
