"""ai4lab.deploy.module_code: each job works in its own copy of the module's repository."""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from ai4lab.deploy.module_code import code_variables, link_folder, path_variables, working_copy
from ai4lab.core.envs import MARKER
from ai4lab.core.isolation import Identity


def someone() -> Identity:
    """``nobody`` as root (so that ownership is checked), else the current user."""
    entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return Identity(account="x", name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, groups=(entry.pw_gid,),
                    home="/nonexistent")


def fake_env(root: Path, editable: bool = True) -> Path:
    """What ``ensure_env`` leaves: a marker naming the repository's copy under ``srv/``."""
    env = root / "env"
    repo = env / "srv" / "my-module"
    (repo / "my_module").mkdir(parents=True)
    (repo / "my_module" / "__init__.py").write_text("")
    (repo / "ai4-metadata.yml").write_text("title: x\n")
    (repo / "models").mkdir()
    (repo / "models" / ".gitignore").write_text("*\n")
    (repo / "models" / "pretrained.bin").write_bytes(b"weights")
    (env / MARKER).write_text(json.dumps({"repo": "srv/my-module", "editable": editable}))
    return env


def test_a_private_copy_per_job_kept_across_restarts(tmp_path: Path) -> None:
    env, ident = fake_env(tmp_path), someone()
    work = tmp_path / "dep"
    work.mkdir()
    copy = working_copy(env, work, ident)
    assert copy == work / "my-module" and (copy / "ai4-metadata.yml").read_text() == "title: x\n"
    assert copy.stat().st_uid == ident.uid and stat.S_IMODE(copy.stat().st_mode) == 0o700
    assert all(p.stat().st_uid == ident.uid for p in copy.rglob("*"))
    (copy / "models" / "trained.bin").write_bytes(b"mine")
    assert working_copy(env, work, ident) == copy and (copy / "models" / "trained.bin").exists()
    assert [p.name for p in work.iterdir()] == ["my-module"]  # no half-made copies left


def test_variables_point_at_the_copy(tmp_path: Path) -> None:
    repo = tmp_path / "copy"
    assert path_variables("my_module", repo) == {"MY_MODULE_DATA_PATH": str(repo / "data"),
                                                 "MY_MODULE_MODELS_PATH": str(repo / "models")}
    assert code_variables(fake_env(tmp_path), repo, "my_module")["PYTHONPATH"] == str(repo)
    regular = fake_env(tmp_path / "regular", editable=False)
    assert "PYTHONPATH" not in code_variables(regular, repo, "my_module")
    assert path_variables(None, repo) == {}


def copy_and_output(tmp_path: Path) -> tuple[Identity, Path, Path]:
    """A job's working copy and an (empty) output folder in the user's storage."""
    ident = someone()
    work, out = tmp_path / "dep", tmp_path / "storage-out"
    work.mkdir()
    out.mkdir()
    return ident, working_copy(fake_env(tmp_path), work, ident), out


def test_models_lead_to_the_output_folder_with_what_the_repository_ships(tmp_path: Path) -> None:
    ident, copy, out = copy_and_output(tmp_path)
    (out / "pretrained.bin").write_bytes(b"the user's own")
    link_folder(copy, "models", out, ident)
    assert (copy / "models").is_symlink() and (copy / "models").resolve() == out.resolve()
    assert (out / "pretrained.bin").read_bytes() == b"the user's own"  # never overwritten
    assert (out / ".gitignore").exists()
    (copy / "models" / "model.json").write_text("{}")
    assert (out / "model.json").exists()
    link_folder(copy, "models", out, ident)  # again: still one link
    assert (copy / "models").resolve() == out.resolve()


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership needs root")
def test_the_link_belongs_to_the_job_user(tmp_path: Path) -> None:
    ident, copy, out = copy_and_output(tmp_path)
    link_folder(copy, "models", out, ident)
    assert os.lstat(copy / "models").st_uid == ident.uid and (out / ".gitignore").stat().st_uid == ident.uid
