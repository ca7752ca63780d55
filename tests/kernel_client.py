"""Run code in a kernel of a user's session the way remote clients do (REST + websocket)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import websockets

from tests.notebook_runner import run_cells


def execute_in_session(base: str, server: str, token: str, code: str, timeout: float = 120) -> str:
    """Run ``code`` in a new kernel of ``server`` ('alice' or 'alice/named-server'); what it printed."""
    return run_cells(base, server, token, [code], timeout).output


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
