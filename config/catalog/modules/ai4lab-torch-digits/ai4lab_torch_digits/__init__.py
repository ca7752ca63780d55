"""ai4lab-torch-digits: an 8x8 digit classifier in PyTorch, trained incrementally or data-parallel."""

NAME = "ai4lab-torch-digits"
__version__ = "0.1.0"
