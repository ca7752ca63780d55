# The two commands: `make run` starts the platform, `make test` runs the suite.
VENV ?= .venv
export AI4LAB_VENV := $(abspath $(VENV))
PYTEST_ARGS ?=

.PHONY: run test bench install install-test clean

run: install
	$(VENV)/bin/ai4lab up

test: install-test
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider $(PYTEST_ARGS)

# benchmarks (not tests): JSON in bench/results/, a short table on stdout
bench:
	@scripts/install.sh bench
	$(VENV)/bin/python -m bench

install:
	@scripts/install.sh

install-test:
	@scripts/install.sh test

clean:
	rm -rf $(VENV) .ai4lab
