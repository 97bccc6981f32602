"""An Argo Rollout's strategy -> policy data: canary steps, traffic routers, blue-green.

Steps keep Argo's shape; a step may hold several actions where Argo's validation accepts them
(at most one of setWeight, pause, experiment, analysis, plus setCanaryScale, setHeaderRoute and
setMirrorRoute, a step plugin). Every Argo traffic router is read, several at once, and
traffic-router plugins by name: their settings name live objects and are ignored and listed. An
experiment's templates are read with whether their pods keep the Rollout's selector labels (a
basic canary's Service then sends them traffic). A step plugin is read as a step that takes time
and can fail, its ``config`` kept as written (the plugin's own, for export): how long it takes and
how often it fails are the world's (``world.stepPlugins``).
"""

from __future__ import annotations

from typing import Any

from policies.importers.argo_fields import as_int, check_keys, go_seconds, mapping
from policies.importers.context import Context
from policies.vocabulary import ARGO_ROUTERS, PLUGIN_ROUTERS, ArgoRouter

__all__ = ["ROUTER_NAMES", "read_bluegreen", "read_canary"]

NAMES = ("canaryService", "stableService", "activeService", "previewService", "pingPong")
DECOR = ("canaryMetadata", "stableMetadata", "activeMetadata", "previewMetadata", "antiAffinity")
ROUTER_NAMES: dict[ArgoRouter, tuple[str, ...]] = {  # each router's object names (ignored)
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
    "ambassador": ("mappings",),
    "apisix": ("route",),
    "appMesh": ("virtualService", "virtualNodeGroup"),
    "traefik": ("weightedTraefikServiceName",),
    "plugins": (),  # a plugin's configuration is its own: every key is ignored and listed
}
_ONE_OF = ("setWeight", "pause", "experiment", "analysis")  # Argo's hasMultipleStepsType


def analysis(obj: Any, path: str, ctx: Context, uses: dict, background: bool = False):
    """An analysis reference: the templates it uses (resolved to names later)."""
    obj = mapping(obj, path, ctx)
    known = {"templates", "args", "measurementRetention", "analysisRunMetadata", "dryRun"}
    check_keys(obj, known | ({"startingStep"} if background else set()), path, ctx)
    if obj.get("dryRun"):
        raise ctx.error(f"{path}.dryRun", "put dryRun in the AnalysisTemplate (spec.dryRun)")
    for setting in ("args", "measurementRetention", "analysisRunMetadata"):
        if setting in obj:
            ctx.ignore(f"{path}.{setting}")
    templates = obj.get("templates") or []
    if not isinstance(templates, list):
        raise ctx.error(f"{path}.templates", "is a list of {templateName: ...}")
    refs = [
        _template_key(ref, obj, f"{path}.templates[{t}]", ctx, uses)
        for t, ref in enumerate(templates)
    ]
    out: dict[str, Any] = {"templates": refs}
    if background and obj.get("startingStep"):
        out["startingStep"] = as_int(obj["startingStep"], f"{path}.startingStep", ctx)
    return out


def _template_key(ref: Any, use: dict, where: str, ctx: Context, uses: dict) -> tuple[str, str]:
    """A template reference ({templateName, clusterScope}) as the (kind, name) of a manifest;
    ``use`` (the analysis with its args) is recorded as one of its uses."""
    ref = mapping(ref, where, ctx)
    extra = {"name", "args", "requiredForCompletion"} if ref is use else set()  # experiment's
    check_keys(ref, {"templateName", "clusterScope"} | extra, where, ctx)
    if not ref.get("templateName"):  # (an old clusterTemplateName is pruned: see the note)
        raise ctx.error(where, "templateName is required: Argo cannot create the run without one")
    kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
    key = (kind, str(ref["templateName"]))
    if key not in ctx.manifests.analysis_templates:
        raise ctx.error(where, f"{kind} {key[1]!r} is not among the manifests: pass its file too")
    uses.setdefault(key, []).append(use)
    return key


def _experiment(value: Any, where: str, ctx: Context, uses: dict, labels: dict) -> dict:
    """An experiment step: its templates (with ``sharesService`` from their labels against
    the Rollout's selector, ``labels``), its analyses (template keys, resolved later)."""
    value = mapping(value, where, ctx)
    known = {"duration", "templates", "analyses", "analysisRunMetadata", "dryRun"}
    check_keys(value, known | {"scaleDownDelaySeconds"}, where, ctx)
    if value.get("dryRun"):
        raise ctx.error(f"{where}.dryRun", "put dryRun in the AnalysisTemplate (spec.dryRun)")
    if "analysisRunMetadata" in value:
        ctx.ignore(f"{where}.analysisRunMetadata")
    out: dict[str, Any] = {}
    if value.get("duration") not in (None, ""):
        out["duration"] = go_seconds(value["duration"], f"{where}.duration", ctx)
    if value.get("scaleDownDelaySeconds") is not None:
        delay = as_int(value["scaleDownDelaySeconds"], f"{where}.scaleDownDelaySeconds", ctx)
        out["scaleDownDelaySeconds"] = float(delay)
    templates = value.get("templates")
    if not isinstance(templates, list) or not templates:
        raise ctx.error(f"{where}.templates", "is a list of {name, specRef: canary|stable}")
    out["templates"] = [
        _experiment_template(t, f"{where}.templates[{i}]", ctx, labels)
        for i, t in enumerate(templates)
    ]
    analyses = value.get("analyses") or []
    if not isinstance(analyses, list):
        raise ctx.error(f"{where}.analyses", "is a list of {name, templateName}")
    out["analyses"] = []
    for j, a in enumerate(analyses):
        here = f"{where}.analyses[{j}]"
        a = mapping(a, here, ctx)
        if "args" in a:
            ctx.ignore(f"{here}.args")
        entry: dict[str, Any] = {
            "name": a.get("name"),
            "templateName": _template_key(a, a, here, ctx, uses),
        }
        if a.get("requiredForCompletion"):
            entry["requiredForCompletion"] = True
        out["analyses"].append(entry)
    return out


def _experiment_template(t: Any, where: str, ctx: Context, labels: dict) -> dict:
    t = mapping(t, where, ctx)
    check_keys(
        t, {"name", "specRef", "replicas", "weight", "selector", "metadata", "service"}, where, ctx
    )
    out: dict[str, Any] = {"name": t.get("name"), "specRef": t.get("specRef")}
    for key in ("replicas", "weight"):
        if t.get(key) is not None:
            out[key] = as_int(t[key], f"{where}.{key}", ctx)
    for key in ("selector", "service"):
        if key in t:
            ctx.ignore(f"{where}.{key} (names and labels of live objects)")
    own = ((t.get("metadata") or {}).get("labels")) or {}
    changed = sorted(k for k, v in own.items() if k in labels and labels[k] != v)
    if changed:
        out["sharesService"] = False
        ctx.notes.append(
            f"{where}: its labels change {', '.join(changed)} of the Rollout's selector: a basic"
            " canary's Service does not send its pods traffic"
        )
    elif "metadata" in t:
        ctx.ignore(f"{where}.metadata (labels that keep the Rollout's selector)")
    return out


def _plugin(value: Any, where: str, ctx: Context) -> dict[str, Any]:
    """A step plugin: its name and its config, kept as written (only the plugin reads it)."""
    value = mapping(value, where, ctx)
    check_keys(value, {"name", "config"}, where, ctx)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ctx.error(
            f"{where}.name", "names the step plugin (as the controller's stepPlugins do)"
        )
    out: dict[str, Any] = {"name": name}
    if value.get("config") is not None:
        out["config"] = mapping(value["config"], f"{where}.config", ctx)
    ctx.notes.append(
        f"{where}: step plugin {name}: a step that takes time and can fail (Failed aborts); how"
        " long and how often come from the world (world.stepPlugins)"
    )
    return out


def _action(action: str, value: Any, path: str, ctx: Context, uses: dict, labels: dict) -> Any:
    where = f"{path}.{action}"
    if action == "setWeight":
        return as_int(value, where, ctx)
    if action == "pause":
        value = mapping(value, where, ctx)
        check_keys(value, {"duration"}, where, ctx)
        if value.get("duration") is None:
            return {}
        return {"duration": go_seconds(value["duration"], f"{where}.duration", ctx, whole=True)}
    if action == "analysis":
        return analysis(value, where, ctx, uses)
    if action == "setCanaryScale":
        value = mapping(value, where, ctx)
        check_keys(value, {"replicas", "weight", "matchTrafficWeight"}, where, ctx)
        out: dict[str, Any] = {
            k: as_int(value[k], f"{where}.{k}", ctx) for k in ("replicas", "weight") if k in value
        }
        if "matchTrafficWeight" in value:
            if not isinstance(value["matchTrafficWeight"], bool):
                raise ctx.error(f"{where}.matchTrafficWeight", "is true or false")
            out["matchTrafficWeight"] = value["matchTrafficWeight"]
        return out
    if action == "setHeaderRoute":
        value = mapping(value, where, ctx)
        check_keys(value, {"name", "match"}, where, ctx)
        return dict(value)
    if action == "setMirrorRoute":
        value = mapping(value, where, ctx)
        check_keys(value, {"name", "match", "percentage"}, where, ctx)
        out = dict(value)
        if value.get("percentage") is not None:
            out["percentage"] = as_int(value["percentage"], f"{where}.percentage", ctx)
        return out
    if action == "experiment":
        return _experiment(value, where, ctx, uses, labels)
    if action == "plugin":
        return _plugin(value, where, ctx)
    raise ctx.error(where, f"{action!r} is not an Argo canary step action")


def step(value: Any, path: str, ctx: Context, uses: dict, labels: dict) -> dict[str, Any]:
    """One canary step; several actions where Argo's validation accepts them (``labels``:
    the Rollout's selector, which an experiment's pods may keep or leave)."""
    value = mapping(value, path, ctx, "a step (a mapping such as {setWeight: 20})")
    if not value:
        raise ctx.error(path, "a step needs an action (setWeight, pause, analysis, ...)")
    exclusive = [a for a in _ONE_OF if a in value]
    if len(exclusive) > 1:
        raise ctx.error(
            path,
            f"a step has at most one of setWeight, pause, experiment, analysis (got {exclusive})",
        )
    return {str(a): _action(str(a), v, path, ctx, uses, labels) for a, v in value.items()}


def _router(tr: Any, ctx: Context) -> dict[str, Any]:
    path = "spec.strategy.canary.trafficRouting"
    tr = mapping(tr, path, ctx)
    routers = [r for r in tr if r not in ("maxTrafficWeight", "managedRoutes")]
    for r in routers:
        if r not in ARGO_ROUTERS:
            raise ctx.error(
                f"{path}.{r}", f"not an Argo traffic router (Argo has {', '.join(ARGO_ROUTERS)})"
            )
    out: dict[str, Any] = {}
    for router in routers:
        config = mapping(tr[router], f"{path}.{router}", ctx)
        if router == "plugins":
            if not config:
                raise ctx.error(f"{path}.plugins", "names no plugin")
            for name, settings in config.items():
                mapping(settings, f"{path}.plugins.{name}", ctx)
                kind = PLUGIN_ROUTERS.get(str(name), "plugin")
                ctx.ignore(f"{path}.plugins.{name} (its configuration names live objects)")
                ctx.notes.append(f"traffic-router plugin {name}: a weighted router ({kind})")
            out["plugins"] = {str(name): {} for name in config}
            continue
        if router == "alb" and (config.get("stickinessConfig") or {}).get("enabled"):
            raise ctx.error(f"{path}.alb.stickinessConfig", "sticky target groups are not modelled")
        for key in sorted(config, key=str):
            if key not in ROUTER_NAMES[router] and key != "stickinessConfig":
                raise ctx.error(f"{path}.{router}.{key}", "field not understood")
            ctx.ignore(f"{path}.{router}.{key} (object names)")
        out[router] = {}
    if not routers:
        raise ctx.error(path, f"names no router (Argo has {', '.join(ARGO_ROUTERS)})")
    if "managedRoutes" in tr:
        ctx.ignore(
            f"{path}.managedRoutes (derived from the setHeaderRoute and setMirrorRoute steps)"
        )
    if tr.get("maxTrafficWeight") is not None:
        out["maxTrafficWeight"] = as_int(tr["maxTrafficWeight"], f"{path}.maxTrafficWeight", ctx)
    return out


def _common(strategy: dict, path: str, ctx: Context, out: dict) -> None:
    for key in NAMES + DECOR:
        if key in strategy:
            ctx.ignore(f"{path}.{key}")
    limit = strategy.get("scaleDownDelayRevisionLimit")
    if limit is not None:
        if as_int(limit, f"{path}.scaleDownDelayRevisionLimit", ctx) == 0:
            raise ctx.error(
                f"{path}.scaleDownDelayRevisionLimit",
                "0 scales old pods down at once; not modelled",
            )
        ctx.ignore(f"{path}.scaleDownDelayRevisionLimit (only older ReplicaSets beyond one)")
    for key in ("scaleDownDelaySeconds", "abortScaleDownDelaySeconds", "autoPromotionSeconds"):
        if strategy.get(key) is not None:
            out[key] = float(as_int(strategy[key], f"{path}.{key}", ctx))


def _fence(value: Any) -> Any:
    """Argo reads any string maxSurge/maxUnavailable as a percentage ("25" is 25 %)."""
    return f"{value}%" if isinstance(value, str) and not value.endswith("%") else value


def read_canary(
    canary: Any, ctx: Context, data: dict, uses: dict, labels: dict | None = None
) -> None:
    """``strategy.canary`` into ``data`` (policy fields); ``uses`` collects template uses;
    ``labels`` are the Rollout's selector labels (for experiment templates)."""
    path = "spec.strategy.canary"
    canary = mapping(canary, path, ctx)
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
        *NAMES,
        *DECOR,
    }
    check_keys(canary, known, path, ctx)
    if canary.get("replicaProgressThreshold") is not None:
        raise ctx.error(f"{path}.replicaProgressThreshold", "not modelled: steps wait for 100 %")
    _common(canary, path, ctx, data)
    for key in ("maxSurge", "maxUnavailable"):
        if canary.get(key) is not None:
            data[key] = _fence(canary[key])
    if canary.get("dynamicStableScale"):
        data["dynamicStableScale"] = True
    if canary.get("minPodsPerReplicaSet") is not None:
        where = f"{path}.minPodsPerReplicaSet"
        data["minPodsPerReplicaSet"] = as_int(canary["minPodsPerReplicaSet"], where, ctx)
    if canary.get("trafficRouting"):
        data["trafficRouting"] = _router(canary["trafficRouting"], ctx)
    else:
        for key in ("minPodsPerReplicaSet", "abortScaleDownDelaySeconds"):
            if key in data:
                ctx.notes.append(
                    f"{path}.{key}: Argo ignores it without trafficRouting (its basic canary"
                    " neither keeps a minimum per ReplicaSet nor delays an abort's scale-down);"
                    " so does the simulator"
                )
    if canary.get("analysis"):
        data["analysis"] = analysis(canary["analysis"], f"{path}.analysis", ctx, uses, True)
    steps = canary.get("steps") or []
    if not isinstance(steps, list):
        raise ctx.error(f"{path}.steps", "is a list of steps (- setWeight: 20), not a mapping")
    data["steps"] = [
        step(s, f"{path}.steps[{i}]", ctx, uses, labels or {}) for i, s in enumerate(steps)
    ]


def read_bluegreen(bg: Any, ctx: Context, data: dict, uses: dict) -> None:
    """``strategy.blueGreen`` into ``data``."""
    path = "spec.strategy.blueGreen"
    bg = mapping(bg, path, ctx)
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
        *NAMES,
        *DECOR,
    }
    check_keys(bg, known, path, ctx)
    _common(bg, path, ctx, data)
    if "maxUnavailable" in bg:
        ctx.ignore(f"{path}.maxUnavailable (pod restarts only)")
    if bg.get("autoPromotionEnabled") is False:
        data["autoPromotionEnabled"] = False
    if bg.get("previewReplicaCount") is not None:
        data["previewReplicaCount"] = as_int(
            bg["previewReplicaCount"], f"{path}.previewReplicaCount", ctx
        )
    for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
        if bg.get(key):
            data[key] = analysis(bg[key], f"{path}.{key}", ctx, uses)
