# prodgate: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PORT ?= 8000
DEMO_HOME ?= .prodgate-demo
# Feast pins pandas<3: the Feast tests run it from an environment of its own.
FEAST_VENV ?= $(VENV)-feast

.PHONY: install install-dev demo test check lint format bench bench-replicas bench-keys bench-llm bench-guard bench-drift bench-monitor bench-features bench-review clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.core

$(FEAST_VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(FEAST_VENV)
	$(FEAST_VENV)/bin/pip install -q -e '.[feast]'
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev

## demo: build the claims-triage example, register, deploy and serve it on SQLite
demo: $(VENV)/.core
	$(BIN)/prodgate --home $(DEMO_HOME) demo --port $(PORT)

## test: the test suite, on SQLite and PostgreSQL (and Feast, from $(FEAST_VENV))
test: $(VENV)/.dev $(FEAST_VENV)/.ready
	$(BIN)/pytest -q

## check: lint, format check, type check
check: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

## bench: gateway vs a bare pilot endpoint and a hello world (needs wrk: apt-get install wrk)
bench: $(VENV)/.dev
	$(BIN)/python bench/gateway_vs_bare.py

## bench-replicas: three replicas on PostgreSQL and Redis: one key's limit, revocation, a Redis outage
bench-replicas: $(VENV)/.dev
	$(BIN)/python bench/replicas_limits.py

## bench-keys: the gateway with API keys and a limit (memory, Redis) against auth off (needs wrk)
bench-keys: $(VENV)/.dev
	$(BIN)/python bench/keys_overhead.py

## bench-llm: the LLM gateway against LiteLLM's proxy and a bare aiohttp passthrough (needs wrk; installs LiteLLM into bench/.venvs once)
bench-llm: $(VENV)/.dev
	$(BIN)/python bench/llm_gateway.py

## bench-guard: guard quality on the labelled corpus, and the LLM gateway with its default rails against rails off (needs wrk)
bench-guard: $(VENV)/.dev
	$(BIN)/python bench/guard_quality.py
	$(BIN)/python bench/llm_gateway.py --only direct,prodgate-no-rails,prodgate

## bench-drift: prodgate drift compare against Evidently's DataDriftPreset on the same Parquet files (installs Evidently into bench/.venvs once)
bench-drift: $(VENV)/.dev
	$(BIN)/python bench/drift_vs_evidently.py

## bench-monitor: the gateway with production monitoring on against off, in one run (needs wrk)
bench-monitor: $(VENV)/.dev
	$(BIN)/python bench/monitor_overhead.py

## bench-features: the gateway enriching requests from a feature view (the store, Redis) against the caller sending the features, in one run (needs wrk and Redis)
bench-features: $(VENV)/.dev
	$(BIN)/python bench/features_overhead.py

## bench-review: the gateway with review on (rules, a 5% sample, items in the group commit, the explainer) against off, in one run (needs wrk)
bench-review: $(VENV)/.dev
	$(BIN)/python bench/review_overhead.py

clean:
	rm -rf $(VENV) $(FEAST_VENV) $(DEMO_HOME) .pytest_cache .mypy_cache .ruff_cache
