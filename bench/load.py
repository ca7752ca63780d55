"""HTTP load for the benchmarks: ``wrk`` (Debian package, C, closed loop with N connections)
so that the load generator is not the bottleneck on a 2-core machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

LUA = r"""
local paths = {PATHS}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {HEADERS})
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\"requests\": %d, \"errors\": %d, \"duration_s\": %.3f, \"p50_ms\": %.2f, \"p95_ms\": %.2f, \"p99_ms\": %.2f, \"mean_ms\": %.2f}\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(base: str, paths: list[str], *, token: str | None, seconds: int = 10, connections: int = 50,
            threads: int = 1) -> dict[str, float]:
    """Closed-loop load on ``paths`` (round robin) for ``seconds``; latency percentiles in ms."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: run `make bench` (it installs the Debian package)")
    headers = "{" + (f'["Authorization"] = {_lua_string("token " + token)}' if token else "") + "}"
    script = LUA.replace("{PATHS}", "{" + ", ".join(_lua_string(p) for p in paths) + "}").replace("{HEADERS}", headers)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        r = subprocess.run(
            [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "-s", f.name, base],
            capture_output=True, text=True, check=True,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("JSON"))
    result = json.loads(line[4:])
    result["throughput_rps"] = round(result["requests"] / result["duration_s"], 1)
    result["connections"] = connections
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of measured latencies."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
