"""ai4lab.spawners.profiles: validating the session form and rendering it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ai4lab.core.settings import GpuDevice, Quota
from ai4lab.spawners.profiles import DEFAULT_PROFILES, IDES, SessionOptions, render_form, validate_options

QUOTA = Quota(cpu=4, ram_gb=16, gpu=1)
BASIC = Quota(cpu=2, ram_gb=4, gpu=0, sessions=1)


def check(raw: dict[str, Any], *, quota: Quota = QUOTA, role: str = "intermediate",
          free_gpus: int = 1, profiles: list[dict[str, Any]] = DEFAULT_PROFILES) -> SessionOptions:
    return validate_options(raw, quota=quota, role=role, profiles=profiles, free_gpus=free_gpus)


# -- defaults ---------------------------------------------------------------------------


def test_empty_input_takes_default_profile() -> None:
    o = check({})
    assert o == SessionOptions(profile="small", ide="lab", cpu=1, ram_gb=2, gpu=0)


def test_profile_values_are_defaults() -> None:
    assert check({"profile": "large"}) == SessionOptions(profile="large", ide="lab", cpu=2, ram_gb=4, gpu=0)
    assert check({"profile": "gpu"}) == SessionOptions(profile="gpu", ide="lab", cpu=2, ram_gb=8, gpu=1)


def test_form_lists_and_overrides() -> None:
    # HTML forms arrive as lists of strings
    o = check({"profile": ["large"], "ide": ["vscode"], "cpu": ["3.5"], "ram_gb": ["6"], "gpu": ["0"]})
    assert o == SessionOptions(profile="large", ide="vscode", cpu=3.5, ram_gb=6, gpu=0)
    assert isinstance(o.gpu, int)


def test_first_profile_when_none_is_default() -> None:
    profiles = [
        {"slug": "one", "display_name": "One", "options": {"cpu": 1.5, "ram_gb": 3, "gpu": 0}},
        {"slug": "two", "display_name": "Two", "options": {"cpu": 2, "ram_gb": 4, "gpu": 0}},
    ]
    o = check({}, profiles=profiles)
    assert (o.profile, o.cpu, o.ram_gb) == ("one", 1.5, 3)


def test_profile_may_choose_ide() -> None:
    profiles = [{"slug": "code", "options": {"cpu": 1, "ram_gb": 2, "gpu": 0, "ide": "vscode"}}]
    assert check({}, profiles=profiles).ide == "vscode"
    assert check({"ide": "lab"}, profiles=profiles).ide == "lab"


def test_no_profiles_uses_builtin_defaults() -> None:
    assert check({}, profiles=[]) == SessionOptions(profile="", ide="lab", cpu=1, ram_gb=2, gpu=0)


def test_exactly_at_quota_is_allowed() -> None:
    o = check({"cpu": "4", "ram_gb": "16", "gpu": "1"})
    assert (o.cpu, o.ram_gb, o.gpu) == (4, 16, 1)


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"gpu": "2"}, r"^2 GPU\(s\) is over the intermediate quota of 1$"),
        ({"cpu": "4.5"}, r"^4\.5 CPU cores is over the intermediate quota of 4$"),
        ({"ram_gb": "17"}, r"^17 GB RAM is over the intermediate quota of 16 GB$"),
        ({"ram_gb": "-1"}, r"^RAM must be positive, got -1 GB$"),
        ({"ram_gb": "0"}, r"^RAM must be positive, got 0 GB$"),
        ({"cpu": "0"}, r"^CPU cores must be positive, got 0$"),
        ({"cpu": "-2"}, r"^CPU cores must be positive, got -2$"),
        ({"gpu": "-1"}, r"^GPUs cannot be negative, got -1$"),
        ({"cpu": "abc"}, r"^CPU cores must be a number, got 'abc'$"),
        ({"ram_gb": ["lots"]}, r"^RAM \(GB\) must be a number, got 'lots'$"),
        ({"ram_gb": []}, r"^RAM \(GB\) must be a number, got ''$"),
        ({"gpu": "one"}, r"^GPUs must be a number, got 'one'$"),
        ({"gpu": "1.5"}, r"^GPUs must be a number, got '1\.5'$"),
        ({"gpu": 1.5}, r"^GPUs must be a whole number, got 1\.5$"),
        ({"cpu": None}, r"^CPU cores must be a number, got None$"),
        ({"ide": "emacs"}, r"^unknown IDE 'emacs': choose one of lab, vscode$"),
        ({"ide": ["notepad"]}, r"^unknown IDE 'notepad'"),
        ({"profile": "huge"}, r"^unknown profile 'huge': choose one of small, large, gpu$"),
        ({"profile": ["huge"]}, r"^unknown profile 'huge'"),
    ],
)
def test_invalid_options(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check(raw)


def test_gpu_profile_over_basic_quota() -> None:
    with pytest.raises(ValueError, match=r"^1 GPU\(s\) is over the basic quota of 0$"):
        check({"profile": "gpu", "ram_gb": "4"}, quota=BASIC, role="basic")
    with pytest.raises(ValueError, match=r"^8 GB RAM is over the basic quota of 4 GB$"):
        check({"profile": "gpu", "gpu": "0"}, quota=BASIC, role="basic")


def test_gpu_asked_on_machine_without_gpu() -> None:
    with pytest.raises(ValueError, match=r"^1 GPU\(s\) asked but 0 free on this machine \(it has no GPU\)$"):
        check({"gpu": "1"}, free_gpus=0)
    with pytest.raises(ValueError, match=r"GPU\(s\) asked but 0 free"):
        check({"profile": "gpu"}, free_gpus=0)
    # the same profile without a GPU is fine
    assert check({"profile": "gpu", "gpu": "0"}, free_gpus=0).gpu == 0


def test_gpu_asked_when_all_taken() -> None:
    q = Quota(cpu=8, ram_gb=32, gpu=2)
    with pytest.raises(ValueError, match=r"^2 GPU\(s\) asked but 1 free on this machine$"):
        check({"gpu": "2"}, quota=q, role="advanced", free_gpus=1)


@pytest.mark.parametrize("field", ["cpu", "ram_gb"])
def test_nan_refused(field: str) -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        check({field: "nan"})


def test_infinity_refused() -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        check({"cpu": "inf"})


# -- render_form ------------------------------------------------------------------------


def test_render_form_without_gpu() -> None:
    html = render_form(quota=QUOTA, role="intermediate", profiles=DEFAULT_PROFILES, gpus=[], free_gpus=0)
    assert "Your role is <strong>intermediate</strong>" in html
    assert "up to 4.0 CPU cores" in html and "16.0 GB RAM" in html
    for key, ide in IDES.items():
        assert f'<option value="{key}">{ide["display_name"]}</option>' in html
    assert 'id="ai4lab-no-gpu"' in html
    assert "This machine has no GPU" in html
    assert '<input type="hidden" name="gpu" value="0">' in html
    assert 'type="number" min="0"' not in html  # no GPU number field
    for p in DEFAULT_PROFILES:
        assert f'value="{p["slug"]}"' in html
    # exactly one profile checked, the default one
    checked = re.findall(r'name="profile" value="(\w+)"\s*checked', html)
    assert checked == ["small"]
    # numeric inputs start from the default profile and are capped by the quota
    assert re.search(r'name="cpu"[^>]*max="4\.0" value="1"', html)
    assert re.search(r'name="ram_gb"[^>]*max="16\.0" value="2"', html)


def test_render_form_with_gpus() -> None:
    gpus = [GpuDevice(id="0", model="Tesla T4"), GpuDevice(id="1", model="A100")]
    html = render_form(quota=QUOTA, role="advanced", profiles=DEFAULT_PROFILES, gpus=gpus, free_gpus=2)
    assert "<strong>advanced</strong>" in html
    assert "ai4lab-no-gpu" not in html
    assert "2 of 2 free: Tesla T4, A100" in html
    assert re.search(r'id="ai4lab-gpu" name="gpu" type="number" min="0"\s*max="1" value="0"', html)


def test_render_form_escapes_profile_text() -> None:
    profiles = [{"slug": "x", "display_name": "<script>alert(1)</script>", "description": "a & b",
                 "default": True, "options": {"cpu": 1, "ram_gb": 1, "gpu": 0}}]
    html = render_form(quota=QUOTA, role="basic", profiles=profiles, gpus=[], free_gpus=0)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert "a &amp; b" in html


# -- secrets ----------------------------------------------------------------------------


def with_secrets(raw: dict[str, Any], have: list[str] | None) -> SessionOptions:
    return validate_options(raw, quota=QUOTA, role="intermediate", profiles=DEFAULT_PROFILES, free_gpus=1,
                            secret_names=have)


def test_secrets_chosen_by_name_from_the_users_own() -> None:
    o = with_secrets({"secrets": ["HF_TOKEN", "S3_KEY"], "secrets_as": "files"}, ["HF_TOKEN", "S3_KEY", "OTHER"])
    assert (o.secrets, o.secrets_as) == (["HF_TOKEN", "S3_KEY"], "files")
    assert o.dump()["secrets"] == ["HF_TOKEN", "S3_KEY"]
    # a form's one field, comma-separated, works too; env is the default
    o = with_secrets({"secrets": "HF_TOKEN, S3_KEY"}, ["HF_TOKEN", "S3_KEY"])
    assert (o.secrets, o.secrets_as) == (["HF_TOKEN", "S3_KEY"], "env")
    # none asked: the stored options stay as they were before secrets existed
    assert "secrets" not in with_secrets({}, ["HF_TOKEN"]).dump()


@pytest.mark.parametrize(
    ("raw", "have", "reason"),
    [
        ({"secrets": ["NOPE"]}, ["HF_TOKEN"], "no secret 'NOPE' of yours"),
        ({"secrets": ["HF_TOKEN"], "secrets_as": "argv"}, ["HF_TOKEN"], "secrets_as must be one of env, files"),
        ({"secrets": [1]}, ["HF_TOKEN"], "must be a list of names"),
        ({"secrets": ["HF_TOKEN"]}, None, "cannot give secrets"),
    ],
)
def test_bad_secret_choices_are_refused(raw: dict[str, Any], have: list[str] | None, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        with_secrets(raw, have)


def test_form_offers_the_users_secrets_by_name() -> None:
    html = render_form(quota=QUOTA, role="intermediate", profiles=DEFAULT_PROFILES, gpus=[], free_gpus=0,
                       secret_names=["HF_TOKEN"])
    assert 'name="secrets" value="HF_TOKEN"' in html and 'name="secrets_as"' in html
    without = render_form(quota=QUOTA, role="intermediate", profiles=DEFAULT_PROFILES, gpus=[], free_gpus=0)
    assert 'name="secrets"' not in without


# -- session environments (issue 18) ------------------------------------------------------

ENVS = ("base", "pytorch", "tensorflow")


def test_environment_defaults_to_the_first_offered_and_is_checked() -> None:
    common = {"quota": QUOTA, "role": "intermediate", "profiles": DEFAULT_PROFILES, "free_gpus": 1}
    assert validate_options({}, environments=ENVS, **common).environment == "base"
    assert validate_options({"environment": ["pytorch"]}, environments=ENVS, **common).environment == "pytorch"
    with pytest.raises(ValueError, match=r"unknown environment 'jax': choose one of base, pytorch, tensorflow"):
        validate_options({"environment": "jax"}, environments=ENVS, **common)


def test_form_offers_environments_and_says_which_are_built_at_first_start() -> None:
    from ai4lab.core.settings import Settings

    envs = Settings().session_environments
    html = render_form(quota=QUOTA, role="advanced", profiles=DEFAULT_PROFILES, gpus=[], free_gpus=0,
                       environments=envs, built=["pytorch"])
    select = re.search(r'<select[^>]*name="environment".*?</select>', html, re.S)
    assert select is not None
    options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]*)</option>', select.group(0))
    assert options == [("base", "Base"), ("pytorch", "PyTorch"),
                       ("tensorflow", "TensorFlow (built at its first start)")]
    assert "This machine has no GPU" in html
