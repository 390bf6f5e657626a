# The README's commands. Each target creates or reuses .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kecae-installed
ARGS ?=

.PHONY: install browser demo lint test bench clean

install: $(STAMP)

# Re-installs only when the package metadata or the pinned versions change; a second
# `make install` is instant. pyproject.toml states ranges; constraints.txt pins the exact versions
# the demo and CI run with.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: install
	$(BIN)/python -m kecae demo --out runs/demo $(ARGS)

# ruff (lint and format) on the package, the tests and the benchmarks; mypy on the package.
# Their whole configuration is in pyproject.toml.
lint: install
	$(BIN)/ruff check kecae tests benchmarks
	$(BIN)/ruff format --check kecae tests benchmarks
	$(BIN)/mypy

test: install browser
	$(BIN)/python -m pytest -q $(ARGS)

# The reader-study browser test drives Debian's Chromium through its chromedriver: installed
# here from Debian's packages when missing, never downloaded at test time. Without them that
# test fails under CI=true and is skipped elsewhere.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian packages) for the browser test"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver >/dev/null \
	    || echo "could not install chromium: the reader-study browser test will say so"; \
	fi

bench: install
	$(BIN)/python benchmarks/bench_phantoms.py --out benchmarks/results --grid docs/phantoms_grid.png
	$(BIN)/python benchmarks/bench_model.py --out benchmarks/results

clean:
	rm -rf runs .pytest_cache
