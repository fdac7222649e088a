# One-command entry points. Every target does its own set-up on a fresh machine:
# virtualenv + Python packages (.venv), Kafka jars (infra/kafka/lib), Spark jars (Ivy cache).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KAFKA_STAMP := infra/kafka/lib/.complete

.PHONY: setup demo test test-fast check bench stack-up stack-down airflow clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup: $(STAMP) $(KAFKA_STAMP)  ## virtualenv, Python packages, Kafka jars

$(STAMP): setup.cfg pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is required (apt-get install openjdk-17-jre-headless)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e ".[models,dev]"
	@touch $@

$(KAFKA_STAMP):
	bash infra/kafka/fetch-jars.sh

demo: setup  ## the main job end to end: broker, synthetic events, ingest, (train, score), SQL
	$(BIN)/recsys demo

test: setup  ## the whole test suite (starts its own broker on free ports)
	$(BIN)/pytest

test-fast: setup  ## unit tests only (no Spark, no broker)
	$(BIN)/pytest -m unit

check: setup  ## lint
	$(BIN)/ruff check .

bench: setup  ## benchmarks; results in benchmarks/results/*.json, summary in BENCHMARKS.md
	$(BIN)/recsys stack up
	$(BIN)/recsys bench ingest

airflow: setup  ## local Airflow 3 in .venv-airflow (SQLite home under lakehouse/_airflow)
	bash infra/airflow/setup.sh
	source <(bash infra/airflow/setup.sh --env) && airflow standalone

stack-up: setup  ## start the local broker
	$(BIN)/recsys stack up

stack-down: setup  ## stop the local broker
	$(BIN)/recsys stack down

clean:  ## stop the stack and remove local data (keeps the virtualenv)
	-$(BIN)/recsys stack down
	rm -rf lakehouse spark-warehouse metastore_db derby.log
