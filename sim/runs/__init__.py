"""Runs (DESIGN §6): scenario files, the Monte Carlo runner on any backend, summaries and paired
comparisons of its frame, sweeps over a grid, and atomic files for everything they write."""
