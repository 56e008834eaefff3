"""genrm: train generative reward models (pairwise judges) and score them on RewardBench."""

__version__ = "0.1.0"
