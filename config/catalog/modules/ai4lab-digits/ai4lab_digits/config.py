"""Settings and paths, importable without scikit-learn.

DEEPaaS imports the API module in its main process only to read the argument
definitions and metadata; keeping this module light (no scikit-learn/scipy,
about 2.5 s to import) lets the server answer sooner.  The model itself is
loaded in DEEPaaS's worker process by ``warm()``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from ai4lab_digits import NAME

#: Version of the image preprocessing; stored in every model file.
PREPROCESSING = "crop-square-box8x8-v1"
#: Seed of the split and of the pretrained model (deterministic artefacts).
RANDOM_STATE = 0
#: Fraction of load_digits held out from the pretrained model (see data.split).
HELD_OUT_FRACTION = 0.25


def model_dir() -> Path:
    """Folder where this module caches models.

    ``$AI4LAB_MODEL_DIR/ai4lab-digits`` when the platform sets it (shared,
    persistent storage), else ``~/.cache/ai4lab/models/ai4lab-digits``.
    """
    root = os.environ.get("AI4LAB_MODEL_DIR") or Path.home() / ".cache" / "ai4lab" / "models"
    return Path(root).expanduser() / NAME


def pretrained_path() -> Path:
    """Path of the pretrained model file.

    The scikit-learn version is part of the name: pickles are not portable
    across scikit-learn versions, and several environments share the cache.
    """
    return model_dir() / f"pretrained-{PREPROCESSING}-sklearn{metadata.version('scikit-learn')}.joblib"
