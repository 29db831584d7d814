# Quick start: `make run` (daemon on the simulated feed, paper mode) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-deps lint typecheck bench soak clean install

# Debian packages the tests use, as command:package pairs: installed when the command is missing (as root, or with
# sudo), so `make test` alone works on a fresh machine. systemd-analyze verifies the units; rsync and python3-venv
# are the deploy script's prerequisites, exercised end to end by its test; chromium and chromedriver run the
# dashboard's browser tests (headless, driven by Selenium).
TEST_DEBS := systemd-analyze:systemd rsync:rsync chromium:chromium chromedriver:chromium-driver

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/tradebot run --speed 300 --sessions 3 --progress

test-deps:
	@missing=""; for pair in $(TEST_DEBS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else \
	    echo "make test: install the Debian packages$$missing (the tests use them)" >&2; exit 1; fi; \
	  echo "make test: installing$$missing (apt-get)" >&2; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: $(STAMP) test-deps
	$(BIN)/ruff check src tests benchmarks scripts run_headless.py
	$(BIN)/mypy src
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

soak: $(STAMP)
	$(BIN)/pytest -m soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
