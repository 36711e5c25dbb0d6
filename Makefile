# Every target works on a fresh clone: `install` makes the virtual environment it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint wheel-check bench soak clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/batchbanana run jobs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check batchbanana tests bench
	$(BIN)/mypy

# The wheel as a user gets it: built from the sdist, installed in a fresh venv, run outside the checkout.
wheel-check: $(STAMP)
	PY=$(PY) BUILD_PYTHON=$(abspath $(BIN))/python bash .ci/wheel-check

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache

# Byte-compiled first, as an installed wheel would be: with PYTHONDONTWRITEBYTECODE set (as on
# some machines) an editable checkout would otherwise recompile every module on every start.
bench: $(STAMP)
	$(BIN)/python -m compileall -q batchbanana
	$(BIN)/python bench/bench.py

soak: $(STAMP)
	$(BIN)/python bench/soak.py
