"""Runs (DESIGN §6): scenario files, the run options shared by run, sweep and tune, the Monte
Carlo runner on any backend, summaries and paired comparisons of its frame, a scenario run into
its report folder and sweeps over a grid, and atomic files for everything they write."""
