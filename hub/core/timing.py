"""Per-phase wall-clock timings of a multi-step operation, for one log line.

Why: a spawn that is slow under load is slow somewhere; a line such as
``workspace 0.02 s, record 0.01 s, launch 0.31 s, answer 58.9 s`` says whether
the platform's own steps or the server's start-up took the time.
"""

from __future__ import annotations

import time


class PhaseTimer:
    """Laps since the previous one (or since creation), in order."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> float:
        now = time.monotonic()
        took = now - self._last
        self._last = now
        self.laps.append((name, took))
        return took

    @property
    def total(self) -> float:
        return sum(t for _, t in self.laps)

    def __str__(self) -> str:
        return ", ".join(f"{name} {took:.2f} s" for name, took in self.laps) + f" (total {self.total:.2f} s)"
