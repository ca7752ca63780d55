"""The same federated rounds as a Flower ServerApp, for ``flwr run`` on a plain ``flower-superlink``.

ai4lab runs ``server.py`` (SuperLink + strategy in one process, token auth,
MLflow). This ServerApp exists so that the very same strategy, clients and
model can run on stock Flower deployment tooling: it is the baseline of
``bench/flower.py`` and a way to use the tool's ClientApp with any SuperLink.
Run config keys (``[tool.flwr.app.config]`` in pyproject.toml):
``num-server-rounds``, ``strategy``, ``min-clients``, ``local-epochs`` and
``status-file`` (where the per-round record goes; empty: none).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from ai4lab_flower.rounds import RoundLog, build_strategy, initial_arrays, live, train_config

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    config = {"rounds": int(cfg["num-server-rounds"]), "strategy": str(cfg["strategy"]),
              "min_fit_clients": int(cfg["min-clients"]), "min_available_clients": int(cfg["min-clients"]),
              "local_epochs": int(cfg["local-epochs"]), "strategy_kwargs": {}}
    status = str(cfg.get("status-file", "") or "")
    log = RoundLog(Path(status) if status else None, str(cfg.get("metric", "accuracy")))
    initial = initial_arrays(grid, config["min_available_clients"])
    strategy = live(build_strategy(config), log)
    log.update(state="running")
    strategy.start(grid=grid, initial_arrays=initial, num_rounds=config["rounds"],
                   train_config=ConfigRecord(train_config(config)))
    log.update(state="finished")
