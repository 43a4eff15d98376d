# `make demo` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ccreid-installed

.PHONY: demo demo-quick test ablation bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ccreid demo

demo-quick: $(STAMP)
	$(BIN)/ccreid demo --quick

test: $(STAMP)
	$(BIN)/python -m pytest

ablation: $(STAMP)
	$(BIN)/ccreid ablation --out outputs/ablation

clean-venv:
	rm -rf $(VENV)
