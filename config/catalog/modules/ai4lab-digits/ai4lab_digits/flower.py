"""Flower adapter of ai4lab-digits: federated rounds run this module's own training.

Used by ai4lab's Flower ClientApp (``ai4lab_flower.client_app``) on each client
with ``node_config`` ``module='ai4lab_digits.flower'`` and ``data=<dataset>``
(a class-folder tree or a CSV, as for :func:`ai4lab_digits.model.train`).

* ``fit`` writes the global weights as a model file, calls
  :func:`~ai4lab_digits.model.train` on the local data with it as
  ``init_weights`` (so local epochs, validation split and metrics are the
  module's own), and returns the trained weights. With FedProx's
  ``proximal-mu`` the result is pulled towards the global model by the
  proximal step ``w = (w_local + mu * w_global) / (1 + mu)`` (scikit-learn's
  MLP has no proximal term in its loss).
* ``evaluate`` scores the global model on the local data.
* ``initial`` is the deterministic starting model every client agrees on.

Weights travel as the flat list ``coefs_ + intercepts_`` of the MLP.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neural_network import MLPClassifier

from ai4lab_digits.config import RANDOM_STATE
from ai4lab_digits.model import CLASSES, _bundle, load_training_data, save_model, train

#: Hidden units of the federated model (fixed: all clients must share the architecture).
HIDDEN_UNITS = 64
#: Local learning rate of a fit step (sent by the server as ``learning-rate`` to override).
LEARNING_RATE = 0.01


def _model(arrays: list[np.ndarray], hidden: int = HIDDEN_UNITS) -> MLPClassifier:
    """An MLP with the given weights (initialised on a fixed synthetic batch so that shapes exist)."""
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), random_state=RANDOM_STATE, learning_rate_init=LEARNING_RATE)
    clf.partial_fit(np.zeros((len(CLASSES), 64)), CLASSES, classes=CLASSES)
    if arrays:
        n = len(clf.coefs_)
        if len(arrays) != 2 * n:
            raise ValueError(f"expected {2 * n} arrays (coefs and intercepts), got {len(arrays)}")
        clf.coefs_ = [np.asarray(a, dtype=np.float64) for a in arrays[:n]]
        clf.intercepts_ = [np.asarray(a, dtype=np.float64) for a in arrays[n:]]
    return clf


def _weights(clf: MLPClassifier) -> list[np.ndarray]:
    return [np.asarray(a) for a in clf.coefs_] + [np.asarray(a) for a in clf.intercepts_]


def initial(config: dict[str, Any]) -> list[np.ndarray]:
    return _weights(_model([]))


def fit(arrays: list[np.ndarray], data: str, config: dict[str, Any]) -> tuple[list[np.ndarray], dict[str, float], int]:
    from ai4lab_digits.model import load_model

    global_clf = _model(arrays)
    with tempfile.TemporaryDirectory(prefix="ai4lab-digits-flower-") as tmp:
        init = save_model(_bundle(global_clf, source="federated global model"), Path(tmp) / "global.joblib")
        summary = train(data, Path(tmp) / "out", epochs=int(config.get("local-epochs", 1)),
                        learning_rate=float(config.get("learning-rate", LEARNING_RATE)), init_weights=init)
        local = _weights(load_model(summary["model_path"])["estimator"])
    mu = float(config.get("proximal-mu", 0.0) or 0.0)
    if mu > 0:
        start = _weights(global_clf)
        local = [(w + mu * g) / (1.0 + mu) for w, g in zip(local, start)]
    metrics = {"accuracy": summary["accuracy"], "train_accuracy": summary["train_accuracy"], "loss": summary["loss"]}
    return local, metrics, int(summary["n_train"])


def evaluate(arrays: list[np.ndarray], data: str, config: dict[str, Any]) -> tuple[dict[str, float], int]:
    from sklearn.metrics import log_loss

    clf = _model(arrays)
    X, y = load_training_data(data)
    proba = clf.predict_proba(X)
    return {"accuracy": float(clf.score(X, y)), "loss": float(log_loss(y, proba, labels=CLASSES))}, int(len(y))
