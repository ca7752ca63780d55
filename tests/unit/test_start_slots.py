"""Sessions start a few at a time, first come first served, and a hung one does not stall the queue."""

from __future__ import annotations

import asyncio

import pytest

from ai4lab.core.timing import PhaseTimer
from ai4lab.spawners.start_slots import StartSlots, default_slots


def test_starts_beyond_the_slots_wait_in_arrival_order() -> None:
    async def scenario() -> tuple[list[str], list[int], int]:
        slots = StartSlots(2, hold_max=30)
        order: list[str] = []
        told: list[int] = []
        running = 0
        most = 0
        gates = {name: asyncio.Event() for name in "abcde"}

        async def start(name: str) -> None:
            nonlocal running, most
            async with slots.slot(on_wait=told.append):
                running += 1
                most = max(most, running)
                order.append(name)
                await gates[name].wait()
                running -= 1

        tasks = []
        for name in "abcde":
            tasks.append(asyncio.create_task(start(name)))
            await asyncio.sleep(0)  # arrival order a, b, c, d, e
        await asyncio.sleep(0.01)
        assert order == ["a", "b"] and slots.waiting == 3
        for name in "bacde":  # the first ones end in any order; the queue keeps its own
            gates[name].set()
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        return order, told, most

    order, told, most = asyncio.run(scenario())
    assert order == ["a", "b", "c", "d", "e"]
    assert most == 2
    assert told == [1, 2, 3]  # c, d and e were each told how many wait before them


def test_a_slot_held_too_long_lets_the_next_start() -> None:
    async def scenario() -> float:
        slots = StartSlots(1, hold_max=0.2)
        loop = asyncio.get_running_loop()
        hung = asyncio.Event()

        async def hangs() -> None:
            async with slots.slot():
                await hung.wait()

        first = asyncio.create_task(hangs())
        await asyncio.sleep(0)
        t0 = loop.time()
        async with slots.slot():
            waited = loop.time() - t0
        hung.set()
        await first  # its late release does not free a second slot
        assert not slots._free.locked() and slots._free._value == 1
        return waited

    waited = asyncio.run(scenario())
    assert waited >= 0.15  # it waited for hold_max, and then started (a hang would time the test out)


def test_slot_count_is_checked_and_defaults_to_two_per_core() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        StartSlots(0, hold_max=1)
    assert default_slots() >= 2


def test_phase_timer_names_each_step() -> None:
    timer = PhaseTimer()
    timer.lap("workspace")
    timer.lap("launch")
    text = str(timer)
    assert text.startswith("workspace 0.00 s, launch 0.00 s (total ")
    assert [name for name, _ in timer.laps] == ["workspace", "launch"]
