"""Reporting (layer 3): tables, plots and the README block, from the scores of every judge."""
