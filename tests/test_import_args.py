"""``{{args.x}}`` in a template's interval, initialDelay, count, limits and conditions is
resolved as Argo resolves it when the run starts: the analysis reference's value, else the
template's default; an argument with neither is refused in one line naming it, as Argo refuses
the Rollout ("args.x was not resolved": InvalidSpec)."""

from __future__ import annotations

import pytest

from policies.errors import PolicyError
from policies.importers import import_manifests

TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args:
  - name: service-name
  - name: interval
    value: 30s
  - name: initial-delay
  - name: count
    value: "5"
  - name: failure-limit
  - name: threshold
    value: "0.95"
  metrics:
  - name: success-rate
    interval: "{{args.interval}}"
    initialDelay: "{{ args.initial-delay }}"
    count: "{{args.count}}"
    failureLimit: "{{args.failure-limit}}"
    successCondition: result[0] >= {{args.threshold}}
    provider:
      prometheus:
        query: >-
          sum(rate(istio_requests_total{destination_service=~"{{args.service-name}}",
          response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{
          destination_service=~"{{args.service-name}}"}[1m]))
"""
ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis:
          templates: [{templateName: success-rate}]
          args:
          - {name: service-name, value: shop-canary.default.svc.cluster.local}
          - {name: initial-delay, value: 2m}
          - {name: failure-limit, value: "2"}
          - {name: count, value: "3"}
"""


def test_arguments_resolve_from_the_reference_then_the_defaults():
    metric = import_manifests(ROLLOUT + "---" + TEMPLATE).policy.analysis_templates[0].metrics[0]
    assert metric.interval == 30  # the template's default
    assert metric.initial_delay == 120  # the reference's value
    assert metric.count == 3  # the reference's value wins over the default "5"
    assert metric.failure_limit == 2
    assert metric.success_condition == "result[0] >= 0.95"
    assert metric.provider.query.version == "canary"  # shop-canary: the canary's Service


@pytest.mark.parametrize(
    ("drop", "field", "argument"),
    [
        ("          - {name: initial-delay, value: 2m}\n", "initialDelay", "initial-delay"),
        ('          - {name: failure-limit, value: "2"}\n', "failureLimit", "failure-limit"),
    ],
)
def test_an_argument_without_a_value_is_refused_naming_it(drop, field, argument):
    with pytest.raises(PolicyError) as info:
        import_manifests(ROLLOUT.replace(drop, "") + "---" + TEMPLATE)
    message = str(info.value)
    assert "\n" not in message
    assert "AnalysisTemplate/success-rate: spec.args[" in message
    assert f"args.{argument} is not resolved" in message and "InvalidSpec" in message
    # one the template uses but does not declare: its field is named
    undeclared = TEMPLATE.replace(f"{{{{args.{argument}}}}}", "{{args.nowhere}}")
    undeclared = undeclared.replace(f"{{{{ args.{argument} }}}}", "{{args.nowhere}}")
    with pytest.raises(PolicyError, match=rf"spec\.metrics\[0\]\.{field}: argument 'nowhere'"):
        import_manifests(ROLLOUT + "---" + undeclared)


def test_a_query_argument_from_the_cluster_stays_a_placeholder_and_reads_as_both_versions():
    ref = ROLLOUT.replace(
        "          - {name: service-name, value: shop-canary.default.svc.cluster.local}\n",
        "          - {name: service-name, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n",
    )
    result = import_manifests(ref + "---" + TEMPLATE)
    query = result.policy.analysis_templates[0].metrics[0].provider.query
    assert query.version == "all"
    assert any("measures both versions together" in note for note in result.notes)
