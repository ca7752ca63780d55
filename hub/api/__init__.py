"""HTTP services of the platform (JupyterHub-managed): the platform API and the MLflow gateway."""
