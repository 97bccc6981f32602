"""``fit``: a world from a service's telemetry (saved query_range answers or a live Prometheus)
and release history; see sim/fit/."""

from __future__ import annotations

import argparse
from pathlib import Path

from rolloutsim.usage import usage

__all__ = ["add_fit_parser", "fit_command"]


def add_fit_parser(sub) -> None:
    """The ``fit`` subcommand and its options."""
    p = sub.add_parser("fit", help="fit a world: section from Prometheus telemetry and releases")
    what = "a saved query_range response (JSON), or with --prometheus a PromQL query"
    p.add_argument("--requests", required=True, metavar="Q", help=f"requests/s: {what}")
    p.add_argument("--errors", required=True, metavar="Q", help=f"errors/s: {what}")
    p.add_argument(
        "--latency-buckets",
        metavar="Q",
        help=f"histogram buckets by le (rates or raw counters): {what}",
    )
    p.add_argument("--pod-startup", metavar="Q", help=f"seconds each pod took to be ready: {what}")
    p.add_argument("--users", metavar="N|Q", help="the number of users, or a unique-users query")
    p.add_argument(
        "--replicas",
        metavar="N|Q",
        help="the service's pods, or a query such as kube_deployment_spec_replicas (default 10)",
    )
    p.add_argument("--releases", metavar="FILE", help="a CSV of past releases and their outcome")
    p.add_argument("--prometheus", metavar="URL", help="run the queries against this server")
    p.add_argument("--start", metavar="T", help="epoch, RFC 3339 or now-7d (with --prometheus)")
    p.add_argument("--end", metavar="T", default=None, help="default: now")
    p.add_argument("--step", metavar="S", help="default: 5m for a day or more, else ~1000 steps")
    p.add_argument("--timeout", metavar="S", default="10s", help="per request (default 10s)")
    p.add_argument("--period", default="1d", help="the traffic cycle (default 1d)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="the cosine's largest RMS error, relative to the mean, before a trace is written",
    )
    p.add_argument(
        "--latency-tolerance",
        type=float,
        default=0.02,
        help="the lognormal's largest cdf gap at the buckets before the empirical is written",
    )
    p.add_argument("--latency-slo", metavar="D|P%", help='latencyObjective: "500ms" or "99.9%%"')
    p.add_argument("--horizon", default="6h", help="the simulated horizon (default 6h)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: print the world)")
    p.add_argument(
        "--scenario",
        metavar="NAME",
        help="write a whole scenario of this name, with --policy files to compare",
    )
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="with --scenario (repeatable; default: the shipped canary-20-first and bluegreen)",
    )
    p.add_argument("--no-report", action="store_true", help="skip <output>-fit.png/.html")
    p.set_defaults(func=fit_command)


def _seconds(value: str, flag: str) -> float:
    from policies.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise usage(f"{flag}: {exc}") from None


def _prometheus(args: argparse.Namespace):
    from sim.fit.pipeline import Prometheus
    from sim.fit.responses import default_step, parse_time

    if args.prometheus is None:
        if args.start or args.end or args.step:
            raise usage("--start, --end and --step go with --prometheus URL")
        return None
    if not args.prometheus.startswith(("http://", "https://")):
        raise usage(f"--prometheus: {args.prometheus[:60]!r} is not an http(s) URL")
    if args.start is None:
        raise usage("--prometheus needs --start (e.g. now-7d)")
    try:
        start = parse_time(args.start)
        end = parse_time(args.end or "now")
    except ValueError as exc:
        raise usage(f"--start/--end: {exc}") from None
    if end <= start:
        raise usage("--end must be after --start")
    step = _seconds(args.step, "--step") if args.step else default_step(start, end)
    if step <= 0:
        raise usage("--step must be positive")
    timeout = _seconds(args.timeout, "--timeout")
    return Prometheus(args.prometheus, start, end, step, timeout)


def fit_command(args: argparse.Namespace) -> int:
    from sim.fit.pipeline import FitInputs, fit_world, write_fit
    from sim.fit.world import world_yaml

    if not 0 < args.tolerance < 1 or not 0 < args.latency_tolerance < 1:
        raise usage("--tolerance and --latency-tolerance are fractions in (0, 1)")
    inputs = FitInputs(
        requests=args.requests,
        errors=args.errors,
        latency_buckets=args.latency_buckets,
        pod_startup=args.pod_startup,
        users=args.users,
        replicas=args.replicas or "10",
        releases=args.releases,
        prometheus=_prometheus(args),
        period=_seconds(args.period, "--period"),
        traffic_tolerance=args.tolerance,
        latency_tolerance=args.latency_tolerance,
        latency_slo=args.latency_slo,
        horizon=_seconds(args.horizon, "--horizon"),
    )
    if args.replicas is None:
        inputs.notes.append("platform.replicas 10: not measured (the default; give --replicas)")
    if inputs.period <= 0 or inputs.horizon <= 0:
        raise usage("--period and --horizon must be positive")
    if args.scenario is not None:
        from policies.names import check_name

        if args.output is None:
            raise usage("--scenario writes a file: give -o FILE")
        check_name(args.scenario, "--scenario")
    elif args.policy:
        raise usage("--policy goes with --scenario NAME")
    fitted, _ = fit_world(inputs)
    if args.output is None:
        if fitted.traffic.form == "trace":
            raise usage("the traffic is a trace, written to a file beside the world: give -o FILE")
        print(world_yaml(fitted), end="")
        return 0
    policies = args.policy or []  # none: the seed practice's two, inline (sim.fit.world)
    missing = [p for p in policies if not Path(p).is_file()]
    if missing:
        raise usage(f"--policy: {missing[0]} is not a file (give the policies to compare)")
    written = write_fit(
        fitted, args.output, scenario=args.scenario, policies=policies, report=not args.no_report
    )
    t, e = fitted.traffic, fitted.errors
    print(
        f"fit: traffic {t.form} (mean {t.mean:.4g}/s, cosine R² {t.r2_cosine:.3f}), errorRate"
        f" {e.error_rate:.4g} [{e.ci[0]:.4g}, {e.ci[1]:.4g}]"
        + (f", latency {fitted.latency.form}" if fitted.latency else "")
    )
    for path in written:
        print(f"wrote {path}")
    return 0
