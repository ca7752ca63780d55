"""Run code in a kernel of a user's session the way remote clients do (REST + websocket)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import websockets


async def _run_cell(ws: Any, user: str, code: str, timeout: float) -> tuple[str, list[dict[str, Any]]]:
    """One execute_request on an open kernel channel: the text it printed and its rich outputs (plots)."""
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False},
    }
    out: list[str] = []
    rich: list[dict[str, Any]] = []
    await ws.send(json.dumps(request))
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", ""))
                rich.append(content["data"])
            elif kind == "error":
                raise RuntimeError("kernel error: " + "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
    return "".join(out), rich


async def _execute_cells(
    base: str, server: str, token: str, cells: list[str], timeout: float
) -> list[tuple[str, list[dict[str, Any]]]]:
    """``server`` is the part after /user/: 'alice' or 'alice/named-server'. One kernel, the cells in order."""
    user = server.split("/")[0]
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        r = await client.post(f"/user/{server}/api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        ws_url = base.replace("http", "ws", 1) + f"/user/{server}/api/kernels/{kernel_id}/channels"
        results = []
        try:
            async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
                for code in cells:
                    results.append(await _run_cell(ws, user, code, timeout))
        finally:
            await client.delete(f"/user/{server}/api/kernels/{kernel_id}")
        return results


def execute_in_session(base: str, server: str, token: str, code: str, timeout: float = 120) -> str:
    return asyncio.run(_execute_cells(base, server, token, [code], timeout))[0][0]


def execute_cells(
    base: str, server: str, token: str, cells: list[str], timeout: float = 300
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Run notebook cells one after the other in one new kernel of the session (cell magics work).

    Returns, per cell, what it printed and its rich outputs (``{"image/png": ...}`` of a plot).
    ``timeout`` is per cell; an error in a cell raises with the kernel's traceback.
    """
    return asyncio.run(_execute_cells(base, server, token, cells, timeout))


async def _terminal(base: str, server: str, token: str, command: str, marker: str, timeout: float) -> str:
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        r = await client.post(f"/user/{server}/api/terminals")
        r.raise_for_status()
        name = r.json()["name"]
        ws_url = base.replace("http", "ws", 1) + f"/user/{server}/terminals/websocket/{name}"
        out: list[str] = []
        try:
            async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
                # printf joins the marker only in the output, not in the echo of the typed line
                await ws.send(json.dumps(["stdin", f"{command}; printf '%s-%s\\n' {marker} done\r"]))
                async with asyncio.timeout(timeout):
                    while not any(f"{marker}-done\r\n" in o or f"{marker}-done\n" in o for o in ["".join(out)]):
                        msg = json.loads(await ws.recv())
                        if msg[0] == "stdout":
                            out.append(msg[1])
        finally:
            await client.delete(f"/user/{server}/api/terminals/{name}")
    return "".join(out)


def run_in_terminal(base: str, server: str, token: str, command: str, timeout: float = 60) -> str:
    """Type ``command`` into a new terminal of the session (as a user would) and return what it printed."""
    marker = "ai4lab-" + uuid.uuid4().hex[:8]
    return asyncio.run(_terminal(base, server, token, command, marker, timeout))
