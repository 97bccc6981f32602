"""Flagger ``Canary`` (+ MetricTemplates, + the target Deployment) -> Progressive or ABTest.

``analysis.match`` with ``iterations`` is an A/B test, ``stepWeight(s)`` a progressive canary,
``iterations`` without match Flagger's blue/green (a Progressive policy with ``iterations``: not
the simulator's BlueGreen, Argo's instant selector switch with a hold-back, since Flagger's
analyses the canary at weight 0, switches routes and rolls the primary). The kubernetes provider
forces blue/green as Flagger does (``scheduler.go``): match dropped, weights replaced by
``iterations: 10`` when iterations is below 1, each said in a note. ``mirror``/``mirrorWeight``
and ``sessionAffinity`` are read as they are (the policy refuses what the provider's router
cannot do). Built-in metrics stay built in; a custom metric's
query becomes a simulated query in its own unit when ``promql`` recognises it (a canary-only
query of the P99 in truncated milliseconds becomes the built-in ``request-duration`` where that
reads the P99, not on nginx, skipper or Traefik), else it needs an explicit mapping.
Webhooks (``flagger_traffic``): ``confirm-*`` become approval gates, a ``hey`` load test on
the canary's own Service ``analysis.loadTest``; the others and alerts are listed as ignored:
the simulated world supplies the users' traffic and its operators decide rollbacks. Without
``spec.provider`` Flagger uses its ``-mesh-provider`` flag (default istio); a reference only one
router reads (``ingressRef``, ``service.gatewayRefs``, ``routeRef``, ``upstreamRef``) says
which, in a note.
"""

from __future__ import annotations

import re
from typing import Any

from policies.errors import PolicyError
from policies.exporters import promql
from policies.flagger import (
    DEFAULT_PROVIDER_VERSION,
    GATE_URL,
    PROVIDER_VERSIONS,
    duration_read,
)
from policies.importers.argo_fields import go_seconds
from policies.importers.context import Context, map_hint
from policies.importers.flagger_match import matches as _matches
from policies.importers.flagger_traffic import (
    kubernetes_blue_green,
    listed,
    number,
    traffic_fields,
    variables_of,
    webhooks,
)
from policies.loading import parse_policy
from policies.vocabulary import FLAGGER_PROVIDERS

__all__ = ["import_canary"]

_BUILTIN = ("request-success-rate", "request-duration")
_REFS = (  # (field, where, provider): the reference only that provider's router reads
    ("ingressRef", "spec", "nginx"),
    ("gatewayRefs", "spec.service", "gatewayapi"),
    ("routeRef", "spec", "apisix"),
    ("upstreamRef", "spec", "gloo"),
)
_ALL_URIS = [{"prefix": "/"}, {"prefix": ""}] + [{"regex": r} for r in (".*", "/.*", "^/.*")]
_INTEGERS = ("threshold", "maxWeight", "stepWeight", "stepWeightPromotion", "iterations")
_IGNORED_SPEC = {
    "targetRef": "the workload's name",
    "autoscalerRef": "the autoscaler's name",
    "ingressRef": "the Ingress's name",
    "routeRef": "the route's name",
    "upstreamRef": "the upstream's name",
    "suspend": "an operator switch, not timing",
    "revertOnDeletion": "what deletion does",
    "metricsServer": "Prometheus address",
}
_VAR = re.compile(r"\{\{\s*(variables\.)?([A-Za-z0-9_-]+)\s*\}\}")


def _seconds(value: Any, path: str, ctx: Context) -> float:
    text = str(value)
    if not re.match(r"^[0-9]+(m|s)", text):
        raise ctx.error(path, f"{value!r} does not match Flagger's ^[0-9]+(m|s)")
    return go_seconds(text, path, ctx)


def _render(query: str, variables: dict[str, str]) -> str:
    """Flagger template variables, except the interval (the window stays the metric's)."""

    def sub(m: re.Match) -> str:
        if m.group(2) == "interval" and not m.group(1):
            return m.group(0)
        return variables.get(("variables." if m.group(1) else "") + m.group(2), m.group(0))

    return _VAR.sub(sub, query)


def _metric(m: dict, i: int, spec_vars: dict[str, str], ctx: Context, provider: str):
    go_printf = re.compile(r'\{\{\s*printf\s+"([^"]*)"((?:\s+[A-Za-z0-9_.]+)*)\s*\}\}')
    where = f"spec.analysis.metrics[{i}]"
    known = {
        "name",
        "interval",
        "threshold",
        "thresholdRange",
        "query",
        "templateRef",
        "templateVariables",
    }
    for key in sorted(set(m) - known):
        raise ctx.error(f"{where}.{key}", "field not understood")
    name = str(m.get("name"))
    out: dict[str, Any] = {"name": name}
    if m.get("interval"):
        out["interval"] = _seconds(m["interval"], f"{where}.interval", ctx)
    if m.get("thresholdRange"):
        out["thresholdRange"] = {k: float(v) for k, v in m["thresholdRange"].items()}
    if m.get("threshold") is not None:
        out["threshold"] = float(m["threshold"])
    mapped = ctx.mapped(name)
    text, template = m.get("query"), None
    if m.get("templateRef"):
        ref = m["templateRef"]
        key = (str(ref.get("namespace", spec_vars["namespace"])), str(ref.get("name")))
        template = ctx.manifests.metric_templates.get(key) or ctx.manifests.metric_templates.get(
            ("", key[1])
        )
        if template is None and mapped is None:
            raise ctx.error(
                f"{where}.templateRef",
                f"MetricTemplate {key[1]!r} is not among the manifests: pass its file too",
            )
        if template is not None:
            label = f"MetricTemplate/{key[1]}"
            ctx.read.add(label)
            prov = (template.get("spec") or {}).get("provider") or {}
            for key2 in sorted(prov):
                ctx.ignore(f"spec.provider.{key2}", label)
            if prov.get("type", "prometheus") != "prometheus" and mapped is None:
                why = f"provider {prov.get('type')} is a metric that needs `map:`"
                raise ctx.error(where, map_hint(name, why))
            text = (template.get("spec") or {}).get("query")
    if mapped is not None:
        ctx.notes.append(
            f"metric {name}: mapped explicitly to {mapped.to_dict()}; its thresholds are"
            f" compared in {mapped.scale or 'a count'}"
        )
        bounds = [*(out.get("thresholdRange") or {}).values(), out.get("threshold")]
        ctx.check_scale(name, mapped, bounds)
        return out | {"query": mapped.model_dump(by_alias=True, exclude_none=True)}
    if text is None:
        if name not in _BUILTIN:
            raise ctx.error(where, map_hint(name, "neither a built-in nor a query"))
        # pkg/metrics/observers: nginx (canary!="" since Flagger 1.15) and skipper time the
        # canary by a mean, traefik reads its P99 in seconds as whole ms (under 1 s: 0 ms)
        what = {"nginx": "mean", "skipper": "mean", "traefik": "P99 in whole s read as"}
        if name == _BUILTIN[1] and provider in what:
            ctx.notes.append(
                f"metric {name}: Flagger's {provider} built-in is the canary's {what[provider]}"
                " ms, and is simulated so"
            )
        return out
    if name in _BUILTIN:
        raise ctx.error(
            f"{where}.name",
            f"Flagger runs its built-in {name} check as well as the query: rename it",
        )
    variables = {
        **spec_vars,
        **{f"variables.{k}": str(v) for k, v in (m.get("templateVariables") or {}).items()},
    }

    def printf(m: re.Match) -> str:  # Go's {{ printf "fmt" var ... }}, as Flagger renders
        values = iter([variables.get(v, v) for v in m.group(2).split()])
        return re.sub(r"%s", lambda _: next(values, "%!s(MISSING)"), m.group(1))

    rendered = _render(go_printf.sub(printf, str(text)), variables)
    form = promql.recognise_form(rendered)
    if form is None:
        raise ctx.error(where, map_hint(name, promql.why_unrecognised(rendered)))
    query = form.query
    for note in promql.form_notes(form):
        ctx.notes.append(f"metric {name}: {note}")
    interval = out.get("interval", 60.0)
    if query.window == interval:
        query = query.model_copy(update={"window": None})
    canary_only = query.version == "canary" and query.window is None
    if (
        form.scale == "ms_floor"
        and query.measure == "latency"
        and canary_only
        and query.quantile == 0.99
        and duration_read(provider) == (0.99, 1000.0)  # what the built-in reads there
    ):
        ctx.notes.append(f"metric {name}: computes request-duration; imported as it")
        return {**out, "name": "request-duration"}
    if form.scale == "ms_floor":
        why = f"truncated milliseconds of a latency {provider}'s built-in request-duration does"
        raise ctx.error(where, map_hint(name, why + " not read (no simulated query truncates)"))
    if query.unit is not None:  # the thresholds stay as written, in the query's unit
        ctx.notes.append(
            f"metric {name}: the query returns {query.unit}; its thresholds are compared in"
            f" {query.unit}, as Flagger compares them"
        )
    return out | {"query": query.model_dump(by_alias=True, exclude_none=True)}


def _check_metric(m: Any, i: int, ctx: Context) -> None:
    """The metric's shape, before it is read: one-line errors, never a traceback."""
    where = f"spec.analysis.metrics[{i}]"
    if not isinstance(m, dict) or not isinstance(m.get("name"), str):
        raise ctx.error(where, "a metric is a mapping with a name")
    if m.get("threshold") is not None:
        number(m["threshold"], f"{where}.threshold", ctx)
    bounds = m.get("thresholdRange")
    if bounds is not None:
        if not isinstance(bounds, dict) or not set(bounds) <= {"min", "max"}:
            raise ctx.error(f"{where}.thresholdRange", f"{bounds!r} is not {{min, max}}")
        for key, value in bounds.items():
            number(value, f"{where}.thresholdRange.{key}", ctx)
    for key in ("templateRef", "templateVariables"):
        if m.get(key) is not None and not isinstance(m[key], dict):
            raise ctx.error(f"{where}.{key}", f"{m[key]!r} is not a mapping")


def _provider(spec: dict, service: dict, ctx: Context) -> tuple[str, str | None]:
    """(provider, version suffix) as Flagger picks it: ``spec.provider``, else the controller's
    ``-mesh-provider`` flag (default istio; scheduler.go ``advanceCanary``)."""
    raw = spec.get("provider")
    if raw in (None, ""):
        found = [r for r in _REFS if (service if "service" in r[1] else spec).get(r[0])]
        if not found:
            ctx.notes.append("spec.provider absent: Flagger's -mesh-provider default, istio")
            return "istio", None
        field, where, name = found[0]
        ctx.notes.append(
            f"spec.provider absent: Flagger takes its -mesh-provider flag (default istio), and"
            f" {where}.{field} is read only by the {name} router, so this Canary runs under"
            f" -mesh-provider={name}{':v1' if name == 'gatewayapi' else ''}: imported as {name}"
            " (set spec.provider to say otherwise)"
        )
        return name, None
    if not isinstance(raw, str):
        raise ctx.error("spec.provider", f"{raw!r} is not a provider name")
    name, _, version = raw.partition(":")
    if name not in FLAGGER_PROVIDERS:
        raise ctx.error(
            "spec.provider", f"{raw}: Flagger's providers are {', '.join(FLAGGER_PROVIDERS)}"
        )
    allowed = PROVIDER_VERSIONS.get(name, ())
    if (version and version not in allowed) or (not version and name in DEFAULT_PROVIDER_VERSION):
        spelled = ", ".join(f"{name}:{v}" for v in allowed) or name
        raise ctx.error(
            "spec.provider",
            f"{raw!r} is not in Flagger's CRD (it accepts {spelled}; Flagger's router factory"
            " routes an unknown name with Istio)",
        )
    return name, (None if version == DEFAULT_PROVIDER_VERSION.get(name) else version or None)


def _matches_all(entry: Any) -> bool:
    """An Istio HTTPMatchRequest that every request satisfies (no condition, or any URI)."""
    if not isinstance(entry, dict):
        return False
    keys = set(entry) - {"name", "ignoreUriCase"}
    return not keys or (keys == {"uri"} and entry["uri"] in _ALL_URIS)


def _service_match(matches: Any, ctx: Context) -> None:
    """``service.match`` for every request has no effect; a subset is refused."""
    entries = listed(matches, "spec.service.match", ctx)
    if any(_matches_all(e) for e in entries):
        ctx.notes.append("spec.service.match matches every request: no effect")
    if not entries or any(_matches_all(e) for e in entries):
        return
    raise ctx.error(
        "spec.service.match",
        f"{entries!r} selects a subset of requests: Flagger's routes then carry only those"
        " through the canary (the others get no route), while the simulated world sends all"
        " of the service's requests through one rollout",
    )


def _knative_replicas(target: Any, ctx: Context) -> int | None:
    """A Knative Service's replicas when its scale is pinned (min-scale = max-scale)."""
    for doc in list(ctx.manifests.others):
        knative = doc.get("kind") == "Service" and "knative" in str(doc.get("apiVersion"))
        if knative and (doc.get("metadata") or {}).get("name") == target:
            ctx.manifests.others.remove(doc)
            template = (doc.get("spec") or {}).get("template") or {}
            notes = (template.get("metadata") or {}).get("annotations") or {}
            low, high = (notes.get(f"autoscaling.knative.dev/{k}-scale") for k in ("min", "max"))
            ctx.ignore("spec (a Knative Service: the revision's pods)", f"Service/{target}")
            if low is not None and low == high and str(low).isdigit():
                return int(low)
            break
    ctx.notes.append("the Knative Service's scale is not pinned: the world decides replicas")
    return None


def _replicas(spec: dict, ctx: Context) -> int | None:
    target = (spec.get("targetRef") or {}).get("name")
    if (spec.get("targetRef") or {}).get("kind") == "Service":
        return _knative_replicas(target, ctx)
    for doc in list(ctx.manifests.others):
        meta = doc.get("metadata") or {}
        if doc.get("kind") == "Deployment" and meta.get("name") == target:
            ctx.manifests.others.remove(doc)
            label = f"Deployment/{target}"
            for key in sorted(set(doc.get("spec") or {}) - {"replicas"}):
                ctx.ignore(f"spec.{key}", label)
            if (doc.get("spec") or {}).get("minReadySeconds"):
                ctx.notes.append(
                    f"{label}: minReadySeconds is not modelled for Flagger policies (a model gap)"
                )
            return (doc.get("spec") or {}).get("replicas", 1)
    ctx.notes.append("no target Deployment among the manifests: the world decides replicas")
    return None


def import_canary(doc: dict, ctx: Context) -> Any:
    """The Progressive or ABTest policy of a Flagger Canary."""
    meta, spec = ctx.open(doc, "Canary")
    name = meta.get("name")
    known = {
        "provider",
        "service",
        "analysis",
        "progressDeadlineSeconds",
        "skipAnalysis",
        *_IGNORED_SPEC,
    }
    for key in sorted(set(spec) - known):
        raise ctx.error(f"spec.{key}", "field not understood")
    for key, why in _IGNORED_SPEC.items():
        if key in spec:
            ctx.ignore(f"spec.{key} ({why})")
    service = spec.get("service") or {}
    if not isinstance(service, dict) or not isinstance(spec.get("analysis") or {}, dict):
        raise ctx.error("spec", "service and analysis are mappings")
    provider, version = _provider(spec, service, ctx)
    _service_match(service.get("match"), ctx)
    for key in sorted(set(service) - {"match"}):
        ctx.ignore(f"spec.service.{key}")
    analysis = dict(spec.get("analysis") or {})
    path = "spec.analysis"
    for key in ("primaryReadyThreshold", "canaryReadyThreshold"):
        if analysis.get(key) not in (None, 100):
            raise ctx.error(f"{path}.{key}", "readiness below 100 % is not modelled")
        analysis.pop(key, None)
    variables = variables_of(name, meta, spec, service)
    gates, load_test = webhooks(analysis.pop("webhooks", None), variables, ctx)
    if analysis.pop("alerts", None):
        ctx.ignore(f"{path}.alerts (notifications)")
    extras = traffic_fields(analysis, ctx)
    known = {
        "interval",
        "threshold",
        "maxWeight",
        "stepWeight",
        "stepWeights",
        "stepWeightPromotion",
        "iterations",
        "match",
        "metrics",
    }
    for key in sorted(set(analysis) - known):
        raise ctx.error(f"{path}.{key}", "field not understood")
    for key in _INTEGERS:
        if analysis.get(key) is not None:
            analysis[key] = number(analysis[key], f"{path}.{key}", ctx, whole=True)
    weights = listed(analysis.get("stepWeights"), f"{path}.stepWeights", ctx)
    for i, w in enumerate(weights):
        weights[i] = number(w, f"{path}.stepWeights[{i}]", ctx, whole=True)
    if any(w > 100 for w in weights):
        ctx.notes.append(
            f"{path}.stepWeights: weights above 100 act as 100 (Flagger caps the canary's"
            " weight at 100: maxWeight is min(100, last), each step min(100 - weight, step))"
        )
    metrics = listed(analysis.get("metrics"), f"{path}.metrics", ctx)
    for i, m in enumerate(metrics):
        _check_metric(m, i, ctx)
    if provider == "kubernetes":
        kubernetes_blue_green(analysis, ctx)
    elif analysis.get("iterations") and not analysis.get("match"):
        ctx.notes.append(
            f"{path}.iterations without match: Flagger's blue/green ({analysis['iterations']}"
            " analysis ticks at weight 0, a switch of all traffic, one more analysis, promotion)"
        )
    unmirrored = analysis.get("iterations") and not analysis.get("match")
    if unmirrored and not extras.get("mirror") and not load_test and metrics:
        ctx.notes.append(
            f"{path}: blue/green with neither mirror nor a load test on the canary's"
            " Service: at weight 0 the canary gets no request, so Flagger's checks find no"
            " value and count failed checks, as simulated"
        )
    out: dict[str, Any] = {
        "interval": _seconds(analysis.get("interval", "60s"), f"{path}.interval", ctx)
    }
    for key in _INTEGERS:
        if analysis.get(key) is not None:
            out[key] = analysis[key]
    if analysis.get("stepWeights") is not None:
        out["stepWeights"] = weights
    if analysis.get("match"):
        out["match"] = _matches(listed(analysis["match"], f"{path}.match", ctx), provider, ctx)
    out["metrics"] = [_metric(m, i, variables, ctx, provider) for i, m in enumerate(metrics)]
    placeholder = GATE_URL.format(namespace=variables["namespace"])
    for gate in gates:  # what export writes for a gate without name or URL reads back as none
        gate["name"] = None if gate["name"] == gate["type"] else gate["name"]
        gate["url"] = None if gate["url"] == placeholder else gate["url"]
    if gates:
        out["gates"] = [{k: v for k, v in g.items() if v is not None} for g in gates]
    out.update(extras)
    if load_test is not None:
        out["loadTest"] = load_test
    if analysis.get("match") and not analysis.get("iterations"):
        raise ctx.error(
            f"{path}.match",
            "match with stepWeight(s) and no iterations: Flagger shifts weight within the"
            " matched requests only, a weighted canary of a segment that is not modelled (an"
            " A/B test is match with iterations)",
        )
    data: dict[str, Any] = {
        "kind": "ABTest" if analysis.get("match") else "Progressive",
        "name": name,
        "provider": provider,
        "analysis": out,
    }
    if version is not None:
        data["providerVersion"] = version
    replicas = _replicas(spec, ctx)
    if replicas is not None:
        data["replicas"] = replicas
    if spec.get("progressDeadlineSeconds") is not None:
        deadline = spec["progressDeadlineSeconds"]
        data["progressDeadlineSeconds"] = number(deadline, "spec.progressDeadlineSeconds", ctx)
    if spec.get("skipAnalysis"):
        data["skipAnalysis"] = True  # no tick analyses: their hooks' notes say nothing
        ctx.notes[:] = [n for n in ctx.notes if "from each analysis tick" not in n]
        ctx.notes.append("spec.skipAnalysis: no analysis runs (no metric, no load test)")
    try:
        return parse_policy(data, path=ctx.label)
    except PolicyError as exc:
        raise PolicyError(exc.message, path=exc.path, file=ctx.file) from None
