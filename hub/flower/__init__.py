"""Federated learning with Flower: configuration, the tool deployments' helpers, the client starter.

The platform never imports flwr (it pins fastapi/starlette/uvicorn exactly):
the server (``config/catalog/tools/ai4lab-flower``) and the clients run in
their own cached environments (:func:`ai4lab.core.envs.ensure_env`); the platform
writes their inputs and reads their status file.
"""
