"""Remote catalogs in the AI4OS layout, built from the real metadata in ../shared/data/ai4os-catalog.

Each metadata file becomes a local git repository (on the branch the real one
uses); a catalog repository lists them in ``.gitmodules`` with ``file://`` URLs,
the same shape as ai4os-hub/modules-catalog and ai4os/tools-catalog. Nothing
touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# shared/ lies beside the clone (as CI lays it out); AI4LAB_SHARED_DIR points elsewhere
SHARED = Path(os.environ.get("AI4LAB_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data" / "ai4os-catalog"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org", "HOME": "/tmp", "PATH": "/usr/bin:/bin",
}
MISSING_REPO = "gone-module"  # listed in the catalog, but its repository does not exist


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=GIT_ENV)


def make_repo(path: Path, files: dict[str, str], branch: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", branch, cwd=path)
    for name, text in files.items():
        (path / name).write_text(text)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "metadata", cwd=path)


@dataclass
class Expected:
    """What the catalog must report for one file of the shared data."""

    file: str
    item_id: str
    kind: str  # module / tool
    valid: bool
    reason: str = ""


@dataclass
class RemoteCatalogs:
    root: Path
    modules_url: str
    tools_url: str
    expected: list[Expected] = field(default_factory=list)

    def sources(self) -> list[dict]:
        return [
            {"name": "ai4os-modules", "type": "git", "kind": "module", "url": self.modules_url},
            {"name": "ai4os-tools", "type": "git", "kind": "tool", "url": self.tools_url},
        ]


def manifest() -> list[dict]:
    """The metadata files of the shared data (not the .gitmodules and schema files)."""
    return [f for f in json.loads((DATA / "manifest.json").read_text())["files"] if "validation" in f]


def build(root: Path) -> RemoteCatalogs:
    """Build the repositories and the two catalog repositories under ``root``."""
    if root.exists():
        shutil.rmtree(root)
    repos = root / "repos"
    entries: dict[str, list[tuple[str, str, str]]] = {"module": [], "tool": []}
    expected: list[Expected] = []
    for entry in manifest():
        src = DATA / entry["file"]
        kind = "tool" if entry["kind"] == "tool" else "module"
        base = Path(entry["file"]).name
        if entry["kind"] == "legacy-v1":
            item_id = base.removesuffix(".metadata.json") + "-v1"
            files = {"metadata.json": src.read_text()}
            valid = True  # converted from v1 by ai4-metadata's migration
        else:
            item_id = base.removesuffix(".yml").replace(".", "-")
            files = {"ai4-metadata.yml": src.read_text()}
            valid = entry["validation"]["2.3.0"] == "valid"
        org = entry["source_repo"].split("/")[0]
        path = repos / org / item_id
        make_repo(path, files, entry["branch"])
        entries[kind].append((item_id, f"file://{path}", entry["branch"]))
        reason = "" if valid else entry["validation"]["2.3.0"]
        expected.append(Expected(entry["file"], item_id, kind, valid, reason))
    entries["module"].append((MISSING_REPO, f"file://{repos}/nowhere/{MISSING_REPO}", "main"))
    urls = {}
    for kind, items in entries.items():
        lines = []
        for name, url, branch in items:
            lines += [f'[submodule "{name}"]', f"\tpath = {name}", f"\turl = {url}"]
            if branch != "master":  # like ai4os-llm: no branch means the default one
                lines.append(f"\tbranch = {branch}")
        cat = root / f"{kind}s-catalog"
        make_repo(cat, {".gitmodules": "\n".join(lines) + "\n", "README.md": f"{kind}s catalog\n"}, "master")
        urls[kind] = f"file://{cat}"
    return RemoteCatalogs(root=root, modules_url=urls["module"], tools_url=urls["tool"], expected=expected)
