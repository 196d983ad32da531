# The README's two commands: `make run` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint check fuzz bench clean
FUZZ_SECONDS ?= 60

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/blether serve $(ARGS)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench fuzz
	$(BIN)/mypy

# Every atheris target for FUZZ_SECONDS each; a crash fails and is saved in fuzz/crashes/.
fuzz: $(STAMP)
	$(BIN)/pip install --quiet -e '.[fuzz]'
	fuzz/run.sh $(FUZZ_SECONDS)

# Blether vs Prosody vs ejabberd, side by side (installs the anchors from Debian).
BENCH_ARGS ?= --servers blether,prosody,ejabberd --scenarios all --scale 1.0 --json bench-results.json
bench: $(STAMP)
	$(BIN)/python -m bench.run --install $(BENCH_ARGS)

check: lint test

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
