"""Time per federated round: the Flower tool through ai4lab vs a plain Flower SuperLink + ``flwr run``.

Same run, same clients, same model and data: two SuperNodes running the
bundled digits module's Flower client (``ai4lab.flower.client``: the module's
own ``train`` as the fit step) on two different CSV splits, the same FedAvg
strategy code (``ai4lab_flower.rounds``) and the same number of rounds.

* ai4lab: ``POST /deployments {"kind": "tool", "item": "ai4lab-flower"}`` on a
  real platform; the clients join with the deployment's token over HTTPS (TLS,
  token gate, status file, MLflow logging per round included).
* plain: ``flower-superlink --insecure --disable-runtime-dependency-installation``
  and ``flwr run`` of the tool folder's ServerApp (``server_app.py``), the
  stock Flower deployment path; the clients join over plain HTTP without a token.

A round's time is measured in the server process from the end of one round's
evaluation to the end of the next (``duration_s`` of the round record), so
client start-up and the initial-model query (round 1) are left out: the
figure is the mean over rounds 2..N. The two runs alternate ``--pairs`` times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai4lab.core.envs import ensure_env, env_bin  # noqa: E402
from ai4lab.flower.client import command, join  # noqa: E402
from ai4lab.core.settings import bundled_catalog_path  # noqa: E402
from tests.flower.data import digit_splits  # noqa: E402
from tests.platform_harness import Platform, free_port  # noqa: E402

API = "/services/ai4lab"
TOOL = bundled_catalog_path() / "tools" / "ai4lab-flower"


def _wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def _stop(procs: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for proc in procs:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        proc.wait()


def through_ai4lab(p: Platform, token: str, data: list[Path], rounds: int, logs: Path) -> list[float]:
    api = p.api(token)
    dep = api.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower", "title": "bench",
                                               "config": {"rounds": rounds}}).json()
    _wait(lambda: api.get(f"{API}/deployments/{dep['id']}").json()["status"] == "running", 300, "server start")
    secret = api.get(f"{API}/deployments/{dep['id']}/flower/token").json()
    clients = [join(secret["address"], secret["token"], "ai4lab-digits", str(d),
                    root_certificates=secret["certificate"], log=logs / f"ai4lab-{i}.log")
               for i, d in enumerate(data)]
    try:
        final = _wait(lambda: (d := api.get(f"{API}/deployments/{dep['id']}").json())["status"]
                      in ("succeeded", "failed") and d, 60 * rounds + 300, "ai4lab run")
        assert final["status"] == "succeeded", final["status_reason"]
    finally:
        _stop(clients)
    return [r["duration_s"] for r in api.get(f"{API}/deployments/{dep['id']}/flower").json()["rounds"]]


def plain_flower(data: list[Path], rounds: int, work: Path) -> list[float]:
    env = ensure_env(TOOL)
    port = free_port()
    home = work / f"flwr-home-{port}"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    penv = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{env / 'bin'}:{os.environ['PATH']}"}
    with open(work / "plain-superlink.log", "ab") as log:
        link = subprocess.Popen([str(env_bin(env, "flower-superlink")), "--insecure",
                                 "--disable-runtime-dependency-installation", "--port", str(port)],
                                env=penv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs = [link]
    status = work / f"plain-status-{port}.json"
    try:
        time.sleep(3)
        for i, d in enumerate(data):
            cmd, cenv = command(f"127.0.0.1:{port}", "ai4lab-digits", str(d))
            with open(work / f"plain-{i}.log", "ab") as log:
                procs.append(subprocess.Popen(cmd, env=cenv, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        subprocess.run([str(env_bin(env, "flwr")), "run", str(TOOL), "bench", "--run-config",
                        f"num-server-rounds={rounds} status-file='{status}'"], env=penv, check=True,
                       capture_output=True, cwd=work)
        _wait(lambda: status.is_file() and json.loads(status.read_text())["state"] == "finished",
              60 * rounds + 300, "plain run")
    finally:
        _stop(procs)
    return [r["duration_s"] for r in json.loads(status.read_text())["rounds"]]


def main(rounds: int = 4, pairs: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = digit_splits(work)
        ensure_env(TOOL)
        p = Platform.create(work / "state")
        p.start()
        runs: dict[str, list[list[float]]] = {"ai4lab": [], "plain": []}
        try:
            token = p.token("admin")
            p.wait_mlflow(token)
            for _ in range(pairs):
                runs["ai4lab"].append(through_ai4lab(p, token, data, rounds, work))
                runs["plain"].append(plain_flower(data, rounds, work))
        finally:
            p.stop()
    per_round = {name: round(mean(d for run in rs for d in run[1:]), 3) for name, rs in runs.items()}
    report = {
        "module": "ai4lab-digits", "clients": 2, "rounds": rounds, "pairs": pairs, "strategy": "FedAvg",
        "round_durations_s": runs, "mean_round_s_excluding_round_1": per_round,
        "ratio": round(per_round["ai4lab"] / per_round["plain"], 3), "goal_ratio": 1.1,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "flower.json").write_text(json.dumps(report, indent=1))
    print(f"flower benchmark: {rounds} rounds x {pairs} pair(s), 2 digits clients, FedAvg "
          "(bench/results/flower.json)")
    print(f"{'server':<10}{'s/round':>9}  rounds 1..N (s)")
    for name, rs in runs.items():
        print(f"{name:<10}{per_round[name]:>9}  " + " | ".join(", ".join(f"{d:.2f}" for d in r) for r in rs))
    print(f"ratio ai4lab/plain: {report['ratio']} (goal <= 1.1)")
    return report


if __name__ == "__main__":
    main()
