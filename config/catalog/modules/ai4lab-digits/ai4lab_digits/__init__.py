"""ai4lab-digits: a handwritten-digit classifier served through the DEEPaaS v2 API.

The DEEPaaS entry point is :mod:`ai4lab_digits.api`; the model code lives in
:mod:`ai4lab_digits.model` and the dataset helpers in :mod:`ai4lab_digits.data`,
so that the API layer stays a thin adapter (as in the AI4OS module template).
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("ai4lab-digits")
except _metadata.PackageNotFoundError:  # running from a source checkout
    __version__ = "0.0.0"

NAME = "ai4lab-digits"
