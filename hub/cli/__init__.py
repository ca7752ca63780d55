"""The ``ai4lab`` command line: local platform, catalog, and a running platform's API."""
