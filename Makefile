# Two commands do all set-up on a fresh machine:
#   make demo   - creates .venv, installs graphad, runs the embedded demo
#   make test   - creates .venv, installs graphad with its test extras, runs the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test bench bench-quick gpu-venv clean

$(VENV)/.runtime: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(PIP) install -q -e ".[test]"
	touch $@

demo: $(VENV)/.runtime
	$(PY) -m graphad.demo

test: $(VENV)/.test
	$(PY) -m pytest -q -p no:cacheprovider tests

# Benchmarks against the peers (JAX CPU from the registry; PyTorch CPU where its wheel is at
# hand), in their own environment so the test one stays small. Not part of `make test`.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.bench: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check install -q -e ".[bench]"
	-$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check install -q "torch==2.13.0"
	touch $@

bench: $(BENCH_VENV)/.bench
	$(BENCH_VENV)/bin/python -m benchmarks --json benchmarks-results.json

bench-quick: $(BENCH_VENV)/.bench
	$(BENCH_VENV)/bin/python -m benchmarks --quick --json benchmarks-results.json

# A separate environment with onnxruntime-gpu (never install it beside onnxruntime).
gpu-venv:
	$(PYTHON) -m venv .venv-gpu
	.venv-gpu/bin/python -m pip install -q "onnxruntime-gpu[cuda,cudnn]" numpy onnx networkx pytest hypothesis scipy
	.venv-gpu/bin/python -m pip install -q --no-deps -e .

clean:
	rm -rf $(VENV) .venv-gpu $(BENCH_VENV) build *.egg-info
