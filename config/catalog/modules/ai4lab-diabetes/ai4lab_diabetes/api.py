"""DEEPaaS v2 API of ai4lab-diabetes (entry point ``deepaas.v2.model: ai4lab-diabetes``).

A thin adapter, like the AI4OS module template: argument definitions and
error translation here, the model code in :mod:`ai4lab_diabetes.model`.
DEEPaaS runs ``warm``, ``predict`` and ``train`` in a worker process and
passes uploads as ``UploadedFile`` named tuples (``.filename`` is a temporary
file on disk).  The model code (scikit-learn) is imported lazily, in the
worker, not in the server process.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from webargs import fields, validate

from ai4lab_diabetes import NAME, __version__, config

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class BadRequest(web.HTTPBadRequest, ValueError):
    """Bad input: DEEPaaS answers HTTP 400 with the reason; Python callers see a ValueError.

    Any other exception becomes a bare "500 Internal Server Error" in DEEPaaS.
    The exception is pickled back from DEEPaaS's worker process and aiohttp's
    own ``HTTPBadRequest`` cannot be unpickled, hence ``__reduce__``.
    """

    def __init__(self, reason: str) -> None:
        web.HTTPBadRequest.__init__(self, reason=reason.replace("\n", " "))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))

    def __str__(self) -> str:
        return self.reason


def _catch_error(func: F) -> F:
    """Turn bad-input errors (ValueError, FileNotFoundError) into :class:`BadRequest`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadRequest:
            raise
        except (ValueError, FileNotFoundError) as exc:
            raise BadRequest(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def get_metadata() -> dict[str, Any]:
    """Model metadata shown by ``GET /v2/models/`` (id and name match the entry point)."""
    return {
        "id": NAME,
        "name": NAME,
        "description": (
            "Diabetes progression regression on 10 tabular features "
            f"({', '.join(config.FEATURES)}); Ridge or gradient boosting."
        ),
        "author": "ai4lab",
        "author-email": "ai4lab@example.org",
        "license": "Apache-2.0",
        "version": __version__,
        "url": "https://github.com/ai4lab/ai4lab/tree/main/config/catalog/modules/ai4lab-diabetes",
        "features": list(config.FEATURES),
        "pretrained_model": str(config.pretrained_path()),
    }


def warm() -> None:
    """Load (and on first use train) the pretrained model so the first request is fast."""
    from ai4lab_diabetes import model as _model

    t = time.time()
    _model.get_model(None)
    LOG.info("%s warmed in %.2fs", NAME, time.time() - t)


def get_predict_args() -> dict[str, fields.Field]:
    """Arguments of ``POST /v2/models/ai4lab-diabetes/predict/``: a CSV upload or JSON rows."""
    return {
        "file": fields.Raw(
            required=False,
            load_default=None,  # deepaas-cli (OSCAR services) passes unset arguments as their default
            metadata={
                "type": "file",
                "location": "form",
                "description": f"CSV with a header and the columns {', '.join(config.FEATURES)} (others are ignored).",
            },
        ),
        "rows": fields.Str(
            required=False,
            load_default="",
            metadata={
                "description": (
                    "JSON instead of a file: an object keyed by feature name, a list of such "
                    "objects, or a list of rows of 10 numbers in the order "
                    f"{', '.join(config.FEATURES)}."
                ),
            },
        ),
        "weights": fields.Str(
            required=False,
            load_default="",
            metadata={"description": "Path of a model.joblib written by train (empty: the pretrained model)."},
        ),
    }


@_catch_error
def predict(**kwargs: Any) -> list[float]:
    """Predicted disease progression, one number per input row (in input order)."""
    from ai4lab_diabetes import model as _model

    upload, rows = kwargs.get("file"), kwargs.get("rows") or ""
    if upload is not None and rows.strip():
        raise ValueError("send either 'file' or 'rows', not both")
    if upload is not None:
        path = getattr(upload, "filename", upload)  # DEEPaaS UploadedFile, or a path
        X, _ = _model.read_csv(path)
    elif rows.strip():
        X = _model.rows_from_json(rows)
    else:
        raise ValueError("send a CSV 'file' or JSON 'rows'")
    return _model.predict(X, _model.get_model(kwargs.get("weights") or None))


def get_train_args() -> dict[str, fields.Field]:
    """Arguments of ``POST /v2/models/ai4lab-diabetes/train/`` (query or form fields)."""
    return {
        "dataset": fields.Str(
            required=True,
            metadata={"description": f"Path to a CSV with the columns {', '.join(config.FEATURES)} and 'target'."},
        ),
        "model": fields.Str(
            load_default="ridge",
            validate=validate.OneOf(list(config.MODEL_KINDS)),
            metadata={"description": "Regressor.", "enum": list(config.MODEL_KINDS)},
        ),
        "alpha": fields.Float(
            load_default=1.0,
            validate=validate.Range(min=0.0, max=1e6),
            metadata={"description": "Ridge: L2 regularisation strength."},
        ),
        "n_estimators": fields.Int(
            load_default=200,
            validate=validate.Range(min=1, max=5000),
            metadata={"description": "Gradient boosting: number of boosting stages."},
        ),
        "learning_rate": fields.Float(
            load_default=0.05,
            validate=validate.Range(min=1e-4, max=1.0),
            metadata={"description": "Gradient boosting: shrinkage of each stage."},
        ),
        "max_depth": fields.Int(
            load_default=2,
            validate=validate.Range(min=1, max=10),
            metadata={"description": "Gradient boosting: depth of each tree."},
        ),
        "test_fraction": fields.Float(
            load_default=0.2,
            validate=validate.Range(min=0.05, max=0.5),
            metadata={"description": "Fraction of the rows held out for validation."},
        ),
        "output_dir": fields.Str(
            load_default="",
            metadata={"description": "Folder for model.joblib and metrics.json (empty: under the module's model directory)."},
        ),
        "random_state": fields.Int(load_default=0, metadata={"description": "Seed of the split and of the trees."}),
    }


@_catch_error
def train(**kwargs: Any) -> dict[str, Any]:
    """Fit a regressor; returns validation r2 / rmse / mae, the output paths and the MLflow run id."""
    from ai4lab_diabetes import model as _model

    defaults = {k: f.load_default for k, f in get_train_args().items() if k != "dataset"}
    args = {**defaults, **{k: v for k, v in kwargs.items() if v is not None}}
    if not args.get("dataset"):
        raise ValueError("'dataset' is required")
    output_dir = args["output_dir"] or str(config.model_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S"))
    return _model.train(
        dataset=Path(args["dataset"]),
        output_dir=Path(output_dir),
        model=str(args["model"]),
        alpha=float(args["alpha"]),
        n_estimators=int(args["n_estimators"]),
        learning_rate=float(args["learning_rate"]),
        max_depth=int(args["max_depth"]),
        test_fraction=float(args["test_fraction"]),
        random_state=int(args["random_state"]),
    )


__all__ = ["get_metadata", "warm", "get_predict_args", "predict", "get_train_args", "train"]
