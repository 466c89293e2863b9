# dfkd: reproduce Zhou & Chiam (2023). `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# Data mirror: MIRROR=..., else $DFKD_DATA_MIRROR, else ../shared/data when it exists; else download.
MIRROR  ?= $(or $(DFKD_DATA_MIRROR),$(wildcard ../shared/data))
JOBS    ?= 2
DATASETS := indoorloc,ctscan,pole,mv,puma32h,compactiv,cpusmall
export DFKD_JOBS := $(JOBS)
export PYTHONUNBUFFERED := 1

.PHONY: help setup data teachers table3 table4 table6 tables quick reproduce bench test test-all clean-quick

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: MIRROR=<dir with dataset files> JOBS=<parallel jobs, default 2>"

$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP) ## Create .venv with the pinned dependencies (torch 2.13.0)

data: $(STAMP) ## Install and SHA-256-verify every dataset file into data/ (MIRROR=dir or download)
	$(PY) -m dfkd.data $(if $(MIRROR),--mirror $(MIRROR))

teachers: data ## Train (or verify the cache of) the 10 teachers of every dataset
	$(PY) -m dfkd.teachers -m hydra/launcher=local dataset=$(DATASETS) missing_data=skip threads=1

table3: teachers ## Paper Table 3 (students MLP 25): train what is missing, then tabulate
	$(PY) -m dfkd.distill -m experiment=table3
	$(PY) -m dfkd.report --tables table3

table4: teachers ## Paper Table 4 (students MLP 50): train what is missing, then tabulate
	$(PY) -m dfkd.distill -m experiment=table4
	$(PY) -m dfkd.report --tables table4

table6: data ## Paper Table 6 (eSol, black-box SVR teacher; DE vs random, 5 runs): train what is missing, then tabulate
	$(PY) -m dfkd.distill -m experiment=table6
	$(PY) -m dfkd.report --tables table6

tables: $(STAMP) ## Re-aggregate results/records into results/tables (no training)
	$(PY) -m dfkd.report

quick: data ## Every artefact on a reduced budget (3 seeds, 200 epochs; Table 6: 20) into results/quick/
	$(PY) -m dfkd.teachers -m hydra/launcher=local dataset=$(DATASETS) missing_data=skip threads=1 seeds=3
	$(PY) -m dfkd.distill -m experiment=quick
	$(PY) -m dfkd.distill -m experiment=quick_table6
	$(PY) -m dfkd.report --records results/quick/records --out results/quick/tables

reproduce: data ## The full protocol: teachers, Tables 3, 4 and 6 (resumes where it stopped)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory teachers && \
	$(PY) -m dfkd.distill -m experiment=table3 && \
	$(PY) -m dfkd.distill -m experiment=table4 && \
	$(PY) -m dfkd.distill -m experiment=table6 && \
	$(PY) -m dfkd.report && \
	echo "reproduce: finished in $$(( $$(date +%s) - start )) s"

bench: $(STAMP) ## Print engine speed: batched vs one-model loop, GFLOP/s vs a plain matmul; eSol DE batched vs per candidate
	DFKD_DATA_MIRROR="$(MIRROR)" $(PY) -m dfkd.bench

test: $(STAMP) ## Run the test suite (CPU, a few minutes)
	$(PY) -m pytest -q

test-all: $(STAMP) ## Run every test, the slow ones too
	$(PY) -m pytest -q -m ""

clean-quick: ## Delete the quick run's outputs
	rm -rf results/quick
