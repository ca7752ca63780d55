"""The ClientApp every ai4lab Flower client runs: the module's own code does the work.

Why generic: a client names the module it trains (``node_config["module"]``,
e.g. ``ai4lab_digits.flower``) and its local data (``node_config["data"]``).
The module's adapter provides three functions over lists of numpy arrays, so
that the federated fit step is the module's own ``train`` on local data:

* ``fit(arrays, data, config) -> (arrays, metrics, num_examples)``
* ``evaluate(arrays, data, config) -> (metrics, num_examples)``
* ``initial(config) -> arrays``: the module's deterministic initial model.

The server asks one client for the initial model (a ``query`` message) before
round 1: it stays generic (it never imports a module), and strategies that
need the current model from the start (FedAdam, FedYogi, FedOpt) have it.

"""

from __future__ import annotations

import importlib
from typing import Any

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def _adapter(context: Context) -> Any:
    name = str(context.node_config.get("module", ""))
    if not name:
        raise ValueError("the SuperNode has no node config 'module' (the module's Flower adapter to run)")
    return importlib.import_module(name)


def _inputs(msg: Message, context: Context) -> tuple[Any, list[Any], str, dict[str, Any]]:
    arrays = msg.content["arrays"].to_numpy_ndarrays() if "arrays" in msg.content else []
    config = dict(msg.content["config"]) if "config" in msg.content else {}
    return _adapter(context), arrays, str(context.node_config.get("data", "")), config


def _numbers(metrics: dict[str, Any], n: int) -> MetricRecord:
    out: dict[str, Any] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    out["num-examples"] = int(n)
    return MetricRecord(out)


@app.train()
def train(msg: Message, context: Context) -> Message:
    adapter, arrays, data, config = _inputs(msg, context)
    new_arrays, metrics, n = adapter.fit(arrays, data, config)
    content = RecordDict({"arrays": ArrayRecord(list(new_arrays)), "metrics": _numbers(metrics, n)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    adapter, arrays, data, config = _inputs(msg, context)
    metrics, n = adapter.evaluate(arrays, data, config)
    return Message(content=RecordDict({"metrics": _numbers(metrics, n)}), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    adapter, _, _, config = _inputs(msg, context)
    return Message(content=RecordDict({"arrays": ArrayRecord(list(adapter.initial(config)))}), reply_to=msg)
