"""The strategy of a Flower deployment and the record of its rounds (shared by server and ServerApp).

Why a dynamic subclass: flwr's Message-API strategies (``flwr.serverapp.strategy``)
only return their per-round results at the end (``Result``). Subclassing the
configured strategy's own class and hooking ``aggregate_train`` /
``aggregate_evaluate`` gives the aggregated metrics and the connected clients
*as each round ends*, for the platform API and MLflow, without re-implementing
any strategy. The configuration arrives validated by the platform
(``ai4lab.flower.config``); friendly parameter names are already mapped to the
constructor arguments of flwr's classes (``strategy_kwargs``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,

    FedProx,
    FedYogi,
    Strategy,
)
from flwr.serverapp.strategy.fedopt import FedOpt  # not re-exported by flwr.serverapp.strategy (1.42)

STRATEGIES: dict[str, type[Strategy]] = {
    "FedAvg": FedAvg, "FedProx": FedProx, "FedAdam": FedAdam, "FedYogi": FedYogi,
    "FedAvgM": FedAvgM, "FedMedian": FedMedian, "FedOpt": FedOpt,
}


def build_strategy(config: dict[str, Any]) -> Strategy:
    """The flwr strategy a validated configuration describes (DP wrapper included)."""
    cls = STRATEGIES[config["strategy"]]
    strategy: Strategy = cls(
        fraction_train=1.0, fraction_evaluate=1.0,
        min_train_nodes=int(config["min_fit_clients"]), min_evaluate_nodes=int(config["min_fit_clients"]),
        min_available_nodes=int(config["min_available_clients"]),
        **dict(config.get("strategy_kwargs") or {}),
    )
    dp = config.get("dp")
    if dp:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, noise_multiplier=float(dp["noise_multiplier"]), clipping_norm=float(dp["clipping_norm"]),
            num_sampled_clients=int(config["min_fit_clients"]),
        )
    return strategy


def write_json(path: Path, data: Any) -> None:
    """Atomic write: the platform reads this file while the server updates it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class RoundLog:
    """Per-round aggregated metrics, round durations and connected clients, kept in a status file."""

    def __init__(self, status_file: Path | None, metric: str = "accuracy",
                 on_round: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.status_file = status_file
        self.metric = metric
        self.on_round = on_round
        self.status: dict[str, Any] = {"state": "waiting for clients", "rounds": [], "clients": [],
                                       "started": time.time()}
        self._round_start = time.monotonic()
        self._train: dict[int, dict[str, Any]] = {}
        self.final_arrays: ArrayRecord | None = None
        self.save()

    def save(self) -> None:
        if self.status_file is not None:
            write_json(self.status_file, self.status)

    def update(self, **fields: Any) -> None:
        self.status.update(fields)
        self.save()

    def train_done(self, server_round: int, replies: list[Message], arrays: ArrayRecord | None,
                   metrics: MetricRecord | None) -> None:
        if arrays is not None:
            self.final_arrays = arrays
        self._train[server_round] = {
            "train_metrics": {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))},
            "clients": sum(1 for r in replies if not r.has_error()),
        }
        self.update(state=f"round {server_round}: evaluating")

    def evaluate_done(self, server_round: int, replies: list[Message], metrics: MetricRecord | None) -> None:
        now = time.monotonic()
        values = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        train = self._train.get(server_round, {})
        row = {
            "round": server_round,
            "metrics": {k: v for k, v in values.items() if k != "loss"},
            "loss": values.get("loss"),
            "train_metrics": train.get("train_metrics", {}),
            "clients": train.get("clients", 0),
            "evaluated_by": sum(1 for r in replies if not r.has_error()),
            "duration_s": round(now - self._round_start, 4),
            "time": time.time(),
        }
        self._round_start = now
        self.status["rounds"].append(row)
        self.update(state=f"round {server_round} done")
        if self.on_round is not None:
            self.on_round(row)


def live(strategy: Strategy, log: RoundLog) -> Strategy:
    """Make ``strategy`` report each round to ``log`` as it ends (see the module docstring)."""
    base = type(strategy)

    class Live(base):  # type: ignore[valid-type, misc]
        def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
            replies = list(replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            log.train_done(server_round, replies, arrays, metrics)
            return arrays, metrics

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
            replies = list(replies)
            metrics = super().aggregate_evaluate(server_round, replies)
            log.evaluate_done(server_round, replies, metrics)
            return metrics

    Live.__name__ = Live.__qualname__ = f"Live{base.__name__}"
    strategy.__class__ = Live
    return strategy


def initial_arrays(grid: Any, min_nodes: int, stopped: Callable[[], bool] = lambda: False,
                   timeout: float = 600) -> ArrayRecord:
    """Wait for ``min_nodes`` clients, then ask one of them for the module's initial model (``query``).

    The server never imports a module: the model comes from the clients' own
    code (see ``client_app.query``), identical on every client.
    """
    from flwr.app import ConfigRecord, RecordDict

    while not stopped():
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= min_nodes:
            msg = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=nodes[0], message_type="query")
            for reply in grid.send_and_receive([msg], timeout=timeout):
                if reply.has_content() and "arrays" in reply.content:
                    return reply.content["arrays"]
                raise RuntimeError(f"client {nodes[0]} could not provide the initial model: {reply.error}")
            raise RuntimeError(f"client {nodes[0]} did not answer with the initial model within {timeout:g}s")
        time.sleep(0.2)
    return ArrayRecord()


def train_config(config: dict[str, Any]) -> dict[str, Any]:
    """What clients receive with each fit: local epochs and strategy hints (FedProx's mu)."""
    out: dict[str, Any] = {"local-epochs": int(config.get("local_epochs", 1))}
    kwargs = config.get("strategy_kwargs") or {}
    if "proximal_mu" in kwargs:
        out["proximal-mu"] = float(kwargs["proximal_mu"])
    return out
