# Two commands from a fresh clone: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/runhook serve --config config/runhook.toml

# The benchmarks run at tiny sizes inside `make test`, so they keep working;
# they print figures but assert no timing.
test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/python benchmarks/run.py --quick

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) var .pytest_cache
