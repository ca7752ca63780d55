"""DEEPaaS v2 API of ai4lab-torch-digits (entry point ``deepaas.v2.model: ai4lab-torch-digits``).

Thin, like the AI4OS template: argument definitions and error translation here, the model in
:mod:`ai4lab_torch_digits.model` (imported late: DEEPaaS's main process only reads the arguments).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from webargs import fields, validate

from ai4lab_torch_digits import NAME, __version__

F = TypeVar("F", bound=Callable[..., Any])


class BadRequest(web.HTTPBadRequest, ValueError):
    """Bad input: DEEPaaS answers 400 with the reason (pickled back from its worker, hence ``__reduce__``)."""

    def __init__(self, reason: str) -> None:
        web.HTTPBadRequest.__init__(self, reason=reason.replace("\n", " "))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))

    def __str__(self) -> str:
        return self.reason


def _catch_error(func: F) -> F:
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
    return {
        "id": NAME,
        "name": NAME,
        "description": "Handwritten digit classifier in PyTorch: incremental and data-parallel training.",
        "author": "ai4lab",
        "author-email": "ai4lab@example.org",
        "license": "Apache-2.0",
        "version": __version__,
        "url": "https://github.com/ai4lab/ai4lab/tree/main/config/catalog/modules/ai4lab-torch-digits",
    }


def warm() -> None:
    from ai4lab_torch_digits import model

    model.get_net(None)


def get_predict_args() -> dict[str, fields.Field]:
    return {
        "image": fields.Raw(
            required=True,
            metadata={"type": "file", "location": "form", "description": "Image of one digit (any size)."},
        ),
        "weights": fields.Str(
            load_default="",
            metadata={"description": "A model.pt written by train (empty: the pretrained model)."},
        ),
    }


@_catch_error
def predict(**kwargs: Any) -> dict[str, Any]:
    """``{"label": int, "probabilities": {"0": p, ...}, "weights": str}``."""
    from ai4lab_torch_digits import model

    image = kwargs.get("image")
    if image is None:
        raise ValueError("an 'image' file is required")
    return model.predict(model.image_to_features(Path(image.filename)), kwargs.get("weights") or None)


def get_train_args() -> dict[str, fields.Field]:
    return {
        "dataset": fields.Str(
            load_default="",
            metadata={"description": "CSV (p0..p63 pixels 0..16, label) or a folder with one; empty: the bundled digits."},
        ),
        "epochs": fields.Int(load_default=10, validate=validate.Range(min=1, max=1000), metadata={"description": "Passes over the data."}),
        "learning_rate": fields.Float(
            load_default=0.01, validate=validate.Range(min=1e-6, max=1.0), metadata={"description": "Adam's learning rate."}
        ),
        "batch_size": fields.Int(load_default=64, validate=validate.Range(min=1, max=10000), metadata={"description": "Mini-batch size (per worker)."}),
        "hidden_units": fields.Int(
            load_default=64, validate=validate.Range(min=4, max=1024), metadata={"description": "Hidden units (ignored with init_weights)."}
        ),
        "init_weights": fields.Str(
            load_default="", metadata={"description": "A model.pt to continue from (its weights, optimiser and epochs)."}
        ),
        "output_dir": fields.Str(load_default="", metadata={"description": "Folder for model.pt and metrics.json."}),
        "seed": fields.Int(load_default=0, metadata={"description": "Seed of the split, the initialisation and the shuffling."}),
    }


@_catch_error
def train(**kwargs: Any) -> dict[str, Any]:
    """Train or continue; in each worker of a data-parallel training (``WORLD_SIZE`` > 1) too."""
    import time

    from ai4lab_torch_digits import model

    args = {k: f.load_default for k, f in get_train_args().items()} | {k: v for k, v in kwargs.items() if v is not None}
    output = args["output_dir"] or str(model.model_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S"))
    return model.train(
        dataset=args["dataset"] or None,
        output_dir=Path(output),
        epochs=int(args["epochs"]),
        learning_rate=float(args["learning_rate"]),
        batch_size=int(args["batch_size"]),
        hidden_units=int(args["hidden_units"]),
        init_weights=args["init_weights"] or None,
        seed=int(args["seed"]),
    )


__all__ = ["get_metadata", "warm", "get_predict_args", "predict", "get_train_args", "train"]
