"""Argo ``Rollout`` (+ its AnalysisTemplates) -> Canary or BlueGreen policy.

Every field of the Rollout that changes timing or traffic is read into the policy; fields that
name or decorate live objects are ignored and listed; a field the simulator cannot model
(experiment and mirror steps, step plugins, replicaProgressThreshold, routers it has no model
of...) is refused with the path to it. Durations follow Argo: a pause takes whole seconds
(fractions truncate, as ``DurationSeconds`` does) and Go durations have no "d".
"""

from __future__ import annotations

import math
import re
from typing import Any

from policies.conditions import Condition, ConditionError
from policies.errors import PolicyError
from policies.exporters import promql
from policies.importers.context import Context, map_hint
from policies.loading import parse_policy
from policies.vocabulary import ARGO_ROUTERS, ArgoRouter

__all__ = ["import_rollout", "import_template"]

_DEFAULT_WINDOW_S = 60.0
_IGNORED_META = ("namespace", "labels", "annotations", "uid", "resourceVersion", "generation")
_IGNORED_SPEC = {
    "selector": "pod selector",
    "template": "pod template (images, containers)",
    "workloadRef": "pod template by reference",
    "revisionHistoryLimit": "history kept, not timing",
    "restartAt": "a one-off restart request",
}
_NAMES = ("canaryService", "stableService", "activeService", "previewService", "pingPong")
_DECOR = ("canaryMetadata", "stableMetadata", "activeMetadata", "previewMetadata", "antiAffinity")
_ROUTER_NAMES: dict[ArgoRouter, tuple[str, ...]] = {  # each router's object names (ignored)
    "nginx": (
        "stableIngress",
        "stableIngresses",
        "annotationPrefix",
        "additionalIngressAnnotations",
        "canaryIngressAnnotations",
    ),
    "istio": ("virtualService", "virtualServices", "destinationRule"),
    "smi": ("rootService", "trafficSplitName"),
    "alb": ("ingress", "ingresses", "servicePort", "rootService", "annotationPrefix"),
}
_METRIC_LIMITS = (
    "count",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "consecutiveSuccessLimit",
)
_NAN_FILTER = re.compile(r">=\s*0(?:\.0*)?\s*$")
_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_seconds(value: Any, path: str, ctx: Context, *, whole: bool = False) -> float:
    """Seconds of an Argo duration (int seconds, numeric string, or Go duration string)."""
    if isinstance(value, bool):
        raise ctx.error(path, f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(int(text))
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _GO_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _GO_UNIT[m.group(2)]
                pos = m.end()
            if not text or pos != len(text):
                raise ctx.error(path, f"{value!r} is not a Go duration (no 'd' unit)") from None
    if whole and seconds != math.floor(seconds):
        ctx.notes.append(f"{path}: {value!r} truncates to {math.floor(seconds)} s, as Argo does")
        seconds = float(math.floor(seconds))
    return seconds


def _check_keys(obj: dict, known: set[str], path: str, ctx: Context, label=None) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ctx.error(
            f"{path}.{unknown[0]}" if path else unknown[0],
            "field not understood: the simulator has no model of it, refusing rather than"
            " dropping it",
            label,
        )


def _int(value: Any, path: str, ctx: Context, args: dict[str, str]) -> int:
    if isinstance(value, str):
        value = _ARG.sub(lambda m: args.get(m.group(1), m.group(0)), value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ctx.error(path, f"{value!r} is not an integer") from None


def _args(ref: dict, template: dict) -> dict[str, str]:
    """Argument values for one use of a template: the rollout's, else the template defaults;
    ReplicaSet hashes become the placeholders the PromQL forms use."""
    out: dict[str, str] = {}
    for arg in (template.get("spec") or {}).get("args") or []:
        if "value" in arg:
            out[arg["name"]] = str(arg["value"])
    for arg in ref.get("args") or []:
        if "value" in arg:
            out[arg["name"]] = str(arg["value"])
        hash_of = ((arg.get("valueFrom") or {}).get("podTemplateHashValue") or "").lower()
        if hash_of in ("latest", "stable"):
            name = promql.ARG_CANARY_HASH if hash_of == "latest" else promql.ARG_STABLE_HASH
            out[arg["name"]] = promql.argo_arg(name)
    return out


def _rescale(text: str, factor: float) -> str:
    """Divide every number a condition compares ``result`` with by ``factor``."""
    return re.sub(
        r"(?<![\w.\[\]])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
        lambda m: repr(float(m.group(1)) / factor),
        text,
    )


def _metric(m: dict, where: str, tname: str, args: dict[str, str], ctx: Context, label: str):
    known = {
        "name",
        "interval",
        "initialDelay",
        "successCondition",
        "failureCondition",
        "provider",
        *_METRIC_LIMITS,
    }
    _check_keys(m, known, where, ctx, label)
    name = m.get("name")
    out: dict[str, Any] = {"name": name}
    if m.get("interval") not in (None, ""):
        out["interval"] = go_seconds(m["interval"], f"{where}.interval", ctx)
    if m.get("initialDelay") not in (None, ""):
        out["initialDelay"] = go_seconds(m["initialDelay"], f"{where}.initialDelay", ctx)
    for key in _METRIC_LIMITS:
        if m.get(key) is not None:
            out[key] = _int(m[key], f"{where}.{key}", ctx, args)
    conditions = {}
    for key in ("successCondition", "failureCondition"):
        if m.get(key):
            text = _ARG.sub(lambda g: args.get(g.group(1), g.group(0)), str(m[key]))
            try:
                Condition(text)
            except ConditionError as exc:
                raise ctx.error(
                    f"{where}.{key}", f"{exc} (Argo expr beyond safe comparisons)", label
                ) from None
            conditions[key] = text
    provider = m.get("provider") or {}
    query = ctx.mapped(f"{tname}/{name}", str(name))
    if query is not None:
        # a Prometheus query ending in ``>= 0`` filters NaN out; any other reaches the conditions
        text = str((provider.get("prometheus") or {}).get("query", ""))
        filtered = bool(_NAN_FILTER.search(text)) or "prometheus" not in provider
        query = query.model_copy(update={"nan_filter": filtered})
        ctx.notes.append(f"{label} metric {name}: mapped explicitly to {query.to_dict()}")
    elif set(provider) != {"prometheus"}:
        kinds = ", ".join(sorted(provider)) or "none"
        raise ctx.error(where, map_hint(name, f"provider {kinds} has no recognised form"), label)
    else:
        prom = provider["prometheus"]
        for key in sorted(set(prom) - {"query"}):
            if key == "rangeQuery":
                raise ctx.error(
                    f"{where}.provider.prometheus.rangeQuery",
                    "a range query's matrix has no simulated counterpart",
                    label,
                )
            ctx.ignore(f"{where}.provider.prometheus.{key}", label)
        text = _ARG.sub(lambda g: args.get(g.group(1), g.group(0)), str(prom.get("query", "")))
        form = promql.recognise_form(text)
        if form is None or form.scale == "ms_floor":
            raise ctx.error(where, map_hint(name, "its query is not a recognised form"), label)
        if form.query.window is None:
            why = "its range is an argument no analysis reference gives"
            raise ctx.error(where, map_hint(name, why), label)
        # Argo judges a NaN sample by the conditions unless the query filters it (``>= 0``)
        query = form.query.model_copy(update={"nan_filter": form.nan_filter})
        factor = {"percent": 100.0, "milliseconds": 1000.0}.get(form.scale)
        if factor:
            conditions = {k: _rescale(v, factor) for k, v in conditions.items()}
            ctx.notes.append(
                f"{label} metric {name}: the query returns {form.scale}; conditions rescaled"
                f" to the simulator's {'fraction' if factor == 100 else 'seconds'}"
            )
        if not form.nan_filter and query.measure != "requestCount":
            ctx.notes.append(
                f"{label} metric {name}: without a NaN filter (`>= 0`) a window with no"
                " traffic gives NaN, which Argo and the simulator judge by the conditions (an"
                " unguarded `result[0] >= x` is Failed; guard it with `isNaN(result[0]) || ...`)"
            )
        if query.window is not None and query.window == out.get("interval", _DEFAULT_WINDOW_S):
            query = query.model_copy(update={"window": None})
    out.update(conditions)
    out["provider"] = {"query": query.model_dump(by_alias=True, exclude_none=True)}
    return out


def import_template(doc: dict, refs: list[dict], ctx: Context, prefix: str) -> dict[str, Any]:
    """One Analysis/ClusterAnalysisTemplate as policy data (``analysisTemplates[i]``)."""
    kind, meta = doc["kind"], doc.get("metadata") or {}
    label = f"{kind}/{meta.get('name')}"
    for key in sorted(set(meta) - {"name"}):
        ctx.ignore(f"metadata.{key}", label)
    spec = doc.get("spec") or {}
    known = {"args", "metrics", "dryRun", "measurementRetention", "templates"}
    _check_keys(spec, known, "spec", ctx, label)
    if spec.get("templates"):
        raise ctx.error("spec.templates", "nested templates: import them flattened", label)
    if spec.get("measurementRetention"):
        ctx.ignore("spec.measurementRetention (history only)", label)
    name = str(meta.get("name"))
    tname = name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else name
    results: list[list[dict[str, Any]]] = []
    for ref in refs or [{}]:
        args = _args(ref, doc)
        metrics = [
            _metric(m, f"spec.metrics[{j}]", tname, args, ctx, label)
            for j, m in enumerate(spec.get("metrics") or [])
        ]
        if results and metrics != results[0]:
            raise ctx.error("spec.metrics", "its uses pass args giving different queries", label)
        results.append(metrics)
    out: dict[str, Any] = {"name": tname, "metrics": results[0]}
    if spec.get("dryRun"):
        out["dryRun"] = [{"metricName": d["metricName"]} for d in spec["dryRun"]]
    if spec.get("args"):
        ctx.ignore("spec.args (values used to read the queries)", label)
    return out


def _analysis(obj: dict, path: str, ctx: Context, uses: dict, background: bool = False):
    known = {"templates", "args", "measurementRetention", "analysisRunMetadata", "dryRun"}
    _check_keys(obj, known | ({"startingStep"} if background else set()), path, ctx)
    if obj.get("dryRun"):
        raise ctx.error(f"{path}.dryRun", "put dryRun in the AnalysisTemplate (spec.dryRun)")
    for setting in ("args", "measurementRetention", "analysisRunMetadata"):
        if setting in obj:
            ctx.ignore(f"{path}.{setting}")
    refs = []
    for t, ref in enumerate(obj.get("templates") or []):
        kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
        key = (kind, str(ref.get("templateName")))
        if key not in ctx.manifests.analysis_templates:
            raise ctx.error(
                f"{path}.templates[{t}]",
                f"{kind} {key[1]!r} is not among the manifests: pass its file too",
            )
        uses.setdefault(key, []).append(obj)
        refs.append(key)
    out: dict[str, Any] = {"templates": refs}
    if background and obj.get("startingStep"):
        out["startingStep"] = _int(obj["startingStep"], f"{path}.startingStep", ctx, {})
    return out


def _step(step: dict, path: str, ctx: Context, uses: dict) -> dict[str, Any]:
    if len(step) != 1:
        raise ctx.error(path, "a step has exactly one action")
    action, value = next(iter(step.items()))
    if action == "setWeight":
        return {"setWeight": _int(value, f"{path}.setWeight", ctx, {})}
    if action == "pause":
        value = value or {}
        _check_keys(value, {"duration"}, f"{path}.pause", ctx)
        if value.get("duration") is None:
            return {"pause": {}}
        return {
            "pause": {
                "duration": go_seconds(value["duration"], f"{path}.pause.duration", ctx, whole=True)
            }
        }
    if action == "analysis":
        return {"analysis": _analysis(value or {}, f"{path}.analysis", ctx, uses)}
    if action == "setCanaryScale":
        _check_keys(value, {"replicas", "weight", "matchTrafficWeight"}, f"{path}.{action}", ctx)
        return {"setCanaryScale": dict(value)}
    if action == "setHeaderRoute":
        _check_keys(value, {"name", "match"}, f"{path}.{action}", ctx)
        return {"setHeaderRoute": dict(value)}
    raise ctx.error(f"{path}.{action}", f"the simulator has no model of {action} steps")


def _router(tr: dict, ctx: Context) -> dict[str, Any]:
    path = "spec.strategy.canary.trafficRouting"
    routers = [r for r in tr if r not in ("maxTrafficWeight", "managedRoutes")]
    if len(routers) != 1 or routers[0] not in ARGO_ROUTERS:
        raise ctx.error(
            path, f"routers {routers}: the simulator models one of {', '.join(ARGO_ROUTERS)}"
        )
    router = routers[0]
    config = tr[router] or {}
    if router == "alb" and config.get("stickinessConfig", {}).get("enabled"):
        raise ctx.error(f"{path}.alb.stickinessConfig", "sticky target groups are not modelled")
    for key in sorted(config):
        if key not in _ROUTER_NAMES[router] and key != "stickinessConfig":
            raise ctx.error(f"{path}.{router}.{key}", "field not understood")
        ctx.ignore(f"{path}.{router}.{key} (object names)")
    if "managedRoutes" in tr:
        ctx.ignore(f"{path}.managedRoutes (derived from the setHeaderRoute steps)")
    out: dict[str, Any] = {router: {}}
    if tr.get("maxTrafficWeight") is not None:
        out["maxTrafficWeight"] = _int(tr["maxTrafficWeight"], f"{path}.maxTrafficWeight", ctx, {})
    return out


def _common(strategy: dict, path: str, ctx: Context, out: dict) -> None:
    for key in _NAMES + _DECOR:
        if key in strategy:
            ctx.ignore(f"{path}.{key}")
    limit = strategy.get("scaleDownDelayRevisionLimit")
    if limit is not None:
        if _int(limit, f"{path}.scaleDownDelayRevisionLimit", ctx, {}) == 0:
            raise ctx.error(
                f"{path}.scaleDownDelayRevisionLimit",
                "0 scales old pods down at once; not modelled",
            )
        ctx.ignore(f"{path}.scaleDownDelayRevisionLimit (only older ReplicaSets beyond one)")
    for key in ("scaleDownDelaySeconds", "abortScaleDownDelaySeconds", "autoPromotionSeconds"):
        if strategy.get(key) is not None:
            out[key] = float(_int(strategy[key], f"{path}.{key}", ctx, {}))


def _fence(value: Any) -> Any:
    """Argo reads any string maxSurge/maxUnavailable as a percentage ("25" is 25 %)."""
    return f"{value}%" if isinstance(value, str) and not value.endswith("%") else value


def import_rollout(doc: dict, ctx: Context) -> Any:
    """The Canary or BlueGreen policy of an Argo Rollout."""
    meta, spec = ctx.open(doc, "Rollout")
    name = meta.get("name")
    known = {
        "replicas",
        "minReadySeconds",
        "progressDeadlineSeconds",
        "progressDeadlineAbort",
        "rollbackWindow",
        "paused",
        "strategy",
        "analysis",
        *_IGNORED_SPEC,
    }
    _check_keys(spec, known, "spec", ctx)
    for key, why in _IGNORED_SPEC.items():
        if key in spec:
            ctx.ignore(f"spec.{key} ({why})")
    if spec.get("paused"):
        raise ctx.error("spec.paused", "a paused Rollout waits for a human: unpause it first")
    if "analysis" in spec:
        ctx.ignore("spec.analysis (AnalysisRun history limits)")
    data: dict[str, Any] = {"name": name}
    if spec.get("replicas") is not None:
        data["replicas"] = _int(spec["replicas"], "spec.replicas", ctx, {})
    else:
        ctx.notes.append("spec.replicas is absent: Argo runs 1 replica; the world decides here")
    for key in ("minReadySeconds", "progressDeadlineSeconds"):
        if spec.get(key) is not None:
            data[key] = float(_int(spec[key], f"spec.{key}", ctx, {}))
    if spec.get("progressDeadlineAbort"):
        data["progressDeadlineAbort"] = True
    if spec.get("rollbackWindow") is not None:
        data["rollbackWindow"] = {"revisions": spec["rollbackWindow"].get("revisions")}
    strategy = spec.get("strategy") or {}
    uses: dict[tuple[str, str], list[dict]] = {}
    if set(strategy) == {"canary"}:
        data["kind"] = "Canary"
        _canary(strategy["canary"] or {}, ctx, data, uses)
    elif set(strategy) == {"blueGreen"}:
        data["kind"] = "BlueGreen"
        _bluegreen(strategy["blueGreen"] or {}, ctx, data, uses)
    else:
        raise ctx.error("spec.strategy", "needs exactly one of canary, blueGreen")
    # every given AnalysisTemplate (the export writes them all), referenced cluster ones
    order = ctx.manifests.order
    keys = [k for k in dict.fromkeys(order) if k in uses or k[0] == "AnalysisTemplate"]
    templates = [
        import_template(ctx.manifests.analysis_templates[k], uses.get(k, []), ctx, f"{name}-")
        for k in keys
    ]
    names = {k: t["name"] for k, t in zip(keys, templates, strict=True)}
    if len(set(names.values())) != len(names):
        names = {k: k[1] for k in keys}
        for k, t in zip(keys, templates, strict=True):
            t["name"] = k[1]
    _resolve_refs(data, names)
    data["analysisTemplates"] = templates
    try:
        return parse_policy(data, path=ctx.label)
    except PolicyError as exc:
        raise PolicyError(exc.message, path=exc.path, file=ctx.file) from None


def _resolve_refs(node: Any, names: dict) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("templates"), list) and all(
            isinstance(t, tuple) for t in node["templates"]
        ):
            node["templates"] = [{"templateName": names[t]} for t in node["templates"]]
        for value in node.values():
            _resolve_refs(value, names)
    elif isinstance(node, list):
        for value in node:
            _resolve_refs(value, names)


def _canary(canary: dict, ctx: Context, data: dict, uses: dict) -> None:
    path = "spec.strategy.canary"
    known = {
        "steps",
        "analysis",
        "trafficRouting",
        "maxSurge",
        "maxUnavailable",
        "dynamicStableScale",
        "minPodsPerReplicaSet",
        "scaleDownDelaySeconds",
        "abortScaleDownDelaySeconds",
        "scaleDownDelayRevisionLimit",
        "replicaProgressThreshold",
        *_NAMES,
        *_DECOR,
    }
    _check_keys(canary, known, path, ctx)
    if canary.get("replicaProgressThreshold") is not None:
        raise ctx.error(f"{path}.replicaProgressThreshold", "not modelled: steps wait for 100 %")
    _common(canary, path, ctx, data)
    for key in ("maxSurge", "maxUnavailable"):
        if canary.get(key) is not None:
            data[key] = _fence(canary[key])
    if canary.get("dynamicStableScale"):
        data["dynamicStableScale"] = True
    if canary.get("minPodsPerReplicaSet") is not None:
        data["minPodsPerReplicaSet"] = canary["minPodsPerReplicaSet"]
    if canary.get("trafficRouting"):
        data["trafficRouting"] = _router(canary["trafficRouting"], ctx)
    if canary.get("analysis"):
        data["analysis"] = _analysis(canary["analysis"], f"{path}.analysis", ctx, uses, True)
    data["steps"] = [
        _step(s, f"{path}.steps[{i}]", ctx, uses) for i, s in enumerate(canary.get("steps") or [])
    ]


def _bluegreen(bg: dict, ctx: Context, data: dict, uses: dict) -> None:
    path = "spec.strategy.blueGreen"
    known = {
        "autoPromotionEnabled",
        "autoPromotionSeconds",
        "previewReplicaCount",
        "scaleDownDelaySeconds",
        "abortScaleDownDelaySeconds",
        "scaleDownDelayRevisionLimit",
        "prePromotionAnalysis",
        "postPromotionAnalysis",
        "maxUnavailable",
        *_NAMES,
        *_DECOR,
    }
    _check_keys(bg, known, path, ctx)
    _common(bg, path, ctx, data)
    if "maxUnavailable" in bg:
        ctx.ignore(f"{path}.maxUnavailable (pod restarts only)")
    if bg.get("autoPromotionEnabled") is False:
        data["autoPromotionEnabled"] = False
    if bg.get("previewReplicaCount") is not None:
        data["previewReplicaCount"] = _int(
            bg["previewReplicaCount"], f"{path}.previewReplicaCount", ctx, {}
        )
    for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
        if bg.get(key):
            data[key] = _analysis(bg[key], f"{path}.{key}", ctx, uses)
