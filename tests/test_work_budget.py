"""sim/runs/budget.py: a plan is priced before anything is built, and one beyond the budget is
refused in one line naming the field, the estimate and how to allow it (issue #13, item 5);
Dask scheduler addresses come from the caller only, and connecting says what that trusts
(item 3). Each refusal must come at once: these tests fail if the plan or the population were
built first."""

from __future__ import annotations

import math
import time
import tracemalloc
from pathlib import Path

import pytest

from policies import PolicyError, load_policy
from policies.errors import RolloutsimError
from rolloutsim.cli import main
from sim.runs.budget import ALLOW, DEFAULT_BUDGET, Budget, BudgetError, check, counts, estimate
from sim.runs.runner import connect_scheduler, run
from sim.runs.scenario import load_scenario
from sim.world.model import World

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"
WORLD = {
    "horizon": "6h",
    "traffic": {"rate": 500},
    "users": {"count": 5000},
    "releases": [
        {"name": "good", "probability": 0.8},
        {"name": "bad", "probability": 0.2, "fault": {"errorRate": 0.05}},
    ],
    "platform": {"replicas": 10},
}
SCENARIO = f"""
name: budget
world:
  horizon: 6h
  traffic: {{rate: 500}}
  users: {{count: 5000}}
  releases:
    - {{name: good, probability: 0.8}}
    - {{name: bad, probability: 0.2, fault: {{errorRate: 0.05}}}}
  platform: {{replicas: 10}}
policies:
  - file: {POLICIES / "canary-20-first.yaml"}
  - file: {POLICIES / "bluegreen.yaml"}
replications: 10
"""


def _world(**platform) -> World:
    return World.model_validate(WORLD | {"platform": {"replicas": 10, **platform}})


def _policies():
    return [
        load_policy(POLICIES / "canary-20-first.yaml"),
        load_policy(POLICIES / "bluegreen.yaml"),
    ]


def _refused_fast(world, policies, replications=10, **kwargs) -> BudgetError:
    """run() must refuse within a second and without allocating the plan or the users."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(BudgetError) as caught:
            run(world, policies, replications=replications, backend="inprocess", **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"
    message = str(caught.value)
    assert "\n" not in message and ALLOW in message
    return caught.value


def test_a_million_replicas_is_refused_per_replication() -> None:
    error = _refused_fast(_world(replicas=1_000_000), _policies())
    assert error.path == "world.platform.replicas"
    assert "1,000,000 pods" in error.message and "per replication" in error.message


def test_replicas_beyond_kubernetes_int32_are_refused_at_load(tmp_path: Path) -> None:
    """`replicas: 1e15` (YAML 1.0e+15): spec.replicas is an int32 in Kubernetes."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("{replicas: 10}", "{replicas: 1.0e+15}"))
    with pytest.raises(PolicyError, match=r"world\.platform\.replicas: .* must be <= 2147483647"):
        load_scenario(path)


def test_a_one_millisecond_scrape_interval_is_refused_for_its_memory() -> None:
    error = _refused_fast(_world(scrapeInterval="1ms"), _policies())
    assert error.path == "world.platform.scrapeInterval"
    assert "21,600,000 scrape slots" in error.message and "GiB of memory" in error.message


def test_a_one_millisecond_metric_interval_is_refused() -> None:
    canary = load_policy(POLICIES / "canary-20-first.yaml").to_dict()
    canary["analysisTemplates"][0]["metrics"][0]["interval"] = "1ms"
    from policies.loading import parse_policy

    error = _refused_fast(_world(), [parse_policy(canary)])
    assert error.path == "canary-20-first.analysisTemplates[0].metrics[0].interval"
    assert "21,600,000 measurements: metric success-rate every 1ms" in error.message


def test_a_trillion_replications_is_refused_without_building_the_plan() -> None:
    error = _refused_fast(_world(), _policies(), replications=10**12)
    assert error.path == "replications"


def test_a_billion_users_is_refused_at_once(tmp_path: Path) -> None:
    """`users.count: 1e9` is refused by the users' own limit (sim/world/users.py), in one line."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("count: 5000", "count: 1000000000"))
    started = time.perf_counter()
    with pytest.raises(PolicyError, match=r"world\.users\.count"):
        load_scenario(path)
    assert time.perf_counter() - started < 1.0


def test_the_user_population_counts_once_with_its_cell_splits() -> None:
    """The population and its sorted cells are held once for all workers (shared memory):
    about 32 B per user and 24 B per cell split (the whole, and each fault segment's)."""
    world = World.model_validate(WORLD | {"users": {"count": 2_000_000}})
    with pytest.raises(BudgetError) as caught:
        run(world, _policies(), replications=2, backend="inprocess", budget=Budget(memory_gib=0.1))
    assert caught.value.path == "world.users.count"
    assert "2,000,000 users of about 56 B, held once for all workers" in caught.value.message
    policies = {p.name: p for p in _policies()}
    one, many = (estimate(world, policies, counts(2, ("good", "bad")), workers=w) for w in (1, 8))
    assert many.process_bytes == one.process_bytes and many.cpu_s == one.cpu_s


def test_the_cpu_budget_counts_every_replication() -> None:
    """Cheap replications, but so many that the whole is beyond the CPU budget."""
    world = _world()
    plan = estimate(world, {p.name: p for p in _policies()}, counts(1_000_000, ("good", "bad")))
    assert plan.replication_s < DEFAULT_BUDGET.replication_s
    with pytest.raises(BudgetError, match=r"^replications: the run would take about .* of CPU"):
        check(plan, Budget(memory_gib=math.inf))


def test_a_larger_budget_or_unlimited_lets_a_large_plan_run() -> None:
    world, policies = _world(replicas=400), _policies()
    with pytest.raises(BudgetError):
        run(world, policies, replications=2, backend="inprocess", budget=Budget(replication_s=0.01))
    result = run(world, policies, replications=2, backend="inprocess", budget=Budget.unlimited())
    assert len(result.frame) == 8 and result.failed == 0


def test_budget_values_are_checked() -> None:
    with pytest.raises(PolicyError, match="memory_gib: 0 must be a number > 0"):
        Budget(memory_gib=0)
    with pytest.raises(PolicyError, match="cpu_hours: True must be a number > 0"):
        Budget(cpu_hours=True)


def test_shipped_scenarios_are_well_within_the_budget() -> None:
    """Every scenario of scenarios/, at its own size on 64 workers, uses under 5 % of each
    limit, and validates without a warning."""
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        loaded = load_scenario(path)
        assert loaded.notes == (), (path.name, loaded.notes)
        n = counts(loaded.scenario.replications, loaded.world.releases.names)
        plan = estimate(loaded.world, loaded.policies, n, workers=64)
        assert plan.cpu_s < 0.05 * DEFAULT_BUDGET.cpu_hours * 3600, path.name
        assert plan.replication_s < 0.05 * DEFAULT_BUDGET.replication_s, path.name
        assert plan.process_bytes < 0.05 * DEFAULT_BUDGET.memory_gib * 2**30, path.name


def test_validate_warns_when_the_files_plan_is_beyond_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("{replicas: 10}", "{replicas: 100000}"))
    (note,) = load_scenario(path).notes
    assert note.startswith(
        "warning: run refuses this file's plan as it stands: world.platform.replicas:"
    )


# ---------------------------------------------------------------------------- Dask schedulers


@pytest.mark.parametrize(
    ("line", "field"),
    [("backend: dask", "backend"), ("scheduler: tcp://203.0.113.9:8786", "scheduler")],
)
def test_a_scenario_file_cannot_choose_dask(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + line + "\n")
    with pytest.raises(PolicyError) as caught:
        load_scenario(path)
    assert caught.value.path == field
    assert "exchanges pickles" in caught.value.message
    assert "on the command line" in caught.value.message


def test_a_scenario_file_may_choose_a_local_backend(tmp_path: Path) -> None:
    for backend in ("process", "inprocess"):
        path = tmp_path / f"{backend}.yaml"
        path.write_text(SCENARIO + f"backend: {backend}\n")
        assert load_scenario(path).scenario.backend == backend


def test_an_unreachable_scheduler_is_one_line_after_a_short_timeout(capsys) -> None:
    started = time.perf_counter()
    with pytest.raises(RolloutsimError, match=r"^scheduler: no answer from tcp://127\.0\.0\.1:9 "):
        connect_scheduler("tcp://127.0.0.1:9", timeout=1.0)
    assert time.perf_counter() - started < 8.0
    note = capsys.readouterr().err
    assert "Dask exchanges pickles" in note and "trust" in note and note.count("\n") == 1


def test_a_malformed_scheduler_address_is_refused_by_the_cli(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    argv = ["run", str(path), "--backend", "dask", "--scheduler", "nonsense", "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rolloutsim: error: scheduler: 'nonsense' is not a scheduler address")
    assert "Traceback" not in "\n".join(err)
