"""The recognised PromQL forms: the executors' and meshes' standard queries, read in their unit.

Flagger's built-in queries below are its ``pkg/metrics/observers/*.go`` (fluxcd/flagger), rendered
for a canary ``podinfo`` in namespace ``test`` (target ``podinfo``, ingress/route ``podinfo``), the
text its observer tests assert. What ``query_for`` writes is read back as the same ``Query``, for
every source, layout, measure, version, unit and NaN filter (a property test); in Flagger's layout
with the selectors of Flagger's own observers.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.exporters import promql
from policies.measures import LAST_SCRAPE_S, UNITS, Observation, Query, WindowStats

POD = "[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"


def _ratio(metric: str, sel: str, bad: str, times: str = " * 100", window: str = "1m") -> str:
    """Flagger's success-rate shape: ``sum(rate(m{sel, bad}[w])) / sum(rate(m{sel}[w])) * 100``."""
    return (
        f"sum( rate( {metric}{{ {sel}, {bad} }}[{window}] ) ) / "
        f"sum( rate( {metric}{{ {sel} }}[{window}] ) ){times}"
    )


def _p99(bucket: str, sel: str, window: str = "1m") -> str:
    return f"histogram_quantile( 0.99, sum( rate( {bucket}{{ {sel} }}[{window}] ) ) by (le) )"


_ISTIO = (
    'reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo"'
)
_LINKERD = 'namespace="test", deployment=~"podinfo", direction="inbound"'
_APPMESH = f'kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-{POD}"'
_CONTOUR = 'envoy_cluster_name=~"test_podinfo-canary_[0-9a-zA-Z-]+"'
_GLOO = 'envoy_cluster_name=~"test-podinfo-canary-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"'
_KUMA = 'service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+"'
_TRAEFIK = 'exported_service=~"test-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd"'
_APISIX = 'route=~"test_podinfo-podinfo-canary_.+"'
_SKIPPER = 'route=~"kube(ew)?_test__podinfo_canary__.*__podinfo_canary(_[0-9]+)?"'
_OSM = 'destination_namespace="test", destination_kind="Deployment", destination_name="podinfo"'
_HTTP = f'kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-{POD}"'
_NGINX = 'namespace="test", ingress="podinfo", canary!=""'

FLAGGER_BUILTINS = {
    # provider: (request-success-rate, request-duration or None when it is no quantile)
    "istio": (
        _ratio("istio_requests_total", _ISTIO, 'response_code!~"5.*"'),
        _p99("istio_request_duration_milliseconds_bucket", _ISTIO),
    ),
    "linkerd": (
        _ratio("response_total", _LINKERD, 'classification!="failure"'),
        _p99("response_latency_ms_bucket", _LINKERD),
    ),
    "appmesh": (
        _ratio("envoy_cluster_upstream_rq", _APPMESH, 'envoy_response_code!~"5.*"'),
        _p99("envoy_cluster_upstream_rq_time_bucket", _APPMESH),
    ),
    "contour": (
        _ratio("envoy_cluster_upstream_rq", _CONTOUR, 'envoy_response_code!~"5.*"'),
        _p99("envoy_cluster_upstream_rq_time_bucket", _CONTOUR),
    ),
    "gloo": (
        _ratio("envoy_cluster_upstream_rq", _GLOO, 'envoy_response_code!~"5.*"'),
        _p99("envoy_cluster_upstream_rq_time_bucket", _GLOO),
    ),
    "kuma": (
        _ratio("envoy_cluster_upstream_rq", _KUMA, 'envoy_response_code!~"5.*"'),
        _p99("envoy_cluster_upstream_rq_time_bucket", _KUMA),
    ),
    "traefik": (
        _ratio(
            "traefik_service_request_duration_seconds_bucket",
            _TRAEFIK + ', le="+Inf"',
            'code!~"5.."',
        ),
        _p99("traefik_service_request_duration_seconds_bucket", _TRAEFIK),
    ),
    "apisix": (
        _ratio("apisix_http_status", _APISIX, 'code!~"5.."'),
        _p99("apisix_http_latency_bucket", 'type=~"request", ' + _APISIX),
    ),
    "skipper": (
        _ratio("skipper_response_duration_seconds_bucket", _SKIPPER + ', le="+Inf"', 'code!~"5.."'),
        None,  # the mean of skipper_serve_route_duration_seconds: no quantile
    ),
    "osm": (
        _ratio("osm_request_total", _OSM, 'response_code!~"5.*"'),
        _p99("osm_request_duration_ms_bucket", _OSM),
    ),
    "kubernetes": (
        _ratio("http_request_duration_seconds_count", _HTTP, 'status!~"5.*"'),
        _p99("http_request_duration_seconds_bucket", _HTTP),
    ),
    "nginx": (
        _ratio("nginx_ingress_controller_requests", _NGINX, 'status!~"5.*"'),
        None,  # the mean of ..._ingress_upstream_latency_seconds: no quantile
    ),
}
_LATENCY_UNIT = {
    "istio": "milliseconds",
    "linkerd": "milliseconds",
    "appmesh": "milliseconds",
    "contour": "milliseconds",
    "gloo": "milliseconds",
    "kuma": "milliseconds",
    "apisix": "milliseconds",
    "osm": "milliseconds",
    "traefik": None,  # seconds: the natural unit
    "kubernetes": None,
}


@pytest.mark.parametrize("provider", sorted(FLAGGER_BUILTINS))
def test_every_flagger_builtin_success_rate_is_the_canarys_in_percent(provider):
    found = promql.recognise_form(FLAGGER_BUILTINS[provider][0])
    assert found is not None
    assert found.scale == "percent"
    assert found.query == Query(measure="successRate", window=60, unit="percent")
    assert not found.nan_filter


@pytest.mark.parametrize("provider", sorted(_LATENCY_UNIT))
def test_every_flagger_builtin_p99_is_the_canarys_in_its_unit(provider):
    found = promql.recognise_form(FLAGGER_BUILTINS[provider][1])
    unit = _LATENCY_UNIT[provider]
    assert found is not None and found.scale == (unit or "seconds")
    expected = Query(measure="latency", quantile=0.99, window=60, unit=unit)
    assert found.query == expected


def test_mean_latencies_and_revision_clusters_are_no_form():
    upstream = "nginx_ingress_controller_ingress_upstream_latency_seconds"
    mean = (
        f"sum(rate({upstream}_sum{{{_NGINX}}}[1m]))"
        f" / sum(rate({upstream}_count{{{_NGINX}}}[1m])) * 1000"
    )
    knative = _ratio(
        "envoy_cluster_upstream_rq",
        'envoy_cluster_name=~"test/podinfo-00002"',
        'envoy_response_code!~"5.*"',
    )
    assert promql.recognise_form(mean) is None
    assert promql.recognise_form(knative) is None  # a revision name tells no version


@pytest.mark.parametrize(
    ("text", "query"),
    [
        (  # Envoy's standard 5xx class over its request total
            'sum(rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",'
            ' envoy_cluster_name="outbound|80||podinfo-canary.test.svc.cluster.local"}[5m]))'
            " / sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name="
            '"outbound|80||podinfo-canary.test.svc.cluster.local"}[5m]))',
            Query(measure="errorRate", window=300),
        ),
        (  # HAProxy's backend counters, a backend per version
            '100 * sum(rate(haproxy_backend_http_responses_total{proxy="podinfo-stable",'
            ' code="5xx"}[2m])) / sum(rate(haproxy_backend_http_responses_total'
            '{proxy="podinfo-stable"}[2m]))',
            Query(measure="errorRate", version="stable", window=120, unit="percent"),
        ),
        (  # Linkerd's failures, Argo layout (the pod by its ReplicaSet hash)
            'sum(rate(response_total{namespace="test", direction="inbound",'
            ' pod=~"podinfo-{{args.canary-hash}}-.+", classification="failure"}[1m]))'
            ' / sum(rate(response_total{namespace="test", direction="inbound",'
            ' pod=~"podinfo-{{args.canary-hash}}-.+"}[1m]))',
            Query(measure="errorRate", window=60),
        ),
        (  # Istio before 1.8: a seconds histogram
            "histogram_quantile(0.9, sum by (le) (rate(istio_request_duration_seconds_bucket"
            '{destination_workload="podinfo-primary"}[30s])))',
            Query(measure="latency", version="stable", quantile=0.9, window=30),
        ),
        (  # ingress-nginx latency in ms, canary backend
            "1000 * histogram_quantile(0.95, sum by (le) (rate("
            "nginx_ingress_controller_request_duration_seconds_bucket"
            '{ingress="a", canary!=""}[1m])))',
            Query(measure="latency", quantile=0.95, window=60, unit="milliseconds"),
        ),
        (  # Traefik's own request counter
            'sum(rate(traefik_service_requests_total{service="test-podinfo-canary-80@kubernetes",'
            ' code=~"5.."}[1m])) / sum(rate(traefik_service_requests_total'
            '{service="test-podinfo-canary-80@kubernetes"}[1m]))',
            Query(measure="errorRate", window=60),
        ),
    ],
)
def test_standard_metrics_of_meshes_and_proxies(text, query):
    assert promql.recognise(text) == query


def test_a_histogram_bucket_counts_requests_only_at_le_inf():
    text = _ratio(
        "traefik_service_request_duration_seconds_bucket", _TRAEFIK, 'code!~"5.."', times=""
    )
    assert promql.recognise_form(text) is None  # every bucket summed: not a request count


_WINDOWS = st.sampled_from([1.5, 30.0, 60.0, 90.0, 600.0, 3600.0])


@st.composite
def _queries(draw) -> Query:
    measure = draw(st.sampled_from(sorted(UNITS)))
    units = (None, *UNITS[measure][1:])
    rate = measure in ("errorRate", "successRate")
    versions = ["canary", "stable"] + ([] if measure == "latency" else ["all"])
    fields = {
        "measure": measure,
        "version": draw(st.sampled_from(versions)),
        "quantile": draw(st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]))
        if measure == "latency"
        else 0.99,
        "window": draw(_WINDOWS),
        "unit": draw(st.sampled_from(units)),
        "nan_filter": draw(st.booleans()),
    }
    if measure != "requestCount" and draw(st.booleans()):
        fields["irate"] = draw(_WINDOWS)
    if rate:
        fields["errors"] = draw(st.sampled_from(["5xx", "4xx", "404", "4xx+5xx"]))
        fields["min_rate"] = draw(st.sampled_from([None, 1.0, 0.5]))
    return Query(**fields)


def _cannot(query: Query, source: str, layout: str) -> bool:
    """The sources that cannot write ``query`` (and say why with ValueError)."""
    if source == "haproxy" and (query.measure == "latency" or query.errors == "404"):
        return True
    if source == "apisix":  # by route only: Flagger's canary route, no primary's, no Argo's
        return layout == "argo" or query.version != "canary"
    return source == "linkerd" and query.errors != "5xx"


@given(
    query=_queries(),
    source=st.sampled_from(promql.SOURCES),
    layout=st.sampled_from(["argo", "flagger"]),
)
def test_what_is_written_is_read_back(query, source, layout):
    """forms x measures: ``recognise(query_for(q)) == q`` for every source that can measure q:
    versions (both together too), rate or irate, the errors counted, clamp_min."""
    try:
        text = promql.query_for(
            query, source, "svc", "ns", layout=layout, nan_filter=query.nan_filter
        )
    except ValueError as exc:
        assert _cannot(query, source, layout), exc
        return
    assert not _cannot(query, source, layout), text
    found = promql.recognise_form(text)
    assert found is not None, text
    if query.measure == "latency":  # a quantile is written with repr: read back exactly
        assert found.query.quantile == query.quantile
    assert found.query == query.model_copy(update={"nan_filter": True}), text
    assert found.nan_filter == query.nan_filter and found.source == source


def test_query_for_writes_the_query_in_its_unit():
    percent = Query(measure="successRate", window=60, unit="percent")
    text = promql.query_for(percent, "linkerd", "podinfo", "test", layout="flagger")
    assert text.startswith("100 * (") and 'classification!="failure"' in text
    ms = Query(measure="latency", window=60, unit="milliseconds")
    assert "/ 1000" not in promql.query_for(ms, "istio")  # Istio's histogram is in ms
    assert promql.query_for(ms, "nginx").startswith("1000 * ")
    assert promql.query_for(ms, "istio", scale="seconds").endswith(" / 1000")  # scale wins


def test_a_query_evaluates_in_its_unit():
    stats = WindowStats(requests=1000, errors=3, latency={0.99: 0.25})
    obs = Observation(0, 60, stats, stats)
    assert Query(measure="successRate").evaluate(obs) == pytest.approx(0.997)
    assert Query(measure="successRate", unit="percent").evaluate(obs) == pytest.approx(99.7)
    assert Query(measure="errorRate", unit="percent").evaluate(obs) == pytest.approx(0.3)
    assert Query(measure="latency", unit="milliseconds").evaluate(obs) == pytest.approx(250)
    assert Query(measure="requestCount").evaluate(obs) == 1000
    empty = Observation(0, 60, WindowStats(), WindowStats())
    assert math.isnan(Query(measure="successRate", unit="percent").evaluate(empty))


def test_the_natural_unit_is_no_unit_and_a_wrong_unit_is_refused():
    assert Query(measure="errorRate", unit="fraction") == Query(measure="errorRate")
    assert Query(measure="latency", unit="seconds").to_dict() == {"measure": "latency"}
    for measure, unit in (("latency", "percent"), ("errorRate", "milliseconds")):
        with pytest.raises(ValueError, match=f"unit {unit} is not one of {measure}'s"):
            Query(measure=measure, unit=unit)
    with pytest.raises(ValueError, match="none"):
        Query(measure="requestCount", unit="percent")


def test_hashed_sources_are_those_whose_argo_queries_name_the_hashes():
    query = Query(measure="errorRate", window=60)
    for source in promql.SOURCES:
        if source not in promql.ARGO_SOURCES:
            with pytest.raises(ValueError, match="no label tells the versions apart"):
                promql.query_for(query, source)
            continue
        text = promql.query_for(query, source)
        assert (promql.argo_arg(promql.ARG_CANARY_HASH) in text) == (
            source in promql.HASHED_SOURCES
        )
    assert set(promql.SOURCES) - set(promql.ARGO_SOURCES) == {"apisix"}


_OBSERVER_SELECTORS = {
    # Flagger's observers' selectors, rendered for podinfo in test (route podinfo): what its
    # custom queries over the provider's own metrics are written with
    "traefik": 'service=~"test-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd"',
    "apisix": _APISIX,
    "osm": _OSM,
}


@pytest.mark.parametrize("source", sorted(_OBSERVER_SELECTORS))
@pytest.mark.parametrize("measure", ["successRate", "latency"])
def test_flagger_layout_selects_the_canary_as_flaggers_observers_do(source, measure):
    query = Query(measure=measure, window=60)
    text = promql.query_for(query, source, "podinfo", "test", layout="flagger")
    assert _OBSERVER_SELECTORS[source] in text.replace(promql.FLAGGER_ROUTE, "podinfo")
    assert ('type="request"' in text) == (source == "apisix" and measure == "latency")
    found = promql.recognise_form(text)
    assert found is not None and found.query == query and found.source == source
    primary = {  # the primary by Flagger's name for it (APISIX: none, test below)
        "traefik": 'service=~"test-podinfo-primary-[0-9a-zA-Z-]+@kubernetescrd"',
        "osm": _OSM.replace('"podinfo"', '"podinfo-primary"'),
    }.get(source)
    if primary:
        stable = query.model_copy(update={"version": "stable"})
        assert primary in promql.query_for(stable, source, "podinfo", "test", layout="flagger")


def test_apisix_writes_only_the_canary_and_only_for_flagger():
    for version in ("stable", "all"):
        with pytest.raises(ValueError, match="only the canary"):
            promql.query_for(
                Query(measure="errorRate", version=version, window=60), "apisix", layout="flagger"
            )
    with pytest.raises(ValueError, match="Argo's canary and stable are backends of one route"):
        promql.query_for(Query(measure="errorRate", window=60), "apisix", layout="argo")


_ISTIO_DOCS = (  # Argo's documentation: the whole Service, irate
    'sum(irate(istio_requests_total{reporter="source",destination_service=~"{svc}",'
    'response_code!~"5.*"}[5m])) / sum(irate(istio_requests_total{reporter="source",'
    'destination_service=~"{svc}"}[5m]))'
)


@pytest.mark.parametrize(
    ("text", "query"),
    [
        (  # irate over the whole Service: both versions, the last scrape interval
            _ISTIO_DOCS.replace("{svc}", "guestbook-svc.default.svc.cluster.local"),
            Query(measure="successRate", version="all", irate=300),
        ),
        (  # an unresolved argument whose name says canary
            _ISTIO_DOCS.replace("{svc}", "{{args.canary-host}}").replace("irate", "rate"),
            Query(measure="successRate", window=300),
        ),
        (  # an nginx query over the whole Ingress
            'sum(rate(nginx_ingress_controller_requests{ingress="shop", status=~"5.*"}[1m]))'
            ' / sum(rate(nginx_ingress_controller_requests{ingress="shop"}[1m]))',
            Query(measure="errorRate", version="all", window=60),
        ),
        (  # an application's counter by service label, 1 - errors / clamped total
            '1 - ((sum(rate(demo_http_requests_total{service="demo-canary",code=~"5.."}[30s]))'
            " or vector(0)) / clamp_min(sum(rate(demo_http_requests_total"
            '{service="demo-canary"}[30s])), 1))',
            Query(measure="successRate", window=30, min_rate=1),
        ),
        (  # a histogram's _count as the request counter; 4xx count as failures
            'sum(rate(http_request_duration_seconds_count{code!~"[45].*", service="app-stable"}'
            '[1m])) / sum(rate(http_request_duration_seconds_count{service="app-stable"}[1m]))',
            Query(measure="successRate", version="stable", window=60, errors="4xx+5xx"),
        ),
        (  # grouped by the label that picks the series, on both sides; guarded: no NaN
            'sum(rate(nginx_http_upstream_peer_responses_total{nginx_upstream_name="d_app-canary'
            '_80", nginx_status_range!~"[4-5].*"}[1m])) by (nginx_upstream_name) / sum(rate('
            'nginx_http_upstream_peer_responses_total{nginx_upstream_name="d_app-canary_80"}'
            "[1m])) by (nginx_upstream_name) unless sum(rate(nginx_http_upstream_peer_"
            'responses_total{nginx_upstream_name="d_app-canary_80"}[1m])) by '
            "(nginx_upstream_name) == 0",
            Query(measure="successRate", window=60, errors="4xx+5xx"),
        ),
        (  # an application histogram in ms, by its name; no value without traffic
            "histogram_quantile(0.95, sum(rate(api_latency_milliseconds_bucket"
            '{app="api-preview"}[2m])) by (le)) and on() (sum(rate(api_requests_total'
            '{app="api-preview"}[2m])) > 0)',
            Query(measure="latency", quantile=0.95, window=120, unit="milliseconds"),
        ),
        (  # OSM's 404 percentage (Flagger's docs)
            '100 - (sum(rate(osm_request_total{destination_name="podinfo", response_code!="404"}'
            '[1m])) / sum(rate(osm_request_total{destination_name="podinfo"}[1m])) * 100)',
            Query(measure="errorRate", window=60, unit="percent", errors="404"),
        ),
    ],
)
def test_application_metrics_whole_services_and_irate(text, query):
    found = promql.recognise_form(text)
    assert found is not None, text
    assert found.query == query
    assert found.nan_filter == ("> 0" in text or "== 0" in text)


def test_what_a_selector_cannot_tell_is_no_form():
    latency_all = (
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket"
        '{destination_service=~"shop.default.svc.cluster.local"}[1m])) by (le))'
    )
    whole_mesh = (
        'sum(rate(istio_requests_total{reporter="destination", response_code=~"5.."}[1m]))'
        ' / sum(rate(istio_requests_total{reporter="destination"}[1m]))'
    )
    five_xx_buckets = (  # summed buckets weigh 5xx by latency: not a request ratio
        'sum(rate(app_seconds_bucket{job="a", code=~"5.."}[1m])) / sum(rate(app_seconds_bucket'
        '{job="a"}[1m]))'
    )
    for text in (latency_all, whole_mesh, five_xx_buckets):
        assert promql.recognise_form(text) is None, text
    assert "NaN" in promql.why_unrecognised(
        'histogram_quantile(0.99, sum(rate(x_seconds_bucket{le="+Inf"}[1m])) by (le))'
    )
    assert "constant" in promql.why_unrecognised("vector(100)")
    assert "raw counter" in promql.why_unrecognised('exceptions_total{instance="a:80"}')


def test_both_versions_errors_classes_and_clamp_evaluate_as_the_world_says():
    canary = WindowStats(requests=100, errors=10, has_series=True)
    stable = WindowStats(requests=900, errors=0, has_series=True)
    obs = Observation(0, 60, canary, stable)
    assert Query(measure="errorRate", version="all").evaluate(obs) == pytest.approx(0.01)
    assert Query(measure="requestCount", version="all").evaluate(obs) == 1000
    # the world answers no 4xx: a 4xx (or 404) rate is 0 with traffic, 4xx+5xx its 5xx rate
    assert Query(measure="errorRate", errors="4xx").evaluate(obs) == 0
    assert Query(measure="successRate", errors="404", unit="percent").evaluate(obs) == 100
    assert Query(measure="errorRate", errors="4xx+5xx").evaluate(obs) == pytest.approx(0.1)
    # clamp_min(total, 1) over 60 s: the denominator is at least 60 requests; none: 0, no NaN
    few = Observation(0, 60, WindowStats(requests=6, errors=3, has_series=True), stable)
    assert Query(measure="errorRate", min_rate=1).evaluate(few) == pytest.approx(3 / 60)
    idle = Observation(0, 60, WindowStats(has_series=True), stable)
    assert Query(measure="successRate", min_rate=1).result(idle) == 1.0
    assert math.isnan(Query(measure="successRate", nan_filter=False).evaluate(idle))
    with pytest.raises(ValueError, match="both versions together is not modelled"):
        Query(measure="latency", version="all")


def test_irate_is_measured_over_the_last_scrape_interval():
    """The engine measures whole scrape slots, at least one: irate's window is below one."""
    from sim.world.platform import Platform  # the world's scrape interval, for the bound

    query = Query(measure="errorRate", irate=300)
    assert query.window == LAST_SCRAPE_S < Platform().scrape_interval
    assert max(1, round(query.window / Platform().scrape_interval)) == 1
    text = promql.query_for(query, "istio", "svc", "ns")
    assert "irate(" in text and "[5m]" in text and "rate(" not in text.replace("irate(", "")


@pytest.mark.parametrize("text", ["(" * 300 + "x" + ")" * 300, "-" * 2000 + "1"])
def test_a_query_nested_too_deep_is_no_form_never_a_recursion_error(text):
    assert promql.recognise(text) is None
