"""What reaches a Flagger canary besides its users: load tests, mirrored requests, the
session-affinity cookie, and the kubernetes provider's blue/green; and the approval gates.

``confirm-*`` webhooks become approval gates (``analysis.gates``). A ``rollout`` (or untyped)
or ``pre-rollout`` webhook whose ``metadata.cmd`` runs ``hey`` against the canary's own Service
(``http://<service>-canary[.<namespace>[.svc[.cluster.local]]][:port]/...``) becomes
``analysis.loadTest``: its requests reach the canary whatever the router does, so they are part
of what Flagger's checks see (in a blue/green they are most of it). hey's ``-q`` is a rate per
worker (``-c`` workers, default 50), so the load is ``q x c`` requests per second; ``-z`` is how
long each run lasts (without it hey sends ``-n`` requests, default 200). A load test through the
ingress, the apex or the primary Service is listed and not modelled: those requests are routed
like the world's users (its own traffic model stands for them), and at weight 0 none reaches the
canary, which is what Flagger's checks then see. Other hooks (acceptance tests, events,
notifications, rollback signals) are listed as ignored.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

from policies.base import brief
from policies.flagger import KUBERNETES_ITERATIONS, LOAD_TESTER
from policies.importers.argo_fields import go_seconds
from policies.importers.context import Context

__all__ = [
    "kubernetes_blue_green",
    "listed",
    "number",
    "traffic_fields",
    "variables_of",
    "webhooks",
]

_HOOKS_IGNORED = {
    "rollback": "a rollback on an outside signal: the world's operators decide rollbacks",
    "skip": "skips the analysis on an outside signal",
    "manual-traffic-control": "a person setting the weight by hand",
}
_GATES = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion")
_LOAD_HOOKS = ("rollout", "pre-rollout")
_HEY_DEFAULTS = {"-c": "50", "-n": "200"}  # rakyll/hey's flag defaults
_HEY_VALUED = {"-z", "-q", "-c", "-n", "-m", "-H", "-t", "-A", "-d", "-D", "-T", "-a", "-x"}
_HEY_VALUED |= {"-host", "-cpus", "-o", "-U"}


def listed(value: Any, path: str, ctx: Context) -> list:
    if value is not None and not isinstance(value, list):
        raise ctx.error(path, f"{value!r} is not a list")
    return value or []


def _hey(cmd: str) -> tuple[dict[str, str], str] | None:
    """(flags, URL) of a ``hey`` command line, or None when it is not one."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    if not words or words[0].rsplit("/", 1)[-1] != "hey":
        return None
    flags: dict[str, str] = {}
    rest: list[str] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word.startswith("--"):  # Go's flag package takes -flag and --flag alike
            word = word[1:]
        name, eq, value = word.partition("=")
        if word.startswith("-") and eq:  # and -flag=value
            flags[name] = value
            i += 1
            continue
        if word in _HEY_VALUED and i + 1 < len(words):
            flags[word] = words[i + 1]
            i += 2
            continue
        if word.startswith("-"):
            flags[word] = ""
        else:
            rest.append(word)
        i += 1
    return flags, (rest[-1] if rest else "")


def _canary_host(url: str, service: str, namespace: str) -> bool:
    host = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0].split(":", 1)[0]
    names = (f"{service}-canary", f"{service}-canary.{namespace}")
    return host in names or host.startswith(f"{service}-canary.{namespace}.svc")


def _load_test(hook: dict, path: str, cmd: str, where: dict, ctx: Context) -> dict | None:
    """The ``loadTest`` of a hey webhook on the canary's Service, or None (noted)."""
    parsed = _hey(cmd)
    name, kind = hook.get("name"), hook.get("type") or "rollout"
    if parsed is None:
        ctx.ignore(f"{path} ({kind} hook {name}: tests and traffic are the world's)")
        return None
    flags, url = parsed
    if not _canary_host(url, where["service"], where["namespace"]):
        ctx.ignore(
            f"{path} ({kind} hook {name}: a load test; hey sends to {url or 'no URL'}, not the"
            f" canary's own Service {where['service']}-canary: its requests are routed like users',"
            " which the"
            " world's traffic stands for; at weight 0 none reaches the canary, as in Flagger)"
        )
        return None
    if "-q" not in flags:
        raise ctx.error(
            f"{path}.metadata.cmd",
            "hey without -q sends as fast as the canary answers (its rate follows the canary's"
            " latency): not modelled; give -q (requests per second per worker)",
        )
    try:
        per_worker = float(flags["-q"])
        workers = int(flags.get("-c", _HEY_DEFAULTS["-c"]))
        total = int(flags.get("-n", _HEY_DEFAULTS["-n"]))
    except ValueError:
        raise ctx.error(f"{path}.metadata.cmd", f"{cmd!r}: hey's -q, -c, -n are numbers") from None
    if per_worker <= 0 or workers < 1:
        raise ctx.error(f"{path}.metadata.cmd", f"{cmd!r}: hey needs -q > 0 and -c >= 1")
    rate = per_worker * workers
    if "-z" in flags:
        duration = go_seconds(flags["-z"], f"{path}.metadata.cmd", ctx)
        lasting = f"-z {flags['-z']}"
    else:  # hey sends -n requests in all, spread over the workers at -q each
        duration = round(total / rate, 3)
        lasting = f"-n {total}{'' if '-n' in flags else ', hey default'} / {rate:g} per s"
    clients = f"-c {workers}{'' if '-c' in flags else ', hey default'}"
    out: dict[str, Any] = {"rate": rate, "concurrency": workers, "duration": duration}
    if kind != "rollout":
        out["type"] = kind
    if name not in (None, "load-test"):
        out["name"] = name
    if hook.get("url") not in (None, LOAD_TESTER.format(namespace=where["namespace"])):
        out["url"] = hook["url"]
    ignored = sorted(set(flags) - {"-z", "-q", "-c", "-n"})
    if ignored:
        ctx.ignore(f"{path}.metadata.cmd (hey {' '.join(ignored)}: what each request carries)")
    ctx.notes.append(
        f"{path}: load test {name}: hey on the canary's Service at {rate:g} requests/s"
        f" (-q {flags['-q']} x {clients}) for {duration:g} s ({lasting})"
        + (" from the pre-rollout tick" if kind == "pre-rollout" else " from each analysis tick")
        + ": synthetic requests that count in the canary's metrics and hurt no user"
    )
    return out


def webhooks(hooks: Any, where: dict[str, str], ctx: Context) -> tuple[list, dict | None]:
    """(approval gates, load test) of ``analysis.webhooks``; every other hook is listed."""
    gates, loads = [], []
    for i, hook in enumerate(listed(hooks, "spec.analysis.webhooks", ctx)):
        path = f"spec.analysis.webhooks[{i}]"
        if not isinstance(hook, dict):
            raise ctx.error(path, "a webhook is a mapping with name, type and url")
        kind, name = hook.get("type") or "rollout", hook.get("name")
        if kind in _GATES:
            gates.append({"type": kind, "name": name, "url": hook.get("url")})
            ctx.notes.append(
                f"{path}: {kind} hook {name}: an approval gate (the scenario's approval model"
                " decides when it opens)"
            )
            for key in sorted(set(hook) - {"name", "type", "url"}):
                ctx.ignore(f"{path}.{key}")
            continue
        meta = hook.get("metadata")
        cmd = meta.get("cmd") if isinstance(meta, dict) else None
        if kind in _LOAD_HOOKS and isinstance(cmd, str):
            load = _load_test(hook, path, cmd, where, ctx)
            if load is not None:
                loads.append((path, load))
                for key in sorted(set(hook) - {"name", "type", "url", "metadata"}):
                    ctx.ignore(f"{path}.{key}")
                for key in sorted(set(hook["metadata"]) - {"cmd"}):
                    ctx.ignore(f"{path}.metadata.{key}")
            continue
        why = _HOOKS_IGNORED.get(kind, "tests and traffic are the world's")
        ctx.ignore(f"{path} ({kind} hook {name}: {why})")
    if len(loads) > 1:
        raise ctx.error(
            loads[1][0],
            "a second load test on the canary's Service: one is modelled (analysis.loadTest)",
        )
    return gates, (loads[0][1] if loads else None)


def number(value: Any, path: str, ctx: Context, *, whole: bool = False) -> Any:
    """A number as Flagger's Go types read it: ints where the field is an int."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ctx.error(path, f"{brief(value)} is not a number")
    if whole and value != int(value):
        raise ctx.error(path, f"{value!r}: Flagger reads this field as a whole number")
    return int(value) if whole else value


def mapping(value: Any) -> dict:
    """A reference field as a mapping (a list or a string there is another field's error)."""
    return value if isinstance(value, dict) else {}


def variables_of(name: Any, meta: dict, spec: dict, service: dict) -> dict[str, str]:
    """Flagger's MetricTemplate variables (and the names its load tests reach)."""
    target = mapping(spec.get("targetRef")).get("name", name)
    return {
        "name": str(name),
        "namespace": str(meta.get("namespace") or "default"),
        "target": str(target),
        "service": str(service.get("name") or target),
        "ingress": str(mapping(spec.get("ingressRef")).get("name") or target),
    }


def traffic_fields(analysis: dict, ctx: Context) -> dict[str, Any]:
    """``mirror``, ``mirrorWeight`` and ``sessionAffinity``, popped from ``analysis``."""
    out: dict[str, Any] = {}
    path = "spec.analysis"
    mirror = analysis.pop("mirror", None)
    weight = analysis.pop("mirrorWeight", None)
    if mirror not in (None, False, True):
        raise ctx.error(f"{path}.mirror", f"{mirror!r} is not a boolean")
    if mirror:
        out["mirror"] = True
        if weight is not None:
            out["mirrorWeight"] = number(weight, f"{path}.mirrorWeight", ctx)
    elif weight is not None:
        ctx.ignore(f"{path}.mirrorWeight (mirror is off)")
    sticky = analysis.pop("sessionAffinity", None)
    if sticky is not None:
        where = f"{path}.sessionAffinity"
        if not isinstance(sticky, dict) or not isinstance(sticky.get("cookieName"), str):
            raise ctx.error(where, "sessionAffinity is a mapping with a cookieName")
        if sticky.get("primaryCookieName"):
            raise ctx.error(
                f"{where}.primaryCookieName",
                "a cookie that keeps users who reached the primary on it is not modelled (only"
                " the canary's cookie is)",
            )
        out["sessionAffinity"] = {"cookieName": sticky["cookieName"]}
        if sticky.get("maxAge") is not None:
            age = number(sticky["maxAge"], f"{where}.maxAge", ctx)
            out["sessionAffinity"]["maxAge"] = age
        for key in sorted(set(sticky) - {"cookieName", "maxAge", "primaryCookieName"}):
            ctx.ignore(f"{where}.{key} (a cookie attribute)")
    return out


def kubernetes_blue_green(analysis: dict, ctx: Context) -> None:
    """What Flagger's scheduler does to the analysis on the kubernetes provider."""
    path = "spec.analysis"
    if analysis.pop("match", None):
        ctx.notes.append(
            f"{path}.match: dropped, as Flagger drops it on the kubernetes provider (no router)"
        )
    if (analysis.get("iterations") or 0) < 1:
        ctx.notes.append(
            f"{path}: provider kubernetes runs blue/green: {KUBERNETES_ITERATIONS} iterations,"
            " as Flagger sets them when iterations is below 1 (its weights are ignored)"
        )
    ctx.notes.append(
        f"{path}: provider kubernetes: no router; the canary is analysed through its own"
        " Service for the iterations, then the primary's rolling update is what users see"
    )
