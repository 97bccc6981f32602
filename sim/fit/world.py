"""The fitted ``world:`` section, its provenance as YAML comments, and a whole scenario.

What was fitted is written; what was not (operators, most of the platform) is left to the
world's defaults, and the comments say which parts came from data, from which source, window
and step, and how well each form fitted — so a reader can tell a measured number from a
default before trusting a verdict built on it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from policies.durations import format_duration
from sim.fit.error_rate import ErrorRateFit
from sim.fit.latency import LatencyFit
from sim.fit.releases import ReleaseClassFit
from sim.fit.responses import Source
from sim.fit.traffic import TrafficFit

__all__ = ["Fitted", "scenario_yaml", "world_data", "world_yaml"]


@dataclass
class Fitted:
    """Everything ``fit`` found, ready to be written."""

    traffic: TrafficFit
    errors: ErrorRateFit
    sources: dict[str, Source]
    latency: LatencyFit | None = None
    releases: list[ReleaseClassFit] | None = None
    pod_startup: list[float] | None = None
    users: int | None = None
    replicas: int | None = None
    objective: float | None = None
    horizon: float = 6 * 3600.0
    trace_file: str | None = None  # relative to the world file
    notes: list[str] = field(default_factory=list)


def _seconds(value: float) -> str | float:
    """A duration the world reads back: whole seconds as "90s"/"5m", below 10 s as "120ms",
    else seconds as a number."""
    if abs(value - round(value)) < 1e-9:
        return format_duration(float(round(value)))
    if value < 10.0:
        return f"{value * 1000:.4g}ms"
    return round(value, 3)


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def world_data(fit: Fitted) -> dict[str, Any]:
    """The ``world:`` mapping, in the YAML form a user would write."""
    t = fit.traffic
    if t.form == "diurnal":
        body: dict[str, Any] = {"mean": _sig(t.mean), "amplitude": round(t.amplitude, 4)}
        # whole seconds are fine for a day; a short period needs its milliseconds, and the
        # period is written as fitted (peakAt is a phase of that period, not of a rounded one)
        body["peakAt"] = _seconds(round(t.peak_at, 0 if t.period >= 3600 else 3))
        if t.period != 86400.0:
            body["period"] = _seconds(t.period) if round(t.period, 3) == t.period else t.period
        rate: dict[str, Any] = {"diurnal": body}
    else:
        rate = {"trace": {"file": fit.trace_file}}
    world: dict[str, Any] = {"horizon": _seconds(fit.horizon), "traffic": {"rate": rate}}
    if t.form == "diurnal":  # a release at the busiest hour: the worst case (provenance says so)
        world["traffic"]["startAt"] = rate["diurnal"]["peakAt"]
    if fit.users is not None:
        world["users"] = {"count": fit.users}
    baseline: dict[str, Any] = {"errorRate": _sig(fit.errors.error_rate, 3)}
    lat = fit.latency
    if lat is not None:
        if lat.form == "lognormal":
            baseline["latency"] = {
                "lognormal": {"median": _seconds(_sig(lat.median)), "sigma": round(lat.sigma, 4)}
            }
        else:
            baseline["latency"] = {"empirical": [_seconds(v) for v in lat.empirical]}
    world["baseline"] = baseline
    if fit.objective is not None:
        world["latencyObjective"] = _seconds(_sig(fit.objective))
    if fit.releases:
        world["releases"] = [
            {
                "name": c.name,
                "probability": c.probability,
                **({"fault": c.fault} if c.fault else {}),
            }
            for c in fit.releases
        ]
    platform: dict[str, Any] = {}
    if fit.replicas is not None:
        platform["replicas"] = fit.replicas
    if fit.pod_startup:
        platform["podStartup"] = {"empirical": [_seconds(v) for v in fit.pod_startup]}
    if platform:
        world["platform"] = platform
    return world


def _when(epoch: float | None) -> str:
    if epoch is None or not np.isfinite(epoch):
        return "?"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance(fit: Fitted) -> list[str]:
    """The comment lines: sources, windows, fit quality, notes."""
    lines = ["Fitted by `rolloutsim fit` from telemetry; check the report before trusting it."]
    t, e = fit.traffic, fit.errors
    for name, src in fit.sources.items():
        window = ""
        if src.start is not None:
            window = f", {_when(src.start)} .. {_when(src.end)} step {src.step:g} s"
        lines.append(f"{name}: {src.where}{window}")
    lines.append(
        f"traffic: {t.points} samples {_when(float(t.times[0]))} .. {_when(float(t.times[-1]))};"
        f" written as {t.form}"
    )
    lines.append(
        "traffic.startAt: the release starts at the busiest hour (peakAt), the worst case; set"
        " it to your own release hour"
        if t.form == "diurnal"
        else "traffic: the release starts at the trace's first minute; set traffic.startAt to"
        " your own release hour"
    )
    lo, hi = t.ci["mean"]
    alo, ahi = t.ci["amplitude"]
    plo, phi = t.ci["peakAt"]
    lines.append(
        f"  cosine: mean {t.mean:.4g}/s (95 % CI {lo:.4g}..{hi:.4g}), amplitude {t.amplitude:.3f}"
        f" ({alo:.3f}..{ahi:.3f}), peakAt {t.peak_at / 3600:.2f} h"
        f" ({plo / 3600:.2f}..{phi / 3600:.2f} h, UTC)"
    )
    lines.append(
        f"  goodness of fit: R² {t.r2_cosine:.3f} (cosine) vs {t.r2_daily:.3f} (daily harmonics);"
        f" the cosine is {t.profile_error:.1%} RMS of the mean from the daily shape"
    )
    if t.weekly_p is not None:
        shown = "shown" if t.weekly else "not shown"
        lines.append(
            f"  weekly pattern {shown}: F-test p {t.weekly_p:.2g},"
            f" size {t.weekly_size:.1%} of the mean"
        )
    lines.append(
        f"errorRate: {e.errors:.0f} errors / {e.requests:.0f} requests = {e.error_rate:.4g}"
        f" (95 % CI {e.ci[0]:.4g}..{e.ci[1]:.4g})"
    )
    lat = fit.latency
    if lat is not None:
        mlo, mhi = lat.ci["median"]
        slo, shi = lat.ci["sigma"]
        lines.append(
            f"latency: lognormal median {lat.median * 1000:.4g} ms"
            f" ({mlo * 1000:.4g}..{mhi * 1000:.4g}),"
            f" sigma {lat.sigma:.3f} ({slo:.3f}..{shi:.3f}) by interval-censored maximum"
            f" likelihood on {lat.total:.0f} requests in {lat.bounds.size + 1} buckets;"
            f" largest cdf gap {lat.distance:.3f}; written as {lat.form}"
        )
    for c in fit.releases or []:
        lines.append(
            f"release class {c.name}: {c.count} releases, probability {c.probability:.4f}"
            f" (95 % CI {c.ci[0]:.3f}..{c.ci[1]:.3f})"
        )
    if fit.pod_startup:
        lines.append(f"podStartup: {len(fit.pod_startup)} measured start-ups (empirical)")
    lines += fit.notes
    return lines


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def _comments(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def world_yaml(fit: Fitted) -> str:
    """``world:`` YAML with the provenance above it, to merge into a scenario."""
    return _comments(provenance(fit)) + _dump({"world": world_data(fit)})


DEFAULT_POLICIES: tuple[dict[str, Any], ...] = (
    {
        "kind": "Canary",
        "name": "canary-20-first",
        "trafficRouting": {"nginx": {}},
        "analysisTemplates": [
            {
                "name": "success-rate",
                "metrics": [
                    {
                        "name": "success-rate",
                        "interval": "1m",
                        "failureLimit": 1,
                        "successCondition": "result[0] >= 0.99",
                        "provider": {"query": {"measure": "successRate"}},
                    }
                ],
            }
        ],
        "analysis": {"startingStep": 1, "templates": [{"templateName": "success-rate"}]},
        "steps": [
            {"setWeight": 20},
            {"pause": {"duration": "10m"}},
            {"setWeight": 50},
            {"pause": {"duration": "10m"}},
        ],
    },
    {
        "kind": "BlueGreen",
        "name": "bluegreen",
        "switch": "serviceSelector",
        "scaleDownDelaySeconds": 30,
        "autoPromotionEnabled": True,
    },
)
"""The seed practice's two policies (scenarios/policies/canary-20-first.yaml and bluegreen.yaml,
which a test keeps equal), inline: a fitted scenario without --policy runs anywhere, also from
an installed package that has no scenarios/ folder."""


def scenario_yaml(
    fit: Fitted, name: str, policies: list[str | dict[str, Any]], out: str | Path
) -> str:
    """A whole scenario: the fitted world and ``policies`` (files, referenced relative to
    ``out``'s folder, or policies inline; none: ``DEFAULT_POLICIES``), a few replications to
    start with."""
    folder = Path(out).resolve().parent
    refs = [
        p if isinstance(p, dict) else {"file": os.path.relpath(Path(p).resolve(), folder)}
        for p in (policies or DEFAULT_POLICIES)
    ]
    data = {
        "name": name,
        "description": "A world fitted from telemetry by rolloutsim fit, and policies to compare.",
        "world": world_data(fit),
        "policies": refs,
        "replications": 100,
        "seed": 1,
    }
    return _comments(provenance(fit)) + _dump(data)
