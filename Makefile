# Two commands from a fresh clone: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The framework tests' extras (torch, Lightning, Transformers, Keras, wandb: 1.4 GB,
# about 70 s here) are installed by `make test` only, not by `make run`.
FRAMEWORKS := $(VENV)/.installed-frameworks
# A real MLflow server for the MLflow webhook test, in a venv of its own (850 MB;
# its dependencies stay out of runhook's).
# nats-py and the nats-server binary, for cluster mode's tests, demo and benchmark.
CLUSTER := $(VENV)/.installed-cluster
MLFLOW_VENV := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed

.PHONY: run test browser screenshots bench bench-quick bench-cluster cluster-demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(FRAMEWORKS): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,integrations-test]'
	touch $(FRAMEWORKS)

$(CLUSTER): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
	touch $(CLUSTER)

run: $(STAMP)
	mkdir -p var
	$(BIN)/runhook serve --config config/runhook.toml

# The benchmarks run at tiny sizes inside `make test`, so they keep working;
# they print figures but assert no timing.
$(MLFLOW_STAMP):
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet 'mlflow==3.17.2'
	touch $(MLFLOW_STAMP)

test: $(FRAMEWORKS) $(CLUSTER) $(MLFLOW_STAMP) browser
	RUNHOOK_MLFLOW_PYTHON=$(CURDIR)/$(MLFLOW_VENV)/bin/python $(BIN)/python -m pytest -q
	$(BIN)/python benchmarks/run.py --quick
	$(BIN)/python benchmarks/cluster.py --quick

# The console's browser tests drive Debian's Chromium through chromedriver. As root
# (CI) a missing browser is installed; otherwise those tests skip, saying why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	else echo "no chromium/chromedriver and not root: the browser tests will be skipped"; fi

# The README's pictures of the console, taken by the browser test.
screenshots: $(STAMP) browser
	RUNHOOK_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_browser.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

# Three NATS servers and three runhook nodes on loopback, until Ctrl-C (DESIGN §13).
cluster-demo: $(CLUSTER)
	$(BIN)/python -m runhook.cluster.demo var/cluster

# Cluster throughput with 1 and 3 nodes and the fail-over time, beside one SQLite daemon.
bench-cluster: $(CLUSTER)
	$(BIN)/python benchmarks/cluster.py

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) var .pytest_cache
