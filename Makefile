# The README's commands. Each target creates or reuses .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kecae-installed
ARGS ?=

.PHONY: install demo test bench clean

install: $(STAMP)

# Re-installs only when the package metadata changes; a second `make install` is instant.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

demo: install
	$(BIN)/python -m kecae demo --out runs/demo $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(ARGS)

bench: install
	$(BIN)/python benchmarks/bench_phantoms.py --out benchmarks/results --grid docs/phantoms_grid.png
	$(BIN)/python benchmarks/bench_model.py --out benchmarks/results

clean:
	rm -rf runs .pytest_cache
