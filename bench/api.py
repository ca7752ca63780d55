"""Platform API under load: 1,000 catalog items and 500 deployments, 50 concurrent connections.

One real platform whose catalog is 1,000 synthetic modules (made from the real
AI4OS metadata) and whose database holds 500 deployments of 50 users. Each case
is ``wrk`` (closed loop, 50 connections) through the proxy with a user's token;
the baseline, measured in the same run under the same load, is the platform
API's ``/health`` (same proxy, same token check, no work).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import run_wrk  # noqa: E402
from tests.ai4os_data import DATA  # noqa: E402
from tests.platform_harness import Platform  # noqa: E402

WORDS = ["classification", "image", "detection", "time", "tensorflow", "plankton", "yolo", "satellite", "fire"]
API = "/services/ai4lab"
USERS = 50
DEPLOYMENTS = 500
KINDS = ["module", "training", "batch", "tool", "ide"]
ENDED = ["stopped", "succeeded", "failed"]


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


def seed_deployments(p: Platform) -> None:
    """500 ended deployments of 50 users (10 each), of every kind, with specs as the API writes them."""
    from ai4lab.core import deployments as deps
    from ai4lab.core.accounts import hash_password
    from ai4lab.core.db import User, session_scope

    db_url = f"sqlite:///{p.state / 'ai4lab.sqlite'}"
    with session_scope(db_url) as db:
        password_hash = hash_password("bench-password")
        for u in range(USERS):
            db.add(User(name=f"user{u:02d}", role="intermediate", is_admin=False, password_hash=password_hash))
    rng = random.Random(7)
    for i in range(DEPLOYMENTS):
        kind = KINDS[i % len(KINDS)]
        spec = {"item": f"item-{rng.randrange(1000):04d}", "cpu": 1, "ram_gb": 2, "gpu": 0, "inputs": {}}
        deps.create(db_url, owner=f"user{i % USERS:02d}", kind=kind, name=f"{kind}-{i}", spec=spec,
                    status=rng.choice(ENDED))


def cases() -> dict[str, list[str]]:
    catalog = [f"{API}/catalog/modules?per_page=20&page={1 + i}" for i in range(10)]
    catalog += [f"{API}/catalog/modules?q={w}&per_page=20" for w in WORDS]
    catalog += [f"{API}/catalog/modules?q={w}&gpu=true&sort=title" for w in WORDS[:3]]
    return {
        "baseline /health": [f"{API}/health"],
        "deployments: list mine": [f"{API}/deployments"],
        "deployments: filter by kind": [f"{API}/deployments?kind={k}" for k in KINDS],
        "catalog: list and search": catalog,
        # more distinct queries than the result cache holds: every request searches the 1,000 items
        "catalog: search, cache misses": [
            f"{API}/catalog/modules?q={w}+synthetic-{n}&per_page=20" for n in range(37) for w in WORDS
        ],
    }


def main(seconds: int = 5, connections: int = 50) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_catalog(Path(tmp) / "catalog")
        sources = [{"name": "synthetic", "type": "folder", "path": str(Path(tmp) / "catalog")}]
        p = Platform.create(Path(tmp) / "state", catalog_sources=json.dumps(sources))
        p.start()
        try:
            seed_deployments(p)
            token = p.token("user07")
            with p.api(token) as api:
                total = api.get(f"{API}/catalog/modules?per_page=1").json()["total"]
                mine = api.get(f"{API}/deployments").json()
            assert total == 1000, total
            assert len(mine) == DEPLOYMENTS // USERS, len(mine)
            results = {name: run_wrk(p.url, paths, token=token, seconds=seconds, connections=connections)
                       for name, paths in cases().items()}
            admin = p.token("admin")
            results["deployments: all 500 (admin)"] = run_wrk(
                p.url, [f"{API}/deployments?all=true"], token=admin, seconds=seconds, connections=connections
            )
        finally:
            t0 = time.monotonic()
            p.stop()
            stop_s = round(time.monotonic() - t0, 2)
    report = {"ctrl_c_s": stop_s, "catalog_items": 1000, "deployments": DEPLOYMENTS, "connections": connections,
              "seconds_each": seconds, "results": results, "target_p95_ms": 50}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "api.json").write_text(json.dumps(report, indent=1))
    print(f"platform API: 1000 catalog items, {DEPLOYMENTS} deployments, {connections} connections, "
          f"{seconds} s each (bench/results/api.json)")
    print(f"{'case':<34}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<34}{r['throughput_rps']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['errors']:>8}")
    return report


if __name__ == "__main__":
    main()
