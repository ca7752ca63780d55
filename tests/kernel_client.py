"""Run code in a kernel of a user's session the way remote clients do (REST + websocket)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import websockets


async def _execute(base: str, server: str, token: str, code: str, timeout: float) -> str:
    """``server`` is the part after /user/: 'alice' or 'alice/named-server'."""
    user = server.split("/")[0]
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        r = await client.post(f"/user/{server}/api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        ws_url = base.replace("http", "ws", 1) + f"/user/{server}/api/kernels/{kernel_id}/channels"
        msg_id = uuid.uuid4().hex
        request = {
            "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False},
        }
        out: list[str] = []
        try:
            async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
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
                        elif kind == "error":
                            raise RuntimeError("kernel error: " + "\n".join(content["traceback"]))
                        elif kind == "status" and content["execution_state"] == "idle":
                            break
        finally:
            await client.delete(f"/user/{server}/api/kernels/{kernel_id}")
        return "".join(out)


def execute_in_session(base: str, server: str, token: str, code: str, timeout: float = 120) -> str:
    return asyncio.run(_execute(base, server, token, code, timeout))
