"""Flagger ``Canary`` (+ MetricTemplates, + the target Deployment) -> Progressive or ABTest.

``analysis.match`` with ``iterations`` is an A/B test, ``stepWeight(s)`` a progressive canary.
Iterations without match (Flagger's blue/green) is refused: the simulator's BlueGreen is Argo's
instant selector switch with a hold-back, while Flagger's promotes by a rolling update of the
primary (kubernetes provider) or by switching routes and back (meshes); importing it as
BlueGreen would simulate another release. Built-in metrics stay built in; a custom metric's
query becomes a simulated query when ``promql`` recognises it (a canary-only query computing
exactly what a built-in computes becomes that built-in), else it needs an explicit mapping.
Webhooks other than gates (load tests, acceptance tests, events) and alerts are listed as
ignored: the simulated world supplies the traffic.
"""

from __future__ import annotations

import re
from typing import Any

from policies.errors import PolicyError
from policies.exporters import promql
from policies.exporters.flagger import cookie_regex
from policies.importers.argo import go_seconds
from policies.importers.context import Context, map_hint
from policies.loading import parse_policy
from policies.vocabulary import FLAGGER_PROVIDERS

__all__ = ["import_canary"]

_BUILTIN = ("request-success-rate", "request-duration")
_GATES = ("confirm-rollout", "confirm-promotion", "confirm-traffic-increase", "rollback")
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


def _scaled(metric: dict, factor: float) -> None:
    if metric.get("thresholdRange"):
        metric["thresholdRange"] = {k: v / factor for k, v in metric["thresholdRange"].items()}
    if metric.get("threshold") is not None:
        metric["threshold"] = metric["threshold"] / factor


def _metric(m: dict, i: int, spec_vars: dict[str, str], ctx: Context, provider: str):
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
            prov = (template.get("spec") or {}).get("provider") or {}
            for key2 in sorted(prov):
                ctx.ignore(f"spec.provider.{key2}", label)
            if prov.get("type", "prometheus") != "prometheus" and mapped is None:
                raise ctx.error(where, map_hint(name, f"provider {prov.get('type')} is not PromQL"))
            text = (template.get("spec") or {}).get("query")
    if mapped is not None:
        ctx.notes.append(f"metric {name}: mapped explicitly to {mapped.to_dict()}")
        return out | {"query": mapped.model_dump(by_alias=True, exclude_none=True)}
    if text is None:
        if name not in _BUILTIN:
            raise ctx.error(where, map_hint(name, "neither a built-in nor a query"))
        if provider == "nginx":
            ctx.notes.append(
                f"metric {name}: Flagger's ingress-nginx built-in "
                + (
                    "counts the whole Ingress (primary and canary)"
                    if name == _BUILTIN[0]
                    else "is the mean duration"
                )
                + "; the simulator measures the canary alone"
                + ("" if name == _BUILTIN[0] else " (P99)")
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
    form = promql.recognise_form(_render(str(text), variables))
    if form is None:
        raise ctx.error(where, map_hint(name, "its query is not a recognised form"))
    query = form.query
    interval = out.get("interval", 60.0)
    if query.window == interval:
        query = query.model_copy(update={"window": None})
    canary_only = query.version == "canary" and query.window is None
    if form.scale == "percent" and query.measure == "successRate" and canary_only:
        ctx.notes.append(f"metric {name}: computes request-success-rate; imported as it")
        return {**out, "name": "request-success-rate"}
    if (
        form.scale == "ms_floor"
        and query.measure == "latency"
        and canary_only
        and query.quantile == 0.99
    ):
        ctx.notes.append(f"metric {name}: computes request-duration; imported as it")
        return {**out, "name": "request-duration"}
    if form.scale == "ms_floor":
        raise ctx.error(where, map_hint(name, "truncated milliseconds of another quantile"))
    factor = {"percent": 100.0, "milliseconds": 1000.0}.get(form.scale)
    if factor:
        _scaled(out, factor)
        ctx.notes.append(f"metric {name}: {form.scale} thresholds rescaled")
    return out | {"query": query.model_dump(by_alias=True, exclude_none=True)}


def _string_match(value: dict, path: str, ctx: Context) -> dict[str, str]:
    if set(value) == {"suffix"}:
        ctx.notes.append(f"{path}: suffix read as the regex .*{value['suffix']}")
        return {"regex": ".*" + re.escape(value["suffix"])}
    if len(value) != 1 or not set(value) <= {"exact", "prefix", "regex"}:
        raise ctx.error(path, "a header match is one of exact, prefix, regex, suffix")
    return dict(value)


def _matches(matches: list, provider: str, ctx: Context) -> list[dict[str, Any]]:
    out = []
    for i, match in enumerate(matches):
        path = f"spec.analysis.match[{i}]"
        for key in sorted(set(match) - {"headers"}):
            raise ctx.error(f"{path}.{key}", "only header and cookie matches are modelled")
        entry: dict[str, Any] = {"headers": {}}
        for header, value in (match.get("headers") or {}).items():
            value = dict(value or {})
            if header.lower() == "cookie" and provider == "nginx" and "exact" in value:
                entry["cookie"] = {"exact": value["exact"]}
                continue
            regex = value.get("regex", "")
            named = re.fullmatch(r"\^\(\.\*\?;\)\?\((.+)=always\)\(;\.\*\)\?\$", regex)
            if header.lower() == "cookie" and named:
                cookie = re.sub(r"\\(.)", r"\1", named.group(1))
                if cookie_regex(cookie) == regex:
                    entry["cookie"] = {"exact": cookie}
                    continue
            entry["headers"][header] = _string_match(value, f"{path}.headers.{header}", ctx)
        if not entry["headers"]:
            del entry["headers"]
        out.append(entry)
    return out


def _webhooks(hooks: list, ctx: Context) -> None:
    for i, hook in enumerate(hooks):
        kind = hook.get("type") or "rollout"
        path = f"spec.analysis.webhooks[{i}]"
        if kind in _GATES:
            raise ctx.error(
                path, f"a {kind} webhook gates the release on an outside answer: not modelled"
            )
        ctx.ignore(f"{path} ({kind} hook {hook.get('name')}: tests and traffic are the world's)")


def _replicas(spec: dict, ctx: Context) -> int | None:
    target = (spec.get("targetRef") or {}).get("name")
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
    provider = str(spec.get("provider") or "")
    if not provider:
        ctx.notes.append("spec.provider absent: Flagger's -mesh-provider default, istio")
        provider = "istio"
    provider = "smi" if provider.startswith("smi:") else provider
    if provider not in FLAGGER_PROVIDERS:
        raise ctx.error(
            "spec.provider", f"{provider}: the simulator models {', '.join(FLAGGER_PROVIDERS)}"
        )
    service = spec.get("service") or {}
    if service.get("match"):
        raise ctx.error("spec.service.match", "a route match for all traffic is not modelled")
    for key in sorted(service):
        ctx.ignore(f"spec.service.{key}")
    analysis = dict(spec.get("analysis") or {})
    path = "spec.analysis"
    for key, reason in (
        ("mirror", "traffic mirroring is not modelled"),
        ("sessionAffinity", "sticky canary sessions are not modelled"),
    ):
        if analysis.get(key):
            raise ctx.error(f"{path}.{key}", reason)
    for key in ("primaryReadyThreshold", "canaryReadyThreshold"):
        if analysis.get(key) not in (None, 100):
            raise ctx.error(f"{path}.{key}", "readiness below 100 % is not modelled")
    _webhooks(analysis.pop("webhooks", None) or [], ctx)
    if analysis.pop("alerts", None):
        ctx.ignore(f"{path}.alerts (notifications)")
    for key in ("mirror", "mirrorWeight", "primaryReadyThreshold", "canaryReadyThreshold"):
        analysis.pop(key, None)
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
    if (analysis.get("iterations") and not analysis.get("match")) or provider == "kubernetes":
        raise ctx.error(
            f"{path}.iterations",
            "Flagger blue/green (iterations without match, or provider kubernetes) has no"
            " simulated kind: BlueGreen is Argo's instant selector switch with a hold-back,"
            " Flagger promotes by a rolling update of the primary or switches routes and back",
        )
    variables = {
        "name": str(name),
        "namespace": str(meta.get("namespace") or "default"),
        "target": str((spec.get("targetRef") or {}).get("name", name)),
        "service": str(service.get("name") or (spec.get("targetRef") or {}).get("name", name)),
        "ingress": str(
            (spec.get("ingressRef") or {}).get("name")
            or (spec.get("targetRef") or {}).get("name", name)
        ),
    }
    out: dict[str, Any] = {
        "interval": _seconds(analysis.get("interval", "60s"), f"{path}.interval", ctx)
    }
    for key in ("threshold", "maxWeight", "stepWeight", "stepWeightPromotion", "iterations"):
        if analysis.get(key) is not None:
            out[key] = int(analysis[key])
    if analysis.get("stepWeights") is not None:
        out["stepWeights"] = [int(w) for w in analysis["stepWeights"]]
    if analysis.get("match"):
        out["match"] = _matches(analysis["match"], provider, ctx)
    out["metrics"] = [
        _metric(m, i, variables, ctx, provider) for i, m in enumerate(analysis.get("metrics") or [])
    ]
    data: dict[str, Any] = {
        "kind": "ABTest" if analysis.get("match") else "Progressive",
        "name": name,
        "provider": provider,
        "analysis": out,
    }
    replicas = _replicas(spec, ctx)
    if replicas is not None:
        data["replicas"] = replicas
    if spec.get("progressDeadlineSeconds") is not None:
        data["progressDeadlineSeconds"] = float(spec["progressDeadlineSeconds"])
    if spec.get("skipAnalysis"):
        data["skipAnalysis"] = True
    try:
        return parse_policy(data, path=ctx.label)
    except PolicyError as exc:
        raise PolicyError(exc.message, path=exc.path, file=ctx.file) from None
