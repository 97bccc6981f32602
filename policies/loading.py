"""Reading and writing policy files: kind dispatch, one-line errors, YAML round trip, schema."""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from policies.base import brief, dump_yaml, load_yaml, read_yaml_file, validate_model
from policies.batch import BatchRelease
from policies.bluegreen import BlueGreen
from policies.canary import Canary
from policies.errors import PolicyError
from policies.flagger import ABTest, Progressive
from policies.rolling import RollingUpdate

__all__ = [
    "POLICY_KINDS",
    "Policy",
    "load_policy",
    "parse_policy",
    "policy_from_yaml",
    "policy_json_schema",
    "policy_to_yaml",
]

POLICY_KINDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (Canary, BlueGreen, RollingUpdate, ABTest, Progressive, BatchRelease)
}

Policy = Annotated[
    Canary | BlueGreen | RollingUpdate | ABTest | Progressive | BatchRelease,
    Field(discriminator="kind"),
]
"""Any policy kind, told apart by its ``kind`` key."""


def parse_policy(data: Any, *, file: str | None = None, path: str = ""):
    """A validated policy from plain data (a dict from YAML or JSON)."""
    if not isinstance(data, dict):
        raise PolicyError("a policy is a mapping with kind and name", path=path, file=file)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in POLICY_KINDS:
        known = ", ".join(POLICY_KINDS)
        where = f"{path}.kind" if path else "kind"
        if kind is None and ("world" in data or "policies" in data):
            raise PolicyError(
                "is missing: this is a scenario (it has world: and policies:), not a policy;"
                " explain or validate it as a scenario (rolloutsim explain/validate FILE)",
                path=where,
                file=file,
            )
        raise PolicyError(
            f"{brief(kind)} is not a policy kind ({known}){_kind_hint(kind)}",
            path=where,
            file=file,
        )
    return validate_model(POLICY_KINDS[kind], data, file=file, path=path)


def _kind_hint(kind: Any) -> str:
    """The policy kind a misspelt one meant, or what to do with an executor's manifest kind."""
    if kind in ("Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "MetricTemplate"):
        return (
            f": a {kind} is an executor's manifest; with its apiVersion it is imported"
            " (rolloutsim import FILE, or manifest: in a scenario)"
        )
    close = difflib.get_close_matches(str(kind), list(POLICY_KINDS), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close and isinstance(kind, str) else ""


def policy_from_yaml(text: str, *, file: str | None = None):
    return parse_policy(load_yaml(text, file=file), file=file)


def load_policy(path: str | Path):
    """Load one policy file (``scenarios/policies/*.yaml``)."""
    return parse_policy(read_yaml_file(path), file=str(path))


def policy_to_yaml(policy) -> str:
    """YAML a user would write: camelCase keys, defaults left out; loads back to an equal policy."""
    return dump_yaml(policy.to_dict())


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy file (any kind), for editors and for ``rolloutsim schema``."""
    return copy.deepcopy(_policy_schema())


@functools.cache
def _policy_schema() -> dict[str, Any]:
    schema = TypeAdapter(Policy).json_schema(by_alias=True, mode="validation")
    schema["title"] = "rolloutsim policy"
    return schema
