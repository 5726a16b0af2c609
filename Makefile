# Every target creates .venv if missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: serve test lint typecheck fake-openai clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_TEST): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

serve: $(STAMP_RUN)
	$(BIN)/aistats-gateway serve $(ARGS)

test: $(STAMP_TEST)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

# A fake OpenAI-compatible provider on loopback, for trying the quickstart without real keys.
fake-openai: $(STAMP_TEST)
	$(BIN)/python -m tests.fakes.openai_server --port $${PORT:-9990}

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
