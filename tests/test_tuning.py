"""The tuner on the simulator: a known optimum, constraints, backends, resume, exports, files.

The worlds are small and deterministic where the closed forms need it (constant traffic, alerts
off, a human who notices a fixed time after the fault): a one-step canary at weight w with a
pause T catches a bad release while the canary still runs iff T outlasts detection, and then
its excess failures are the exposure integral Δp·w·R·(t_mitigated − t_fault) (DESIGN §7), while
a good release's rollout takes T plus pod start-up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.errors import PolicyError
from policies.exporters import export
from policies.loading import load_policy
from sim.tune.report import TUNE_FILES, write_tune_report
from sim.tune.search import load_tune_scenario, tune
from sim.tune.space import TuneSpec, candidates, parse_tune_spec

DETECT_S, ABORT_S, STARTUP_S, ROUTER_S = 900.0, 60.0, 30.0, 2.0
RATE, DP = 20.0, 0.05
WORLD = {
    "horizon": 3600,
    "traffic": {"rate": RATE},
    "users": {"count": 100},
    "baseline": {"errorRate": 0.0},
    "latencyObjective": None,
    "releases": [
        {"name": "good", "probability": 0.5},
        {"name": "bad", "probability": 0.5, "fault": {"errorRate": DP}},
    ],
    "platform": {"replicas": 4, "podStartup": STARTUP_S},
    "operators": {"alerts": [], "humanDetection": DETECT_S, "abortLatency": ABORT_S},
}


def canary_space(weights, pauses, gates=("none",)) -> dict:
    return {
        "kind": "Canary",
        "fixed": {"trafficRouting": {"nginx": {}}},
        "weights": [[w] for w in weights],
        "steps": [],
        "pause": pauses,
        "gate": list(gates),
    }


def excess_caught(weight: float) -> float:
    """Δp·w·R over [t_fault, t_mitigated]: the canary pod is ready at start-up, the weight lands
    a router delay later; a human acts DETECT after that, the abort ABORT later, the weight
    leaves a router delay after that."""
    return DP * weight / 100 * RATE * (DETECT_S + ABORT_S + ROUTER_S)


KNOWN = {
    "space": [canary_space([5, 7, 10, 25], ["5m", "20m", "30m"])],
    "objective": {"metric": "excess_bad_requests", "releases": "bad"},
    "constraints": [
        {"metric": "rollout_duration", "statistic": "p95", "releases": "good", "max": "25m"}
    ],
    "indifference": 10,
    "confidence": 0.9,
}


@pytest.fixture(scope="module")
def known():
    return tune((WORLD, KNOWN), backend="inprocess", seed=11)


# --------------------------------------------------------------------------- (a) known optimum


def test_finds_the_closed_form_optimum_within_its_margin(known):
    """Pauses of 5 min promote before the human notices (15 min): everything at 100 % until the
    rollback. 30 min breaks the 25-minute budget. Among 20-minute pauses the excess is
    Δp·w·R·962 s, smallest at w = 5 %: that (or one within δ) must be chosen."""
    values = {f"canary-w{w}-p20m-none": excess_caught(w) for w in (5, 7, 10, 25)}
    best = min(values.values())
    chosen = known.recommended
    assert chosen is not None and chosen.name in values, known.selection.message
    assert values[chosen.name] <= best + KNOWN["indifference"]
    row = known.table.set_index("candidate").loc[chosen.name]
    se = row["objective_ci"] / 1.96
    assert abs(row["objective"] - values[chosen.name]) <= 4 * se + 1e-9, (row["objective"], se)
    # the rollout time of a good release: the pause plus start-up (and the promotion's own)
    assert 1200 + STARTUP_S <= row["rollout_time"] <= 1200 + 2 * STARTUP_S + ROUTER_S
    table = known.table.set_index("candidate")
    assert (table.loc[table["pause"] == 1800, "status"] == "infeasible").all()
    print(
        f"chosen {chosen.name}: {row['objective']:.1f} (closed form {values[chosen.name]:.1f});"
        f" spent {known.replications} vs grid {known.exhaustive_replications}"
    )


def test_spends_fewer_replications_than_the_grid(known):
    sel = known.selection
    assert known.replications == sel.spent * known.rows_per_observation == len(known.frame)
    assert known.replications < known.exhaustive_replications
    assert known.replications_new == known.replications  # no checkpoint: all simulated now


# --------------------------------------------------------------------------- (b) constraints

TRAP_WORLD = {
    **WORLD,
    "platform": {"replicas": 1, "podStartup": {"uniform": ["20s", "100s"]}},
    "operators": {"alerts": [], "humanDetection": 1100, "abortLatency": ABORT_S},
}
TRAP_BUDGET_S = 1200 + 92  # 20-minute pause: P(rollout > budget) = P(start-up > 92 s) = 10 %
TRAP = {
    "space": [
        {
            "kind": "Canary",
            "weights": [[50]],
            "steps": [],
            "pause": ["18m", "20m"],
            "gate": ["none"],
        }
    ],
    "objective": {"metric": "excess_bad_requests", "releases": "bad"},
    "constraints": [
        {"metric": "rollout_duration", "statistic": "p95", "releases": "good", "max": TRAP_BUDGET_S}
    ],
    "indifference": 10,
    "confidence": 0.8,
}


def test_a_constraint_is_never_broken_beyond_its_bound():
    """Behind one Service on one pod the rollout takes exactly pause + start-up ~ U(20 s, 100 s).
    The 20-minute pause catches the bad release in the canary (the human needs 1100 s) and so
    hurts least, but 10 % of good releases then overrun the budget: its p95 breaks the limit.
    The tuner may recommend it in at most α_F = α/3 of the seeds (within MC error)."""
    seeds = range(5)
    violations = 0
    for seed in seeds:
        result = tune((TRAP_WORLD, TRAP), backend="inprocess", seed=seed)
        chosen = result.recommended
        assert chosen is not None
        violations += chosen.params["pause"] == 1200
        row = result.table.set_index("candidate").loc[chosen.name]
        assert (
            row[result.selection.records[chosen.name].bounds.__iter__().__next__() + " [high]"]
            <= 0.05
        )
    a_f = (1 - TRAP["confidence"]) / 3
    n = len(seeds)
    assert violations / n <= a_f + 3 * math.sqrt(a_f * (1 - a_f) / n)
    print(f"trap: {violations} violations in {n} seeds")


# --------------------------------------------------------------------------- (c) backends

SMALL = {
    "space": [canary_space([5, 25], ["20m", "30m"])],
    "objective": {"metric": "excess_bad_requests", "releases": "bad"},
    "indifference": 10,
    "confidence": 0.9,
}


def test_identical_results_on_every_backend():
    """The same seed gives the same frame, table and choice in-process, on a process pool (every
    stage on the pool) and on Dask."""
    runs = {
        "inprocess": tune((WORLD, SMALL), backend="inprocess", seed=3),
        "process": tune((WORLD, SMALL), backend="process", workers=2, seed=3, inprocess_below=0),
        "dask": tune((WORLD, SMALL), backend="dask", workers=2, seed=3),
    }
    prints = {name: r.fingerprint() for name, r in runs.items()}
    assert len(set(prints.values())) == 1, prints
    assert len(runs["process"].selection.stages) >= 2
    assert {r.backend for r in runs.values()} == set(runs)


# --------------------------------------------------------------------------- (d) resume


class Stop(Exception):
    pass


def test_resumes_after_an_interruption(tmp_path, known):
    """Stop in the middle (after a few chunks have been saved), rerun with the same checkpoint:
    the same result as an uninterrupted run, with fewer new replications."""
    ckpt = tmp_path / "ckpt"
    seen = []

    def interrupt(chunk):
        seen.append(chunk)
        if len(seen) == 30:
            raise Stop

    with pytest.raises(Stop):
        tune((WORLD, KNOWN), backend="inprocess", seed=11, checkpoint=ckpt, on_chunk=interrupt)
    resumed = tune((WORLD, KNOWN), backend="inprocess", seed=11, checkpoint=ckpt)
    assert resumed.fingerprint() == known.fingerprint()
    assert 0 < resumed.replications_new < resumed.replications
    with pytest.raises(PolicyError, match="another tune"):
        tune((WORLD, {**KNOWN, "indifference": 20}), backend="inprocess", seed=11, checkpoint=ckpt)


# --------------------------------------------------------------------------- (e) exportable


def test_exportable_to_argo_leaves_out_sequential_gates(tmp_path):
    spec = {**SMALL, "space": [canary_space([5, 10], ["20m"], ["threshold", "sprt", "msprt"])]}
    result = tune((WORLD, spec), backend="inprocess", seed=5, exportable_to="argo")
    assert sorted(result.excluded) == [
        "canary-w10-p20m-i1m-msprt",
        "canary-w10-p20m-i1m-sprt",
        "canary-w5-p20m-i1m-msprt",
        "canary-w5-p20m-i1m-sprt",
    ]
    assert all("sequential" in why for why in result.excluded.values())
    assert {c.params["gate"] for c in result.candidates} == {"threshold"}
    chosen = result.recommended
    assert chosen is not None
    assert export(chosen.policy, "argo").manifests
    out = write_tune_report(result, tmp_path / "tune")
    written = out / "exports" / "argo" / f"{chosen.policy.name}.yaml"  # export -o's layout
    assert written.read_text().count("kind: Rollout") == 1
    assert load_policy(out / "recommended.yaml") == chosen.policy


# --------------------------------------------------------------------------- report and files


def test_the_tune_folder(tmp_path, known):
    import json

    out = write_tune_report(known, tmp_path / "t")
    for name in (*TUNE_FILES, "recommended.yaml"):
        assert (out / name).exists(), name
    facts = json.loads((out / "tune.json").read_text())
    assert facts["recommended"] == known.recommended.name
    assert facts["replications"]["spent"] == known.replications
    assert facts["front"] == list(known.front)
    text = (out / "tune.md").read_text()
    assert known.recommended.name in text and "## How sure" in text
    write_tune_report(known, out)  # an earlier tune folder is replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_tune_report(known, tmp_path / "other")


def test_front_is_not_dominated(known):
    table = known.table.set_index("candidate")
    for name in known.front:
        x, y = table.loc[name, ["rollout_time", "objective"]]
        others = table.drop(index=name)
        assert not ((others["rollout_time"] <= x) & (others["objective"] < y)).any()
    assert list(known.front) == sorted(known.front, key=lambda n: table.loc[n, "rollout_time"])


# --------------------------------------------------------------------------- specs and scenarios


def test_shipped_tune_scenario_loads_and_filters():
    ts = load_tune_scenario("scenarios/tune-canary.yaml")
    pool = candidates(ts.spec, ts.policies)
    assert pool[0].name == "canary-nginx" and pool[0].family == "scenario"
    assert len({c.name for c in pool}) == len(pool) >= 30
    gates = {c.params.get("gate") for c in pool[1:]}
    assert gates == {"threshold", "sprt", "msprt"}


def test_spaces_generate_valid_policies_of_every_family():
    spec = TuneSpec.model_validate(
        {
            "indifference": 1,
            "space": [
                {
                    "kind": "Canary",
                    "steps": [1, 2, 3],
                    "firstWeight": [10, 40],
                    "growth": [3],
                    "gate": ["none", "threshold", "kayenta", "sprt", "msprt"],
                },
                {
                    "kind": "Progressive",
                    "stepWeight": [10, 20],
                    "maxWeight": [50],
                    "threshold": [1, 2],
                },
                {"kind": "BlueGreen", "analysis": [0, "5m"], "scaleDownDelaySeconds": [30, "10m"]},
            ],
        }
    )
    pool = candidates(spec)
    by_family = {
        f: [c for c in pool if c.family == f] for f in ("Canary", "Progressive", "BlueGreen")
    }
    # weights 10, 10/30, 10/30/90, 40 (40/120 rises past 100: not a schedule) × 5 gates
    assert len(by_family["Canary"]) == 4 * 5
    assert len(by_family["Progressive"]) == 4
    assert len(by_family["BlueGreen"]) == 4
    for c in pool:
        assert c.policy.name == c.name
        assert c.policy.kind == c.family


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"space": [{"kind": "Canary", "pause": ["10x"]}], "indifference": 1},
            "tune.space[0].pause",
        ),
        (
            {"space": [{"kind": "BlueGreen", "prePromotionAnalysis": ["5m"]}], "indifference": 1},
            "preview serves no user traffic",
        ),
        ({"space": [{"kind": "Canary"}], "indifference": 0}, "indifference"),
        (
            {"space": [{"kind": "Canary", "fixed": {"steps": []}}], "indifference": 1},
            "fixed may not",
        ),
        (
            {
                "space": [{"kind": "Canary"}],
                "indifference": 1,
                "constraints": [{"metric": "bad_requests", "max": 5}],
            },
            None,
        ),
    ],
)
def test_bad_specs_are_one_line_errors(bad, message):
    if message is None:  # valid spec, but a metric without a natural range needs bounds
        spec = parse_tune_spec(bad)
        with pytest.raises(PolicyError, match="give bounds"):
            tune((WORLD, spec), backend="inprocess")
        return
    with pytest.raises(PolicyError) as err:
        parse_tune_spec(bad)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_constraint_values_follow_their_statistic():
    import pandas as pd

    from sim.tune.objectives import Constraint

    rows = pd.DataFrame({"rollout_duration": [100.0, 700.0, np.nan, 300.0]})
    p95 = Constraint(metric="rollout_duration", statistic="p95", max="10m")
    assert p95.limit == 600 and list(p95.values(rows, 3600)) == [0, 1, 1, 0]
    ignore = Constraint(metric="rollout_duration", statistic="p95", max="10m", missing="ignore")
    assert list(ignore.values(rows, 3600)) == pytest.approx([-0.05, 0.95, 0.0, -0.05])
    mean = Constraint(metric="rollout_duration", max=600)
    assert list(mean.values(rows, 3600)) == [100, 700, 3600, 300]
    assert Constraint(metric="false_rollback", max="5%").limit == 0.05


def test_tune_scenario_writes_the_folder_and_drops_its_checkpoint(tmp_path):
    """What `rolloutsim tune SCENARIO -o DIR` calls: a scenario file in, a folder out."""
    import yaml

    from sim.tune.report import tune_scenario

    scenario = {
        "name": "small",
        "world": WORLD,
        "policies": [
            {
                "kind": "Canary",
                "name": "incumbent",
                "trafficRouting": {"nginx": {}},
                "steps": [{"setWeight": 50}, {"pause": {"duration": "20m"}}],
            }
        ],
        "seed": 4,
        "backend": "inprocess",
        "tune": SMALL,
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(scenario))
    folder, result = tune_scenario(path, tmp_path / "out", resume=True, progress=False)
    assert folder == tmp_path / "out" and (folder / "tune.md").exists()
    assert not (tmp_path / "out.checkpoint").exists()
    assert result.candidates[0].name == "incumbent" and result.seed == 4
    path.write_text(yaml.safe_dump({k: v for k, v in scenario.items() if k != "tune"}))
    with pytest.raises(PolicyError, match="no tune: section"):
        tune_scenario(path, tmp_path / "out")


def test_a_quantile_objective_is_observed_per_batch():
    """p95 of the excess over bad releases: each observation is the quantile of a batch of 5
    replications of each class (10 rows), so the procedure still sees i.i.d. observations."""
    spec = {
        **SMALL,
        "objective": {
            "metric": "excess_bad_requests",
            "statistic": "p95",
            "releases": "bad",
            "batch": 5,
        },
    }
    result = tune((WORLD, spec), backend="inprocess", seed=8)
    assert result.rows_per_observation == 10
    assert result.replications == result.selection.spent * 10
    chosen = result.table.set_index("candidate").loc[result.recommended.name]
    assert chosen["weights"] == "5"  # the small canary's excess quantile is the smaller one
