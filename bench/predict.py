"""Predict latency of a module deployment through the platform vs the same DEEPaaS server directly.

One real platform, one deployment of the bundled digits classifier; the same
PNG is posted to ``/services/ai4lab/deployments/<id>/predict`` (proxy, token
check, API forwarding) and straight to the DEEPaaS server's port, interleaved
request by request so that both see the same machine state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai4lab.core import deployments as deps  # noqa: E402
from ai4lab.core.envs import ensure_env, env_bin  # noqa: E402
from ai4lab.core.settings import bundled_catalog_path  # noqa: E402
from bench.load import percentile  # noqa: E402
from tests.platform_harness import Platform  # noqa: E402


def digit_png(folder: Path) -> bytes:
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    code = ("import sys; from ai4lab_digits.data import write_dataset as w; "
            "print(w(sys.argv[1], n=1, split='test')[0][0])")
    out = subprocess.run([str(env_bin(env, "python")), "-c", code, str(folder)], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip()).read_bytes()


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2),
            "mean_ms": round(sum(values) / len(values), 2), "requests": len(values)}


def slow_module(folder: Path, delay_ms: int = 50) -> Path:
    """A catalog folder with a copy of the digits module whose predict also waits ``delay_ms`` (a bigger model)."""
    src = bundled_catalog_path() / "modules" / "ai4lab-digits"
    item = folder / "modules" / f"ai4lab-digits-{delay_ms}ms"
    shutil.copytree(src, item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    api = item / "ai4lab_digits" / "api.py"
    code = api.read_text()
    marker = '    """Classify one image'
    assert marker in code, "the digits module's predict() changed: update bench/predict.py"
    head, tail = code.split(marker, 1)
    doc_end = tail.index('"""') + 3
    code = head + marker + tail[:doc_end] + f"\n    import time\n\n    time.sleep({delay_ms / 1000})" + tail[doc_end:]
    api.write_text(code)
    return folder


def measure(p: Platform, token: str, item: str, png: bytes, requests: int) -> dict[str, Any]:
    """One deployment of ``item``; the same PNG directly, through the platform, and to the API without the proxy."""
    api = p.api(token)
    dep = api.post("/services/ai4lab/deployments", json={"kind": "module", "item": item}).json()
    deadline = time.monotonic() + 600
    while (status := api.get(f"/services/ai4lab/deployments/{dep['id']}").json()["status"]) != "running":
        assert status in ("queued", "starting") and time.monotonic() < deadline, f"{item}: {status}"
        time.sleep(0.5)
    record = deps.get(f"sqlite:///{p.state / 'ai4lab.sqlite'}", dep["id"])
    assert record is not None
    direct_url = (f"http://127.0.0.1:{record.backend_state['port']}"
                  f"/services/ai4lab/deployments/{dep['id']}/api/v2/models/ai4lab-digits/predict/")
    platform_url = f"{p.url}/services/ai4lab/deployments/{dep['id']}/predict"
    # the API service without the proxy in front: splits the overhead between the two hops
    service_url = f"http://127.0.0.1:{p.env['AI4LAB_API_PORT']}/services/ai4lab/deployments/{dep['id']}/predict"
    files = {"image": ("digit.png", png, "image/png")}
    timings: dict[str, list[float]] = {"direct": [], "platform": [], "api_no_proxy": []}
    with httpx.Client(timeout=60) as direct, p.api(token) as via:
        paths = (("direct", direct, direct_url), ("platform", via, platform_url), ("api_no_proxy", via, service_url))
        for _, client, url in paths:
            for _ in range(10):  # warm up
                client.post(url, files=files).raise_for_status()
        for _ in range(requests):
            for name, client, url in paths:
                t0 = time.perf_counter()
                r = client.post(url, files=files)
                timings[name].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
    api.delete(f"/services/ai4lab/deployments/{dep['id']}")
    results = {name: summary(values) for name, values in timings.items()}
    return {
        "module": item,
        "requests": requests,
        "results": results,
        "added_ms": {
            "p50": round(results["platform"]["p50_ms"] - results["direct"]["p50_ms"], 2),
            "p95": round(results["platform"]["p95_ms"] - results["direct"]["p95_ms"], 2),
        },
        "proxy_hop_ms_p50": round(results["platform"]["p50_ms"] - results["api_no_proxy"]["p50_ms"], 2),
    }


def main(requests: int = 150) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        png = digit_png(Path(tmp) / "png")
        extra = slow_module(Path(tmp) / "catalog")
        sources = [{"name": "bundled", "type": "folder", "path": str(bundled_catalog_path())},
                   {"name": "bench", "type": "folder", "path": str(extra)}]
        p = Platform.create(Path(tmp) / "state", catalog_sources=json.dumps(sources))
        p.start()
        try:
            token = p.token("admin")
            reports = [measure(p, token, item, png, requests) for item in ("ai4lab-digits", "ai4lab-digits-50ms")]
        finally:
            p.stop()
    report = {"modules": reports, "target_added_ms": {"p50": 1, "p95": 2}}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "predict.json").write_text(json.dumps(report, indent=1))
    print(f"predict benchmark: {requests} sequential requests per path, interleaved (bench/results/predict.json)")
    print(f"{'module':<22}{'path':<14}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for r in reports:
        for name, t in r["results"].items():
            print(f"{r['module']:<22}{name:<14}{t['p50_ms']:>9}{t['p95_ms']:>9}{t['mean_ms']:>9}")
        print(f"{r['module']:<22}added by the platform: p50 {r['added_ms']['p50']} ms, p95 {r['added_ms']['p95']} ms")
    return report


if __name__ == "__main__":
    main()
