"""ai4lab's Flower tool: the server program, the ClientApp every client runs, shared round logic.

Runs in its own environment (flwr pins fastapi/starlette/uvicorn exactly), never
in the platform's; the platform talks to it through files (config, token
hashes, status) and the process it starts.
"""

__version__ = "0.1.0"
