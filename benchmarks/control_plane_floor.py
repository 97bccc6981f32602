"""How near the design lets a good release get to 4x: what no engine change can remove.

Issue #17 asks for 4x less CPU per replication than today's engine (d265d38), with the one
controller still deciding everything and exact draws. Three parts of a replication stay
whatever the engine does, and this measures them on the reference scenario's good release
(class 0):

- **the controller alone**: every event the controller received in the full engine, replayed
  into fresh controllers with no engine, no simpy and no traffic around them (they answer with
  the same actions: checked);
- **the random numbers alone**, as the issue counts them (the Poisson counts and the users'
  picks): every draw the replication made (each generator's method and arguments, recorded),
  made again on fresh generators of the same seeds, and every users' pick's table lookup
  (``UserCells._locate``) made again on the same tables;
- **simpy alone**: the replication's control events (every ``Clock.call``: its time) scheduled
  and fired in a bare simpy environment, each with a callback that does nothing.

Their sum bounds the ratio from above: today's engine / (controller + random numbers + simpy) is
what an engine whose own work (the tape, windows, alerts, pods, routes, outcome) cost nothing
would reach. Two stubbed stages of the engine show where that work goes: no users drawn (users
hurt, with a bad answer, exposed: 0), and no traffic drawn either (drafts only move the tape's
mark, cuts and settling do nothing, every gate window reads one fixed healthy observation).
The stubs' numbers are wrong on purpose; only their times count.

Today's engine runs in a subprocess on its own tree (bench_compare's extraction of d265d38),
alternating with this tree's stages, so the host's load falls on both alike.

Run:  .venv/bin/python benchmarks/control_plane_floor.py [--replications 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STAGES = (
    "full",
    "controller alone",
    "random numbers alone",
    "simpy alone",
    "no users",
    "no traffic",
)
FLOOR = ("controller alone", "random numbers alone", "simpy alone")


def _reference(n: int) -> tuple:
    """The policy, its replica count and timed_class's arguments for n good releases."""
    from sim import load_scenario

    loaded = load_scenario(ROOT / "benchmarks" / "reference.yaml")
    name, policy = next(iter(loaded.policies.items()))
    replicas = loaded.world.platform.resolve_replicas(getattr(policy, "replicas", None))
    args = (loaded.world.to_dict(), loaded.scenario.seed, policy.to_dict(), name, 0, n)
    return policy, replicas, args


# ---------------------------------------------------------------------- recording


class _RecordingGenerator:
    """A generator that notes every draw (its method and a copy of its arguments), then makes it."""

    def __init__(self, rng, calls: list) -> None:
        self._rng, self._calls = rng, calls

    def __getattr__(self, name: str):
        import numpy as np

        attribute = getattr(self._rng, name)
        if not callable(attribute):
            return attribute

        def draw(*args, **kwargs):
            copied = tuple(np.array(a) if isinstance(a, np.ndarray) else a for a in args)
            self._calls.append((name, copied, kwargs))
            return attribute(*args, **kwargs)

        return draw


def record(args: tuple) -> tuple[list, list, list]:
    """Run the replications once, noting each controller's events, each stream's draws and
    the times of the control events."""
    from bench_engine import replicate

    from policies.controller.base import ControllerBase
    from sim.engine import seeds
    from sim.engine.cells import UserCells
    from sim.engine.clock import Clock

    events: list[list] = []
    draws: list[dict] = []
    handle, init, make = ControllerBase.handle, ControllerBase.__init__, seeds.Generators.__call__
    locate, call = UserCells._locate, Clock.call
    times: list[list[float]] = []

    def recording_init(self, *a, **k):
        init(self, *a, **k)
        events.append([])
        times.append([])

    def recording_call(self, at, fn, *a):
        times[-1].append(max(at, self.env.now))
        return call(self, at, fn, *a)

    def recording_handle(self, event):
        actions = handle(self, event)
        events[-1].append((event, list(actions)))
        return actions

    def recording_make(self, k):
        if k not in self._made:
            streams = draws[-1] if draws and draws[-1]["seed"] is self.seed else None
            if streams is None:
                streams = {"seed": self.seed, "calls": {}, "lookups": []}
                draws.append(streams)
            calls = streams["calls"][k] = []
            self._made[k] = _RecordingGenerator(make(self, k), calls)
        return self._made[k]

    def recording_locate(self, group_key, u):
        draws[-1]["lookups"].append((self, group_key, u.copy()))
        return locate(self, group_key, u)

    ControllerBase.__init__, ControllerBase.handle = recording_init, recording_handle
    seeds.Generators.__call__, UserCells._locate = recording_make, recording_locate
    Clock.call = recording_call
    try:
        failed = [r["error"] for r in replicate(*args[:5], 0, args[5]) if r["error"]]
    finally:
        ControllerBase.__init__, ControllerBase.handle = init, handle
        seeds.Generators.__call__, UserCells._locate = make, locate
        Clock.call = call
    if failed:  # a replication the recording broke would leave its parts short
        raise SystemExit(f"{len(failed)} replications failed while recorded: {failed[0]}")
    return events, draws, times


def controller_alone(policy, replicas: int, events: list[list]) -> float:
    """CPU ms per replication of fresh controllers fed the recorded events; the first pass
    checks that they answer with the very actions the engine got."""
    from policies.controller import RolloutController

    for received in events:
        controller = RolloutController(policy, replicas)
        for event, actions in received:
            if controller.handle(event) != actions:
                raise SystemExit(f"the replay differs at {event!r}")

    def replay() -> None:
        for received in events:
            controller = RolloutController(policy, replicas)
            for event, _ in received:
                controller.handle(event)

    cpu0 = time.process_time()
    replay()
    return 1000 * (time.process_time() - cpu0) / len(events)


def random_numbers_alone(draws: list[dict]) -> float:
    """CPU ms per replication of the recorded draws made again on fresh generators, and of the
    users' picks' lookups made again."""
    import numpy as np

    from sim.engine.seeds import stream

    def replay() -> None:
        for replication in draws:
            seed = replication["seed"]
            for k, calls in replication["calls"].items():
                rng = np.random.default_rng(stream(seed, k))
                for name, args, kwargs in calls:
                    getattr(rng, name)(*args, **kwargs)
            for cells, group_key, u in replication["lookups"]:
                cells._locate(group_key, u)

    replay()
    cpu0 = time.process_time()
    replay()
    return 1000 * (time.process_time() - cpu0) / len(draws)


def simpy_alone(times: list[list[float]]) -> float:
    """CPU ms per replication of the recorded control events fired in a bare environment."""
    import simpy
    from simpy.events import Timeout

    def nothing(_event) -> None:
        pass

    def replay() -> None:
        for at in times:
            env = simpy.Environment()
            for t in at:
                Timeout(env, t).callbacks.append(nothing)
            env.run()

    replay()
    cpu0 = time.process_time()
    replay()
    return 1000 * (time.process_time() - cpu0) / len(times)


# ---------------------------------------------------------------------- the stubs


def no_users() -> None:
    from sim.engine import blast

    for counter in ("users_hurt", "users_with_bad", "users_exposed"):
        setattr(blast.BlastRadius, counter, lambda self: 0)


def no_traffic() -> None:
    from policies.measures import Observation, WindowStats
    from sim.engine import drafting, tape

    def draft(self, target):
        self.tape.drafted_until = max(self.tape.drafted_until, target)

    def observation(self, end, window, quantiles, series_step, rng):
        j1 = int(end // self.slot)
        j0 = max(0, j1 - max(1, round(window / self.slot)))
        healthy = WindowStats(requests=6000, errors=6, has_series=True)
        return Observation(j0 * self.slot, j1 * self.slot, healthy, healthy)

    drafting.Drafter.draft = draft
    tape.Tape.cut = lambda self, t: None
    tape.Tape._settle = lambda self, t: None
    tape.Tape.observation = observation


def stages(n: int) -> dict[str, float]:
    """This tree's stages, in one process (the stubs are applied last: they cannot be undone)."""
    from bench_engine import timed_class

    policy, replicas, args = _reference(n)
    out = {"full": timed_class(*args)[0]}
    events, draws, times = record(args)
    out["controller alone"] = controller_alone(policy, replicas, events)
    out["random numbers alone"] = random_numbers_alone(draws)
    out["simpy alone"] = simpy_alone(times)
    out["events per replication"] = sum(map(len, events)) / len(events)
    no_users()
    out["no users"] = timed_class(*args)[0]
    no_traffic()
    out["no traffic"] = timed_class(*args)[0]
    return out


# ---------------------------------------------------------------------- the run


def main() -> None:
    from bench_compare import BASELINE, REPO, baseline_tree, compiled, probe
    from bench_engine import machine_description, machine_line, spread

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="alternating old / new")
    args = parser.parse_args()
    n = args.replications
    old_tree = compiled(baseline_tree())
    compiled(REPO)
    print(machine_line())
    old: list[float] = []
    new: dict[str, list[float]] = {s: [] for s in STAGES}
    for _ in range(args.repeats):
        answer = probe(old_tree, "cost", n, "2000", "4")
        if isinstance(answer, str):
            raise SystemExit(f"today's engine: {answer}")
        old.append(answer["2000/4"])
        here = _probe(n)
        for s in STAGES:
            new[s].append(here[s])
    floor = [sum(parts) for parts in zip(*(new[s] for s in FLOOR))]
    print(f"good release, CPU ms per replication over {n}, {args.repeats} alternating repeats,")
    print("median (min-max); last column: today's engine / the stage, pair by pair")
    label = f"today's engine ({BASELINE})"
    print(f"  {label:26} {spread(old):>22}")
    for s in STAGES:
        ratios = [o / v for o, v in zip(old, new[s])]
        print(f"  {s:26} {spread(new[s]):>22}   {spread(ratios)}")
    bound = [o / f for o, f in zip(old, floor)]
    print(f"  the three together         {spread(floor):>22}   {spread(bound)}  (the bound)")
    print(f"controller events per replication: {here['events per replication']:.1f}")
    print(f"{machine_line()}; {machine_description()}")


def _probe(n: int) -> dict:
    """This tree's stages in a fresh process (the stubs must not leak into the next repeat)."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        print(json.dumps(stages(int(sys.argv[2]))))
    else:
        main()
