"""PyTorch and TensorFlow sessions (issue 18): chosen in the form, the framework in the default kernel.

The environments are built at their first start (about 25 s each on 2 cores, from uv's cache and the
CPU build of torch kept on disk) into the runtime folder, and reused by every later run of the suite.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import httpx
import pytest

from tests.integration.test_sessions import spawn_with_form
from tests.kernel_client import execute_in_session, run_in_terminal
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]

#: what every environment must give a notebook: the framework, MLflow with the session's token, storage/
KERNEL_CHECK = """
import os, pathlib, sys, mlflow
print('PYTHON', sys.executable)
print('ENV', os.environ['AI4LAB_ENVIRONMENT'], 'CUDA', repr(os.environ.get('CUDA_VISIBLE_DEVICES')))
{framework}
pathlib.Path('storage/envs').mkdir(exist_ok=True)
pathlib.Path('storage/envs/{name}.txt').write_text('written by ' + FRAMEWORK)
mlflow.set_experiment('environments')
with mlflow.start_run(run_name='{name}') as run:
    mlflow.log_param('framework', FRAMEWORK)
    mlflow.log_metric('answer', ANSWER)
print('RUN', run.info.run_id)
"""
TORCH = "import torch\nFRAMEWORK = 'torch ' + torch.__version__\nANSWER = float(torch.tensor([1.5, 2.5]).sum())\n"
TF = (
    "import tensorflow as tf\nFRAMEWORK = 'tensorflow ' + tf.__version__\n"
    "ANSWER = float(tf.reduce_sum(tf.constant([1.5, 2.5])))\n"
)


def check_kernel(platform: Platform, user: str, token: str, name: str, framework: str) -> str:
    """Run the check in the session's default kernel; the run is in MLflow and the file in storage."""
    code = KERNEL_CHECK.format(framework=framework, name=name)
    output = execute_in_session(platform.url, user, token, code, timeout=240)
    assert f"ENV {name}" in output, output
    api = platform.api(token)
    run_id = output.split("RUN ")[1].split()[0]
    run = api.get("/services/mlflow/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    metric = run["data"]["metrics"][0]
    assert (metric["key"], metric["value"]) == ("answer", 4.0)
    framework_param = run["data"]["params"][0]["value"]
    r = api.get(f"/services/ai4lab/storage/envs/{name}.txt")
    assert r.status_code == 200 and r.text == f"written by {framework_param}"
    return output


def default_kernel(platform: Platform, user: str, token: str) -> dict:
    specs = platform.api(token).get(f"/user/{user}/api/kernelspecs").json()
    return {"default": specs["default"], **specs["kernelspecs"][specs["default"]]["spec"]}


def test_pytorch_session_from_the_form(platform: Platform) -> None:
    platform.add_user("env-torch", "env-torch-password", role="advanced")
    token = platform.token("env-torch")
    with closing(platform.login("env-torch", "env-torch-password")) as client:
        page = client.get("/hub/spawn").text
        assert 'name="environment"' in page and ">PyTorch" in page and ">TensorFlow" in page
        r = spawn_with_form(client, "env-torch", profile="gpu", ide="lab", environment="pytorch", cpu="1", ram_gb="2",
                            gpu="1")
        assert r.status_code == 200, r.text[-500:]
    try:
        srv = platform.wait_server(token, "env-torch", timeout=600)
        assert srv["user_options"]["environment"] == "pytorch"
        kernel = default_kernel(platform, "env-torch", token)
        assert kernel["default"] == "python3" and kernel["display_name"] == "Python 3 (PyTorch)"
        output = check_kernel(platform, "env-torch", token, "pytorch", TORCH)
        env_python = output.split("PYTHON ")[1].split()[0]
        assert "/session-pytorch-" in env_python, output
        # the GPU given to the session is the framework's to see (none is real here: CUDA is not available)
        assert "CUDA '0'" in output or "CUDA '1'" in output, output
        # a terminal's python is the environment's too
        out = run_in_terminal(platform.url, "env-torch", token, "python -c 'import torch; print(\"T\" + torch.__version__)'")
        assert "T2.13.0" in out, out
    finally:
        platform.api(token).delete("/hub/api/users/env-torch/server")


def test_tensorflow_session_in_vscode_from_the_form(platform: Platform) -> None:
    platform.add_user("env-tf", "env-tf-password", role="advanced")
    token = platform.token("env-tf")
    api = platform.api(token)
    with closing(platform.login("env-tf", "env-tf-password")) as client:
        r = spawn_with_form(client, "env-tf", profile="small", ide="vscode", environment="tensorflow", cpu="1",
                            ram_gb="2", gpu="0")
        assert r.status_code == 200, r.text[-500:]
    try:
        platform.wait_server(token, "env-tf", timeout=600)
        kernel = default_kernel(platform, "env-tf", token)
        assert kernel["display_name"] == "Python 3 (TensorFlow)"
        output = check_kernel(platform, "env-tf", token, "tensorflow", TF)
        env_python = output.split("PYTHON ")[1].split()[0]
        assert "/session-tensorflow-" in env_python
        # VS Code's interpreter is the environment's python (code-server's machine settings)
        machine = platform.state / "workspaces/env-tf/.local/share/code-server/Machine/settings.json"
        assert json.loads(machine.read_text())["python.defaultInterpreterPath"] == env_python
    finally:
        api.delete("/hub/api/users/env-tf/server")


def test_unknown_environment_is_a_400_with_the_choices(platform: Platform) -> None:
    platform.add_user("env-bad", "env-bad-password", role="basic")
    token = platform.token("env-bad")
    r = platform.api(token).post("/hub/api/users/env-bad/server", json={"environment": "jax"})
    assert r.status_code == 400
    assert "unknown environment 'jax': choose one of base, pytorch, tensorflow, scratch" in r.text


def test_first_start_builds_the_environment_with_progress(platform: Platform) -> None:
    """The operator's 'scratch' environment (tests/conftest.py) is new in every run: its build is on the spawn page."""
    platform.add_user("env-scratch", "env-scratch-password", role="basic")
    token = platform.token("env-scratch")
    api = platform.api(token)
    with closing(platform.login("env-scratch", "env-scratch-password")) as client:
        page = client.get("/hub/spawn").text
    assert "Scratch (built at its first start)" in page
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(api.post, "/hub/api/users/env-scratch/server", json={"environment": "scratch"})
        messages: list[str] = []
        deadline = time.monotonic() + 300
        while not messages and time.monotonic() < deadline:  # the progress stream exists once the spawn is pending
            with httpx.stream("GET", f"{platform.url}/hub/api/users/env-scratch/server/progress",
                              headers={"Authorization": f"token {token}"}, timeout=300) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        messages.append(event.get("message", ""))
                        if event.get("ready") or event.get("failed"):
                            break
        assert posted.result().status_code in (201, 202)
    try:
        assert "Building the Scratch environment (first use): six==1.17.0" in messages, messages
        assert "Scratch: installed 1 package: six" in messages
        assert any(m.startswith("Scratch: resolved ") for m in messages)
        assert messages.index("Scratch environment ready: 1 package") < messages.index("Server answering")
        out = execute_in_session(platform.url, "env-scratch", token, "import six, sys; print(six.__file__, sys.executable)")
        assert "/session-scratch-" in out
    finally:
        api.delete("/hub/api/users/env-scratch/server")
