"""Run code and notebooks in a kernel of a user's session, as JupyterLab and remote clients do (REST + websocket).

A notebook runs in one new kernel of the session, its code cells one after the other over the
kernel's websocket; a cell that fails or hangs fails the run, naming the cell, its code, the
traceback and what it printed so far.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nbformat
import websockets

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Cell:
    label: str
    source: str
    output: str = ""
    images: int = 0
    seconds: float = 0.0


@dataclass
class Run:
    """What a notebook printed, cell by cell."""

    cells: list[Cell] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(c.output for c in self.cells)

    @property
    def images(self) -> int:
        return sum(c.images for c in self.cells)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cells)

    def find(self, pattern: str) -> re.Match[str]:
        """The first printed line matching ``pattern`` (a regex anchored at the line's start)."""
        m = re.search("^" + pattern, self.output, re.MULTILINE)
        assert m, f"the notebook printed no line matching {pattern!r}:\n{self.output[-4000:]}"
        return m

    def find_all(self, pattern: str) -> list[re.Match[str]]:
        return list(re.finditer("^" + pattern, self.output, re.MULTILINE))


async def _execute(ws: websockets.ClientConnection, user: str, session: str, cell: Cell, timeout: float) -> None:
    msg_id = uuid.uuid4().hex
    await ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": user,
                    "session": session,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": cell.source,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    out: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    out.append(content["data"].get("text/plain", "") + "\n")
                    cell.images += "image/png" in content["data"]
                elif kind == "error":
                    cell.output = "".join(out)
                    raise AssertionError(
                        f"{cell.label} failed:\n{cell.source}\n---\n"
                        + ANSI.sub("", "\n".join(content["traceback"]))
                        + f"\n--- its output:\n{cell.output[-3000:]}"
                    )
                elif kind == "status" and content["execution_state"] == "idle":
                    break
    except TimeoutError:
        raise AssertionError(
            f"{cell.label} still ran after {timeout:.0f} s:\n{cell.source}\n--- its output:\n" + "".join(out)[-3000:]
        ) from None
    cell.output = "".join(out)


async def _run(base: str, server: str, token: str, cells: list[Cell], timeout: float) -> Run:
    user = server.split("/")[0]
    headers = {"Authorization": f"token {token}"}
    run = Run()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        r = await client.post(f"/user/{server}/api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel = r.json()["id"]
        ws_url = base.replace("http", "ws", 1) + f"/user/{server}/api/kernels/{kernel}/channels"
        session = uuid.uuid4().hex
        try:
            async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
                for cell in cells:
                    start = time.monotonic()
                    run.cells.append(cell)
                    try:
                        await _execute(ws, user, session, cell, timeout)
                    finally:
                        cell.seconds = time.monotonic() - start
        finally:
            await client.delete(f"/user/{server}/api/kernels/{kernel}")
    return run


def run_notebook(base: str, server: str, token: str, path: Path, setup: str = "", timeout: float = 300) -> Run:
    """Run the code cells of ``path`` in order in one new kernel of ``server`` (``user/server-name``).

    ``setup``: code run first, as a cell of its own (what the test environment has to tell the
    notebook). A cell that fails or runs longer than ``timeout`` seconds fails the run, naming it.
    """
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    cells = ([Cell("setup", setup)] if setup else []) + [Cell(f"code cell {n}", src) for n, src in enumerate(code, 1)]
    return asyncio.run(_run(base, server, token, cells, timeout))


def run_cells(base: str, server: str, token: str, sources: list[str], timeout: float = 300) -> Run:
    """Run ``sources`` in order in one new kernel of ``server`` (``user`` or ``user/server-name``)."""
    cells = [Cell(f"code cell {n}", src) for n, src in enumerate(sources, 1)]
    return asyncio.run(_run(base, server, token, cells, timeout))
