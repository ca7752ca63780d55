"""Model code: image normalisation, the bundled pretrained model, training.

Everything here is plain Python (no DEEPaaS), so it can be used from a
notebook or a script as well as through the API.

Why images are normalised the way they are: scikit-learn's digits are 8x8
images, ink high (0..16) on a dark background, the digit filling the frame.
Uploaded images are anything (a phone photo, a drawing on a white canvas, a
transparent PNG).  Each input -- uploaded image, CSV row or training sample --
goes through the same :func:`normalize_array` (crop to the ink, pad to a
square, box-filter down to 8x8, stretch to 0..16), and the models are trained
on normalised data too, so training and inference always see the same
representation.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.neural_network import MLPClassifier

from ai4lab_digits import NAME, __version__
from ai4lab_digits.config import PREPROCESSING, RANDOM_STATE, pretrained_path
from ai4lab_digits.config import model_dir  # noqa: F401  (re-exported for callers of this module)

LOG = logging.getLogger(__name__)

#: Classes of the task; fixed so that partial_fit and fine-tuning always agree.
CLASSES = np.arange(10)
#: Format tag of the model files written by this package.
MODEL_FORMAT = "ai4lab-digits/1"

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}


# --------------------------------------------------------------------------- preprocessing
def normalize_array(arr: np.ndarray) -> np.ndarray:
    """Turn a 2-D ink map (ink high, background 0) into the 64-vector model input.

    Crops to the ink's bounding box, centres it in a square, box-filters it to
    8x8 and stretches it to 0..16.  Raises ``ValueError`` for a blank image.
    """
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    a = np.clip(np.nan_to_num(a), 0, None)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        raise ValueError("the image is blank: no digit found")
    mask = a > 0.2 * peak
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = r1 - r0, c1 - c0
    side = max(h, w)
    canvas = np.zeros((side, side), dtype=np.float32)
    oy, ox = (side - h) // 2, (side - w) // 2
    canvas[oy : oy + h, ox : ox + w] = a[r0:r1, c0:c1]
    small = np.asarray(Image.fromarray(canvas, mode="F").resize((8, 8), Image.Resampling.BOX))
    small = np.clip(small, 0, None)
    return (small / small.max() * 16.0).ravel().astype(np.float64)


def image_to_array(img: Image.Image) -> np.ndarray:
    """Ink map (float, ink high, background ~0) of any PIL image.

    Transparent images use the alpha channel as ink (drawing canvases export
    strokes on a transparent background).  Otherwise the image is converted
    to grayscale and inverted when its border (the background) is light.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32)
        if alpha.min() < 250:
            return alpha
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 127:
        gray = 255.0 - gray
        background = 255.0 - background
    return np.clip(gray - background, 0, None)


def load_image(source: Any) -> Image.Image:
    """Open an image given a path, bytes, a file object or a DEEPaaS ``UploadedFile``.

    DEEPaaS passes uploads as ``UploadedFile`` named tuples whose ``filename``
    is a temporary file on disk; accepting plain paths and bytes too lets the
    same ``predict`` be called from Python.
    """
    if hasattr(source, "filename") and not isinstance(source, (str, os.PathLike)):
        name = getattr(source, "original_filename", None) or source.filename
        source = source.filename
    elif isinstance(source, (bytes, bytearray)):
        import io

        name, source = "<bytes>", io.BytesIO(source)
    else:
        name = str(source)
    try:
        img = Image.open(source)
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {name!r} as an image: {exc}") from exc
    return img


def image_to_features(source: Any) -> np.ndarray:
    """64-vector model input for one image (see :func:`load_image` for sources)."""
    return normalize_array(image_to_array(load_image(source)))


def digits_to_features(X: np.ndarray) -> np.ndarray:
    """Normalise rows of 64 raw pixels (load_digits layout, ink high) to model inputs."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 64:
        raise ValueError(f"expected rows of 64 pixels, got shape {X.shape}")
    return np.stack([normalize_array(row.reshape(8, 8)) for row in X])


# --------------------------------------------------------------------------- model files
def _bundle(estimator: MLPClassifier, **extra: Any) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "estimator": estimator,
        "classes": [int(c) for c in CLASSES],
        "preprocessing": PREPROCESSING,
        "sklearn_version": sklearn.__version__,
        "package_version": __version__,
        **extra,
    }


def save_model(bundle: dict[str, Any], path: Path) -> Path:
    """Write a model file atomically (temp file + rename).

    Atomic because several DEEPaaS workers (or two servers sharing the cache)
    may create the pretrained model at the same time; readers must never see a
    half-written pickle.
    """
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
    """Load a model file written by :func:`save_model` (or a bare fitted classifier).

    Model files are pickles: only load files you trust (your own storage).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    obj = joblib.load(path)
    if isinstance(obj, dict) and "estimator" in obj:
        bundle = obj
    elif hasattr(obj, "predict_proba"):
        bundle = _bundle(obj, source="bare estimator")
    else:
        raise ValueError(f"{path} is not an ai4lab-digits model file")
    if bundle.get("preprocessing", PREPROCESSING) != PREPROCESSING:
        raise ValueError(
            f"{path} was trained with preprocessing {bundle['preprocessing']!r}, "
            f"this version uses {PREPROCESSING!r}"
        )
    return bundle


def train_pretrained() -> dict[str, Any]:
    """Train the bundled model on the training part of load_digits (deterministic)."""
    from ai4lab_digits import data

    (X_train, y_train), (X_test, y_test) = data.split()
    F_train, F_test = digits_to_features(X_train), digits_to_features(X_test)
    clf = MLPClassifier(
        hidden_layer_sizes=(64,), max_iter=300, random_state=RANDOM_STATE, learning_rate_init=0.001
    )
    clf.fit(F_train, y_train)
    accuracy = float(clf.score(F_test, y_test))
    LOG.info("trained the pretrained %s model, held-out accuracy %.3f", NAME, accuracy)
    return _bundle(
        clf,
        source="pretrained on sklearn.datasets.load_digits",
        metrics={"held_out_accuracy": accuracy, "n_train": len(y_train), "n_test": len(y_test)},
    )


def ensure_pretrained() -> Path:
    """Return the pretrained model file, training it first if it is not cached yet.

    Weights are not shipped in the repository: training takes about a second
    from data inside the scikit-learn wheel, so it is done at first use.
    """
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


def predict_features(features: np.ndarray, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Label and per-class probabilities for each row of model inputs."""
    clf = bundle["estimator"]
    proba = clf.predict_proba(np.atleast_2d(features))
    classes = [int(c) for c in clf.classes_]
    out = []
    for row in proba:
        probs = {str(c): round(float(p), 6) for c, p in zip(classes, row)}
        out.append({"label": classes[int(np.argmax(row))], "probabilities": probs})
    return out


# --------------------------------------------------------------------------- training
def load_training_data(dataset: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels from a class-folder tree or a CSV file.

    * folder: one subfolder per label ``0``..``9`` holding image files;
    * CSV: 64 pixel columns (load_digits layout, values 0..16) and ``label``.
    """
    path = Path(dataset).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.is_dir():
        return _load_folder(path)
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    raise ValueError(f"dataset must be a folder of class subfolders or a .csv file, got {path}")


def _load_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    bad = [p.name for p in subdirs if p.name not in {str(c) for c in CLASSES}]
    if bad:
        raise ValueError(f"class folders must be named 0..9, found {bad} in {root}")
    features, labels = [], []
    for sub in subdirs:
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                features.append(image_to_features(f))
            except ValueError as exc:
                raise ValueError(f"{f}: {exc}") from exc
            labels.append(int(sub.name))
    if not labels:
        raise ValueError(f"no images found in class folders under {root}")
    return np.stack(features), np.asarray(labels)


def _load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import csv

    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "label" not in reader.fieldnames:
            raise ValueError(f"{path}: a 'label' column is required")
        pixel_cols = [c for c in reader.fieldnames if c != "label"]
        if len(pixel_cols) != 64:
            raise ValueError(f"{path}: expected 64 pixel columns + label, got {len(pixel_cols)}")
        rows, labels = [], []
        for i, rec in enumerate(reader, start=2):
            try:
                rows.append([float(rec[c]) for c in pixel_cols])
                labels.append(int(float(rec["label"])))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{i}: not a number ({exc})") from exc
    if not rows:
        raise ValueError(f"{path}: no rows")
    y = np.asarray(labels)
    if not set(y.tolist()) <= set(CLASSES.tolist()):
        raise ValueError(f"{path}: labels must be 0..9")
    return digits_to_features(np.asarray(rows)), y


def _mlflow() -> Any:
    """The mlflow module when tracking is configured and mlflow is installed, else None.

    Tracking is opt-in through ``MLFLOW_TRACKING_URI`` (the platform sets it in
    sessions); mlflow is an optional extra, so a missing install only logs.
    """
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
    epochs: int = 30,
    learning_rate: float = 0.01,
    hidden_units: int = 64,
    batch_size: int = 64,
    test_fraction: float = 0.2,
    init_weights: str | os.PathLike[str] | None = None,
    random_state: int = RANDOM_STATE,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train an MLP on ``dataset``; write ``model.joblib`` and ``metrics.json`` to ``output_dir``.

    One ``partial_fit`` per epoch so that loss and validation accuracy can be
    reported (and tracked in MLflow) while training runs.  With
    ``init_weights`` training continues from that model (its architecture
    wins over ``hidden_units``) with a fresh optimiser at ``learning_rate``.
    """
    from sklearn.model_selection import train_test_split

    _check_range("epochs", epochs, 1, 10_000)
    _check_range("learning_rate", learning_rate, 1e-6, 1.0)
    _check_range("hidden_units", hidden_units, 1, 4096)
    _check_range("batch_size", batch_size, 1, 100_000)
    _check_range("test_fraction", test_fraction, 0.05, 0.5)

    started = time.time()
    X, y = load_training_data(dataset)
    counts = np.bincount(y, minlength=10)
    if (counts > 0).sum() < 2:
        raise ValueError("the dataset needs at least two classes")
    stratify = y if counts[counts > 0].min() >= 2 else None
    X_tr, X_val, y_tr, y_val = train_test_split(
        X, y, test_size=test_fraction, random_state=random_state, stratify=stratify
    )

    if init_weights:
        clf = load_model(init_weights)["estimator"]
        if not isinstance(clf, MLPClassifier):
            raise ValueError(f"init_weights must be an MLPClassifier model, got {type(clf).__name__}")
        if hasattr(clf, "_optimizer"):
            del clf._optimizer  # new optimiser so that learning_rate applies
        clf.set_params(learning_rate_init=learning_rate, batch_size=batch_size, random_state=random_state)
        hidden = [int(h) for h in np.atleast_1d(clf.hidden_layer_sizes)]
    else:
        clf = MLPClassifier(
            hidden_layer_sizes=(hidden_units,),
            learning_rate_init=learning_rate,
            batch_size=batch_size,
            random_state=random_state,
        )
        hidden = [hidden_units]

    params = {
        "dataset": str(dataset),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "hidden_units": hidden,
        "batch_size": batch_size,
        "test_fraction": test_fraction,
        "init_weights": str(init_weights or ""),
        "random_state": random_state,
        "n_train": int(len(y_tr)),
        "n_val": int(len(y_val)),
    }
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    mlflow = _mlflow()
    run_id = None
    history: list[dict[str, float]] = []
    run_ctx = _start_run(mlflow)
    with run_ctx as run:
        if run is not None:
            run_id = run.info.run_id
            mlflow.log_params({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in params.items()})
            mlflow.set_tag("ai4lab.module", NAME)
        for epoch in range(1, epochs + 1):
            clf.partial_fit(X_tr, y_tr, classes=CLASSES)
            row = {
                "epoch": epoch,
                "loss": float(clf.loss_),
                "train_accuracy": float(clf.score(X_tr, y_tr)),
                "val_accuracy": float(clf.score(X_val, y_val)),
            }
            history.append(row)
            if run is not None:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            if on_epoch is not None:
                on_epoch(row)
        final = history[-1]
        model_path = save_model(_bundle(clf, source=f"trained on {dataset}", params=params), out / "model.joblib")
        summary = {
            "accuracy": final["val_accuracy"],
            "train_accuracy": final["train_accuracy"],
            "loss": final["loss"],
            "epochs": epochs,
            "n_train": params["n_train"],
            "n_val": params["n_val"],
            "output_dir": str(out),
            "model_path": str(model_path),
            "metrics_path": str(out / "metrics.json"),
            "mlflow_run_id": run_id,
            "duration_s": round(time.time() - started, 3),
        }
        (out / "metrics.json").write_text(json.dumps({"params": params, "history": history, "final": summary}, indent=2))
        if run is not None:
            mlflow.log_metrics({"final_val_accuracy": final["val_accuracy"]})
            mlflow.log_artifact(str(out / "metrics.json"))
            mlflow.log_artifact(str(model_path))
    return summary


def _start_run(mlflow: Any | None) -> Any:
    """An MLflow run context, or a null context when not tracking."""
    import contextlib

    if mlflow is None:
        return contextlib.nullcontext(None)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or NAME)
    return mlflow.start_run(run_name=os.environ.get("MLFLOW_RUN_NAME") or f"{NAME}-train")


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
