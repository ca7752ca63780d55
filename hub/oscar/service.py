"""OSCAR service definitions for catalog modules, and how one prediction travels through OSCAR.

Why this shape (the AI4OS way, so that our services and AI4OS's are invoked alike):

* The service runs the module's own image; its ``script`` calls ``deepaas-cli
  predict`` on the invocation's input file and leaves the prediction in
  ``$TMP_OUTPUT_DIR``. OSCAR's FaaS Supervisor then answers a synchronous
  ``/run`` with that file, base64-encoded.
* The request is one JSON object of predict arguments in which files travel as
  ``"oscar-files": [{"key", "file_format", "data" (base64)}]`` (ai4-papi's
  convention). A raw file (not JSON) is handed to the module's file argument,
  so a plain image, or the PNG output of the previous step of a pipeline, can be
  sent as is.
* Bad input is the caller's fault, not the service's: the script prints
  ``AI4LAB-ERROR 400 <reason>`` and writes no output, so OSCAR answers with the
  script's output (its logs, ``log_level: CRITICAL`` keeps them to ours) and the
  platform turns it into a 400 with the module's reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from ai4lab.catalog.model import CatalogItem

#: Marker line the script prints when the module refused its input.
ERROR_MARKER = "AI4LAB-ERROR"

# The script runs with bash in the module's image (python3 and deepaas-cli on PATH).
# AI4LAB_FILE_ARG names the module's file argument (for raw-file invocations).
SCRIPT = r"""#!/bin/bash
# ai4lab: one DEEPaaS prediction per OSCAR invocation.
set -u
WORK=$(mktemp -d)
python3 - "$WORK" <<'PYEOF'
import base64, json, os, re, subprocess, sys

work = sys.argv[1]
src, out_dir = os.environ["INPUT_FILE_PATH"], os.environ["TMP_OUTPUT_DIR"]
file_arg = os.environ.get("AI4LAB_FILE_ARG", "")
with open(src, "rb") as f:
    raw = f.read()
try:
    params = json.loads(raw)
except ValueError:
    params = None
args = []
if isinstance(params, dict):
    for i, item in enumerate(params.pop("oscar-files", [])):
        path = os.path.join(work, "input-%d.%s" % (i, item.get("file_format") or "bin"))
        with open(path, "wb") as f:
            f.write(base64.b64decode(item["data"]))
        args += ["--" + item["key"], path]
    for key, value in params.items():
        args += ["--" + key, value if isinstance(value, str) else json.dumps(value)]
elif file_arg:
    args += ["--" + file_arg, src]
else:
    print("AI4LAB-ERROR 400 this module takes no file: send a JSON object of its predict arguments")
    sys.exit(0)
out = os.path.join(work, "prediction")
proc = subprocess.run(["deepaas-cli", "--deepaas_method_output", out, "predict"] + args,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
made = sorted(n for n in os.listdir(work) if n.startswith("prediction"))
if proc.returncode == 0 and made:
    os.replace(os.path.join(work, made[0]), os.path.join(out_dir, made[0]))
    sys.exit(0)
lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
bad = [ln for ln in lines if re.search(r"(BadRequest|ValueError|ValidationError|error: )", ln)]
if bad:
    reason = re.sub(r"^.*?(BadRequest|ValueError|ValidationError|error): ?", "", bad[-1]).strip()
    print("AI4LAB-ERROR 400 " + reason)
    sys.exit(0)
sys.stderr.write("\n".join(lines[-20:]) + "\n")
sys.exit(proc.returncode or 1)
PYEOF
status=$?
rm -rf "$WORK"
exit $status
"""


def service_name(owner: str, dep_id: str) -> str:
    """A DNS-safe, unique OSCAR service name (Kubernetes names: ``[a-z0-9-]``, at most 63 characters)."""
    slug = re.sub(r"[^a-z0-9]+", "-", owner.lower()).strip("-")[:20].strip("-") or "user"
    return f"ai4lab-{slug}-{re.sub(r'[^a-z0-9]', '', dep_id.lower())[:12]}"


def file_argument(args: list[dict[str, Any]] | None) -> str:
    """The module's first file argument (from ``oneshot --describe``), '' when it takes none."""
    return next((a["name"] for a in args or [] if a.get("file")), "")


def build_service(
    item: CatalogItem,
    name: str,
    *,
    cluster_id: str,
    owner: str,
    dep_id: str,
    file_arg: str = "",
    vo: str | None = None,
    cpu: float | None = None,
    ram_mb: int | None = None,
) -> dict[str, Any]:
    """The OSCAR ``Service`` (FDL entry) running ``item``'s image; pure, so it is checked against the spec.

    Raises ``ValueError`` when the item has no container image or DEEPaaS model name.
    """
    if not item.run.docker_image:
        raise ValueError(f"{item.id} has no container image (links.docker_image): it cannot run on OSCAR")
    image = item.run.docker_image
    if ":" not in image.rsplit("/", 1)[-1]:
        image = f"{image}:{item.run.docker_tag or 'latest'}"
    variables = {"AI4LAB_FILE_ARG": file_arg}
    if item.run.entry_point:
        variables["DEEPAAS_V2_MODEL"] = item.run.entry_point
    cpu = cpu or item.resources_inference.cpu or 1
    ram_mb = ram_mb or item.resources_inference.ram_mb or 2000
    service: dict[str, Any] = {
        "name": name,
        "cluster_id": cluster_id,
        "image": image,
        "cpu": f"{float(cpu):g}",  # OSCAR wants a string
        "memory": f"{int(ram_mb)}Mi",
        "log_level": "CRITICAL",  # keep the supervisor's own lines out of sync answers
        "alpine": False,
        "script": SCRIPT,
        "environment": {"variables": variables},
        # Kubernetes label values: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends
        "labels": {
            "ai4lab.owner": re.sub(r"[^A-Za-z0-9_.-]", "-", owner)[:63].strip("-_.") or "user",
            "ai4lab.deployment": dep_id,
            "ai4lab.item": item.id,
        },
        # async /job invocations and bucket uploads read and write here (as ai4-papi's services do)
        "input": [{"storage_provider": "minio.default", "path": f"{name}/inputs"}],
        "output": [{"storage_provider": "minio.default", "path": f"{name}/outputs"}],
    }
    if vo:
        service["vo"] = vo
    return service


def encode_request(fields: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> bytes:
    """The base64 body of a ``/run`` or ``/job`` call: predict arguments, files as ``oscar-files``.

    ``files`` maps an argument name to ``(filename, content)``.
    """
    payload: dict[str, Any] = dict(fields)
    if files:
        payload["oscar-files"] = [
            {
                "key": key,
                "file_format": (name.rsplit(".", 1)[-1] if "." in name else "bin"),
                "data": base64.b64encode(content).decode(),
            }
            for key, (name, content) in files.items()
        ]
    return base64.b64encode(json.dumps(payload).encode())


@dataclass
class OscarResult:
    """What one invocation gave: JSON (``json``), a file (``content`` + ``content_type``), or a refusal."""

    json: Any = None
    content: bytes | None = None
    content_type: str = "application/json"
    error: str | None = None  # the module refused the input (-> 400)


_MAGIC = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF8": "image/gif",
    b"PK\x03\x04": "application/zip",
}


def decode_output(text: str) -> OscarResult:
    """Turn a synchronous answer into a result: base64 of the output file, else the script's own output.

    Raises ``ValueError`` with the answer's end when it is neither.
    """
    body = text.strip()
    try:
        data = base64.b64decode(body, validate=True) if body else b""
    except (binascii.Error, ValueError):
        data = b""
    if data:
        try:
            return OscarResult(json=json.loads(data))
        except ValueError:
            ctype = next((c for m, c in _MAGIC.items() if data.startswith(m)), "application/octet-stream")
            return OscarResult(content=data, content_type=ctype)
    for line in body.splitlines():
        if line.startswith(ERROR_MARKER):
            return OscarResult(error=line.split(" ", 2)[-1].strip() or "the module refused the input")
    tail = "\n".join(body.splitlines()[-10:])
    raise ValueError(f"the OSCAR service produced no output; it said:\n{tail}")
