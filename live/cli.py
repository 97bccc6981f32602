"""Subcommands ``live``, ``bench`` and ``calibrate`` for the ``rolloutsim`` command line.

``rolloutsim/cli.py`` wires them with one line, ``live.cli.register(sub)``; everything heavy is
imported inside the handlers, so ``rolloutsim --help`` stays instant. Handlers return exit
codes: 0 promoted / done, 1 rolled back, 2 bad input (raised as ``RolloutsimError`` for the
main CLI to print), 3 router failure (traffic possibly not on the stable), 4 not finished
within ``--max-duration``, 130 interrupted.

    rolloutsim live POLICY --haproxy-socket PATH --prometheus URL [--time-scale 0.1]
    rolloutsim live POLICY --bench --canary-error-rate 0.05      # on a loopback bench
    rolloutsim live promote|abort|status --state DIR
    rolloutsim bench --rate 200 --duration 60                     # just the bench
    rolloutsim calibrate [scenarios/live-bench.yaml] --out calibration/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

__all__ = ["main", "register"]

CONTROL = ("promote", "abort", "status")


def _duration(text: str) -> float:
    from policies.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1]")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _seed(text: str) -> int | str:
    if text == "random":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (a number, or random)") from None


def register(subparsers) -> None:
    """Add ``live``, ``bench`` and ``calibrate`` to a ``rolloutsim`` subparsers object."""
    p = subparsers.add_parser(
        "live",
        help="run a policy's controller live against HAProxy and Prometheus",
        description="Run POLICY live (the simulator's own controller, on the wall clock), or "
        "send promote/abort to, or show the status of, a running one (--state DIR).",
    )
    p.add_argument("policy", metavar="POLICY|promote|abort|status")
    target = p.add_argument_group("router and metrics")
    target.add_argument("--haproxy-socket", help="HAProxy admin socket (path or 127.0.0.1:PORT)")
    target.add_argument("--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    target.add_argument("--backend", default="be", help="HAProxy backend (Prometheus 'proxy')")
    target.add_argument("--stable-server", default="stable")
    target.add_argument("--canary-server", default="canary")
    target.add_argument(
        "--prom-label",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra label matcher for the HAProxy series (e.g. job=haproxy); repeatable",
    )
    target.add_argument("--scrape-interval", type=_duration, default=1.0)
    target.add_argument("--scrape-delay", type=_duration, default=1.0)
    run = p.add_argument_group("the rollout")
    run.add_argument("--state", type=Path, help="state folder (default live-state/NAME)")
    run.add_argument("--fresh", action="store_true", help="start over: archive an old log")
    run.add_argument("--replicas", "-n", type=int, default=None)
    run.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="multiply pauses, intervals and windows by this (0.1: ten times faster)",
    )
    run.add_argument("--check-interval", type=_duration, default=5.0)
    run.add_argument("--missing-data-timeout", type=_duration, default=60.0)
    run.add_argument("--approve-after", type=_duration, default=None)
    run.add_argument(
        "--leave-as-is",
        action="store_true",
        help="on Ctrl-C, SIGTERM or SIGHUP keep the weights (else all traffic to the stable)",
    )
    run.add_argument(
        "--max-duration",
        type=_duration,
        default=None,
        help="stop (traffic to the stable, exit 4) if not finished after this long",
    )
    run.add_argument("--seed", type=int, default=0)
    bench = p.add_argument_group("a loopback bench instead of your own HAProxy (--bench)")
    bench.add_argument("--bench", action="store_true")
    _bench_options(bench, duration=600.0)
    p.set_defaults(func=_live)

    p = subparsers.add_parser("bench", help="start the loopback bench (HAProxy, Prometheus, load)")
    p.add_argument("--dir", type=Path, default=None, help="bench folder (default: a temp dir)")
    _bench_options(p, duration=60.0)
    p.set_defaults(func=_bench)

    p = subparsers.add_parser(
        "calibrate", help="compare live bench runs with the simulator's prediction intervals"
    )
    p.add_argument(
        "scenario",
        nargs="?",
        default=None,
        help="a scenario the bench can realise (default scenarios/live-bench.yaml)",
    )
    p.add_argument("--out", type=Path, default=Path("calibration"), help="report folder")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="POLICY:RELEASE",
        help="run only these cases (a policy, a release class, or both); repeatable",
    )
    p.add_argument("--repeat", type=int, default=1, help="live runs per case")
    p.add_argument("--replications", type=int, default=None, help="simulated per case")
    p.add_argument(
        "--seed", type=_seed, default=None, help="live runs' seed (default: the scenario's)"
    )
    p.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="run the world this many times as fast on the bench (0.5: twice)",
    )
    p.add_argument("--simulate-only", action="store_true", help="print the prediction only")
    p.set_defaults(func=_calibrate)

    p = subparsers.add_parser(
        "hold",
        help="hold the canary at the gate's weights, no gate: live windows against simulated",
        description="The designed experiment behind a calibration gap: for CASE (a policy with "
        "a sequential gate, against a release class), hold the canary at each weight the gate "
        "meets, record the windows live, draw the same traffic with the simulator, compare "
        "them and replay both through the gate offline. Resumes from OUT/records.",
    )
    p.add_argument("scenario", nargs="?", default=None, help="default scenarios/live-bench.yaml")
    p.add_argument("--case", default="sprt:bad-4pct", metavar="POLICY:RELEASE")
    p.add_argument("--seconds", type=_duration, default=600.0, help="held per weight")
    p.add_argument("--out", type=Path, default=Path("hold"), help="report folder")
    p.add_argument("--seed", type=int, default=20261206)
    p.set_defaults(func=_hold)


def _bench_options(group, duration: float) -> None:
    group.add_argument("--rate", type=_positive, default=100.0, help="requests per second")
    group.add_argument("--duration", type=_duration, default=duration, help="load seconds")
    group.add_argument("--stable-error-rate", type=_fraction, default=0.01)
    group.add_argument("--canary-error-rate", type=_fraction, default=0.01)
    group.add_argument("--latency", type=_duration, default=0.001, help="backend latency")


# ----------------------------------------------------------------------------- handlers


def _live(args: argparse.Namespace) -> int:
    from policies.errors import PolicyError

    if args.policy in CONTROL and not Path(args.policy).exists():
        return _control(args)
    from live.journal import StateDir
    from live.realise import check_supported
    from policies.loading import load_policy, policy_to_yaml

    policy = load_policy(args.policy)
    check_supported(policy)  # before anything starts or is touched
    if not args.bench and (not args.haproxy_socket or not args.prometheus):
        raise PolicyError("give --haproxy-socket and --prometheus (or --bench for a loopback one)")
    state = StateDir(_state_folder(args.state, policy.name, args.policy))
    settings = _settings(args, policy, state)
    if state.read_pid() is not None:
        raise PolicyError(f"an executor (PID {state.read_pid()}) already runs on {state.path}")
    state.path.mkdir(parents=True, exist_ok=True)
    state.policy_file.write_text(policy_to_yaml(policy))
    state.write_settings(settings.to_dict())
    if args.bench:
        return _live_on_bench(args, policy, state, settings)
    router, metrics = _targets(args)
    return _execute(policy, router, metrics, state, settings, args.max_duration)


def _state_folder(given: Path | None, name: str, file: str) -> Path:
    """The rollout's state folder: ``--state``, else live-state/<policy name>, the name checked
    (a Kubernetes name, so the folder stays inside live-state/). Refused before anything is
    written: a ``--state`` that is an existing file, a name like ``../x`` or ``/x``."""
    from policies.errors import PolicyError
    from sim.runs.files import check_name, folder_for

    if given is None:
        check_name(name, "name", file=file)
        return folder_for("live-state", name, "name")
    if given.exists() and not given.is_dir():
        raise PolicyError("--state: exists and is not a folder", file=str(given))
    return given


def _settings(args, policy, state):
    """Settings for this run; a resumed rollout keeps the ones it started with."""
    from live.executor import LiveSettings
    from policies.errors import PolicyError
    from policies.loading import parse_policy

    replicas = args.replicas or getattr(policy, "replicas", None) or 10
    wanted = LiveSettings(
        replicas=replicas,
        time_scale=args.time_scale,
        scrape_delay=args.scrape_delay,
        check_interval=args.check_interval,
        missing_data_timeout=args.missing_data_timeout,
        approve_after=args.approve_after,
        leave_as_is=args.leave_as_is,
        seed=args.seed,
    )
    if args.fresh:
        old = state.archive()
        if old is not None:
            print(f"archived the previous log as {old}")
        return wanted
    if not state.started():
        return wanted
    if state.policy_file.exists():
        from policies.base import load_yaml

        before = parse_policy(load_yaml(state.policy_file.read_text()))
        if before != policy:
            raise PolicyError(
                f"{state.path} holds a rollout of another policy ({before.name!r}, or changed "
                "since); use --fresh to start over or another --state"
            )
    for record in reversed(state.records()):
        if record.get("kind") == "action" and record["action"].get("type") == "StatusChanged":
            status = record["action"]["status"]
            if status in ("Promoted", "Aborted", "RolledBack"):
                raise PolicyError(
                    f"the rollout in {state.path} has already ended ({status}); "
                    "use --fresh to start a new one"
                )
            break
    kept = state.settings()
    fixed = {k: kept[k] for k in ("replicas", "time_scale", "seed") if k in kept}
    changed = {k for k, v in fixed.items() if getattr(wanted, k) != v}
    if changed:
        print(f"resuming with the settings it started with ({', '.join(sorted(changed))})")
    return LiveSettings(**{**wanted.to_dict(), **fixed})


def _targets(args):
    from live.haproxy import HAProxyRouter, RuntimeAPI
    from live.prometheus import PrometheusAPI, PrometheusMetrics
    from policies.errors import PolicyError

    labels = {}
    for item in args.prom_label:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise PolicyError(f"--prom-label {item!r}: write NAME=VALUE")
        labels[name] = value
    router = HAProxyRouter(
        RuntimeAPI(args.haproxy_socket), args.backend, args.stable_server, args.canary_server
    )
    metrics = PrometheusMetrics(
        PrometheusAPI(args.prometheus),
        args.backend,
        args.stable_server,
        args.canary_server,
        args.scrape_interval,
        labels,
    )
    return router, metrics


def _execute(policy, router, metrics, state, settings, max_duration=None) -> int:
    from live.executor import LiveExecutor
    from live.realise import latency_gates

    slow = latency_gates(policy)
    if slow:
        print(
            f"warning: HAProxy exports no latency histogram: {', '.join(slow)} will see no data "
            "(Argo: Error, Flagger: failed check)",
            file=sys.stderr,
        )
    import time

    until = time.time() + max_duration if max_duration else None
    result = LiveExecutor(policy, router, metrics, state, settings).run(until)
    # best effort: after SIGHUP the terminal may be gone, and the exit code is what counts
    with contextlib.suppress(OSError):
        if result.exit_code == 3:
            print(f"rolloutsim live: {result.message}", file=sys.stderr)
        print(f"log: {state.log}")
    return result.exit_code


def _live_on_bench(args, policy, state, settings) -> int:
    from live.bench import BackendSpec, Bench

    stable = BackendSpec(args.stable_error_rate, args.latency, seed=args.seed)
    canary = BackendSpec(args.canary_error_rate, args.latency, seed=args.seed + 1)
    with Bench(stable=stable, canary=canary) as bench:
        print(bench.describe())
        load = bench.load(args.rate, args.duration, seed=args.seed)
        bench.warm_up()
        try:
            limit = args.max_duration or args.duration
            code = _execute(policy, bench.router(), bench.metrics(), state, settings, limit)
        finally:
            load.stop()
            counts = bench.router().counters()
        print(f"served: {json.dumps(counts)}")
    return code


def _control(args: argparse.Namespace) -> int:
    from live.journal import StateDir, send_signal
    from policies.errors import PolicyError

    if args.state is None:
        raise PolicyError(f"live {args.policy}: give --state DIR (the running rollout's folder)")
    state = StateDir(args.state)
    if args.policy == "status":
        return _status(state)
    try:
        pid = send_signal(state, args.policy)
    except LookupError as exc:
        raise PolicyError(str(exc)) from None
    print(f"sent {args.policy} to the executor (PID {pid})")
    return 0


def _status(state) -> int:
    records = state.records()
    if not records:
        print(f"{state.path}: no rollout logged")
        return 1
    status, weights = "?", "?"
    for record in records:
        if record.get("kind") == "action" and record["action"].get("type") == "StatusChanged":
            status = f"{record['action']['status']}: {record['action']['reason']}"
        elif record.get("kind") == "router":
            weights = "stable={} canary={}".format(*record["weights"])
    pid = state.read_pid()
    running = f"running (PID {pid})" if pid else "not running"
    print(f"{state.path}: {status}; weights {weights}; executor {running}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from live.bench import BackendSpec, Bench

    spec = dict(latency=args.latency)
    with Bench(
        args.dir,
        stable=BackendSpec(args.stable_error_rate, **spec),
        canary=BackendSpec(args.canary_error_rate, seed=1, **spec),
    ) as bench:
        print(bench.describe(), flush=True)
        load = bench.load(args.rate, args.duration)
        print(f"load: {args.rate:g} req/s for {args.duration:g} s (Ctrl-C stops everything)")
        try:
            stats = load.wait()
        except KeyboardInterrupt:
            load.stop()
            return 130
        print(json.dumps(stats, indent=1))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from live.calibrate import calibrate_command

    return calibrate_command(args)


def _hold(args: argparse.Namespace) -> int:
    from live.experiment import hold_experiment
    from live.scenario import default_scenario

    hold_experiment(
        args.scenario or default_scenario(),
        args.out,
        case_name=args.case,
        seconds=args.seconds,
        seed=args.seed,
    )
    print(f"report: {args.out / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m live ...``: the same subcommands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="rolloutsim")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    from policies.errors import RolloutsimError

    try:
        with _stop_on_signals():
            return args.func(args)
    except RolloutsimError as exc:
        print(f"rolloutsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rolloutsim: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP stop ``python -m live`` like Ctrl-C (the bench torn down), as
    rolloutsim's own CLI does; during a live run the executor's inbox takes all three over."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(_signum: int, _frame) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
