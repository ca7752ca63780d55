"""The Flower server of an ai4lab deployment: SuperLink Fleet API + Message-API strategy, one process.

Why this shape (flwr 1.42):

* ``start_server``/``start_client`` are deprecated (``flwr.compat``). The
  supported way is a SuperLink that SuperNodes connect to, and a ServerApp
  driving rounds through a ``Grid``.
* ``flwr run`` against ``flower-superlink`` works but is slow and indirect for
  a platform: it needs the Control API, a federation config in ``FLWR_HOME``,
  an extra ServerApp process per run (``uv sync`` unless disabled) and exposes
  Control/Runtime APIs on the port clients connect to.
* So this program builds the SuperLink's own FastAPI app
  (``flwr.superlink.main.create_app``: in-memory LinkState, Fleet and Runtime
  API routes and handlers unchanged) and serves it twice with uvicorn in
  threads: on the public address behind :class:`~ai4lab_flower.auth.TokenGate`
  (Fleet API only, bearer token required) and on a loopback port for itself
  (:class:`~ai4lab_flower.auth.RuntimeOnly`: the Runtime API, which checks the
  task token; the Control API is served nowhere).
  It registers one run with the tool folder's FAB (the ClientApp every
  SuperNode runs), claims the run's ServerApp task and drives the configured
  ``flwr.serverapp.strategy`` through flwr's ``HttpGrid`` on the loopback
  Runtime API, with task heartbeats and final task output -- the same calls
  ``flwr-serverapp`` makes, minus the extra process, FAB install and
  ``uv sync``.

Inputs are files the platform writes (validated config, token hashes); outputs
are a status file (rounds, clients) the platform API reads, with ``--tls-dir``
a self-signed certificate clients pin (see ``tls.py``), an MLflow run (one
metric per round, when ``MLFLOW_TRACKING_URI`` is set) and the final global
model (``model.npz`` + ``model.json``) in ``--output``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ai4lab_flower.auth import RuntimeOnly, TokenGate
from ai4lab_flower.rounds import RoundLog, build_strategy, initial_arrays, live, train_config, write_json

LOG = logging.getLogger("ai4lab_flower.server")
#: The tool's source folder (pyproject.toml with [tool.flwr.app]) when run from a checkout.
APP_DIR = Path(__file__).resolve().parent.parent
#: Seconds the Fleet API keeps answering after the last round, so that clients see the run finish.
GRACE_S = 3.0


def build_fab(app_dir: Path) -> Any:
    """The tool's source folder as a FAB (the app every SuperNode receives and runs its ClientApp from)."""
    from flwr.cli.build import build_fab_from_disk
    from flwr.supercore.fab import Fab

    content = build_fab_from_disk(app_dir)
    return Fab(hashlib.sha256(content).hexdigest(), content, {})


def create_run(state: Any, fab: Any, config: dict[str, Any]) -> str:
    """Register a run for ``fab`` in the LinkState (as the Control API's StartRun would); claim its ServerApp task.

    Returns the task token the Runtime API authenticates the ServerApp with.
    """
    from flwr.common.config import get_fab_config, get_metadata_from_config
    from flwr.common.constant import NOOP_FLWR_AID
    from flwr.supercore.constant import NOOP_FEDERATION_ID

    from flwr.supercore.constant import TaskType

    primary = TaskType.SERVER_APP
    state.store_fab(fab)
    fab_id, fab_version = get_metadata_from_config(get_fab_config(fab.content))
    run_id = state.create_run(fab_id, fab_version, fab.hash_str, {"local-epochs": config.get("local_epochs", 1)},
                              NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, primary)
    run = state.get_run_info(run_ids=[run_id])[0]
    token = state.claim_task(run.primary_task_id)
    if not token:
        raise RuntimeError(f"could not claim the ServerApp task of run {run_id}")
    return token


class Server:
    def __init__(self, config: dict[str, Any], host: str, port: int, tokens: Path, status: Path,
                 output: Path, app_dir: Path = APP_DIR, tls: tuple[Path, Path] | None = None) -> None:
        self.config = config
        self.tls = tls
        self.app_dir = app_dir
        self.host, self.port = host, port
        self.tokens, self.output = tokens, output
        self.mlflow = _mlflow()
        self.run_id_mlflow: str | None = None
        self.log = RoundLog(status, config.get("metric", "accuracy"), on_round=self._log_round)
        self._stop = threading.Event()

    # -- network -------------------------------------------------------------------------
    def serve(self) -> tuple[Any, int]:
        """Start the public (gated) and the loopback listeners; return the LinkState factory and the loopback port."""
        import socket

        from flwr.superlink.main import create_app

        app = create_app()
        self.gate = TokenGate(app, self.tokens)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            internal = sock.getsockname()[1]
        self._servers = [_listen(self.gate, self.host, self.port, "fleet-api", lifespan="on", tls=self.tls),
                         _listen(RuntimeOnly(app), "127.0.0.1", internal, "runtime-api", lifespan="off")]
        return app.state.linkstate_factory, internal

    # -- rounds --------------------------------------------------------------------------
    def run(self) -> int:
        from flwr.app import ConfigRecord
        from flwr.common.constant import SubStatus
        from flwr.common.serde import run_from_proto
        from flwr.proto.runtime_pb2 import PullTaskInputRequest, PushTaskOutputRequest
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supercore.task_identity import TaskIdentity
        from flwr.superlink.grid import HttpGrid

        factory, internal = self.serve()
        state = factory.state()
        token = create_run(state, build_fab(self.app_dir), self.config)
        grid = HttpGrid(runtime_api_address=f"127.0.0.1:{internal}", insecure=True, token=token)
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(grid._runtime_client))
        heartbeat.start()
        task = grid._runtime_client.PullTaskInput(PullTaskInputRequest())
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = (
            task.task_id, task.run.run_id, task.context.node_id)
        run = run_from_proto(task.run)
        grid.set_run(run)
        sub_status, details = SubStatus.FAILED, "the federated run failed"
        threading.Thread(target=self._watch, args=(state, run), daemon=True).start()
        print(f"ai4lab-flower: Fleet API on {self.host}:{self.port}, run {run.run_id}, "
              f"{self.config['rounds']} round(s) of {self.config['strategy']}", flush=True)
        self._start_mlflow()
        try:
            initial = initial_arrays(grid, int(self.config["min_available_clients"]), self._stop.is_set)
            strategy = live(build_strategy(self.config), self.log)
            self.log.update(state="running")
            strategy.start(grid=grid, initial_arrays=initial, num_rounds=int(self.config["rounds"]),
                           timeout=float(self.config.get("round_timeout", 3600)),
                           train_config=ConfigRecord(train_config(self.config)))
            model = self._save_model(self.log.final_arrays or initial)
            self.log.update(state="finished", model=model, finished=time.time())
            self._end_mlflow("FINISHED")
            sub_status, details = SubStatus.COMPLETED, ""
            print(f"ai4lab-flower: {self.config['rounds']} round(s) done, model in {model}", flush=True)
            time.sleep(GRACE_S)
            return 0
        except Exception as e:  # noqa: BLE001 - recorded for the platform, then the process fails
            LOG.exception("the federated run failed")
            self.log.update(state="failed", error=str(e))
            self._end_mlflow("FAILED")
            details = str(e)
            return 1
        finally:
            self._stop.set()
            try:
                grid._runtime_client.PushTaskOutput(PushTaskOutputRequest(sub_status=sub_status, details=details))
            except Exception:  # noqa: BLE001 - the process ends anyway
                LOG.warning("could not push the task output", exc_info=True)
            heartbeat.stop()
            grid.close()
            for server, thread in self._servers:
                server.should_exit = True
                thread.join(timeout=5)

    def _watch(self, state: Any, run: Any) -> None:
        """Connected clients and refused requests, every half second, into the status file."""
        while not self._stop.is_set():
            nodes = sorted(state.get_nodes(run.run_id))
            clients = [{"node_id": str(n), "connected": True} for n in nodes]
            if clients != self.log.status.get("clients") or self.gate.refused != self.log.status.get("refused"):
                self.log.update(clients=clients, refused=self.gate.refused)
            self._stop.wait(0.5)

    def _save_model(self, arrays: Any) -> str:
        self.output.mkdir(parents=True, exist_ok=True)
        ndarrays = arrays.to_numpy_ndarrays() if len(arrays) else []
        path = self.output / "model.npz"
        np.savez(path, *ndarrays)
        write_json(self.output / "model.json", {
            "format": "ai4lab-flower/npz-1", "arrays": len(ndarrays), "config": self.config,
            "rounds": self.log.status["rounds"], "note": "arr_0..arr_N in the order of the module's Flower adapter",
        })
        if self.mlflow and self.run_id_mlflow:
            try:
                self.mlflow.log_artifact(str(path))
                self.mlflow.log_artifact(str(self.output / "model.json"))
            except Exception:  # noqa: BLE001 - tracking must not fail the federation
                LOG.warning("could not upload the model to MLflow", exc_info=True)
        return str(path)

    # -- MLflow --------------------------------------------------------------------------
    def _start_mlflow(self) -> None:
        if not self.mlflow:
            return
        try:
            self.mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ai4lab-flower")
            run = self.mlflow.start_run(run_name=os.environ.get("MLFLOW_RUN_NAME") or "flower")
            self.run_id_mlflow = run.info.run_id
            self.mlflow.log_params({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                                    for k, v in self.config.items() if k != "tags"})
            self.mlflow.set_tags(self.config.get("tags") or {})
            self.log.update(mlflow_run_id=self.run_id_mlflow,
                            mlflow_experiment_id=run.info.experiment_id)
        except Exception:  # noqa: BLE001
            LOG.warning("MLflow tracking is unavailable; rounds are still recorded", exc_info=True)
            self.mlflow = None

    def _log_round(self, row: dict[str, Any]) -> None:
        if not (self.mlflow and self.run_id_mlflow):
            return
        values = {**row["metrics"], **{f"train_{k}": v for k, v in row["train_metrics"].items()},
                  "clients": row["clients"], "round_duration_s": row["duration_s"]}
        if row.get("loss") is not None:
            values["loss"] = row["loss"]
        try:
            self.mlflow.log_metrics(values, step=row["round"])
        except Exception:  # noqa: BLE001
            LOG.warning("could not log round %s to MLflow", row["round"], exc_info=True)

    def _end_mlflow(self, status: str) -> None:
        if self.mlflow and self.run_id_mlflow:
            try:
                self.mlflow.end_run(status=status)
            except Exception:  # noqa: BLE001
                LOG.warning("could not close the MLflow run", exc_info=True)


def _listen(app: Any, host: str, port: int, name: str, lifespan: str,
            tls: tuple[Path, Path] | None = None) -> tuple[Any, threading.Thread]:
    """Serve ``app`` with uvicorn in a daemon thread (HTTPS with ``tls`` = (cert, key)); return once it listens."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan=lifespan, ssl_certfile=str(tls[0]) if tls else None,
                                           ssl_keyfile=str(tls[1]) if tls else None))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"could not listen on {host}:{port}")
        time.sleep(0.05)
    return server, thread


def _mlflow() -> Any:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    import mlflow

    return mlflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="validated configuration (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=Path, required=True, help="JSON list of SHA-256 hashes of valid tokens")
    parser.add_argument("--status", type=Path, required=True, help="status file to keep up to date")
    parser.add_argument("--output", type=Path, required=True, help="folder for the final global model")
    parser.add_argument("--app-dir", type=Path, default=APP_DIR,
                        help="the tool's source folder, sent to clients as the FAB")
    parser.add_argument("--tls-dir", type=Path, default=None,
                        help="serve HTTPS with a self-signed certificate written here (cert.pem, key.pem)")
    parser.add_argument("--tls-host", action="append", default=[],
                        help="host name or IP clients use (the certificate is valid for these and loopback)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("flwr").setLevel(logging.INFO)
    config = json.loads(args.config.read_text())
    tls = None
    if args.tls_dir:
        from ai4lab_flower.tls import make_certificate

        tls = make_certificate(args.tls_dir, [*args.tls_host, "127.0.0.1", "localhost"])
    return Server(config, args.host, args.port, args.tokens, args.status, args.output, args.app_dir, tls).run()


if __name__ == "__main__":
    raise SystemExit(main())
