"""DEEPaaS v2 API of ai4lab-digits (entry point ``deepaas.v2.model: ai4lab-digits``).

Kept thin on purpose, like the AI4OS module template: argument definitions
and error translation here, the model code in :mod:`ai4lab_digits.model`.

DEEPaaS builds the request schemas from ``get_predict_args`` /
``get_train_args`` (webargs 5 / marshmallow 3 fields; ``metadata["location"]``
chooses where an argument is read, ``metadata["type"] == "file"`` makes it an
upload) and runs ``warm``, ``predict`` and ``train`` in a worker process.
Uploaded files arrive as ``UploadedFile`` named tuples whose ``filename`` is a
temporary file on disk.
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

from ai4lab_digits import NAME, __version__, config

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class BadRequest(web.HTTPBadRequest, ValueError):
    """Bad input: DEEPaaS answers HTTP 400 with the reason; Python callers see a ValueError.

    DEEPaaS turns any other exception into "500 Internal Server Error", which
    hides *why* (an unreadable image, a missing dataset) from the user.  The
    exception travels back from DEEPaaS's worker process by pickle, and
    aiohttp's own ``HTTPBadRequest`` cannot be unpickled (its ``__init__``
    takes keyword arguments only), hence ``__reduce__``.
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
    """Model metadata shown by ``GET /v2/models/`` (id and name must match the entry point)."""
    return {
        "id": NAME,
        "name": NAME,
        "description": (
            "Handwritten digit classifier (scikit-learn MLP on 8x8 digits). "
            "Upload any image of one digit; train on class folders 0..9 or a CSV."
        ),
        "author": "ai4lab",
        "author-email": "ai4lab@example.org",
        "license": "Apache-2.0",
        "version": __version__,
        "url": "https://github.com/ai4lab/ai4lab/tree/main/config/catalog/modules/ai4lab-digits",
        "pretrained_model": str(config.pretrained_path()),
    }


def warm() -> None:
    """Load (and on first use train) the pretrained model so the first request is fast."""
    from ai4lab_digits import model as _model

    t = time.time()
    _model.get_model(None)
    LOG.info("%s warmed in %.2fs (%s)", NAME, time.time() - t, config.pretrained_path())


def get_predict_args() -> dict[str, fields.Field]:
    """Arguments of ``POST /v2/models/ai4lab-digits/predict/`` (multipart form)."""
    return {
        "image": fields.Raw(
            required=True,
            metadata={
                "type": "file",
                "location": "form",
                "description": "Image of one digit (PNG, JPEG, ...; any size; colour or grayscale).",
            },
        ),
        "weights": fields.Str(
            required=False,
            load_default="",
            metadata={
                "description": "Path of a model.joblib written by train (empty: the pretrained model).",
            },
        ),
    }


@_catch_error
def predict(**kwargs: Any) -> dict[str, Any]:
    """Classify one image: ``{"label": int, "probabilities": {"0": p, ...}, "weights": str}``."""
    from ai4lab_digits import model as _model

    image = kwargs.get("image")
    if image is None:
        raise ValueError("an 'image' file is required")
    weights = kwargs.get("weights") or None
    bundle = _model.get_model(weights)
    features = _model.image_to_features(image)
    result = _model.predict_features(features, bundle)[0]
    result["weights"] = str(weights) if weights else "pretrained"
    return result


def get_train_args() -> dict[str, fields.Field]:
    """Arguments of ``POST /v2/models/ai4lab-digits/train/`` (query or form fields)."""
    return {
        "dataset": fields.Str(
            required=True,
            metadata={
                "description": (
                    "Path to a folder with one subfolder per label 0..9 holding images, "
                    "or to a CSV with 64 pixel columns (0..16) and 'label'."
                ),
            },
        ),
        "epochs": fields.Int(
            load_default=30,
            validate=validate.Range(min=1, max=1000),
            metadata={"description": "Passes over the training data."},
        ),
        "learning_rate": fields.Float(
            load_default=0.01,
            validate=validate.Range(min=1e-6, max=1.0),
            metadata={"description": "Initial learning rate of the Adam optimiser."},
        ),
        "hidden_units": fields.Int(
            load_default=64,
            validate=validate.Range(min=4, max=1024),
            metadata={"description": "Units of the hidden layer (ignored with init_weights)."},
        ),
        "batch_size": fields.Int(
            load_default=64,
            validate=validate.Range(min=1, max=10000),
            metadata={"description": "Mini-batch size."},
        ),
        "test_fraction": fields.Float(
            load_default=0.2,
            validate=validate.Range(min=0.05, max=0.5),
            metadata={"description": "Fraction of the data held out for validation."},
        ),
        "output_dir": fields.Str(
            load_default="",
            metadata={
                "description": (
                    "Folder for model.joblib and metrics.json "
                    "(empty: a new folder under the module's model directory)."
                ),
            },
        ),
        "init_weights": fields.Str(
            load_default="",
            metadata={
                "description": "Model file to start from ('pretrained' for the bundled model; empty: from scratch).",
            },
        ),
        "random_state": fields.Int(
            load_default=0,
            metadata={"description": "Seed of the split, the initialisation and the shuffling."},
        ),
    }


@_catch_error
def train(**kwargs: Any) -> dict[str, Any]:
    """Train a new model; returns a JSON summary (accuracy, output paths, MLflow run id).

    Parameters and per-epoch metrics go to MLflow when ``MLFLOW_TRACKING_URI``
    is set and mlflow is installed (extra ``mlflow``).
    """
    from ai4lab_digits import model as _model

    defaults = {k: f.load_default for k, f in get_train_args().items() if k != "dataset"}
    args = {**defaults, **{k: v for k, v in kwargs.items() if v is not None}}
    if not args.get("dataset"):
        raise ValueError("'dataset' is required")
    output_dir = args["output_dir"] or str(config.model_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S"))
    init = args["init_weights"]
    if init == "pretrained":
        init = str(_model.ensure_pretrained())
    return _model.train(
        dataset=Path(args["dataset"]),
        output_dir=Path(output_dir),
        epochs=int(args["epochs"]),
        learning_rate=float(args["learning_rate"]),
        hidden_units=int(args["hidden_units"]),
        batch_size=int(args["batch_size"]),
        test_fraction=float(args["test_fraction"]),
        init_weights=init or None,
        random_state=int(args["random_state"]),
    )


__all__ = ["get_metadata", "warm", "get_predict_args", "predict", "get_train_args", "train"]

