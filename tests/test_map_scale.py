"""A query's scale, from the manifest or from ``--map``: conditions are compared in it.

Linkerd's success rate is in percent and its latency in milliseconds (``response_total``,
``response_latency_ms_bucket``): ``result[0] >= 99`` and ``result[0] <= 500`` are imported as
written and judged in those units, so a good release passes and a bad one fails. A metric the
importer cannot read (another provider, an Argo metric plugin) is refused in one line that says
how to map it, with its unit.
"""

from __future__ import annotations

import pytest

from policies.analysis import AnalysisRun, Phase
from policies.errors import PolicyError
from policies.exporters import Target, export
from policies.importers import MAP_SYNTAX, import_manifests, load_mapping, parse_map
from policies.measures import Observation, Query, WindowStats

ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: podinfo}
spec:
  replicas: 4
  strategy:
    canary:
      canaryService: podinfo-canary
      stableService: podinfo-stable
      trafficRouting:
        smi: {rootService: podinfo}
      steps:
      - setWeight: 20
      - analysis:
          templates: [{templateName: linkerd}]
          args:
          - {name: hash, valueFrom: {podTemplateHashValue: Latest}}
      - setWeight: 60
"""

LINKERD_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: linkerd}
spec:
  args: [{name: hash}]
  metrics:
  - name: success-rate
    interval: 1m
    count: 3
    successCondition: result[0] >= 99
    provider:
      prometheus:
        address: http://prometheus:9090
        query: |
          sum(rate(response_total{namespace="test", direction="inbound",
            pod=~"podinfo-{{args.hash}}-.+", classification!="failure"}[1m]))
          / sum(rate(response_total{namespace="test", direction="inbound",
            pod=~"podinfo-{{args.hash}}-.+"}[1m])) * 100
  - name: latency
    interval: 1m
    count: 3
    successCondition: result[0] <= 500
    provider:
      prometheus:
        address: http://prometheus:9090
        query: |
          histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="test",
            direction="inbound", pod=~"podinfo-{{args.hash}}-.+"}[1m])) by (le))
"""


def _observation(errors: int, p99_s: float) -> Observation:
    canary = WindowStats(requests=1000, errors=errors, latency={0.99: p99_s}, has_series=True)
    return Observation(0.0, 60.0, canary, WindowStats(requests=4000, has_series=True))


def _judge(policy, errors: int, p99_s: float) -> dict[str, Phase]:
    run = AnalysisRun(policy.analysis_templates)
    obs = _observation(errors, p99_s)
    return {name: run.measure(name, obs) for name in ("success-rate", "latency")}


def test_linkerd_percent_and_milliseconds_are_judged_as_written():
    result = import_manifests(ROLLOUT + "---" + LINKERD_TEMPLATE)
    rate, latency = result.policy.analysis_templates[0].metrics
    assert rate.success_condition == "result[0] >= 99"  # as the manifest wrote it
    assert latency.success_condition == "result[0] <= 500"
    assert rate.provider.query == Query(measure="successRate", unit="percent", nan_filter=False)
    assert latency.provider.query == Query(measure="latency", unit="milliseconds", nan_filter=False)
    assert any("compared in percent" in note for note in result.notes)
    good = _judge(result.policy, errors=1, p99_s=0.2)  # 99.9 %, 200 ms
    assert good == {"success-rate": Phase.SUCCESSFUL, "latency": Phase.SUCCESSFUL}
    bad = _judge(result.policy, errors=50, p99_s=0.6)  # 95 %, 600 ms
    assert bad == {"success-rate": Phase.FAILED, "latency": Phase.FAILED}


def test_the_scale_survives_export_and_import():
    first = import_manifests(ROLLOUT + "---" + LINKERD_TEMPLATE).policy
    written = export(first, "argo", Target(service=first.name)).to_yaml()
    assert "result[0] >= 99" in written and "100 * (" in written
    assert import_manifests(written).policy == first


def test_map_states_the_scale():
    averaged = LINKERD_TEMPLATE.replace("sum(rate(", "avg(rate(")  # an average: no form
    with pytest.raises(PolicyError) as info:
        import_manifests(ROLLOUT + "---" + averaged)
    message = str(info.value)
    assert "\n" not in message and MAP_SYNTAX in message and ":percent" in message
    unscaled = import_manifests(
        ROLLOUT + "---" + averaged, mapping=["success-rate=successRate", "latency=latency"]
    )
    assert any("with 99, not a fraction value: add :percent" in n for n in unscaled.notes)
    assert any("with 500, not a seconds value: add :ms" in n for n in unscaled.notes)
    recognised = import_manifests(
        ROLLOUT + "---" + LINKERD_TEMPLATE, mapping=["success-rate=successRate"]
    )
    assert any("returns percent, the mapping says fraction" in n for n in recognised.notes)
    mapped = import_manifests(
        ROLLOUT + "---" + averaged,
        mapping=["success-rate=successRate:canary:percent", "latency=latency:canary:0.99:ms"],
    )
    rate, latency = mapped.policy.analysis_templates[0].metrics
    assert rate.provider.query.unit == "percent" and latency.provider.query.unit == "milliseconds"
    assert rate.success_condition == "result[0] >= 99"
    assert not any("add :" in note for note in mapped.notes)
    good = _judge(mapped.policy, errors=1, p99_s=0.2)
    assert good == {"success-rate": Phase.SUCCESSFUL, "latency": Phase.SUCCESSFUL}


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("sr=successRate:canary:percent", Query(measure="successRate", unit="percent")),
        ("sr=successRate:canary:%", Query(measure="successRate", unit="percent")),
        ("er=errorRate:stable:fraction", Query(measure="errorRate", version="stable")),
        ("p99=latency:canary:0.99:ms", Query(measure="latency", unit="milliseconds")),
        ("p95=latency:canary:ms", Query(measure="latency", unit="milliseconds")),
        ("p95=latency:stable:0.95", Query(measure="latency", version="stable", quantile=0.95)),
        ("p9=latency:canary:s:0.9", Query(measure="latency", quantile=0.9)),
        ("n=requestCount", Query(measure="requestCount")),
    ],
)
def test_map_spellings(text, query):
    assert parse_map(text)[1] == query


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x=latency:canary:percent", "unit percent is not one of latency's"),
        ("x=requestCount:canary:ms", "not one of requestCount's"),
        ("x=latency:canary:0.9:0.8", "quantile given twice"),
        ("x=latency:canary:fast", "'fast' is neither a quantile nor a unit"),
        ("x=successRate:canary:percent:ms:0.9", "too many"),
    ],
)
def test_bad_map_is_one_line(text, why):
    with pytest.raises(PolicyError, match=why) as info:
        parse_map(text)
    assert "\n" not in str(info.value)


def test_a_scenario_map_uses_the_same_parser(tmp_path):
    scenario_map = {"sr": "successRate:canary:percent", "p99": {"measure": "latency", "unit": "ms"}}
    assert load_mapping(scenario_map) == {
        "sr": Query(measure="successRate", unit="percent"),
        "p99": Query(measure="latency", unit="milliseconds"),
    }
    path = tmp_path / "map.yaml"
    path.write_text("sr: successRate:canary:percent\n")
    assert load_mapping(path) == {"sr": Query(measure="successRate", unit="percent")}


PLUGIN_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: linkerd}
spec:
  metrics:
  - name: success-rate
    interval: 1m
    count: 3
    successCondition: result >= 99
    provider:
      plugin:
        argoproj-labs/sample-prometheus:
          address: http://prometheus:9090
          query: some query
"""


def test_an_argo_metric_plugin_needs_map():
    with pytest.raises(PolicyError) as info:
        import_manifests(ROLLOUT + "---" + PLUGIN_TEMPLATE)
    message = str(info.value)
    assert "metric plugin argoproj-labs/sample-prometheus is a metric that needs `map:`" in message
    assert "--map success-rate=" in message and "\n" not in message
    mapped = import_manifests(
        ROLLOUT + "---" + PLUGIN_TEMPLATE, mapping=["success-rate=successRate:canary:%"]
    )
    metric = mapped.policy.analysis_templates[0].metrics[0]
    assert metric.provider.query == Query(measure="successRate", unit="percent")
    assert any("metric plugin argoproj-labs/sample-prometheus mapped" in n for n in mapped.notes)
    datadog = PLUGIN_TEMPLATE.replace(
        "plugin:\n        argoproj-labs/sample-prometheus:", "datadog:\n        x:"
    )
    with pytest.raises(PolicyError, match="provider datadog is a metric that needs `map:`"):
        import_manifests(ROLLOUT + "---" + datadog)


CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: nginx
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}
  service: {port: 80}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
    - name: request-duration
      thresholdRange: {max: 500}
    - name: p95
      templateRef: {name: datadog-p95}
      thresholdRange: {max: 300}
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: datadog-p95, namespace: test}
spec:
  provider: {type: datadog, address: https://api.datadoghq.com}
  query: p95:trace.http.request.duration{service:podinfo-canary}
"""


def test_flagger_builtins_and_a_datadog_template():
    with pytest.raises(PolicyError, match="provider datadog is a metric that needs `map:`"):
        import_manifests(CANARY)
    unscaled = import_manifests(CANARY, mapping=["p95=latency:canary:0.95"])
    assert any("with 300, not a seconds value: add :ms" in n for n in unscaled.notes)
    result = import_manifests(CANARY, mapping=["p95=latency:canary:0.95:ms"])
    metrics = result.policy.analysis.metrics
    assert metrics[2].query == Query(measure="latency", quantile=0.95, unit="milliseconds")
    assert metrics[2].threshold_range.max == 300  # as written: compared in ms
    notes = "\n".join(result.notes)
    assert "whole Ingress" not in notes  # since Flagger 1.15 its success rate is the canary's
    assert "request-duration: Flagger's nginx built-in is the canary's mean ms" in notes
    good = Observation(0, 60, WindowStats(1000, 1, {0.95: 0.25, 0.99: 0.3}), WindowStats())
    slow = Observation(0, 60, WindowStats(1000, 1, {0.95: 0.35, 0.99: 0.4}), WindowStats())
    assert metrics[2].check(good) and not metrics[2].check(slow)
