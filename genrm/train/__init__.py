"""The training stage (layer 2): SFT rows, the length guard, TRL on CPU, OpenRLHF on GPUs."""
