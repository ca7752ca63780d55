"""Model code: input parsing, the bundled pretrained model, training.

Plain Python (no DEEPaaS), usable from a notebook as well as through the API.
Inputs are the ten baseline variables of scikit-learn's diabetes dataset in
their original clinical units (``load_diabetes(scaled=False)``): age (years),
sex (1/2), bmi, bp (mean blood pressure) and six blood serum measurements
s1..s6.  Every model is a pipeline that starts with a ``StandardScaler``, so
users can send the numbers as they measure them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ai4lab_diabetes import NAME, __version__
from ai4lab_diabetes.config import FEATURES, MODEL_KINDS, RANDOM_STATE, TARGET, pretrained_path
from ai4lab_diabetes.config import model_dir  # noqa: F401  (re-exported for callers of this module)

LOG = logging.getLogger(__name__)

MODEL_FORMAT = "ai4lab-diabetes/1"


# --------------------------------------------------------------------------- inputs
def _as_matrix(rows: Iterable[Any], where: str) -> np.ndarray:
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [f for f in FEATURES if f not in row]
            if missing:
                raise ValueError(f"{where}: row {i} lacks {missing}")
            values = [row[f] for f in FEATURES]
        elif isinstance(row, (list, tuple)):
            if len(row) != len(FEATURES):
                raise ValueError(f"{where}: row {i} has {len(row)} values, expected {len(FEATURES)} ({', '.join(FEATURES)})")
            values = list(row)
        else:
            raise ValueError(f"{where}: row {i} must be an object or a list of {len(FEATURES)} numbers")
        try:
            floats = [float(v) for v in values]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: row {i} is not numeric ({exc})") from exc
        if not all(math.isfinite(v) for v in floats):
            raise ValueError(f"{where}: row {i} has NaN or infinite values")
        out.append(floats)
    if not out:
        raise ValueError(f"{where}: no rows")
    return np.asarray(out, dtype=np.float64)


def rows_from_json(text: str) -> np.ndarray:
    """Feature matrix from JSON: one object, a list of objects (keyed by feature) or of 10-number lists."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"rows is not valid JSON: {exc}") from exc
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise ValueError("rows must be a JSON object or a list")
    if obj and all(isinstance(v, (int, float)) for v in obj):
        obj = [obj]  # a single row given as a flat list
    return _as_matrix(obj, "rows")


def read_csv(source: str | os.PathLike[str], *, with_target: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and the target) from a CSV with a header naming the 10 feature columns.

    Extra columns are ignored, so the training CSV (with ``target``) can be
    sent to predict as it is.
    """
    path = Path(source)
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    needed = FEATURES + ([TARGET] if with_target else [])
    missing = [c for c in needed if c not in header]
    if missing:
        raise ValueError(f"CSV {path.name}: missing columns {missing} (has {header})")
    records = list(reader)
    X = _as_matrix(records, f"CSV {path.name}")
    y = None
    if with_target:
        try:
            y = np.asarray([float(r[TARGET]) for r in records])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"CSV {path.name}: target is not numeric ({exc})") from exc
    return X, y


# --------------------------------------------------------------------------- model files
def make_pipeline(kind: str, *, alpha: float, n_estimators: int, learning_rate: float, max_depth: int, random_state: int) -> Pipeline:
    """The estimator for ``kind`` (``ridge`` or ``gradient_boosting``) behind a StandardScaler."""
    if kind == "ridge":
        reg: Any = Ridge(alpha=alpha)
    elif kind == "gradient_boosting":
        reg = GradientBoostingRegressor(
            n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth, random_state=random_state
        )
    else:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {kind!r}")
    return Pipeline([("scale", StandardScaler()), ("regressor", reg)])


def _bundle(estimator: Pipeline, **extra: Any) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "estimator": estimator,
        "features": FEATURES,
        "sklearn_version": sklearn.__version__,
        "package_version": __version__,
        **extra,
    }


def save_model(bundle: dict[str, Any], path: Path) -> Path:
    """Write a model file atomically: concurrent workers must never read half a pickle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        joblib.dump(bundle, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a model file (only load files you trust: it is a pickle)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    obj = joblib.load(path)
    if isinstance(obj, dict) and "estimator" in obj:
        return obj
    if hasattr(obj, "predict"):
        return _bundle(obj, source="bare estimator")
    raise ValueError(f"{path} is not an ai4lab-diabetes model file")


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """r2, rmse and mae of a prediction."""
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
    }


def train_pretrained() -> dict[str, Any]:
    """Ridge regression on the training part of load_diabetes (deterministic)."""
    from ai4lab_diabetes import data

    (X_tr, y_tr), (X_te, y_te) = data.split()
    est = make_pipeline("ridge", alpha=10.0, n_estimators=0, learning_rate=0.0, max_depth=0, random_state=RANDOM_STATE)
    est.fit(X_tr, y_tr)
    held_out = metrics(y_te, est.predict(X_te))
    LOG.info("trained the pretrained %s model, held-out r2 %.3f", NAME, held_out["r2"])
    return _bundle(est, source="pretrained on sklearn.datasets.load_diabetes(scaled=False)", metrics=held_out)


def ensure_pretrained() -> Path:
    """The pretrained model file, trained at first use (weights are not kept in the repository)."""
    path = pretrained_path()
    if not path.is_file():
        save_model(train_pretrained(), path)
    return path


_CACHE: dict[str, dict[str, Any]] = {}


def get_model(weights: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The model bundle for ``weights`` (a path), or the pretrained one; cached per process."""
    path = Path(weights).expanduser().resolve() if weights else ensure_pretrained()
    key = f"{path}:{path.stat().st_mtime_ns if path.exists() else 0}"
    if key not in _CACHE:
        _CACHE[key] = load_model(path)
    return _CACHE[key]


def predict(X: np.ndarray, bundle: dict[str, Any]) -> list[float]:
    """Predicted disease progression for each row."""
    return [round(float(v), 4) for v in bundle["estimator"].predict(np.atleast_2d(X))]


# --------------------------------------------------------------------------- training
def _mlflow() -> Any:
    """mlflow when ``MLFLOW_TRACKING_URI`` is set and mlflow is installed, else None."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    try:
        import mlflow
    except ImportError:
        LOG.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed: not tracking")
        return None
    return mlflow


def train(
    dataset: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    model: str = "ridge",
    alpha: float = 1.0,
    n_estimators: int = 200,
    learning_rate: float = 0.05,
    max_depth: int = 2,
    test_fraction: float = 0.2,
    random_state: int = RANDOM_STATE,
) -> dict[str, Any]:
    """Fit a regressor on a CSV (10 features + ``target``); write ``model.joblib`` and ``metrics.json``.

    Gradient boosting also reports validation rmse per boosting stage (the
    "epochs" of this model) to MLflow when tracking is configured.
    """
    from sklearn.model_selection import train_test_split

    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    for name, value, lo, hi in (
        ("alpha", alpha, 0.0, 1e6),
        ("n_estimators", n_estimators, 1, 10_000),
        ("learning_rate", learning_rate, 1e-4, 1.0),
        ("max_depth", max_depth, 1, 20),
        ("test_fraction", test_fraction, 0.05, 0.5),
    ):
        if not (lo <= value <= hi):
            raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    path = Path(dataset).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    started = time.time()
    X, y = read_csv(path, with_target=True)
    assert y is not None
    if len(y) < 10:
        raise ValueError(f"{path.name}: at least 10 rows are needed, got {len(y)}")
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=test_fraction, random_state=random_state)
    est = make_pipeline(
        model, alpha=alpha, n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth, random_state=random_state
    )
    params: dict[str, Any] = {"dataset": str(dataset), "model": model, "test_fraction": test_fraction, "random_state": random_state}
    if model == "ridge":
        params["alpha"] = alpha
    else:
        params.update(n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth)
    params.update(n_train=int(len(y_tr)), n_val=int(len(y_val)))

    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    mlflow = _mlflow()
    ctx: Any = contextlib.nullcontext(None)
    if mlflow is not None:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or NAME)
        ctx = mlflow.start_run(run_name=os.environ.get("MLFLOW_RUN_NAME") or f"{NAME}-train")
    with ctx as run:
        if run is not None:
            mlflow.log_params(params)
            mlflow.set_tag("ai4lab.module", NAME)
        est.fit(X_tr, y_tr)
        stages: list[dict[str, float]] = []
        if model == "gradient_boosting":
            X_val_s = est.named_steps["scale"].transform(X_val)
            for i, pred in enumerate(est.named_steps["regressor"].staged_predict(X_val_s), start=1):
                stages.append({"stage": i, "val_rmse": float(math.sqrt(mean_squared_error(y_val, pred)))})
            if run is not None:
                for row in stages:
                    mlflow.log_metric("val_rmse", row["val_rmse"], step=int(row["stage"]))
        val = metrics(y_val, est.predict(X_val))
        train_m = metrics(y_tr, est.predict(X_tr))
        model_path = save_model(_bundle(est, source=f"trained on {dataset}", params=params, metrics=val), out / "model.joblib")
        summary = {
            **val,
            "train_r2": train_m["r2"],
            "model": model,
            "n_train": params["n_train"],
            "n_val": params["n_val"],
            "output_dir": str(out),
            "model_path": str(model_path),
            "metrics_path": str(out / "metrics.json"),
            "mlflow_run_id": run.info.run_id if run is not None else None,
            "duration_s": round(time.time() - started, 3),
        }
        (out / "metrics.json").write_text(json.dumps({"params": params, "stages": stages, "final": summary}, indent=2))
        if run is not None:
            mlflow.log_metrics({"r2": val["r2"], "rmse": val["rmse"], "mae": val["mae"], "train_r2": train_m["r2"]})
            mlflow.log_artifact(str(out / "metrics.json"))
            mlflow.log_artifact(str(model_path))
    return summary
