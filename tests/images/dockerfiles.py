"""Reading the Dockerfiles of ``images/`` and the workflow that builds them (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
ENTRYPOINT = IMAGES / "bin" / "ai4lab-start"
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))


@dataclass
class Stage:
    image: str  # as written, ${ARG}s resolved with their defaults
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def arg_defaults(self) -> dict[str, str]:
        """Every ``ARG NAME=default`` of the file (global and per stage)."""
        found = dict(self.global_args)
        for stage in self.stages:
            for args in stage.all("ARG"):
                name, _, default = args.partition("=")
                if default:
                    found[name] = default
        return found


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, continuation lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            ins, _, args = line.strip().partition(" ")
            out.append((ins.upper(), args.strip()))
    return out


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins, args in instructions(path.read_text()):
        if ins == "FROM":
            words = args.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert ins == "ARG", f"{path}: {ins} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((ins, args))
    return Dockerfile(path, global_args, stages)


def exec_form(args: str) -> list[str]:
    """The JSON list of an exec-form ENTRYPOINT / CMD (``HEALTHCHECK ... CMD [...]`` too)."""
    return json.loads(args[args.index("[") :])


def linter(name: str) -> str | None:
    """A linter installed with the test extra (beside this Python), else on PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
