"""Argo ``Rollout`` (+ the AnalysisTemplates it references) -> Canary or BlueGreen policy.

Every field of the Rollout that changes timing or traffic is read into the policy (the
strategy by ``argo_steps``, single fields by ``argo_fields``); fields that name or decorate live
objects are ignored and listed, and so are the templates the Rollout does not reference; a
field the simulator cannot model (step plugins, replicaProgressThreshold...) is refused with the
path to it. Durations follow Argo: a pause
takes whole seconds (fractions truncate, as ``DurationSeconds`` does) and Go durations have no
"d". A Rollout without ``replicas`` runs Argo's 1.
"""

from __future__ import annotations

import re
from typing import Any

from policies.conditions import Condition, ConditionError
from policies.errors import PolicyError
from policies.exporters import promql
from policies.importers.argo_fields import (
    ARG,
    as_int,
    check_keys,
    go_seconds,
    mapping,
    refuse_flow_keys,
    substitute,
)
from policies.importers.argo_steps import read_bluegreen, read_canary
from policies.importers.context import Context, map_hint
from policies.loading import parse_policy

__all__ = ["go_seconds", "import_rollout", "import_template"]

_IGNORED_SPEC = {
    "selector": "pod selector",
    "template": "pod template (images, containers)",
    "workloadRef": "pod template by reference",
    "revisionHistoryLimit": "history kept, not timing",
    "restartAt": "a one-off restart request",
}

_DEFAULT_WINDOW_S = 60.0
_METRIC_LIMITS = (
    "count",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "consecutiveSuccessLimit",
)
_NAN_FILTER = re.compile(r">=\s*0(?:\.0*)?\s*$")


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


_BARE_RESULT = re.compile(
    r"(?<!len\()(?<!isNil\()(?<!default\()(?<!all\()(?<!any\()(?<!none\()"
    r"\bresult\b(?!\s*\[)"
)
"""``result`` compared as a number, not indexed or handed to a function of the vector."""


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
    check_keys(m, known, where, ctx, label)
    ctx.read.add(label)
    name = m.get("name")
    out: dict[str, Any] = {"name": name}
    for key in ("interval", "initialDelay"):  # arguments resolved first, as Argo does
        if m.get(key) not in (None, ""):
            value = substitute(m[key], args, f"{where}.{key}", ctx, label)
            out[key] = go_seconds(value, f"{where}.{key}", ctx)
    for key in _METRIC_LIMITS:
        if m.get(key) is not None:
            value = substitute(m[key], args, f"{where}.{key}", ctx, label)
            out[key] = as_int(value, f"{where}.{key}", ctx, args)
    conditions = {}
    for key in ("successCondition", "failureCondition"):
        if m.get(key):
            text = substitute(str(m[key]), args, f"{where}.{key}", ctx, label)
            try:
                Condition(text)
            except ConditionError as exc:
                raise ctx.error(
                    f"{where}.{key}", f"{exc} (Argo expr beyond safe comparisons)", label
                ) from None
            conditions[key] = text
    provider = m.get("provider") or {}
    for key, text in conditions.items():
        if isinstance(provider, dict) and "prometheus" in provider and _BARE_RESULT.search(text):
            raise ctx.error(
                f"{where}.{key}",
                f"{text!r} compares the whole result: Argo hands a Prometheus condition the"
                " query's vector, so the comparison is an Error measurement in Argo; write"
                " result[0]",
                label,
            )
    if "plugin" in provider:  # Argo's metric plugins, by name: {plugin: {org/name: config}}
        plugins = provider["plugin"] if isinstance(provider["plugin"], dict) else {}
        kind = "metric plugin " + (", ".join(sorted(map(str, plugins))) or "(unnamed)")
    else:
        kind = "provider " + (", ".join(sorted(map(str, provider))) or "none")
    query = ctx.mapped(f"{tname}/{name}", str(name))
    if query is not None:
        # a Prometheus query ending in ``>= 0`` filters NaN out; any other reaches the conditions
        text = str((provider.get("prometheus") or {}).get("query", ""))
        filtered = bool(_NAN_FILTER.search(text)) or "prometheus" not in provider
        query = query.model_copy(update={"nan_filter": filtered})
        ctx.notes.append(
            f"{label} metric {name}: {kind} mapped explicitly to {query.to_dict()}; its"
            f" conditions are compared in {query.scale or 'a count'}"
        )
        form = promql.recognise_form(ARG.sub(lambda g: args.get(g.group(1), g.group(0)), text))
        if form is not None and form.query.scale != query.scale:
            ctx.notes.append(
                f"{label} metric {name}: its query returns {form.scale}, the mapping says"
                f" {query.scale}: add :{form.scale} to the mapping if the conditions are in it"
            )
        else:  # the numbers the conditions compare with: 99 is no fraction
            number = r"(?<![\w.\[\]])(\d+\.?\d*|\.\d+)(?![\w.\]])"
            found = [float(n) for v in conditions.values() for n in re.findall(number, v)]
            ctx.check_scale(f"{name} ({label})", query, found)
    elif set(provider) != {"prometheus"}:
        why = f"{kind} is a metric that needs `map:`"
        raise ctx.error(where, map_hint(name, why), label)
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
        text = ARG.sub(lambda g: args.get(g.group(1), g.group(0)), str(prom.get("query", "")))
        form = promql.recognise_form(text)
        if form is None or form.scale == "ms_floor":
            why = promql.why_unrecognised(text) if form is None else "truncated milliseconds"
            raise ctx.error(where, map_hint(name, why), label)
        if form.query.window is None:
            why = "its range is an argument no analysis reference gives"
            raise ctx.error(where, map_hint(name, why), label)
        # Argo judges a NaN sample by the conditions unless the query filters it (``>= 0``)
        query = form.query.model_copy(update={"nan_filter": form.nan_filter})
        for note in promql.form_notes(form):
            ctx.notes.append(f"{label} metric {name}: {note}")
        if query.unit is not None:  # the conditions stay as written, in the query's unit
            ctx.notes.append(
                f"{label} metric {name}: the query returns {query.unit}; its conditions are"
                f" compared in {query.unit}, as Argo compares them"
            )
        if not form.nan_filter and query.measure != "requestCount" and not query.min_rate:
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


def _check_resolved(spec: dict, ref: dict, ctx: Context, label: str) -> None:
    """Every argument the template declares without a value is given by the analysis that
    uses it, or Argo refuses the Rollout (``MergeArgs``: "args.x was not resolved", its
    reference validation marks the Rollout InvalidSpec and it never progresses)."""
    given = {a.get("name") for a in ref.get("args") or [] if "value" in a or "valueFrom" in a}
    for i, arg in enumerate(spec.get("args") or []):
        unset = isinstance(arg, dict) and not {"value", "valueFrom"} & set(arg)
        if unset and arg.get("name") not in given:
            raise ctx.error(
                f"spec.args[{i}]",
                f"args.{arg.get('name')} is not resolved: the template gives no value and an"
                " analysis using it passes none, so Argo marks the Rollout InvalidSpec",
                label,
            )


def import_template(doc: dict, refs: list[dict], ctx: Context, prefix: str) -> dict[str, Any]:
    """One Analysis/ClusterAnalysisTemplate as policy data (``analysisTemplates[i]``)."""
    kind, meta = doc["kind"], doc.get("metadata") or {}
    label = f"{kind}/{meta.get('name')}"
    for key in sorted(set(meta) - {"name"}):
        ctx.ignore(f"metadata.{key}", label)
    spec = doc.get("spec") or {}
    known = {"args", "metrics", "dryRun", "measurementRetention", "templates"}
    check_keys(spec, known, "spec", ctx, label)
    if spec.get("templates"):
        raise ctx.error("spec.templates", "nested templates: import them flattened", label)
    if spec.get("measurementRetention"):
        ctx.ignore("spec.measurementRetention (history only)", label)
    name = str(meta.get("name"))
    tname = name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else name
    results: list[list[dict[str, Any]]] = []
    for ref in refs or [{}]:
        if refs:
            _check_resolved(spec, ref, ctx, label)
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


def import_rollout(doc: dict, ctx: Context) -> Any:
    """The Canary or BlueGreen policy of an Argo Rollout (and the templates it references)."""
    ctx.label = "Rollout"
    mapping(doc.get("metadata"), "metadata", ctx)
    meta, spec = ctx.open(doc, "Rollout")
    name = meta.get("name")
    spec = mapping(spec, "spec", ctx)
    read = {k: v for k, v in spec.items() if k not in _IGNORED_SPEC}  # a pod template may be
    refuse_flow_keys({"spec": read}, ctx)  # a Helm template's: only what is read must parse
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
    check_keys(spec, known, "spec", ctx)
    for key, why in _IGNORED_SPEC.items():
        if key in spec:
            ctx.ignore(f"spec.{key} ({why})")
    if spec.get("paused"):
        raise ctx.error("spec.paused", "a paused Rollout waits for a human: unpause it first")
    if "analysis" in spec:
        ctx.ignore("spec.analysis (AnalysisRun history limits)")
    data: dict[str, Any] = {"name": name}
    if spec.get("replicas") is not None:
        data["replicas"] = as_int(spec["replicas"], "spec.replicas", ctx)
        if data["replicas"] < 1:
            raise ctx.error(
                "spec.replicas",
                f"{data['replicas']}: a Rollout scaled to zero has no release to run",
            )
    else:
        data["replicas"] = 1
        ctx.notes.append("spec.replicas is absent: Argo runs 1 replica (its default): replicas 1")
    for key in ("minReadySeconds", "progressDeadlineSeconds"):
        if spec.get(key) is not None:
            data[key] = float(as_int(spec[key], f"spec.{key}", ctx))
    if spec.get("progressDeadlineAbort"):
        data["progressDeadlineAbort"] = True
    if spec.get("rollbackWindow") is not None:
        window = mapping(spec["rollbackWindow"], "spec.rollbackWindow", ctx)
        data["rollbackWindow"] = {"revisions": window.get("revisions")}
    strategy = mapping(spec.get("strategy"), "spec.strategy", ctx)
    uses: dict[tuple[str, str], list[dict]] = {}
    if set(strategy) == {"canary"}:
        data["kind"] = "Canary"
        selector = spec.get("selector")
        labels = selector.get("matchLabels") if isinstance(selector, dict) else None
        read_canary(strategy["canary"], ctx, data, uses, labels if isinstance(labels, dict) else {})
    elif set(strategy) == {"blueGreen"}:
        data["kind"] = "BlueGreen"
        read_bluegreen(strategy["blueGreen"], ctx, data, uses)
    else:
        raise ctx.error("spec.strategy", "needs exactly one of canary, blueGreen")
    # the templates the Rollout references, in the order given; the others are listed
    keys = [k for k in dict.fromkeys(ctx.manifests.order) if k in uses]
    for k in dict.fromkeys(ctx.manifests.order):
        if k not in uses:
            ctx.ignored.append(f"{k[0]}/{k[1]}: not referenced by {ctx.label}")
    for k in keys:
        spec_of = ctx.manifests.analysis_templates[k].get("spec")
        refuse_flow_keys({"spec": spec_of}, ctx, f"{k[0]}/{k[1]}")
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
    """Template keys (kind, name) -> the policy's template names, in analyses' ``templates``
    and experiment analyses' ``templateName``."""
    if isinstance(node, dict):
        if isinstance(node.get("templateName"), tuple):
            node["templateName"] = names[node["templateName"]]
        if isinstance(node.get("templates"), list) and all(
            isinstance(t, tuple) for t in node["templates"]
        ):
            node["templates"] = [{"templateName": names[t]} for t in node["templates"]]
        for value in node.values():
            _resolve_refs(value, names)
    elif isinstance(node, list):
        for value in node:
            _resolve_refs(value, names)
