# dfkd: reproduce Zhou & Chiam (2023). `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# Data mirror: MIRROR=..., else $DFKD_DATA_MIRROR, else ../shared/data when it exists; else download.
MIRROR  ?= $(or $(DFKD_DATA_MIRROR),$(wildcard ../shared/data))
JOBS    ?= 2
# Records whose traces Figures 7 and 8 are drawn from (the committed full run: RECORDS=results/reference/records).
RECORDS ?= results/records
# The tabular datasets, as experiments/table3.py and table4.py declare them (expanded only by the recipes that use it).
DATASETS = $(shell $(PY) -m dfkd.report --list-datasets table3,table4)
export DFKD_JOBS := $(JOBS)
# Measured estimate of the full Table 5 protocol without a GPU (README, "MNIST"), in CPU hours.
MNIST_CPU_HOURS := 10.6
# Measured estimate of the full Table 6 protocol (README, "Protein solubility"), in CPU hours (mostly the DE cell).
ESOL_CPU_HOURS := 4
export PYTHONUNBUFFERED := 1

.PHONY: help setup data teachers table3 table4 table5 table5-cpu mnist-teachers table5-matched table5-variance table6 methods scarce fig5 fig6 fig7 fig8 fig9 fig10 figures tables quick reproduce bench status test test-all clean-quick

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: MIRROR=<dir with dataset files> JOBS=<parallel jobs, default 2> MNIST=cpu (reproduce: CPU-sized Table 5)"
	@echo "             RECORDS=<records folder for fig7/fig8/figures, default results/records; committed run: results/reference/records>"

$(STAMP): requirements.lock pyproject.toml setup.py
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

methods: teachers ## Benchmark of data-free methods (students MLP 25/50, 10 seeds, paired tests): train what is missing, then tabulate
	$(PY) -m dfkd.distill -m experiment=methods
	$(PY) -m dfkd.report --tables methods

scarce: teachers ## Scarce real data (Kang & Kang 2024; p = 1 %, 10 % of the rows; MLP 50): p > 0, then p = 0 references, then tabulate
	$(PY) -m dfkd.distill -m experiment=scarce
	$(PY) -m dfkd.distill -m experiment=scarce variant=direct-decreasing,random-0 real_fraction=0
	$(PY) -m dfkd.report --tables scarce

table5: data ## Paper Table 5 (MNIST, CNN students; many CPU hours, see README): train what is missing, then tabulate
	@echo "table5: the full MNIST protocol takes about $(MNIST_CPU_HOURS) CPU hours (measured: 6.2 h on a 2-core machine) without a GPU;"
	@echo "        on such a machine consider 'make table5-cpu' (CPU-sized preset). Runs resume where they stopped."
	$(PY) -m dfkd.distill -m experiment=table5
	$(PY) -m dfkd.report --tables table5

table5-cpu: data ## Table 5 on a CPU-sized budget (preset table5_cpu; labelled, not the paper's protocol)
	$(PY) -m dfkd.distill -m experiment=table5_cpu
	$(PY) -m dfkd.report --records results/table5_cpu/records --out results/table5_cpu/tables --tables table5
	$(PY) -m dfkd.report --records results/table5_cpu/records --figures fig9,fig10 --figures-out results/table5_cpu/figures

mnist-teachers: data ## MNIST teacher study (issue 15): 13 teacher variants (~2.5 CPU hours, cached; resumes), table results/tables/mnist_teachers.md
	@echo "mnist-teachers: about 8 CPU minutes per 15 teacher epochs, about 2.5 CPU hours for all variants; cached teachers are reused."
	$(PY) -m dfkd.teacher_study

# The teacher the study chose (its table's "chosen" row): TEACHER=<conf/teacher yaml>, LABEL_DROPOUT=true when that row says on.
TEACHER ?=
LABEL_DROPOUT ?= false
table5-matched: data ## Table 5 again with the study's chosen teacher (TEACHER=..., 6-12 h on 2 cores by processor), then both runs beside the paper
	@test -n "$(TEACHER)" || { echo "error: set TEACHER=<the chosen variant of results/tables/mnist_teachers.md>, e.g. make table5-matched TEACHER=cnn10_same"; exit 2; }
	$(PY) -m dfkd.distill -m experiment=table5_matched teacher=$(TEACHER) teacher.label_dropout=$(LABEL_DROPOUT)
	$(PY) -m dfkd.report --records results/table5_matched/records --out results/table5_matched/tables --tables table5
	$(PY) -m dfkd.report.matched --today results/reference/tables/table5.csv --matched results/table5_matched/tables/table5.csv --out results/tables/table5_matched.md

table5-variance: data ## Table 5's random-sampling cell with the pixel variance as the std (issue 15's pair reading; ~45 CPU min)
	$(PY) -m dfkd.distill -m experiment=table5_variance
	$(PY) -m dfkd.report --records results/table5_variance/records --out results/table5_variance/tables --tables table5

table6: data ## Paper Table 6 (eSol, black-box SVR teacher; DE vs random, 5 runs; ~4 CPU hours): train, then tabulate
	$(PY) -m dfkd.distill -m experiment=table6
	$(PY) -m dfkd.report --tables table6

fig5: data ## Paper Figure 5 (student loss of each method's rows at snapshots): runs the study (indoorloc, a few minutes)
	$(PY) -m dfkd.study 'figures=[fig5]'

fig6: data ## Paper Figure 6 (UMAP of real and synthetic rows at snapshots): the study (reuses matching numbers)
	$(PY) -m dfkd.study 'figures=[fig6]'

fig7: $(STAMP) ## Paper Figure 7 (validation RMSE against epoch, student 50) from stored traces (RECORDS=dir)
	$(PY) -m dfkd.report --records $(RECORDS) --figures fig7

fig8: $(STAMP) ## Paper Figure 8 (student loss on x_g against epoch, alpha = 1) from stored traces (RECORDS=dir)
	$(PY) -m dfkd.report --records $(RECORDS) --figures fig8

fig9: $(STAMP) ## Paper Figure 9 (synthetic MNIST images per method) from records -> results/figures/
	$(PY) -m dfkd.report --figures fig9

fig10: $(STAMP) ## Paper Figure 10 (teacher's predictions on synthetic images) from records -> results/figures/
	$(PY) -m dfkd.report --figures fig10

figures: data ## Every figure into results/figures/: 7-10 from stored records and traces (RECORDS=dir), 5-6 by the study
	$(PY) -m dfkd.report --records $(RECORDS) --figures all
	$(PY) -m dfkd.study

tables: $(STAMP) ## Re-aggregate results/records into results/tables (no training)
	$(PY) -m dfkd.report

quick: data ## Every artefact on a reduced budget (3 seeds, 100 epochs; MNIST: 3 epochs; Table 6: 4; study: 100 epochs) into results/quick/
	@mkdir -p results && date +%s > results/.quick-start
	$(PY) -m dfkd.teachers -m hydra/launcher=local dataset=$(DATASETS) missing_data=skip threads=1 seeds=3
	$(PY) -m dfkd.distill -m experiment=quick
	$(PY) -m dfkd.distill -m experiment=mnist_quick
	$(PY) -m dfkd.distill -m experiment=quick_table6
	$(PY) -m dfkd.report --records results/quick/records --out results/quick/tables
	$(PY) -m dfkd.report --records results/quick/records --figures fig7,fig8,fig9,fig10 --figures-out results/quick/figures
	$(PY) -m dfkd.study results_dir=results/quick experiment_name=quick epochs=100 'snapshots=[0,10,50,100]'
	@echo "quick: finished in $$(( $$(date +%s) - $$(cat results/.quick-start) )) s (tables in results/quick/tables, figures in results/quick/figures)"

reproduce: data ## The full protocol: teachers, Tables 3, 4, 6 and 5, Figures 5-10 (MNIST=cpu: CPU-sized Table 5)
	@echo "reproduce: Tables 3 and 4 take about 90 min on 2 CPU cores; Table 6 (eSol) adds about $(ESOL_CPU_HOURS) CPU hours and"
	@echo "           Table 5 (MNIST) about $(MNIST_CPU_HOURS) CPU hours (6.2 h on 2 cores) without a GPU$(if $(filter cpu,$(MNIST)),; MNIST=cpu: using the CPU-sized preset table5_cpu (about 1 h on 2 cores).,: for the CPU-sized preset (about 1 h on 2 cores) run 'make reproduce MNIST=cpu'.)"
	@echo "           Every step resumes where it stopped."
	@mkdir -p results && date +%s > results/.reproduce-start
	$(MAKE) --no-print-directory teachers
	$(PY) -m dfkd.distill -m experiment=table3
	$(PY) -m dfkd.distill -m experiment=table4
	$(PY) -m dfkd.distill -m experiment=table6
	$(PY) -m dfkd.report
	$(PY) -m dfkd.report --figures fig7,fig8
	$(PY) -m dfkd.study
	$(MAKE) --no-print-directory $(if $(filter cpu,$(MNIST)),table5-cpu,table5 fig9 fig10)
	@echo "reproduce: finished in $$(( $$(date +%s) - $$(cat results/.reproduce-start) )) s"

bench: $(STAMP) ## Print engine speed: batched vs one-model loop, GFLOP/s vs a plain matmul; eSol DE batched vs per candidate
	DFKD_DATA_MIRROR="$(MIRROR)" $(PY) -m dfkd.bench

status: $(STAMP) ## Where long runs stand: stacks in training (epoch, time left at their pace), failed runs
	$(PY) -m dfkd.status

test: $(STAMP) ## Run the test suite (CPU, a few minutes)
	$(PY) -m pytest -q

test-all: $(STAMP) ## Run every test, the slow ones too
	$(PY) -m pytest -q -m ""

clean-quick: ## Delete the quick run's outputs
	rm -rf results/quick
