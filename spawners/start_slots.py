"""A few sessions start at a time on this machine; the others wait their turn, first come first served.

Why: a JupyterLab start-up is about two seconds of CPU. When 40 start at once
on 2 cores they share the CPU evenly and every one of them is ready only at
the very end, after a minute. Started a few at a time, the machine does the
same work, but the first users are in after seconds and half the class after
half the time: the median wait halves and the last one waits no longer.

A slot is held from the launch until the server answers, or at most
``hold_max`` seconds, so a session that hangs does not stall the queue.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


def default_slots() -> int:
    """Two per core this process may use: start-up also waits on disk and on the hub."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(2, 2 * cores)


class StartSlots:
    """``slots`` concurrent starts; waiting callers are told how many are ahead of them."""

    def __init__(self, slots: int, hold_max: float) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        self.slots = slots
        self.hold_max = hold_max
        self._free = asyncio.Semaphore(slots)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def slot(self, on_wait: Callable[[int], None] | None = None) -> AsyncIterator[None]:
        """Hold a slot for the body (released at its end, or after ``hold_max`` seconds if sooner)."""
        if self._free.locked() and on_wait is not None:
            on_wait(self._waiting + 1)
        self._waiting += 1
        try:
            await self._free.acquire()
        finally:
            self._waiting -= 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._free.release()

        timer = asyncio.get_running_loop().call_later(self.hold_max, release)
        try:
            yield
        finally:
            timer.cancel()
            release()
