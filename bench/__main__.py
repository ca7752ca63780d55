"""``python -m bench [name ...]``: every benchmark into one table (default), or the named ones alone."""

import sys

from bench import api, flower, predict, report

BENCHES = {"all": report.main, "api": api.main, "predict": predict.main, "flower": flower.main}

for name in sys.argv[1:] or ["all"]:
    if name not in BENCHES:
        sys.exit(f"unknown benchmark {name!r}: choose from {', '.join(BENCHES)}")
    BENCHES[name]()
