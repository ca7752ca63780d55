"""ai4lab-diabetes: tabular regression (disease progression) served through the DEEPaaS v2 API.

The DEEPaaS entry point is :mod:`ai4lab_diabetes.api`; the model code lives in
:mod:`ai4lab_diabetes.model` and the dataset helpers in :mod:`ai4lab_diabetes.data`.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("ai4lab-diabetes")
except _metadata.PackageNotFoundError:  # running from a source checkout
    __version__ = "0.0.0"

NAME = "ai4lab-diabetes"
