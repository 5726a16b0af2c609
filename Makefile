# Every target creates .venv if missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: serve test lint typecheck fake-providers compat-docs clean bench bench-quick

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
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS) tests bench/test_bench.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

# Fake OpenAI (:9990), Anthropic (:9991) and Gemini (:9992) providers on loopback, for trying
# the quickstart without real keys.
fake-providers: $(STAMP_TEST)
	$(BIN)/python -m tests.fakes.all --port $${PORT:-9990}

# Gateway vs LiteLLM vs nginx vs direct on one nginx mock, one session (~12 min); installs nginx,
# wrk and LiteLLM (bench/.peers/) when missing; writes docs/performance.md and bench/baseline.json.
bench: $(STAMP_TEST)
	bash bench/setup.sh
	$(BIN)/python bench/run.py --save-baseline --command "make bench" $(BENCH_ARGS)

# Regression check (< 2 min): the gateway's CPU per request against bench/baseline.json.
bench-quick: $(STAMP_TEST)
	bash bench/setup.sh --no-litellm
	$(BIN)/python bench/run.py --quick --command "make bench-quick"

# docs/compatibility.md from the conformance matrix (every surface x provider format x feature).
compat-docs: $(STAMP_TEST)
	AISTATS_WRITE_COMPAT=docs/compatibility.md $(BIN)/pytest -q tests/conformance

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
