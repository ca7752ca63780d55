"""``make bench``: every benchmark in one run, one table (``bench/results/bench.json`` and ``bench.md``).

Each figure is measured beside its baseline in the same run, on the same
machine: bare JupyterHub for the hub, ``/health`` for the platform API, the
DEEPaaS server called directly for predict, plain Flower for federated rounds.
"""

from __future__ import annotations

import json
import os
import platform as host
import time
from pathlib import Path
from typing import Any

import psutil

from bench import api, flower, predict, storm
from bench.hubs import Ai4labHub, BareHub

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), host.processor())
    return (f"{len(os.sched_getaffinity(0))} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"{host.system()} {host.release()}, Python {host.python_version()}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(r: dict[str, Any]) -> str:
    bare, ours = r["hubs"]["bare"], r["hubs"]["ai4lab"]
    rows = [("figure", "bare JupyterHub / baseline", "ai4lab", "ratio", "target"), ("---",) * 5]
    for n in bare["storms"]:
        b, o = bare["storms"][n], ours["storms"][n]
        for p in ("p50", "p95", "max"):
            rows.append((f"{n} servers at once: time to ready, {p} (s)", b["ready_s"][p], o["ready_s"][p],
                         ratio(o["ready_s"][p], b["ready_s"][p]), "<= 1.1x" if p != "max" else ""))
        rows.append((f"{n} servers at once: hub API p50 / p95 (ms)",
                     f"{b['hub_api_ms']['p50']} / {b['hub_api_ms']['p95']}",
                     f"{o['hub_api_ms']['p50']} / {o['hub_api_ms']['p95']}",
                     ratio(o["hub_api_ms"]["p95"], b["hub_api_ms"]["p95"]),
                     {"20": "p95 < 1000", "40": "p95 < 2000"}.get(n, "")))
        if "stop_all_s" in b:
            rows.append((f"{n} servers: stop all at once (s)", b["stop_all_s"], o["stop_all_s"],
                         ratio(o["stop_all_s"], b["stop_all_s"]), ""))
    big = max(bare["storms"], key=int)
    bm, om = bare["storms"][big]["memory"], ours["storms"][big]["memory"]
    rows.append((f"memory per idle session, {big} running (MB, PSS)", bm["per_session_mb"], om["per_session_mb"],
                 ratio(om["per_session_mb"], bm["per_session_mb"]), "<= 1.2x"))
    bi, oi = bare["idle"], ours["idle"]
    rows.append((f"memory per idle session, {oi['sessions']} running (MB, PSS)", bi["memory"]["per_session_mb"],
                 oi["memory"]["per_session_mb"],
                 ratio(oi["memory"]["per_session_mb"], bi["memory"]["per_session_mb"]), "<= 1.2x"))
    rows.append((f"{oi['sessions']} idle sessions: hub API p50 / p95 (ms)",
                 f"{bi['hub_api_ms']['p50']} / {bi['hub_api_ms']['p95']}",
                 f"{oi['hub_api_ms']['p50']} / {oi['hub_api_ms']['p95']}",
                 ratio(oi["hub_api_ms"]["p95"], bi["hub_api_ms"]["p95"]), ""))
    rows.append((f"{oi['started']} more sessions started 30 at a time (s)", bi["started_in_s"], oi["started_in_s"],
                 ratio(oi["started_in_s"], bi["started_in_s"]), ""))
    for name in ours["services_idle_mb"]:
        rows.append((f"idle memory: {name} (MB, PSS)", bare["services_idle_mb"].get(name, "-"),
                     ours["services_idle_mb"][name], "", ""))
    rows.append(("Ctrl-C to exit, fresh platform (s)", "-", r["api"]["ctrl_c_s"], "", "< 5"))
    rows.append((f"Ctrl-C to exit with {oi['sessions']} sessions running (s)", bare["ctrl_c_s"], ours["ctrl_c_s"],
                 ratio(ours["ctrl_c_s"], bare["ctrl_c_s"]), ""))
    rows.append(("tracebacks in the hub log", bare["tracebacks_in_hub_log"], ours["tracebacks_in_hub_log"], "", "0"))
    base = r["api"]["results"]["baseline /health"]
    for name, res in r["api"]["results"].items():
        if name.startswith("baseline"):
            continue
        rows.append((f"platform API at 50 connections, {name}: p50 / p95 (ms)",
                     f"/health {base['p50_ms']} / {base['p95_ms']}", f"{res['p50_ms']} / {res['p95_ms']}",
                     ratio(res["p95_ms"], base["p95_ms"]), "p95 < 50"))
    for m in r["predict"]["modules"]:
        d, via = m["results"]["direct"], m["results"]["platform"]
        rows.append((f"predict, {m['module']}: p50 / p95 (ms)", f"direct {d['p50_ms']} / {d['p95_ms']}",
                     f"{via['p50_ms']} / {via['p95_ms']}",
                     f"+{m['added_ms']['p50']} / +{m['added_ms']['p95']} ms", "+1 / +2 ms"))
    f = r["flower"]["mean_round_s_excluding_round_1"]
    rows.append(("Flower, 2 clients, FedAvg: s per round", f"plain flwr {f['plain']}", f["ai4lab"],
                 ratio(f["ai4lab"], f["plain"]), "<= 1.1x"))
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def main() -> dict[str, Any]:
    t0 = time.monotonic()
    report: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "hubs": {}}
    for key, hub in (("bare", BareHub()), ("ai4lab", Ai4labHub())):
        print(f"storms on {hub.name} ...", flush=True)
        report["hubs"][key] = storm.run_hub(hub)
    print("platform API under load ...", flush=True)
    report["api"] = api.main()
    print("predict ...", flush=True)
    report["predict"] = predict.main()
    print("Flower rounds ...", flush=True)
    report["flower"] = flower.main(rounds=3)
    report["duration_min"] = round((time.monotonic() - t0) / 60, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(report, indent=1))
    md = (f"Measured {report['date']} on {report['machine']}; `make bench` took {report['duration_min']} min.\n\n"
          + table(report) + "\n")
    (OUT / "bench.md").write_text(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
