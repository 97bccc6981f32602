"""Settings shared by the whole suite: hypothesis runs the same examples on every run.

The property tests (hypothesis) run under the ``deterministic`` profile by default
(``derandomize=True``): the examples are drawn from a seed derived from each test, so a run
that passed passes again on any machine, and a failure in CI is the one you get locally. No
example database is read or written, so an earlier failure on one machine cannot make the
suite fail on that machine only.

To look for new counterexamples instead, opt in to the ``explore`` profile::

    HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest -n 0 tests/test_traffic.py

It draws fresh random examples on every run, ten times as many where a test does not set its
own ``max_examples``, and keeps failures in the local example database (``.hypothesis/``) to
replay them first next time. A counterexample it finds belongs in the test as an
``@example(...)``, so that the deterministic run checks it from then on.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
