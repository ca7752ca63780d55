"""Running catalog items: inference deployments of modules (DEEPaaS servers) and one-shot tries."""

from pathlib import Path

#: The script that runs one prediction, or describes the predict arguments, inside a module's environment.
ONESHOT = Path(__file__).resolve().parent / "oneshot.py"
