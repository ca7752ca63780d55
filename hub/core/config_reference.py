"""The configuration reference, generated from the settings' descriptions and the traitlets' help."""

from __future__ import annotations

import json

from pydantic import BaseModel
from traitlets import HasTraits

from ai4lab.core.settings import OidcSettings, Settings, bundled_catalog_path

#: Settings whose default depends on the machine (root or not, where Python lies).
PER_MACHINE = (
    "tools_dir",
    "runtime_dir",
    "user_python",
    "session_env",
    "envs_dir",
    "cgroup_parent",
    "env_find_links",
)
#: Settings whose default is too long for a table cell: where the README describes it instead.
DESCRIBED = {"session_environments": "base, pytorch, tensorflow (see *Session environments*)"}


def _settings_rows() -> list[str]:
    rows = ["| setting | env variable | default | description |", "|---|---|---|---|"]
    defaults = json.loads(Settings.model_construct().model_dump_json())
    for name, field in Settings.model_fields.items():
        default = defaults.get(name)
        shown = "(per machine)" if name in PER_MACHINE else DESCRIBED.get(name, f"`{json.dumps(default)}`")
        # the bundled catalog lies in the source tree: show where, not this machine's path
        shown = shown.replace(str(bundled_catalog_path()), "<source tree>/config/catalog")
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | `AI4LAB_{name.upper()}` | {shown} | {desc} |")
    return rows


def _nested_rows(model: type[BaseModel], setting: str) -> list[str]:
    """The fields of a nested setting (``oidc``), each settable as ``AI4LAB_<SETTING>__<FIELD>``."""
    rows = ["| setting | env variable | default | description |", "|---|---|---|---|"]
    defaults = json.loads(model.model_construct().model_dump_json())
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        env = f"AI4LAB_{setting.upper()}__{name.upper()}"
        rows.append(f"| `{setting}.{name}` | `{env}` | `{json.dumps(defaults.get(name))}` | {desc} |")
    return rows


def _traitlet_rows(cls: type[HasTraits]) -> list[str]:
    rows = ["| trait | description |", "|---|---|"]
    for name, trait in sorted(cls.class_own_traits(config=True).items()):
        helptext = " ".join((trait.help or "").split()).replace("|", "\\|")
        rows.append(f"| `c.{cls.__name__}.{name}` | {helptext} |")
    return rows


def markdown() -> str:
    from ai4lab.jhub.authenticator import Ai4labAuthenticator
    from ai4lab.spawners.local import LocalSessionSpawner
    from ai4lab.spawners.nomad import NomadSpawner
    from ai4lab.spawners.session import ProfileFormSpawner

    parts = [
        "### Platform settings",
        "",
        (
            "Set in `ai4lab.yaml` (or the file named by `AI4LAB_CONFIG`) or as environment variables; "
            "nested values use `__`, e.g. `AI4LAB_QUOTAS__BASIC__CPU=1`."
        ),
        "",
        *_settings_rows(),
        "",
        "OIDC login (`authenticator: ai4lab-oidc`; see *Connect your login (OIDC)*):",
        "",
        *_nested_rows(OidcSettings, "oidc"),
        "",
        "### Spawner (`config/jupyterhub_config.py`)",
        "",
        "Shared by both spawners (set them on the spawner class in use, e.g. `c.NomadSpawner.profile_list`):",
        "",
        *_traitlet_rows(ProfileFormSpawner),
        "",
        "Local (`ai4lab-local`, the default):",
        "",
        *_traitlet_rows(LocalSessionSpawner),
        "",
        'Nomad (`c.JupyterHub.spawner_class = "nomad"`, or setting `spawner: nomad`):',
        "",
        *_traitlet_rows(NomadSpawner),
        "",
        "### Authenticator",
        "",
        *_traitlet_rows(Ai4labAuthenticator),
        "",
    ]
    return "\n".join(parts)


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def embedded(text: str) -> str:
    """The reference currently written between the markers of a Markdown file."""
    if START not in text or END not in text:
        raise ValueError(f"markers {START} / {END} not found")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def write_into(text: str) -> str:
    """``text`` with the freshly generated reference between the markers."""
    embedded(text)
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n{markdown()}{END}{tail}"
