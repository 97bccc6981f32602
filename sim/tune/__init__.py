"""Tuning (DESIGN §6): search spaces and objectives, the selection procedure with its guarantee,
the search that runs it through the runner, and the tune report."""
