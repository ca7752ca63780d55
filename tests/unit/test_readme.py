"""The README's configuration reference is the generated one."""

from pathlib import Path

from ai4lab.core.config_reference import embedded, markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_up_to_date() -> None:
    assert embedded(README.read_text()) == markdown().strip("\n"), (
        "README.md is out of date: run `.venv/bin/ai4lab config reference --write README.md`"
    )
