"""``fit`` from end to end: read or query each input, fit each part, write the world, its
trace file and the report. Every bad input is one ``PolicyError`` (exit 2 from the CLI)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.durations import parse_duration
from policies.errors import PolicyError
from sim.fit.error_rate import fit_error_rate
from sim.fit.latency import fit_latency
from sim.fit.releases import fit_releases
from sim.fit.responses import Matrix, query_range, read_matrix
from sim.fit.series import regular
from sim.fit.traffic import fit_traffic, trace_counts
from sim.fit.world import Fitted, scenario_yaml, world_yaml
from sim.runs.files import atomic_write

__all__ = ["FitInputs", "Prometheus", "fit_world", "load_input", "write_fit"]

MAX_STARTUPS = 500


@dataclass(frozen=True)
class Prometheus:
    """A server and the window to query (epoch seconds)."""

    url: str
    start: float
    end: float
    step: float
    timeout: float = 10.0


@dataclass
class FitInputs:
    """What to fit: each input a saved-response file, or a PromQL query with ``prometheus``."""

    requests: str
    errors: str
    latency_buckets: str | None = None
    pod_startup: str | None = None
    users: str | None = None
    replicas: str | None = None
    releases: str | None = None
    prometheus: Prometheus | None = None
    period: float = 86400.0
    traffic_tolerance: float = 0.05
    latency_tolerance: float = 0.02
    latency_slo: str | None = None
    horizon: float = 6 * 3600.0
    notes: list[str] = field(default_factory=list)


def load_input(spec: str, prometheus: Prometheus | None) -> Matrix:
    """A saved response from the file ``spec``, or the query ``spec`` run on the server."""
    if prometheus is None:
        return read_matrix(spec)
    p = prometheus
    return query_range(p.url, spec, p.start, p.end, p.step, timeout=p.timeout)


def _checked(matrix: Matrix, what):
    """Run ``what``; a ValueError about the data becomes a PolicyError naming the source."""
    try:
        return what()
    except PolicyError:
        raise
    except ValueError as exc:
        text = str(exc)
        where = matrix.source.where
        raise PolicyError(text.removeprefix(f"{where}: "), file=where) from None


def _objective(text: str, latency) -> float:
    """``--latency-slo``: a duration ("500ms") is the objective; a percentage ("99.9%") puts it
    at that quantile of the fitted baseline."""
    value = text.strip()
    if value.endswith("%"):
        if latency is None:
            raise PolicyError("a percentile needs --latency-buckets", path="--latency-slo")
        level = float(value[:-1]) / 100.0 if re.fullmatch(r"\d+(\.\d+)?%", value) else math.nan
        if not 0.5 <= level < 1.0:
            raise PolicyError(
                f"{value[:20]!r}: give a percentile in [50%, 100%)", path="--latency-slo"
            )
        if latency.form == "lognormal":
            from scipy import special

            return float(latency.median * math.exp(latency.sigma * special.ndtri(level)))
        return float(np.quantile(latency.empirical, level))
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PolicyError(str(exc), path="--latency-slo") from None


def _startups(matrix: Matrix) -> list[float]:
    """Each series' last finite value (one pod's start-up), at most MAX_STARTUPS quantiles."""
    last = []
    for s in matrix.series:
        ok = np.isfinite(s.values) & (s.values >= 0)
        if ok.any():
            last.append(float(s.values[ok][-1]))
    if not last:
        raise PolicyError("no finite, non-negative start-up time", file=matrix.source.where)
    values = np.sort(np.array(last))
    if values.size > MAX_STARTUPS:
        values = np.quantile(values, (np.arange(MAX_STARTUPS) + 0.5) / MAX_STARTUPS)
    return [float(f"{v:.4g}") for v in values]


def _count(spec: str, prometheus: Prometheus | None, flag: str) -> int:
    """A number given as such, or the last value of a query (a gauge such as
    kube_deployment_spec_replicas, or a count of unique users)."""
    if re.fullmatch(r"\d{1,10}", spec.strip()):
        count = int(spec)
    elif re.fullmatch(r"[-+]?\d+(\.\d*)?", spec.strip()) or (
        prometheus is None and not Path(spec).exists()
    ):  # a number that is not a count, or a file that is not there: say which
        raise PolicyError(
            f"{spec!r} is neither a whole number from 1 nor a saved query_range file", path=flag
        )
    else:
        matrix = load_input(spec, prometheus)
        reg = _checked(matrix, lambda: regular(matrix, flag.strip("-"), counter=False))
        count = round(float(reg.values[reg.valid][-1]))
    if not 1 <= count <= 2**31 - 1:
        raise PolicyError(f"{count}: need a whole number from 1", path=flag)
    return count


def fit_world(inputs: FitInputs) -> tuple[Fitted, dict[str, Matrix]]:
    """Load every input and fit it; the result is ready for ``write_fit``."""
    p = inputs.prometheus
    matrices = {"requests": load_input(inputs.requests, p)}
    try:
        matrices["errors"] = load_input(inputs.errors, p)
    except PolicyError as exc:
        if not exc.message.startswith("no data"):
            raise
        hint = " (a service without errors has no 5xx series: add `or vector(0)` to the query)"
        raise PolicyError(exc.message + hint, path=exc.path, file=exc.file) from None
    for what in ("requests", "errors"):
        if any("le" in s.labels for s in matrices[what].series):
            raise PolicyError(
                "holds histogram buckets (series with an `le` label), not a rate: give them as"
                f" --latency-buckets, and to --{what} a rate such as sum(rate(..._total[5m]))",
                path=f"--{what}",
                file=matrices[what].source.where,
            )
    req = _checked(matrices["requests"], lambda: regular(matrices["requests"], "requests"))
    err = _checked(matrices["errors"], lambda: regular(matrices["errors"], "errors"))
    traffic = _checked(
        matrices["requests"],
        lambda: fit_traffic(req, period=inputs.period, tolerance=inputs.traffic_tolerance),
    )
    errors = _checked(matrices["errors"], lambda: fit_error_rate(req, err))
    notes = [*req.notes, *err.notes, *traffic.notes, *errors.notes, *inputs.notes]
    latency = None
    if inputs.latency_buckets is not None:
        matrices["latency"] = m = load_input(inputs.latency_buckets, p)
        latency = _checked(m, lambda: fit_latency(m, tolerance=inputs.latency_tolerance))
        notes += latency.notes
    fitted = Fitted(
        traffic=traffic,
        errors=errors,
        sources={k: v.source for k, v in matrices.items()},
        latency=latency,
        horizon=inputs.horizon,
        notes=notes,
    )
    if inputs.latency_slo is not None:
        fitted.objective = _objective(inputs.latency_slo, latency)
    elif latency is not None:
        fitted.objective = _objective("99.9%", latency)
        fitted.notes.append(
            "latencyObjective: no --latency-slo, so put at the baseline's 99.9th percentile"
            " (0.1 % of its requests count as slow)"
        )
    if inputs.pod_startup is not None:
        matrices["podStartup"] = m = load_input(inputs.pod_startup, p)
        fitted.sources["podStartup"] = m.source
        fitted.pod_startup = _startups(m)
    if inputs.users is not None:
        fitted.users = _count(inputs.users, p, "--users")
    if inputs.replicas is not None:
        fitted.replicas = _count(inputs.replicas, p, "--replicas")
    if inputs.releases is not None:
        fitted.releases, more = fit_releases(inputs.releases)
        fitted.notes += more
    return fitted, matrices


def write_fit(
    fitted: Fitted,
    out: str | Path,
    *,
    scenario: str | None = None,
    policies: list[str | dict[str, Any]] | None = None,
    report: bool = True,
) -> list[Path]:
    """Write the world (or, with ``scenario``, a whole scenario named so), the trace file when
    the traffic is a trace, and ``<out stem>-fit.png``/``.html``; return the paths written."""
    from sim.world.model import World
    from sim.world.traffic import base_directory

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    stem = out.with_suffix("")
    if fitted.traffic.form == "trace":
        counts, _ = trace_counts(fitted.traffic, fitted.traffic.step)
        trace = Path(f"{stem}-traffic.csv")
        fitted.trace_file = trace.name
        body = "count\n" + "".join(f"{c:g}\n" for c in counts)
        atomic_write(trace, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))
        written.append(trace)
    if scenario is None:
        text = world_yaml(fitted)
    else:
        text = scenario_yaml(fitted, scenario, policies or [], out)
    import yaml

    world = yaml.safe_load(text)["world"]
    with base_directory(out.resolve().parent):
        World.model_validate(world)  # what is written must load: a failure here is a bug
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    written.append(out)
    if report:
        from sim.fit.report import write_fit_report

        written += write_fit_report(fitted, f"{stem}-fit")
    return written
