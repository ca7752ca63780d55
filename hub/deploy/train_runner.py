"""Runs a module's ``train`` as a batch job, inside the module's environment.

Executed by the module environment's Python, so it imports nothing from
ai4lab. ``train_runner.py REQUEST.json`` reads ``{"model", "args",
"platform_args", "result", "tags", "run_name"}``; ``platform_args`` (the
dataset, the output folder, the weights to start from) are handed only to a
module whose ``get_train_args`` declares them, and override the user's
values: a module from the AI4OS template that declares none of them finds the
dataset in its ``data/`` folder and writes to ``models/`` instead; ``--check`` only validates the arguments against the
module's ``get_train_args`` (marshmallow, as DEEPaaS does) and prints the
verdict. The run itself: an MLflow run is created with the platform's tags and
handed to the module through ``MLFLOW_RUN_ID`` (what ``mlflow.start_run()``
resumes), then ``train(**args)`` runs and its return value is written to
``result`` as JSON. Exit codes: 0 done, 2 bad arguments, 1 training failed.

``"workers": n`` > 1 (a data-parallel training) makes this process a launcher, as
``torchrun`` is: after creating the run it starts n copies of itself with
``--rank``, each with torch.distributed's ``env://`` variables (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and the same
``MLFLOW_RUN_ID``, and an equal share of the CPU threads. Rank 0's return value
is the training's result; the first worker to fail stops the others.
"""

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oneshot import _load as load


def describe(args):
    """The train arguments as JSON: type, required, default, choices/range, description."""
    out = {}
    for name, field in args.items():
        meta = field.metadata or {}
        entry = {
            "type": type(field).__name__,
            "required": bool(field.required),
            "description": meta.get("description", ""),
        }
        from marshmallow import missing

        default = field.load_default
        if default is not missing and default is not None and not callable(default):
            entry["default"] = default
        for v in getattr(field, "validators", []) or []:
            if hasattr(v, "choices"):
                entry["choices"] = list(v.choices)
            if hasattr(v, "min") and hasattr(v, "max"):
                entry["range"] = [v.min, v.max]
        out[name] = entry
    return out


def check(api, given, platform_args=None):
    from marshmallow import ValidationError

    args = api.get_train_args()
    given = dict(given)
    given.update({k: v for k, v in (platform_args or {}).items() if k in args and v is not None})
    unknown = sorted(set(given) - set(args))
    if unknown:
        return None, "unknown argument(s) %s: this module takes %s" % (", ".join(unknown), ", ".join(sorted(args)))
    kwargs = {}
    for name, field in args.items():
        if name in given:
            try:
                kwargs[name] = field.deserialize(given[name])
            except ValidationError as e:
                msgs = e.messages if isinstance(e.messages, list) else [str(e.messages)]
                return None, "%s: %s" % (name, " ".join(str(m) for m in msgs))
        elif field.required:
            return None, "%s: missing required argument" % name
    return kwargs, None


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(request_path, workers):
    """Start ``workers`` ranks of this training and wait; {rank: exit code} (the rest stopped after a failure)."""
    import subprocess
    import time

    port = free_port()
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    procs = []
    for rank in range(workers):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(workers),
            LOCAL_WORLD_SIZE=str(workers),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS=str(max(1, threads // workers)),
        )
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--rank", request_path], env=env))
    codes = {}  # type: dict[int, int]
    while len(codes) < workers:
        for rank, proc in enumerate(procs):
            if rank not in codes and proc.poll() is not None:
                codes[rank] = proc.returncode
        if any(code != 0 for code in codes.values()):
            for proc in procs:  # a rank that died leaves the others waiting in a collective: stop them
                if proc.poll() is None:
                    proc.terminate()
            for rank, proc in enumerate(procs):
                try:
                    codes.setdefault(rank, proc.wait(timeout=10))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes.setdefault(rank, proc.wait())
            break
        time.sleep(0.2)
    return codes


def main():
    check_only = "--check" in sys.argv
    describe_only = "--describe" in sys.argv
    rank_only = "--rank" in sys.argv  # one worker of a data-parallel training (see run_workers)
    with open(next(a for a in sys.argv[1:] if not a.startswith("--"))) as f:
        request = json.load(f)
    api = load(request["model"])
    if describe_only:
        print("AI4LAB-RESULT " + json.dumps(describe(api.get_train_args()), default=str))
        return 0
    kwargs, error = check(api, request.get("args", {}), request.get("platform_args"))
    if check_only:
        print("AI4LAB-RESULT " + json.dumps({"ok": error is None, "reason": error}))
        return 0
    if error:
        print("bad arguments: " + error, file=sys.stderr)
        return 2
    if rank_only:
        return train_rank(api, kwargs, request["result"] + ".rank" + os.environ["RANK"])
    run_id = experiment_id = None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            import mlflow
            from mlflow.tracking import MlflowClient

            experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or request["model"])
            run = MlflowClient().create_run(
                experiment.experiment_id, tags=request.get("tags", {}), run_name=request.get("run_name")
            )
            run_id, experiment_id = run.info.run_id, experiment.experiment_id
            os.environ["MLFLOW_RUN_ID"] = run_id  # the module's start_run() resumes this run
            print("mlflow run %s" % run_id, flush=True)
        except ImportError:
            print("mlflow is not installed in this environment: not tracking", flush=True)
    workers = int(request.get("workers") or 1)
    if workers > 1:
        request_path = next(a for a in sys.argv[1:] if not a.startswith("--"))
        print("starting %d workers (torch.distributed env://)" % workers, flush=True)
        codes = run_workers(request_path, workers)
        ranks = {}
        for rank in codes:
            try:
                with open(request["result"] + ".rank%d" % rank) as f:
                    ranks[rank] = json.load(f)
            except (OSError, ValueError):
                ranks[rank] = {}
        failed = [r for r, c in sorted(codes.items()) if c != 0]
        if failed:
            first = failed[0]
            why = ranks[first].get("error") or "exit code %s" % codes[first]
            with open(request["result"], "w") as f:
                json.dump(
                    {
                        "error": "worker %d of %d failed: %s" % (first, workers, why),
                        "mlflow_run_id": run_id,
                        "mlflow_experiment_id": experiment_id,
                    },
                    f,
                )
            return 1
        output = ranks[0].get("output")
        if isinstance(output, dict):
            output = dict(output, workers=workers)
        with open(request["result"], "w") as f:
            json.dump(
                {"output": output, "mlflow_run_id": run_id, "mlflow_experiment_id": experiment_id}, f, default=str
            )
        print("training done (%d workers)" % workers, flush=True)
        return 0
    try:
        if hasattr(api, "warm"):
            api.warm()
        result = api.train(**kwargs)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        with open(request["result"], "w") as f:
            json.dump(
                {"error": str(e) or type(e).__name__, "mlflow_run_id": run_id, "mlflow_experiment_id": experiment_id}, f
            )
        return 1
    with open(request["result"], "w") as f:
        json.dump({"output": result, "mlflow_run_id": run_id, "mlflow_experiment_id": experiment_id}, f, default=str)
    print("training done", flush=True)
    return 0


def train_rank(api, kwargs, result_path):
    """One worker: the module's train(), its return value (or error) in ``result_path``."""
    try:
        result = api.train(**kwargs)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        with open(result_path, "w") as f:
            json.dump({"error": str(e) or type(e).__name__}, f)
        return 1
    with open(result_path, "w") as f:
        json.dump({"output": result}, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
