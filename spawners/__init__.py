"""JupyterHub spawners of ai4lab: local processes (embedded default), Nomad later."""
