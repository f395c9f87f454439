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

# A separate environment with onnxruntime-gpu (never install it beside onnxruntime).
gpu-venv:
	$(PYTHON) -m venv .venv-gpu
	.venv-gpu/bin/python -m pip install -q "onnxruntime-gpu[cuda,cudnn]" numpy onnx networkx pytest hypothesis scipy
	.venv-gpu/bin/python -m pip install -q --no-deps -e .

clean:
	rm -rf $(VENV) .venv-gpu build *.egg-info
