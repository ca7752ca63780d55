"""Settings and paths, importable without scikit-learn.

DEEPaaS imports the API module in its main process only to read the argument
definitions and metadata; keeping this module light (scikit-learn and scipy
take seconds to import) lets the server answer sooner.  The model itself is
loaded in DEEPaaS's worker process by ``warm()``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from ai4lab_diabetes import NAME

#: The ten baseline variables of load_diabetes, in its column order.
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
TARGET = "target"
MODEL_KINDS = ("ridge", "gradient_boosting")
#: Seed of the split and of the models (deterministic artefacts).
RANDOM_STATE = 0
#: Fraction of load_diabetes held out from the pretrained model (see data.split).
HELD_OUT_FRACTION = 0.25


def model_dir() -> Path:
    """``$AI4LAB_MODEL_DIR/ai4lab-diabetes``, else ``~/.cache/ai4lab/models/ai4lab-diabetes``."""
    root = os.environ.get("AI4LAB_MODEL_DIR") or Path.home() / ".cache" / "ai4lab" / "models"
    return Path(root).expanduser() / NAME


def pretrained_path() -> Path:
    """Pretrained model file; the scikit-learn version is in the name (pickles are not portable)."""
    return model_dir() / f"pretrained-sklearn{metadata.version('scikit-learn')}.joblib"
