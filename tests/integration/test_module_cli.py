"""The basic user's path from a terminal or a notebook: CLI and Python client against the running platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ai4lab.client import ApiError, Client
from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.settings import bundled_catalog_path
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]


@pytest.fixture(scope="module")
def user_env(platform: Platform) -> dict[str, str]:
    platform.add_user("cli-user", "cli-user-pw", role="intermediate")
    return {**platform.env, "AI4LAB_API_URL": f"{platform.url}/services/ai4lab",
            "AI4LAB_API_TOKEN": platform.token("cli-user")}


def ai4lab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "ai4lab"), *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    root = tmp_path_factory.mktemp("png")
    code = ("import json, sys; from ai4lab_digits.data import write_dataset as w; "
            "print(json.dumps([[str(p), l] for p, l in w(sys.argv[1], n=1, split='test')]))")
    out = subprocess.run([str(env_bin(env, "python")), "-c", code, str(root)], capture_output=True, text=True,
                         check=True)
    path, label = json.loads(out.stdout)[0]
    return Path(path), int(label)


def test_cli_deploy_predict_logs_stop(user_env: dict[str, str], digit_png: tuple[Path, int]) -> None:
    r = ai4lab(user_env, "deploy", "ai4lab-digits", "--title", "from the cli")
    assert r.returncode == 0, r.stderr
    dep_id, status = r.stdout.split()[:2]
    assert status == "running"
    r = ai4lab(user_env, "predict", dep_id, "--file", str(digit_png[0]))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"]["label"] == digit_png[1]
    r = ai4lab(user_env, "deployments", "--json")
    assert any(d["id"] == dep_id and d["status"] == "running" for d in json.loads(r.stdout))
    assert "/v2/models" in ai4lab(user_env, "logs", dep_id, "--tail", "50").stdout
    r = ai4lab(user_env, "stop", dep_id)
    assert r.returncode == 0 and "stopped" in r.stdout


def test_cli_errors_are_one_line(user_env: dict[str, str], tmp_path: Path) -> None:
    r = ai4lab(user_env, "deploy", "no-such-module")
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    r = ai4lab(user_env, "predict", "nope", "--file", str(tmp_path / "missing.png"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = ai4lab({**user_env, "AI4LAB_API_TOKEN": "wrong"}, "deployments")
    assert r.returncode == 1 and "401" in r.stderr


def test_python_client(platform: Platform, user_env: dict[str, str], digit_png: tuple[Path, int]) -> None:
    with Client(user_env["AI4LAB_API_URL"], user_env["AI4LAB_API_TOKEN"]) as client:
        assert client.me()["role"] == "intermediate"
        assert any(i["id"] == "ai4lab-digits" for i in client.catalog(q="digit"))
        assert client.try_module("ai4lab-digits", files={"image": digit_png[0]})["predictions"]["label"] == digit_png[1]
        rows = json.dumps([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]])
        assert len(client.try_module("ai4lab-diabetes", rows=rows)["predictions"]) == 1
        dep = client.deploy("ai4lab-diabetes", title="client")
        assert len(client.predict(dep["id"], rows=rows)["predictions"]) == 1
        assert client.stop(dep["id"])["status"] == "stopped"
        with pytest.raises(ApiError) as e:
            client.deploy("ai4lab-digits", cpu_num=1000)
        assert e.value.status == 400


def test_module_export_pip_path_runs(tmp_path: Path, digit_png: tuple[Path, int]) -> None:
    """The printed pip + deepaas-run commands work as printed (in a fresh venv), on another port."""
    import httpx

    from tests.platform_harness import free_port

    r = subprocess.run([str(Path(sys.executable).parent / "ai4lab"), "module", "export", "ai4lab-digits"],
                       capture_output=True, text=True, check=True)
    assert "docker run" in r.stdout and "ai4lab/ai4lab-digits:latest" in r.stdout
    lines = [ln for ln in r.stdout.splitlines() if ln and not ln.startswith("#")]
    install = [ln for ln in lines if not ln.startswith(("docker", "deepaas-run"))]
    run = next(ln for ln in lines if ln.startswith("deepaas-run"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "AI4LAB_"))}
    subprocess.run(["bash", "-ec", " && ".join(install)], cwd=tmp_path, env=env, check=True, capture_output=True,
                   timeout=600)
    venv = next(tmp_path.glob(".venv-*"))
    server = subprocess.Popen(["bash", "-c", f". {venv}/bin/activate && exec {run.replace('5000', str(port))}"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/models/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.5)
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/ai4lab-digits/predict/",
                       files={"image": ("d.png", digit_png[0].read_bytes(), "image/png")}, timeout=60)
        assert r.status_code == 200 and r.json()["predictions"]["label"] == digit_png[1]
    finally:
        server.terminate()
        server.wait(timeout=30)
