"""Generate a new AI module from the module template (``ai4lab module new NAME``).

Why: AI4OS gives advanced users an "AI Modules Template" so that a new model
starts as a package that already speaks DEEPaaS, has tests, metadata and a
Dockerfile, instead of a blank folder. This is ai4lab's equivalent: a
`copier <https://copier.readthedocs.io>`_ template in
``config/templates/module`` (copier rather than cookiecutter because it
validates answers, records them, and can update a project when the template
changes). The generated module follows the bundled modules
(``config/catalog/modules/ai4lab-digits``): entry point ``deepaas.v2.model``,
the six DEEPaaS functions, a ``BadRequest`` that DEEPaaS answers with 400,
AI4OS metadata v2 and a Dockerfile ``FROM ghcr.io/ai4lab/module-base``. It runs in its
own environment (:func:`ai4lab.core.envs.ensure_env`) like any catalog module, and
is published with ``POST /services/ai4lab/catalog/modules``.

The name is checked here, before copier runs, so that a bad name gets one
clear sentence rather than a template error, and so that what is generated is
always a valid distribution name, Python package, Docker image name and
catalog id at once.

Usage::

    from ai4lab.catalog.module_template import new_module

    folder = new_module("my-classifier", Path("~/code").expanduser(), {"title": "My classifier"})
"""

from __future__ import annotations

import datetime as _dt
import keyword
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from ai4lab.core.runtime import shipped

__all__ = ["check_name", "new_module", "question_names", "template_path"]

#: A lower-case slug: letters, digits and single hyphens, starting with a letter.
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
#: The name becomes a DNS label on clusters (job and service names): at most 63 characters.
MAX_NAME_LENGTH = 63
#: Package names that would shadow what the module imports or how its tests are found.
_RESERVED_PACKAGES = frozenset({"deepaas", "ai4lab", "test", "tests", "numpy", "pytest", "webargs", "aiohttp"})


def template_path() -> Path:
    """Folder of the copier template: ``config/templates/module``, shipped with the package.

    Raises ``FileNotFoundError`` when the template is missing (a broken install).
    """
    path = shipped("templates", "module")
    if not (path / "copier.yml").is_file():
        raise FileNotFoundError(f"the module template is missing: no copier.yml in {path}")
    return path


def question_names() -> list[str]:
    """Names of the template's questions (the keys ``answers`` may have), in order."""
    config = yaml.safe_load((template_path() / "copier.yml").read_text())
    return [key for key in config if not key.startswith("_")]


def check_name(name: str) -> str:
    """Return ``name`` if it can name a module, else raise ``ValueError`` saying why.

    The module name is the distribution name, the DEEPaaS model name, the
    catalog id, the Docker image name and (with ``-`` as ``_``) the Python
    package, so it must suit all of them: a lower-case slug that starts with
    a letter and yields a package name that imports cleanly.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("the module name is empty: use a lower-case slug such as 'my-classifier'")
    if not NAME_RE.match(name):
        raise ValueError(
            f"invalid module name {name!r}: use lower-case letters, digits and single hyphens, "
            "starting with a letter (e.g. 'my-classifier')"
        )
    if not 2 <= len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"invalid module name {name!r}: use 2 to {MAX_NAME_LENGTH} characters")
    if _shadows(name.replace("-", "_")):
        raise ValueError(
            f"invalid module name {name!r}: its package {name.replace('-', '_')!r} would shadow a Python "
            "keyword or module; choose a more specific name"
        )
    return name


def _shadows(package: str) -> bool:
    """Whether ``package`` is a keyword, a standard-library module or one the module itself imports."""
    return keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _RESERVED_PACKAGES


def _check_answers(name: str, answers: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown keys (a typo would otherwise be silently ignored) and a second module_name."""
    known = question_names()
    unknown = sorted(set(answers) - set(known))
    if unknown:
        raise ValueError(f"unknown template answers: {', '.join(unknown)} (known: {', '.join(known)})")
    if "module_name" in answers and answers["module_name"] != name:
        raise ValueError(f"answers say module_name={answers['module_name']!r} but the name is {name!r}")
    package = answers.get("package_name")
    if package is not None and _shadows(str(package)):
        raise ValueError(f"package_name {package!r} would shadow a Python keyword or module")
    if "created" in answers:  # not checked by copier: a computed question
        try:
            _dt.date.fromisoformat(str(answers["created"]))
        except ValueError:
            raise ValueError(f"created must be a date YYYY-MM-DD, not {answers['created']!r}") from None
    return {**answers, "module_name": name}


def new_module(name: str, dest: Path, answers: dict | None = None, *, overwrite: bool = False) -> Path:
    """Generate the module ``name`` in ``dest / name`` and return that folder.

    ``dest`` is the parent folder (created if missing), as cookiecutter's
    output folder in the AI4OS template: the module folder is named after the
    module, as the catalog expects. ``answers`` fills the template's questions
    (:func:`question_names`: ``title``, ``summary``, ``author``,
    ``author_email``, ``license``, ``task``, ``library``, ``data_type`` ...);
    the rest take their defaults, nothing is asked. ``package_name`` defaults
    to the name with ``-`` as ``_``.

    Raises ``ValueError`` for a bad name or answer (copier's validators say
    which), ``FileExistsError`` when ``dest / name`` exists and is not an
    empty folder, unless ``overwrite`` (then the template's files are written
    over it and other files are left alone).
    """
    check_name(name)
    data = _check_answers(name, dict(answers or {}))
    target = Path(dest).expanduser().resolve() / name
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty (pass overwrite=True to write over it)")
    try:
        import copier
    except ImportError:  # pragma: no cover - copier is a platform dependency
        raise RuntimeError("the module template needs copier: pip install 'copier>=9'") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    # defaults=True: never prompt (the CLI and the API have no terminal to prompt on);
    # unsafe=False: the template runs no tasks or migrations on the user's machine.
    copier.run_copy(
        str(template_path()),
        target,
        data=data,
        defaults=True,
        unsafe=False,
        quiet=True,
        overwrite=overwrite,
    )
    return target
