"""Small helpers shared by the DEEPaaS tests of the bundled modules."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from ai4lab.core.envs import env_bin
from ai4lab.core.runtime import default_runtime_dir

REPO = Path(__file__).resolve().parents[2]
MODULES_DIR = REPO / "config" / "catalog" / "modules"
#: The bundled modules, by DEEPaaS model name (= folder name = entry point name).
MODULES = ("ai4lab-digits", "ai4lab-diabetes", "ai4lab-image-prep", "ai4lab-torch-digits")
#: Not a temp dir: a second test run reuses the environments (rebuilt only when sources change).
TEST_ENVS_ROOT = default_runtime_dir() / "test-envs"  # where user accounts (the builder) reach


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_alive(pid: int, created: float) -> bool:
    """The process ``pid`` started at ``created`` still runs (not a recycled pid, not a zombie)."""
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def env_python(env: Path, *args: str) -> str:
    """Run the environment's python (e.g. a module's data helper); return its stdout."""
    out = subprocess.run([str(env_bin(env, "python")), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def wait_training(client: httpx.Client, name: str, uuid: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll ``GET /v2/models/<name>/train/<uuid>`` until the training is no longer running.

    DEEPaaS 2.x trains asynchronously: ``POST .../train/`` answers at once with
    a uuid and ``status: running``.
    """
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v2/models/{name}/train/{uuid}")
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] != "running" or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def mlflow_run(tracking_uri: str, run_id: str) -> tuple[Any, dict[str, list[Any]]]:
    """A run and its metric histories, read back with the platform's own MLflow client."""
    from mlflow.tracking import MlflowClient

    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # mlflow >= 3.7 refuses file stores otherwise
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        run = client.get_run(run_id)
        return run, {key: client.get_metric_history(run_id, key) for key in run.data.metrics}
    finally:
        if old is None:
            del os.environ["MLFLOW_ALLOW_FILE_STORE"]
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


HELD_OUT_CODE = (
    "import json, sys; from ai4lab_digits.data import write_dataset as w; "
    "a = w(sys.argv[1] + '/a', n=20, split='test'); "
    "b = w(sys.argv[1] + '/b', n=30, split='test', invert=True, scale=12)[20:]; "
    "print(json.dumps([[str(p), label] for p, label in a + b]))"
)


def held_out_digits(env: Path, root: Path) -> list[tuple[Path, int]]:
    """30 PNGs of digits the pretrained model never saw (20 light ink on dark, 10 dark ink on paper),
    written by the digits module's own data helper running in its environment ``env``."""
    return loads_pairs(env_python(env, "-c", HELD_OUT_CODE, str(root)))


def loads_pairs(text: str) -> list[tuple[Path, int]]:
    return [(Path(p), int(label)) for p, label in json.loads(text)]
