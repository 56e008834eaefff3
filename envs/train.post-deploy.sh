#!/usr/bin/env bash
# Run by Snakemake inside the new envs/train.yaml environment, after it is created.
# deepspeed and flash-attn import torch at build time: build them against the torch
# already installed (no isolated build environment), then install openrlhf, whose
# pins (deepspeed==0.19.6, flash-attn==2.8.3, transformers==5.15.0) they satisfy.
set -euo pipefail
python -m pip install --no-build-isolation deepspeed==0.19.6 flash-attn==2.8.3
python -m pip install openrlhf==0.11.2 ring-flash-attn==0.1.8
# Environments are made where Snakemake runs (often a login node without a GPU), so
# only list what was installed; importing flash_attn needs the CUDA driver.
python -m pip list 2>/dev/null | grep -iE '^(torch|deepspeed|flash.attn|openrlhf|transformers|ring.flash.attn) '
