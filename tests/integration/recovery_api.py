"""The platform API's part in the deployment lifecycle, as a process a fault test can kill (``kill -9``).

``python -m tests.integration.recovery_api [--user NAME --request JSON] [--die-after-launch S]
[--no-cgroups]`` does what the API's lifespan does (``ai4lab.api.app``) for the state folder its
``AI4LAB_*`` variables name: recover every deployment kind, then watch them all every half second,
forever. With a request it first creates that deployment, as ``POST /deployments`` would.

- ``--die-after-launch S``: the process kills itself (SIGKILL) S seconds after the backend launched a
  job's process, wherever the API is then; with 0, before anything recorded the launch (the narrowest
  window of a start);
- ``--no-cgroups``: jobs get no cgroup, as on a machine without usable ones (there, the setup of a new
  launch's group does not end the processes of an earlier launch of the same job as a side effect).

It prints one line per step on stdout, which the test waits for: ``recovered in <s>``, ``creating``,
``created <id> <status>``, ``launched <job> (pid <pid>)``, ``dying``; and answers ``stop <id>`` lines on
stdin (what ``DELETE /deployments/<id>`` does) with ``stopped <id> <status>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from pydantic import TypeAdapter

from ai4lab.backends.local import LocalBackend
from ai4lab.core import deployments as deps
from ai4lab.core.limits import CgroupLimits
from ai4lab.core.settings import get_settings
from ai4lab.deploy.lifecycle import Caller, Platform
from ai4lab.deploy.registry import Registry

WATCH_EVERY = 0.5


def say(line: str) -> None:
    print(line, flush=True)


def die_after_launch(platform: Platform, delay: float) -> None:
    """The process ends (SIGKILL) ``delay`` seconds after the backend's next ``submit`` launched a job."""
    submit = platform.local.submit

    def die() -> None:
        say("dying")
        os.kill(os.getpid(), signal.SIGKILL)

    async def submit_then_die(spec: Any) -> dict[str, Any]:
        state = await submit(spec)
        say(f"launched {spec.name} (pid {state['pid']})")
        if delay <= 0:
            die()  # before the caller records the job's state
        asyncio.get_running_loop().call_later(delay, die)
        return state

    platform.local.submit = submit_then_die  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> None:
    settings = get_settings()
    local = LocalBackend(limits=CgroupLimits(settings.cgroup_parent, v1_roots={})) if args.no_cgroups else None
    platform = Platform.for_settings(settings, local)
    registry = Registry(platform)
    if args.die_after_launch is not None:
        die_after_launch(platform, args.die_after_launch)
    t0 = time.monotonic()
    await registry.recover()
    say(f"recovered in {time.monotonic() - t0:.1f}s")
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=lambda: [loop.call_soon_threadsafe(commands.put_nowait, ln) for ln in sys.stdin],
                     daemon=True).start()
    if args.request:
        request = TypeAdapter(registry.request_model()).validate_python(json.loads(args.request))
        say("creating")
        dep = await registry.for_request(request).create(request, Caller.of(settings, args.user))
        say(f"created {dep.id} {dep.status}")
    while True:
        await registry.watch()
        while not commands.empty():
            verb, dep_id = commands.get_nowait().split()
            assert verb == "stop", verb
            dep = deps.get(settings.db_url, dep_id)
            assert dep is not None
            await registry.of(dep).stop(dep, "stopped by the test")
            say(f"stopped {dep_id} {deps.get(settings.db_url, dep_id).status}")
        await asyncio.sleep(WATCH_EVERY)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--user")
    parser.add_argument("--request")
    parser.add_argument("--die-after-launch", type=float)
    parser.add_argument("--no-cgroups", action="store_true")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args()))
