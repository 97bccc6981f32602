"""Importing real-world-style Argo Rollout and Flagger Canary manifests, and the PromQL forms
the importers recognise."""

from __future__ import annotations

import pytest

from policies import parse_policy
from policies.errors import PolicyError
from policies.exporters import export, promql
from policies.importers import import_manifests, load_mapping, parse_map
from policies.measures import LAST_SCRAPE_S, Query

# Argo Rollouts' documentation (features/analysis): background analysis from step 2.
ARGO_DOCS_ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: guestbook
  labels: {app: guestbook}
spec:
  replicas: 5
  revisionHistoryLimit: 3
  selector:
    matchLabels: {app: guestbook}
  template:
    metadata:
      labels: {app: guestbook}
    spec:
      containers:
      - name: guestbook
        image: argoproj/rollouts-demo:blue
  strategy:
    canary:
      canaryService: guestbook-canary
      stableService: guestbook-stable
      trafficRouting:
        istio:
          virtualService:
            name: guestbook-vsvc
            routes: [primary]
      analysis:
        templates:
        - templateName: success-rate
        startingStep: 2 # delay starting analysis run until setWeight: 40%
        args:
        - name: service-name
          value: guestbook-canary.default.svc.cluster.local
      steps:
      - setWeight: 20
      - pause: {duration: 10m}
      - setWeight: 40
      - pause: {duration: 600}
      - setWeight: 60
      - pause: {duration: "600"}
      - setWeight: 80
      - pause: {}
"""

SUCCESS_RATE_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: service-name
  metrics:
  - name: success-rate
    interval: 5m
    # NOTE: prometheus queries return results in the form of a vector.
    successCondition: result[0] >= 0.95
    failureLimit: 3
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: |
          sum(rate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}",response_code!~"5.*"}[5m]
          )) /
          sum(rate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}"}[5m]
          ))
"""

EXPECTED_GUESTBOOK = {
    "kind": "Canary",
    "name": "guestbook",
    "replicas": 5,
    "trafficRouting": {"istio": {}},
    "analysis": {"startingStep": 2, "templates": [{"templateName": "success-rate"}]},
    "analysisTemplates": [
        {
            "name": "success-rate",
            "metrics": [
                {
                    "name": "success-rate",
                    "interval": 300,
                    "successCondition": "result[0] >= 0.95",
                    "failureLimit": 3,
                    # the docs' query has no NaN filter: Argo judges 0/0 by the condition
                    "provider": {
                        "query": {"measure": "successRate", "version": "canary", "nanFilter": False}
                    },
                }
            ],
        }
    ],
    "steps": [
        {"setWeight": 20},
        {"pause": {"duration": 600}},
        {"setWeight": 40},
        {"pause": {"duration": 600}},
        {"setWeight": 60},
        {"pause": {"duration": 600}},
        {"setWeight": 80},
        {"pause": {}},
    ],
}


def test_argo_docs_canary_with_template_in_the_same_yaml():
    result = import_manifests(ARGO_DOCS_ROLLOUT + "---" + SUCCESS_RATE_TEMPLATE)
    assert result.policy == parse_policy(EXPECTED_GUESTBOOK)
    ignored = "\n".join(result.ignored)
    for field in (
        "Rollout/guestbook: metadata.labels",
        "spec.template",
        "spec.selector",
        "spec.revisionHistoryLimit",
        "spec.strategy.canary.canaryService",
        "trafficRouting.istio.virtualService",
        "AnalysisTemplate/success-rate: spec.metrics[0].provider.prometheus.address",
    ):
        assert field in ignored


def test_templates_given_separately(tmp_path):
    rollout, template = tmp_path / "rollout.yaml", tmp_path / "template.yaml"
    rollout.write_text(ARGO_DOCS_ROLLOUT)
    template.write_text(SUCCESS_RATE_TEMPLATE)
    assert import_manifests([rollout, str(template)]).policy == parse_policy(EXPECTED_GUESTBOOK)
    with pytest.raises(PolicyError, match="pass its file too"):
        import_manifests(rollout)


def test_cluster_template_and_percent_query():
    rollout = ARGO_DOCS_ROLLOUT.replace(
        "- templateName: success-rate", "- templateName: success-rate\n          clusterScope: true"
    )
    template = (
        SUCCESS_RATE_TEMPLATE.replace("kind: AnalysisTemplate", "kind: ClusterAnalysisTemplate")
        .replace("result[0] >= 0.95", "result[0] >= 95")
        .replace("          ))\n", "          )) * 100\n", 1)
    )
    template = template[: template.rindex("))")] + ")) * 100\n"
    result = import_manifests(rollout + "---" + template)
    metric = result.policy.analysis_templates[0].metrics[0]
    assert metric.success_condition == "result[0] >= 95"  # as written: the query is in percent
    assert metric.provider.query.unit == "percent"
    assert any("percent" in note for note in result.notes)


def test_docs_query_with_irate_reads_as_a_rate_over_the_last_scrape():
    """Argo's docs use ``irate``: Prometheus takes the last two samples of the range, so the
    query is a rate over the last scrape interval, not over its ``[5m]``."""
    docs = SUCCESS_RATE_TEMPLATE.replace("sum(rate(", "sum(irate(")
    imported = import_manifests(ARGO_DOCS_ROLLOUT + "---" + docs)
    query = imported.policy.analysis_templates[0].metrics[0].provider.query
    assert query.window == LAST_SCRAPE_S and query.irate is not None
    mapped = import_manifests(
        ARGO_DOCS_ROLLOUT + "---" + docs, mapping=["success-rate=successRate:canary"]
    )
    expected = parse_policy(EXPECTED_GUESTBOOK).analysis_templates[0].metrics[0].provider.query
    assert mapped.policy.analysis_templates[0].metrics[0].provider.query == expected.model_copy(
        update={"window": None}
    )
    assert not expected.nan_filter  # the docs' query has none: Argo judges NaN, and so do we
    assert any("mapped explicitly" in note for note in mapped.notes)


def test_mapping_forms(tmp_path):
    assert parse_map("p95=latency:stable:0.95") == (
        "p95",
        Query(measure="latency", version="stable", quantile=0.95),
    )
    path = tmp_path / "map.yaml"
    path.write_text("errors: errorRate:canary\np99: {measure: latency}\n")
    assert load_mapping(path) == {
        "errors": Query(measure="errorRate"),
        "p99": Query(measure="latency"),
    }
    with pytest.raises(PolicyError, match="measure:version"):
        parse_map("x=bogus:canary")
    with pytest.raises(PolicyError, match="--map METRIC"):
        parse_map("no-equals-sign")


def test_argo_refuses_what_it_cannot_model_and_drops_what_its_crd_lacks():
    experiment = ARGO_DOCS_ROLLOUT.replace(
        "      - setWeight: 80", "      - experiment: {templates: []}\n      - setWeight: 80"
    )
    with pytest.raises(PolicyError, match=r"steps\[6\].experiment"):
        import_manifests(experiment + "---" + SUCCESS_RATE_TEMPLATE)
    unknown = ARGO_DOCS_ROLLOUT.replace("  replicas: 5", "  replicas: 5\n  replicasTypo: 3")
    pruned = import_manifests(unknown + "---" + SUCCESS_RATE_TEMPLATE)  # as the API server does
    assert any("spec.replicasTypo" in note and "CRD" in note for note in pruned.notes)
    with pytest.raises(PolicyError, match="exactly one Rollout"):
        import_manifests(SUCCESS_RATE_TEMPLATE)


def test_argo_bluegreen_and_fences():
    text = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: pay}
spec:
  replicas: 3
  minReadySeconds: 5
  progressDeadlineSeconds: 300
  progressDeadlineAbort: true
  strategy:
    blueGreen:
      activeService: pay
      previewService: pay-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 120
"""
    policy = import_manifests(text).policy
    assert policy == parse_policy(
        {
            "kind": "BlueGreen",
            "name": "pay",
            "replicas": 3,
            "minReadySeconds": 5,
            "progressDeadlineSeconds": 300,
            "progressDeadlineAbort": True,
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 120,
        }
    )
    basic = text.replace(
        "blueGreen:",
        "canary:\n      maxSurge: '1'\n      maxUnavailable: 0\n      steps: []\n      x-blue:",
    ).split("      x-blue:")[0]
    canary = import_manifests(basic).policy
    assert canary.max_surge == "1%" and canary.max_unavailable == 0  # Argo: strings are percent


PODINFO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: test}
spec:
  replicas: 2
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers: [{name: podinfod, image: "ghcr.io/stefanprodan/podinfo:6.0.0"}]
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: error-rate
  namespace: istio-system
spec:
  provider:
    type: prometheus
    address: http://prometheus.istio-system:9090
  query: |
    100 - sum(
        rate(
            istio_requests_total{
                reporter="destination",
                destination_workload_namespace="{{ namespace }}",
                destination_workload="{{ target }}",
                response_code!~"5.*"
            }[{{ interval }}]
        )
    )
    /
    sum(
        rate(
            istio_requests_total{
                reporter="destination",
                destination_workload_namespace="{{ namespace }}",
                destination_workload="{{ target }}"
            }[{{ interval }}]
        )
    )
    * 100
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  progressDeadlineSeconds: 60
  autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}
  service:
    port: 9898
    targetPort: 9898
    gateways: [istio-ingressgateway.istio-system.svc.cluster.local]
    hosts: [app.example.com]
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "gateway-error,connect-failure"}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 30s
    - name: error-rate
      templateRef: {name: error-rate, namespace: istio-system}
      thresholdRange: {max: 1}
      interval: 1m
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata: {type: bash, cmd: "curl -sd 'test' http://podinfo-canary:9898/token"}
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
"""


def test_flagger_podinfo_canary():
    result = import_manifests(PODINFO)
    assert result.policy == parse_policy(
        {
            "kind": "Progressive",
            "name": "podinfo",
            "replicas": 2,
            "provider": "istio",
            "progressDeadlineSeconds": 60,
            "analysis": {
                "interval": "1m",
                "threshold": 5,
                "maxWeight": 50,
                "stepWeight": 10,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": 30},
                    {
                        "name": "error-rate",
                        "thresholdRange": {"max": 1},  # as written: the query is in percent
                        "query": {"measure": "errorRate", "unit": "percent"},
                    },
                ],
                "loadTest": {"rate": 20, "concurrency": 2},  # hey -q 10 -c 2 at the canary
            },
        }
    )
    ignored = "\n".join(result.ignored)
    for field in (
        "spec.autoscalerRef",
        "spec.service.gateways",
        "webhooks[1].timeout",
        "Deployment/podinfo: spec.template",
    ):
        assert field in ignored
    assert any("thresholds are compared in percent" in n for n in result.notes)


def test_flagger_ab_test_and_refusals():
    ab = PODINFO.replace(
        "    maxWeight: 50\n    stepWeight: 10\n",
        "    iterations: 10\n    match:\n"
        "      - headers: {x-canary: {regex: '.*insider.*'}}\n"
        "      - headers: {cookie: {regex: '^(.*?;)?(canary=always)(;.*)?$'}}\n",
    )
    policy = import_manifests(ab).policy
    assert policy.kind == "ABTest" and policy.analysis.iterations == 10
    assert policy.analysis.match[1].cookie.exact == "canary"
    bluegreen = PODINFO.replace("    maxWeight: 50\n    stepWeight: 10\n", "    iterations: 10\n")
    assert import_manifests(bluegreen).policy.blue_green  # iterations without match
    gate = PODINFO.replace("type: pre-rollout", "type: confirm-promotion")
    gated = import_manifests(gate).policy.analysis.gates  # an approval gate now
    assert [(g.type, g.name) for g in gated] == [("confirm-promotion", "acceptance-test")]
    custom = PODINFO.replace("sum(\n        rate(", "sum(\n        irate(", 1)
    with pytest.raises(PolicyError, match="--map error-rate="):
        import_manifests(custom)
    mapped = import_manifests(custom, mapping={"error-rate": Query(measure="errorRate")})
    assert mapped.policy.analysis.metrics[2].query == Query(measure="errorRate")


def test_export_import_export_is_a_fixed_point():
    for text in (ARGO_DOCS_ROLLOUT + "---" + SUCCESS_RATE_TEMPLATE, PODINFO):
        first = import_manifests(text).policy
        executor = "argo" if first.kind == "Canary" else "flagger"
        from policies.exporters import Target

        again = import_manifests(
            export(first, executor, Target(service=first.name)).to_yaml()
        ).policy
        assert again == first


@pytest.mark.parametrize(
    ("text", "measure", "version", "scale"),
    [
        (
            'sum(rate(nginx_ingress_controller_requests{ingress="a",canary!="",status=~"5.."}[1m]))'
            ' / sum(rate(nginx_ingress_controller_requests{ingress="a",canary!=""}[1m]))',
            "errorRate",
            "canary",
            "fraction",
        ),
        (
            '1 - (sum(rate(nginx_ingress_controller_requests{canary="",status=~"5.*"}[1m]))'
            ' / sum(rate(nginx_ingress_controller_requests{canary=""}[1m])))',
            "successRate",
            "stable",
            "fraction",
        ),
        (
            "histogram_quantile(0.9, sum(rate(istio_request_duration_milliseconds_bucket"
            '{destination_workload="app-primary"}[5m])) by (le))',
            "latency",
            "stable",
            "milliseconds",
        ),
        (
            'sum by (server) (rate(haproxy_server_http_responses_total{proxy="be",server="canary",'
            'code="5xx"}[30s])) / sum by (server) (rate(haproxy_server_http_responses_total'
            '{proxy="be",server="canary"}[30s]))',
            "errorRate",
            "canary",
            "fraction",
        ),
        (
            'sum(increase(istio_requests_total{destination_service_name="app-canary"}[10m]))',
            "requestCount",
            "canary",
            "count",
        ),
    ],
)
def test_recognised_hand_written_forms(text, measure, version, scale):
    found = promql.recognise_form(text)
    assert (found.query.measure, found.query.version, found.scale) == (measure, version, scale)


@pytest.mark.parametrize("text", ["avg(rate(my_app_errors_total[1m]))", "not promql at all {"])
def test_unrecognised_forms(text):
    assert promql.recognise(text) is None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (  # irate: the last two samples, so a rate over the last scrape interval
            'sum(irate(istio_requests_total{destination_workload="x",response_code=~"5.."}[1m]))'
            ' / sum(irate(istio_requests_total{destination_workload="x"}[1m]))',
            {"window": LAST_SCRAPE_S, "irate": 60.0},
        ),
        (  # no canary label: both versions, the whole Ingress
            'sum(rate(nginx_ingress_controller_requests{ingress="a",status=~"5.."}[1m]))'
            ' / sum(rate(nginx_ingress_controller_requests{ingress="a"}[1m]))',
            {"version": "all", "window": 60.0},
        ),
        (  # 4xx: the world answers none, so 0 wherever there is traffic
            'sum(rate(istio_requests_total{destination_workload="x",response_code=~"4.."}[1m]))'
            ' / sum(rate(istio_requests_total{destination_workload="x"}[1m]))',
            {"window": 60.0, "errors": "4xx"},
        ),
    ],
)
def test_forms_read_as_what_prometheus_computes(text, fields):
    assert promql.recognise(text) == Query(measure="errorRate", **fields)


def test_every_written_form_reads_back():
    queries = [
        Query(measure="errorRate", window=30),
        Query(measure="successRate", version="stable", window=90),
        Query(measure="latency", quantile=0.5, window=120),
        Query(measure="requestCount", window=600),
    ]
    for source in promql.SOURCES:
        for layout in ("argo", "flagger"):
            for query in queries:
                if source == "haproxy" and query.measure == "latency":
                    with pytest.raises(ValueError, match="latency"):
                        promql.query_for(query, source)
                    continue
                if source == "apisix" and (layout == "argo" or query.version != "canary"):
                    with pytest.raises(ValueError, match="APISIX labels its metrics by route"):
                        promql.query_for(query, source, "svc", "ns", layout=layout)
                    continue
                for nan_filter in (False, True):
                    text = promql.query_for(
                        query, source, "svc", "ns", layout=layout, nan_filter=nan_filter
                    )
                    assert promql.recognise(text) == query, text
