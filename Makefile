# `make demo` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ccreid-installed

.PHONY: demo demo-quick test browser ablation bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ccreid demo --overwrite

demo-quick: $(STAMP)
	$(BIN)/ccreid demo --quick --overwrite

test: $(STAMP) browser
	$(BIN)/python -m pytest

# Headless Chromium for tests/test_report_browser.py (renders report.html). Installed from
# Debian's packages when missing and we are root with apt-get; never fails the build: without
# it the browser tests skip with the reason.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "browser: $$(command -v chromium || command -v chromium-browser) found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: installing Debian chromium (apt-get)"; \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "browser: could not install chromium; the browser tests will skip"; \
	else \
	  echo "browser: chromium missing and cannot apt-get install it (needs root + apt-get); the browser tests will skip"; \
	fi

ablation: $(STAMP)
	$(BIN)/ccreid ablation --out outputs/ablation

clean-venv:
	rm -rf $(VENV)
