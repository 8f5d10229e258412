# The two commands of the README's quick start: `make demo` and `make test`.
# Both create .venv and install the requirements when it is missing. On a machine without an NVIDIA GPU
# the CPU build of torch is pinned by constraints-cpu.txt; with a GPU, pip keeps or installs a CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints-cpu.txt")

.PHONY: install test demo clean-demo

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt $(CONSTRAINTS)
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --out runs/demo

clean-demo:
	rm -rf runs/demo
