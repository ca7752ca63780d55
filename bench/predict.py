"""Predict latency of a module deployment through the platform vs the same DEEPaaS server directly.

One real platform, one deployment of the bundled digits classifier; the same
PNG is posted to ``/services/ai4lab/deployments/<id>/predict`` (proxy, token
check, API forwarding) and straight to the DEEPaaS server's port, interleaved
request by request so that both see the same machine state.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main(requests: int = 300) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        png = digit_png(Path(tmp) / "png")
        p = Platform.create(Path(tmp) / "state")
        p.start()
        try:
            token = p.token("admin")
            api = p.api(token)
            dep = api.post("/services/ai4lab/deployments", json={"kind": "module", "item": "ai4lab-digits"}).json()
            deadline = time.monotonic() + 300
            while api.get(f"/services/ai4lab/deployments/{dep['id']}").json()["status"] != "running":
                assert time.monotonic() < deadline, "deployment did not start"
                time.sleep(0.5)
            record = deps.get(f"sqlite:///{p.state / 'ai4lab.sqlite'}", dep["id"])
            direct_url = (f"http://127.0.0.1:{record.backend_state['port']}"
                          f"/services/ai4lab/deployments/{dep['id']}/api/v2/models/ai4lab-digits/predict/")
            platform_url = f"{p.url}/services/ai4lab/deployments/{dep['id']}/predict"
            # the API service without the proxy in front: splits the overhead between the two hops
            service_url = (f"http://127.0.0.1:{p.env['AI4LAB_API_PORT']}/services/ai4lab/deployments/"
                           f"{dep['id']}/predict")
            files = {"image": ("digit.png", png, "image/png")}
            timings: dict[str, list[float]] = {"direct": [], "platform": [], "api_no_proxy": []}
            with httpx.Client(timeout=60) as direct, p.api(token) as via:
                for client, url in ((direct, direct_url), (via, platform_url), (via, service_url)):
                    for _ in range(10):  # warm up
                        client.post(url, files=files).raise_for_status()
                for _ in range(requests):
                    for name, client, url in (("direct", direct, direct_url), ("platform", via, platform_url),
                                              ("api_no_proxy", via, service_url)):
                        t0 = time.perf_counter()
                        r = client.post(url, files=files)
                        timings[name].append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, r.text
        finally:
            p.stop()
    results = {name: summary(values) for name, values in timings.items()}
    report = {
        "module": "ai4lab-digits",
        "results": results,
        "ratio_p50": round(results["platform"]["p50_ms"] / results["direct"]["p50_ms"], 3),
        "ratio_p95": round(results["platform"]["p95_ms"] / results["direct"]["p95_ms"], 3),
        "goal_ratio": 1.1,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "predict.json").write_text(json.dumps(report, indent=1))
    print(f"predict benchmark: ai4lab-digits, {requests} sequential requests each, interleaved "
          "(bench/results/predict.json)")
    print(f"{'path':<14}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for name, r in results.items():
        print(f"{name:<14}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['mean_ms']:>9}")
    print(f"ratio platform/direct: p50 {report['ratio_p50']}, p95 {report['ratio_p95']} (goal <= 1.1)")
    return report


if __name__ == "__main__":
    main()
