"""sim.runs.runner: the same numbers on every backend, common random numbers, stratification,
failures recorded, and checkpoints that resume without redoing finished chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from policies import PolicyError, load_policy
from sim.engine.outcome import OUTCOME_FIELDS
from sim.engine.replication import Replication
from sim.runs.runner import Chunk, run
from sim.runs.summary import MIXTURE
from sim.world.model import World

POLICIES = Path(__file__).resolve().parents[1] / "scenarios" / "policies"
WORLD = {
    "horizon": "2h",
    "traffic": {"rate": 200},
    "users": {"count": 2000},
    "releases": [
        {"name": "good", "probability": 0.9},
        {"name": "bad", "probability": 0.1, "fault": {"errorRate": 0.05}},
    ],
    "platform": {"replicas": 4, "podStartup": "10s"},
}


@pytest.fixture(scope="module")
def world():
    return World.model_validate(WORLD)


@pytest.fixture(scope="module")
def policies():
    return [load_policy(POLICIES / "canary-basic.yaml"), load_policy(POLICIES / "canary-sprt.yaml")]


@pytest.fixture(scope="module")
def reference(world, policies):
    return run(world, policies, replications=10, seed=7, backend="inprocess", chunk_size=4)


def test_every_backend_and_chunking_gives_the_same_frame(world, policies, reference):
    process = run(world, policies, replications=10, seed=7, backend="process", workers=2)
    dask = run(world, policies, replications=10, seed=7, backend="dask", workers=2, chunk_size=3)
    pd.testing.assert_frame_equal(reference.frame, process.frame)
    pd.testing.assert_frame_equal(reference.frame, dask.frame)
    assert reference.failed == process.failed == dask.failed == 0


def test_frame_layout(reference):
    f = reference.frame
    assert list(f.columns) == [*OUTCOME_FIELDS, "weight"]
    assert reference.policies == ("canary-basic", "canary-sprt")
    assert reference.classes == ("good", "bad")
    keys = list(zip(f["policy"], f["release_class"], f["replication"]))
    expected = [(p, c, i) for p in reference.policies for c in ("good", "bad") for i in range(10)]
    assert keys == expected
    assert (f["seed"] == 7).all()
    assert f.loc[f["release_class"] == "bad", "bad_release"].all()


def test_different_seeds_differ(world, policies, reference):
    other = run(world, policies, replications=10, seed=8, backend="inprocess")
    assert not np.array_equal(
        reference.frame["excess_bad_requests"], other.frame["excess_bad_requests"]
    )


def test_identical_policies_meet_identical_worlds(world, policies):
    p = policies[0]
    result = run(world, {"a": p, "b": p}, replications=6, seed=3, backend="inprocess")
    f = result.frame
    a = f[f["policy"] == "a"].drop(columns="policy").reset_index(drop=True)
    b = f[f["policy"] == "b"].drop(columns="policy").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    c = result.compare("a", "b")
    assert (c["diff"] == 0).all() and not c["significant"].any()


def test_different_policies_share_the_fault_onset():
    spec = dict(
        WORLD,
        releases=[
            {
                "name": "bomb",
                "probability": 1.0,
                "fault": {"errorRate": 0.05, "onset": {"hazard": {"mean": "20m"}}},
            }
        ],
    )
    canary = load_policy(POLICIES / "canary-basic.yaml")
    rolling = load_policy(POLICIES / "rolling-update.yaml")
    f = run(spec, [canary, rolling], replications=8, seed=11, backend="inprocess").frame
    t_canary = f.loc[f["policy"] == "canary-basic", "t_fault"].to_numpy()
    t_rolling = f.loc[f["policy"] == "rolling-update", "t_fault"].to_numpy()
    assert np.isfinite(t_canary).sum() >= 4  # the onsets mostly land within the horizon
    # t_fault is the first faulted request: an Exp wait after the shared onset, at least 20 % of
    # 200 req/s on the new version (the basic canary's one pod of 5, 4 replicas), each under 40
    # mean waits (missed with probability e^−40)
    np.testing.assert_array_equal(np.isfinite(t_canary), np.isfinite(t_rolling))
    np.testing.assert_allclose(t_canary, t_rolling, rtol=0, atol=40 / (0.2 * 200))
    assert len(set(t_canary[np.isfinite(t_canary)])) > 3  # drawn per replication, not fixed


def test_every_class_gets_its_own_replications(world, policies):
    result = run(world, policies, replications={"good": 3, "bad": 5}, seed=1, backend="inprocess")
    f = result.frame
    counts = f.groupby(["policy", "release_class"], sort=False).size()
    assert counts.to_dict() == {
        ("canary-basic", "good"): 3,
        ("canary-basic", "bad"): 5,
        ("canary-sprt", "good"): 3,
        ("canary-sprt", "bad"): 5,
    }
    assert set(f.loc[f["release_class"] == "bad", "replication"]) == set(range(5))
    np.testing.assert_allclose(f.groupby("policy")["weight"].sum(), 1.0)
    assert f.loc[f["release_class"] == "bad", "weight"].iloc[0] == pytest.approx(0.1 / 5)
    assert result.replications == {"good": 3, "bad": 5}
    # the mixture is weighted by probability, not by the number of rows
    s = result.summary(["excess_bad_requests"])
    by_class = s["excess_bad_requests_mean"]
    for p in result.policies:
        expected = 0.9 * by_class[(p, "good")] + 0.1 * by_class[(p, "bad")]
        assert by_class[(p, MIXTURE)] == pytest.approx(expected)


def test_a_replication_that_raises_is_recorded_and_the_rest_complete(
    world, policies, reference, monkeypatch
):
    original = Replication.run

    def flaky(self):
        if self.outcome.replication == 3:
            raise RuntimeError("boom\n  on two lines")
        return original(self)

    monkeypatch.setattr(Replication, "run", flaky)
    result = run(world, policies, replications=10, seed=7, backend="inprocess", chunk_size=4)
    f = result.frame
    bad = f["replication"] == 3
    assert result.failed == 4  # 2 policies × 2 classes
    assert (f.loc[bad, "error"] == "RuntimeError: boom on two lines").all()
    assert (f.loc[~bad, "error"] == "").all()
    assert (f.loc[bad, "seed"] == 7).all()
    assert list(f.loc[bad, "release_class"]) == ["good", "bad", "good", "bad"]
    pd.testing.assert_frame_equal(f[~bad], reference.frame[~bad])
    s = result.summary(["excess_bad_requests"])
    assert s.loc[("canary-basic", MIXTURE), "failed"] == 2
    assert s.loc[("canary-basic", "good"), "n"] == 9


def test_checkpoint_resumes_only_missing_chunks(world, policies, reference, tmp_path):
    ran: list[Chunk] = []
    kwargs = dict(replications=10, seed=7, chunk_size=4, checkpoint=tmp_path)
    first = run(world, policies, backend="inprocess", on_chunk=ran.append, **kwargs)
    pd.testing.assert_frame_equal(first.frame, reference.frame)
    files = sorted((tmp_path / "chunks").glob("*.parquet"))
    assert len(files) == len(ran) == 12  # 2 policies × 2 classes × ceil(10 / 4)
    assert files[0].name == "000-canary-basic__000-good__00000.parquet"
    for f in files[1::4]:
        f.unlink()
    ran.clear()
    resumed = run(world, policies, backend="process", workers=2, on_chunk=ran.append, **kwargs)
    assert sorted((c.policy_index, c.class_index, c.index) for c in ran) == [
        (0, 0, 1),
        (0, 1, 2),
        (1, 1, 0),
    ]
    pd.testing.assert_frame_equal(resumed.frame, reference.frame)
    ran.clear()
    again = run(world, policies, backend="inprocess", on_chunk=ran.append, **kwargs)
    assert ran == []
    pd.testing.assert_frame_equal(again.frame, reference.frame)


def test_chunks_of_an_older_outcome_record_are_run_again(world, policies, reference, tmp_path):
    """A checkpoint from a version with other outcome fields resumes by redoing those chunks."""
    import pyarrow.parquet as pq

    kwargs = dict(replications=10, seed=7, chunk_size=4, checkpoint=tmp_path, backend="inprocess")
    run(world, policies, **kwargs)
    old = sorted((tmp_path / "chunks").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(old).drop_columns(["users_with_bad"]), old)
    ran: list[Chunk] = []
    resumed = run(world, policies, on_chunk=ran.append, **kwargs)
    assert [(c.policy_index, c.class_index, c.index) for c in ran] == [(0, 0, 0)]
    pd.testing.assert_frame_equal(resumed.frame, reference.frame)


def test_interrupted_run_resumes(world, policies, reference, tmp_path):
    kwargs = dict(replications=10, seed=7, chunk_size=4, checkpoint=tmp_path, backend="inprocess")
    finished: list[Chunk] = []

    def interrupt_after_five(chunk: Chunk) -> None:
        finished.append(chunk)
        if len(finished) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(world, policies, on_chunk=interrupt_after_five, **kwargs)
    assert len(list((tmp_path / "chunks").glob("*.parquet"))) == 5
    assert not list((tmp_path / "chunks").glob(".*"))  # no temp files left behind
    rest: list[Chunk] = []
    resumed = run(world, policies, on_chunk=rest.append, **kwargs)
    assert len(rest) == 7 and not set(rest) & set(finished)
    pd.testing.assert_frame_equal(resumed.frame, reference.frame)


def test_checkpoint_of_other_inputs_is_refused(world, policies, tmp_path):
    run(world, policies[:1], replications=2, seed=1, backend="inprocess", checkpoint=tmp_path)
    with pytest.raises(PolicyError, match=r"different inputs \(seed differ\)"):
        run(world, policies[:1], replications=2, seed=2, backend="inprocess", checkpoint=tmp_path)
    with pytest.raises(PolicyError, match=r"policies differ"):
        run(world, policies[1:], replications=2, seed=1, backend="inprocess", checkpoint=tmp_path)


def test_failed_chunks_are_retried_on_resume(world, policies, monkeypatch, tmp_path):
    original = Replication.run

    def flaky(self):
        if self.outcome.replication == 0:
            raise MemoryError("transient")
        return original(self)

    kwargs = dict(replications=2, seed=1, backend="inprocess", checkpoint=tmp_path)
    monkeypatch.setattr(Replication, "run", flaky)
    assert run(world, policies[:1], **kwargs).failed == 2
    monkeypatch.setattr(Replication, "run", original)
    assert run(world, policies[:1], **kwargs).failed == 0


def test_to_parquet_round_trips_with_provenance(reference, tmp_path):
    path = tmp_path / "results.parquet"
    reference.to_parquet(path)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, reference.frame, check_dtype=False)
    meta = pq.read_schema(path).metadata[b"rolloutsim"].decode()
    assert '"seed": 7' in meta and '"canary-sprt"' in meta


def test_progress_bar_is_optional(world, policies, capsys):
    run(world, policies[:1], replications=2, backend="inprocess", progress=True)
    assert "replications" in capsys.readouterr().err  # progress goes to stderr
    run(world, policies[:1], replications=2, backend="inprocess", progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "threads"}, "not a backend"),
        ({"replications": 0}, r"replications\.good: 0 is not a whole number >= 1"),
        ({"replications": {"good": 2}}, "missing bad"),
        ({"replications": {"good": 2, "bad": 2, "ugly": 1}}, "unknown ugly"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_are_refused(world, policies, kwargs, message):
    with pytest.raises(PolicyError, match=message):
        run(world, policies, **kwargs)


def test_policy_names_must_be_unique(world, policies):
    with pytest.raises(PolicyError, match="canary-basic repeated"):
        run(world, [policies[0], policies[0]], backend="inprocess")
