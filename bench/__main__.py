"""``python -m bench [name ...]``: run the benchmarks (all by default)."""

import sys

from bench import catalog, flower, predict

BENCHES = {"catalog": catalog.main, "predict": predict.main, "flower": flower.main}

for name in sys.argv[1:] or list(BENCHES):
    if name not in BENCHES:
        sys.exit(f"unknown benchmark {name!r}: choose from {', '.join(BENCHES)}")
    BENCHES[name]()
