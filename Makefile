# The two commands: `make run` starts the platform, `make test` runs the suite.
VENV ?= .venv
export AI4LAB_VENV := $(abspath $(VENV))
PYTEST_ARGS ?=

.PHONY: run test install install-test clean

run: install
	$(VENV)/bin/ai4lab up

test: install-test
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider $(PYTEST_ARGS)

install:
	@scripts/install.sh

install-test:
	@scripts/install.sh test

clean:
	rm -rf $(VENV) .ai4lab
