""" "Exactly one of these optional fields" models read as one typed value (issue: one house).

A canary step's action and a metric's provider keep the executors' YAML shape (one optional
key each), and code matches on ``CanaryStep.operation`` / ``Provider.source``, whose unions
``match`` statements check for exhaustiveness (mypy). These tests keep the unions and the fields
in step: a new action or source field that the union does not name fails here.
"""

from __future__ import annotations

import typing

import pytest

from policies import CanaryStep, Provider
from policies.analysis import Source
from policies.canary import STEP_ACTIONS, StepOperation


def _types(union) -> set[type]:
    return set(typing.get_args(union))


def _field_types(model, names) -> set[type]:
    hints = typing.get_type_hints(model)
    found = set()
    for name in names:
        found |= {t for t in typing.get_args(hints[name]) if t is not type(None)}
    return found


def test_every_step_action_is_in_the_union() -> None:
    assert _field_types(CanaryStep, STEP_ACTIONS) == _types(StepOperation)
    assert set(STEP_ACTIONS) == set(CanaryStep.model_fields)


def test_every_provider_source_is_in_the_union() -> None:
    assert _field_types(Provider, Provider.model_fields) == _types(Source)


@pytest.mark.parametrize(
    ("yaml_step", "kind"),
    [
        ({"setWeight": 20}, int),
        ({"pause": {"duration": "5m"}}, "Pause"),
        ({"pause": {}}, "Pause"),
        ({"analysis": {"templates": [{"templateName": "t"}]}}, "RolloutAnalysis"),
        ({"setCanaryScale": {"replicas": 2}}, "SetCanaryScale"),
        ({"setHeaderRoute": {"name": "r"}}, "SetHeaderRoute"),
    ],
)
def test_operation_is_the_one_action_given(yaml_step, kind) -> None:
    step = CanaryStep.model_validate(yaml_step)
    value = step.operation
    assert value is getattr(step, step.action)
    assert (type(value) is int) if kind is int else type(value).__name__ == kind


def test_source_is_the_one_source_given() -> None:
    for data, name in [
        ({"query": {"measure": "errorRate"}}, "Query"),
        ({"sequential": {"test": "sprt"}}, "SequentialTest"),
    ]:
        provider = Provider.model_validate(data)
        assert type(provider.source).__name__ == name
