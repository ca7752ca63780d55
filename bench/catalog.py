"""Catalog list + search latency with 1,000 synthetic items, through the real platform.

The items are generated from the real AI4OS metadata in ../shared/data. The
baseline, measured in the same run under the same load, is the platform API's
/health route (same proxy, same token check, no catalog work): the ratio says
what the catalog itself costs.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import run_wrk  # noqa: E402
from tests.ai4os_data import DATA  # noqa: E402
from tests.platform_harness import Platform  # noqa: E402

WORDS = ["classification", "image", "detection", "time", "tensorflow", "plankton", "yolo", "satellite", "fire"]


def synthetic_catalog(folder: Path, n: int = 1000) -> None:
    """n module folders, each a real metadata file with a new id, title and tags."""
    real = []
    for f in sorted((DATA / "modules").glob("*.yml")):
        try:
            real.append(yaml.safe_load(f.read_text()))
        except yaml.YAMLError:
            continue
    rng = random.Random(42)
    for i in range(n):
        data = dict(real[i % len(real)])
        data["title"] = f"{data['title']} #{i}"
        tags = [*data.get("tags", []), f"synthetic-{i % 37}", rng.choice(WORDS)]
        data["tags"] = list(dict.fromkeys(tags))  # the schema wants unique tags
        item = folder / "modules" / f"item-{i:04d}"
        item.mkdir(parents=True)
        (item / "ai4-metadata.yml").write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> None:
    seconds, concurrency = 10, 50
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_catalog(Path(tmp) / "catalog")
        sources = [{"name": "synthetic", "type": "folder", "path": str(Path(tmp) / "catalog")}]
        p = Platform.create(Path(tmp) / "state", catalog_sources=json.dumps(sources))
        p.start()
        try:
            token = p.token("admin")
            api = "/services/ai4lab"

            catalog_paths = [f"{api}/catalog/modules?per_page=20&page={1 + i}" for i in range(10)]
            catalog_paths += [f"{api}/catalog/modules?q={w}&per_page=20" for w in WORDS]
            catalog_paths += [f"{api}/catalog/modules?q={w}&gpu=true&sort=title" for w in WORDS[:3]]
            # more distinct queries than the result cache holds: every request searches the 1,000 items
            uncached = [f"{api}/catalog/modules?q={w}+synthetic-{n}&per_page=20" for n in range(37) for w in WORDS]

            count = p.api(token).get(f"{api}/catalog/modules?per_page=1").json()["total"]
            assert count == 1000, count
            results = {
                "baseline_health": run_wrk(p.url, [f"{api}/health"], token=token, seconds=seconds,
                                           connections=concurrency),
                "catalog_list_search": run_wrk(p.url, catalog_paths, token=token, seconds=seconds,
                                               connections=concurrency),
                "catalog_search_uncached": run_wrk(p.url, uncached, token=token, seconds=seconds,
                                                   connections=concurrency),
            }
        finally:
            p.stop()
    base, cat = results["baseline_health"], results["catalog_list_search"]
    summary = {
        "items": 1000,
        "results": results,
        "p95_ratio_vs_baseline": round(cat["p95_ms"] / base["p95_ms"], 2),
        "target_p95_ms": 50,
        "meets_target": cat["p95_ms"] < 50,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalog.json").write_text(json.dumps(summary, indent=1))
    print(f"catalog benchmark: 1000 items, {seconds} s of load, {concurrency} concurrent connections "
          "(bench/results/catalog.json)")
    print(f"{'case':<26}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<26}{r['throughput_rps']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}")
    print(f"p95 ratio catalog/baseline: {summary['p95_ratio_vs_baseline']}  (target p95 < 50 ms: "
          f"{'met' if summary['meets_target'] else 'NOT met'})")


if __name__ == "__main__":
    main()
