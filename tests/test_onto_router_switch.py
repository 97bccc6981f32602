"""``export --onto`` when the edit moves an arg to another place in a query (a user review).

The team's nginx Rollout passes ``service-name: payments-api-canary`` (its canary Service, read
by ``service="..."``) to a background and a step analysis. Switched to ``istio: {}``, the
queries select canary pods by name, ``pod=~"{{args.service-name}}-{{args.canary-hash}}-.+"``:
every analysis must then pass the Rollout's name, or the background query finds no pod,
each measurement is an Error and the rollout aborts.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from policies import onto, parse_policy
from policies.errors import PolicyError
from policies.importers import import_manifests
from policies.loading import policy_to_yaml
from policies.onto import export_onto

ROLLOUT = """\
# payments-api canary, owned by team-payments
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: payments-api
  namespace: payments
spec:
  replicas: 8
  selector:
    matchLabels:
      app: payments-api
  template:
    metadata:
      labels:
        app: payments-api
    spec:
      containers:
        - name: payments-api
          image: registry.example.com/payments-api:1.4.2
  strategy:
    canary:
      canaryService: payments-api-canary
      stableService: payments-api-stable
      maxUnavailable: 0
      trafficRouting:
        nginx:
          stableIngress: payments-api
      analysis:
        templates:
          - templateName: success-rate
        startingStep: 2
        args:
          - name: service-name
            value: payments-api-canary
          - name: namespace
            value: payments
      steps:
        - setWeight: 5
        - pause: {duration: 2m}
        - analysis:
            templates:
              - templateName: latency-p99
            args:
              - name: service-name
                value: payments-api-canary
        - setWeight: 50
        - pause: {}
"""

SUCCESS_RATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
  namespace: payments
spec:
  args:
    - name: service-name
    - name: namespace
  metrics:
    - name: success-rate
      interval: 1m
      count: 10
      failureLimit: 2
      successCondition: result[0] >= 0.99
      provider:
        prometheus:
          address: http://prometheus.monitoring:9090
          query: |
            sum(rate(nginx_ingress_controller_requests{canary!="",service="{{args.service-name}}",status!~"5.*"}[1m]))
            /
            sum(rate(nginx_ingress_controller_requests{canary!="",service="{{args.service-name}}"}[1m]))
"""

LATENCY = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: latency-p99
  namespace: payments
spec:
  args:
    - name: service-name
  metrics:
    - name: latency-p99
      interval: 30s
      count: 4
      failureLimit: 1
      successCondition: result[0] < 0.5
      provider:
        prometheus:
          address: http://prometheus.monitoring:9090
          query: |
            histogram_quantile(0.99, sum(rate(
              nginx_ingress_controller_request_duration_seconds_bucket{service="{{args.service-name}}"}[1m]
            )) by (le))
"""

FILES = [ROLLOUT, SUCCESS_RATE + "---\n" + LATENCY]
HASHES = {
    "canary-hash": {"podTemplateHashValue": "Latest"},
    "stable-hash": {"podTemplateHashValue": "Stable"},
}


def _data(files: list[str]) -> dict[str, Any]:
    return yaml.safe_load(policy_to_yaml(import_manifests(files).policy))


def _istio() -> dict[str, Any]:
    data = _data(FILES)
    data["trafficRouting"] = {"istio": {}}
    return data


def _passed(args: list[dict]) -> dict[str, Any]:
    return {a["name"]: a.get("value", a.get("valueFrom")) for a in args}


def _canary(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)["spec"]["strategy"]["canary"]


def test_a_router_switch_passes_the_rollouts_name_to_every_analysis() -> None:
    data = _istio()
    result = export_onto(parse_policy(data), FILES)
    canary = _canary(result.files["manifest-1.yaml"])
    wanted = {"service-name": "payments-api", "namespace": "payments", **HASHES}
    assert _passed(canary["analysis"]["args"]) == wanted  # the background analysis
    assert _passed(canary["steps"][2]["analysis"]["args"]) == wanted
    for template in yaml.safe_load_all(result.files["manifest-2.yaml"]):
        query = template["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
        assert 'pod=~"{{args.service-name}}-{{args.canary-hash}}-.+"' in query
    assert import_manifests(list(result.files.values())).policy == parse_policy(data)


def test_an_arg_whose_place_stays_keeps_the_documents_value() -> None:
    # a window swapped inside the team's own query: service= still reads the canary Service
    data = _data(FILES)
    data["analysisTemplates"][0]["metrics"][0]["provider"]["query"]["window"] = "5m"
    result = export_onto(parse_policy(data), FILES)
    assert result.changed == ["manifest-2.yaml"]
    assert result.files["manifest-1.yaml"] == ROLLOUT
    assert 'service="{{args.service-name}}"}[5m]' in result.files["manifest-2.yaml"]


def test_a_new_query_on_the_same_router_takes_its_args_too() -> None:
    # the metric written whole as E1's nginx query, which reads the arg as the Ingress's name
    data = _data(FILES)
    metric = data["analysisTemplates"][0]["metrics"][0]
    metric["provider"]["query"]["measure"] = "errorRate"
    metric["successCondition"] = "result[0] <= 0.01"
    result = export_onto(parse_policy(data), FILES)
    canary = _canary(result.files["manifest-1.yaml"])
    assert _passed(canary["analysis"]["args"])["service-name"] == "payments-api"
    # the step's template keeps its own query, so its analysis keeps the canary Service
    assert _passed(canary["steps"][2]["analysis"]["args"]) == {
        "service-name": "payments-api-canary"
    }


def test_an_arg_read_both_ways_by_one_template_is_refused() -> None:
    # one template measuring both: a new success query, the team's own latency query
    step = ROLLOUT.index("        - analysis:")
    rollout = ROLLOUT[:step] + ROLLOUT[ROLLOUT.index("        - setWeight: 50") :]
    files = [rollout, SUCCESS_RATE + LATENCY[LATENCY.index("    - name: latency-p99\n") :]]
    data = _data(files)
    changed = data["analysisTemplates"][0]["metrics"][0]
    changed["provider"]["query"]["measure"] = "errorRate"
    changed["successCondition"] = "result[0] <= 0.01"
    with pytest.raises(PolicyError, match=r"arg service-name .* own query"):
        export_onto(parse_policy(data), files)


def test_bluegreen_pre_promotion_args_follow_the_new_query() -> None:
    rollout = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: storefront
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: storefront}
  template:
    metadata:
      labels: {app: storefront}
    spec:
      containers:
      - name: storefront
        image: registry.example.com/storefront:3.1.0
  strategy:
    blueGreen:
      activeService: storefront-active
      previewService: storefront-preview
      autoPromotionEnabled: false
      prePromotionAnalysis:
        templates:
        - templateName: smoke
        args: [{name: service-name, value: storefront-preview}]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: smoke
  namespace: shop
spec:
  args: [{name: service-name}]
  metrics:
  - name: smoke-errors
    count: 3
    interval: 30s
    successCondition: result[0] <= 0.01
    provider:
      prometheus:
        address: http://prometheus.monitoring:9090
        query: |
          sum(rate(istio_requests_total{destination_service_name="{{args.service-name}}",response_code=~"5.*"}[1m]))
          / sum(rate(istio_requests_total{destination_service_name="{{args.service-name}}"}[1m]))
"""
    data = _data([rollout])
    metric = data["analysisTemplates"][0]["metrics"][0]
    metric["provider"]["query"]["measure"] = "successRate"
    metric["successCondition"] = "result[0] >= 0.99"
    result = export_onto(parse_policy(data), [rollout])
    bg = next(yaml.safe_load_all(result.files["manifest-1.yaml"]))["spec"]["strategy"]
    args = _passed(bg["blueGreen"]["prePromotionAnalysis"]["args"])
    assert args["service-name"] == "storefront"
    assert args["canary-hash"] == HASHES["canary-hash"]


def test_the_check_refuses_a_pod_matcher_that_fits_no_pod(monkeypatch) -> None:
    # the args written as before the fix: the read-back import cannot tell, this check can
    monkeypatch.setattr(onto, "_pass_args", lambda *_: False, raising=False)
    with pytest.raises(PolicyError, match=r"payments-api-canary-\{\{args.canary-hash\}\}"):
        export_onto(parse_policy(copy.deepcopy(_istio())), FILES)
