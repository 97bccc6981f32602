"""What identifies a run: the digest of what its numbers are made from, and the package version.

One recipe, used wherever a run is written or read back (the report's provenance, a sweep cell or
run resumed from its folder, a scenario's own digest), so two places never disagree on "the same
run"."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["package_version", "run_digest"]


def run_digest(world: dict[str, Any], policies: dict[str, Any], seed: int) -> str:
    """A short hash of a run's world, policies (YAML-shaped dicts) and seed."""
    data = {"world": world, "policies": policies, "seed": seed}
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def package_version() -> str:
    """rolloutsim's installed version ("unknown" when run from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rolloutsim")
    except PackageNotFoundError:
        return "unknown"
