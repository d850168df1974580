# batchlab: `make study` runs the study, `make test` runs the tests; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests use: a headless browser for the report, a one-node Slurm cluster.
DEBIAN_TEST_PACKAGES := chromium slurm-wlm munge

.PHONY: setup test-setup system-deps study optimizers huge-batch status peek test lint bench gpu-check repro pull clean

setup: $(VENV)/.batchlab-setup

$(VENV)/.batchlab-setup: envs/requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r envs/requirements.txt
	PYTHONPATH=workflow/scripts $(BIN)/python -m batchlab.report dvc-template .dvc/plots/offline.html
	@touch $@

test-setup: $(VENV)/.batchlab-test-setup system-deps

$(VENV)/.batchlab-test-setup: $(VENV)/.batchlab-setup envs/requirements-test.txt
	$(BIN)/python -m pip install --quiet -r envs/requirements-test.txt
	@touch $@

system-deps:
	@missing=$$(for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

study: setup
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	@echo
	@echo "Report: $(CURDIR)/results/report/index.html"

# The optimizer comparison (or any study config) in a work folder of its own, so results/ keeps
# the default study; its report and summary are copied to studies/<config name>/ (committed).
OPT_CONFIG ?= config/optimizers-cpu.yaml
OPT_NAME := $(basename $(notdir $(OPT_CONFIG)))
OPT_WORK := .work/$(OPT_NAME)
optimizers: setup
	@test -f $(OPT_CONFIG) || { echo "no such config: $(OPT_CONFIG) (OPT_CONFIG=config/<name>.yaml)" >&2; exit 2; }
	mkdir -p $(OPT_WORK)/data
	@# the project's files, not its results: the work folder keeps its own
	git ls-files -co --exclude-standard -z -- . ':!results' ':!studies' ':!dvc.lock' | tar --null -T - -cf - | tar -xf - -C $(OPT_WORK)
	@if [ -d data/mnist ] && [ ! -d $(OPT_WORK)/data/mnist ]; then cp -a data/mnist $(OPT_WORK)/data/; fi
	cd $(OPT_WORK) && PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES) --configfile $(OPT_CONFIG) $(SNAKEMAKE_ARGS)
	mkdir -p studies/$(OPT_NAME)
	cp $(OPT_WORK)/results/report/index.html studies/$(OPT_NAME)/report.html
	cp $(OPT_WORK)/results/summary/{analysis.json,metrics.json,cells.csv,best_lr.csv} studies/$(OPT_NAME)/
	@echo
	@echo "Report: $(CURDIR)/studies/$(OPT_NAME)/report.html"

# the huge-batch league (and Solution 2), run the same way: studies/huge-batch-cpu/
huge-batch:
	$(MAKE) optimizers OPT_CONFIG=config/huge-batch-cpu.yaml

# follow a running study (from another terminal): STATUS_ARGS=--watch redraws every 5 s
status: setup
	@PYTHONPATH=workflow/scripts $(BIN)/python -m batchlab status $(STATUS_ARGS)

peek: setup
	@PYTHONPATH=workflow/scripts $(BIN)/python -m batchlab peek

test: test-setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: test-setup
	$(BIN)/ruff check workflow tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

# benchmarks/bench.py (see the README's Speed). BENCH_ARGS=--quick rehearses every part on a few steps
# (under a minute, figures meaningless: what the tests run); BENCH_ARGS="--skip tutorial,costs" skips parts
bench: setup
	$(BIN)/snakemake --cores 1 data/mnist/mnist.pt
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# The prepared GPU check (benchmarks/gpu_check.py): on a machine with one GPU, with the Python it
# finds there (PyTorch 2.11 or newer, numpy, pandas, pyarrow, pyyaml, pytest); installs nothing,
# needs no network or Snakemake; MNIST from data/mnist/raw (GPU_CHECK_ARGS="--mnist DIR").
# At most 8 minutes; writes benchmarks/gpu_check.json.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# dvc pull gives files fresh modification times in no particular order; Snakemake would take
# that for stale inputs and retrain, so mark the pulled outputs up to date in DAG order.
pull: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc pull
	$(BIN)/snakemake --cores 1 --touch --quiet

clean:
	rm -rf results logs .snakemake
