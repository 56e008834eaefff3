# Two commands do all the setup: `make demo` and `make test`.
# Both create the local virtual environment .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SNAKEMAKE := $(BIN)/snakemake --workflow-profile none
DEMO := --configfile configs/demo.yaml --replace-workflow-config

.PHONY: install demo demo-dry test lint clean-demo chromium

$(STAMP): requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/cpu.txt
	$(BIN)/python -m pip install -q --no-deps openrlhf==0.11.2
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(SNAKEMAKE) --cores all $(DEMO)
	@echo
	@echo "Demo finished. Tables: results/tables/results.md and results/tables/results.csv"
	@cat results/tables/results.md

demo-dry: $(STAMP)
	$(SNAKEMAKE) -n $(DEMO)

# Headless Chromium for the report test (Debian packages; does nothing when present).
chromium:
	sh tests/setup_chromium.sh

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(SNAKEMAKE) --lint

clean-demo:
	rm -rf results resources logs benchmarks/*/ .snakemake
