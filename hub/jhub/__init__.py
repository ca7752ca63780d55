"""How ai4lab plugs into JupyterHub: the launcher, the hub configuration, the authenticator."""
