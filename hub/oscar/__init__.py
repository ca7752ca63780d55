"""Serverless inference on OSCAR: service definitions built from catalog modules, and the invocation codec.

The pure parts live here (``service``: FDL service definition, the DEEPaaS
script, request/response encoding) so that they are unit-tested without a
cluster; :mod:`ai4lab.backends.oscar` only sends them.
"""

from ai4lab.oscar.service import (
    SCRIPT,
    OscarResult,
    build_service,
    decode_output,
    encode_request,
    service_name,
)

__all__ = ["SCRIPT", "OscarResult", "build_service", "decode_output", "encode_request", "service_name"]
