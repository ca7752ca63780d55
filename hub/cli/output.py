"""What every ``ai4lab`` subcommand prints: results on stdout, one ``error:`` line on stderr."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line saying what to fix, and a non-zero exit code (2: bad input, 1: the request failed)."""
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
