"""Reports: a run's results as a folder a colleague can read, check and rerun (DESIGN §6).

``write_report`` writes report.html (self-contained), report.md, results.parquet (one row per
replication), summary.csv, figures/*.png and scenario.resolved.yaml, and never loses results:

1. the results first: results.parquet, summary.csv and scenario.resolved.yaml are built in a
   temporary folder beside the target and renamed into place, so the folder holds the whole
   new run or (if that fails) the old report untouched;
2. then the figures and the report, each file written atomically into that folder. A figure
   or section that cannot be drawn says so in its place (and at the top of the report), the
   rest is still written, and ``ReportIncomplete`` is raised at the end, naming what is
   missing. Replications that failed stay in results.parquet with their error; the example
   timelines pass over them, and say so.

``example_traces`` reruns a few replications with traces on, in-process, for the timelines: the
same seeds as the runner, so a timeline is exactly that replication's row in results.parquet.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from policies.errors import RolloutsimError, one_line
from sim.report.content import build_blocks
from sim.report.facts import Facts
from sim.report.render import Heading, Para, to_html, to_markdown
from sim.runs.files import atomic_write, check_output, staged_folder
from sim.runs.provenance import package_version, run_digest

__all__ = ["REPORT_FILES", "ReportIncomplete", "example_traces", "write_report"]

REPORT_FILES = (
    "report.html",
    "report.md",
    "results.parquet",
    "summary.csv",
    "scenario.resolved.yaml",
)
"""What every report folder holds, besides figures/."""
RESULT_FILES = ("results.parquet", "summary.csv", "scenario.resolved.yaml")


class ReportIncomplete(RolloutsimError):
    """The results are written, but parts of the report could not be drawn: ``problems`` is
    ``[(what, why)]``, and the report says the same in their place. One line as a string;
    ``sim.runs.sweep.run_scenario`` attaches the run's ``result``. Not bad input: the command
    line exits ``exit_code`` (1), not 2."""

    exit_code = 1

    def __init__(self, folder, problems, *, result=None) -> None:
        self.folder = Path(folder)
        self.problems = list(problems)
        self.result = result  # what was computed (a RunResult, a sweep's table), if known
        shown = "; ".join(f"{what}: {why}" for what, why in self.problems[:2])
        more = len(self.problems) - 2
        if more > 0:
            shown += f"; and {more} more"
        text = (
            f"{self.folder}: results written, but {len(self.problems)} part"
            f"{'s' if len(self.problems) != 1 else ''} of the report could not be drawn "
            f"({shown}); see {self.folder / 'report.md'}"
        )
        super().__init__(" ".join(text.split()))


def write_report(
    result, loaded_scenario, out_dir, *, traces=None, version=None, sensitivity=None
) -> Path:
    """Write the report of ``result`` (a ``sim.runs.runner.RunResult``) into the folder ``out_dir``.

    ``loaded_scenario`` names the scenario and where it came from; the numbers, the world and
    the policies are taken from ``result`` (what really ran, e.g. with a shortened horizon).
    ``traces``: the timelines' ``Trace`` objects; None reruns the examples (``example_traces``),
    an empty list leaves the timelines out. ``sensitivity``: a
    ``sim.runs.sensitivity.SensitivityResult`` on this run, shown as a "Sensitivity" section
    (its tornado among the figures). An existing ``out_dir`` must be an earlier report
    (or empty): it is replaced only once the new results are written whole. Raises
    ``ReportIncomplete`` (after writing everything else) when a part could not be drawn.
    """
    out = Path(out_dir)
    _check_target(out)
    _load_in_workers()
    version = version or getattr(result, "version", "") or package_version()
    created = datetime.now(UTC).replace(microsecond=0)
    provenance = _provenance(result, loaded_scenario, version, created)
    problems: list[tuple[str, str]] = []
    summary = resolved = None
    try:
        summary = result.summary()
    except Exception as exc:  # the frame is still written; the report says what is missing
        problems.append(("summary.csv", one_line(exc)))
    try:
        resolved = _resolved_yaml(result, loaded_scenario, provenance)
    except Exception as exc:
        problems.append(("scenario.resolved.yaml", one_line(exc)))
    with staged_folder(out) as tmp:  # 1. the results, whole, before anything is drawn
        _write_results(result, tmp / "results.parquet")
        if summary is not None:
            summary.reset_index().to_csv(tmp / "summary.csv", index=False)
        if resolved is not None:
            (tmp / "scenario.resolved.yaml").write_text(resolved, encoding="utf-8")
    try:  # 2. the figures and the report: what cannot be drawn says so
        facts = Facts.build(result, kinds=_describe_policies(result), summary=summary)
        notes: dict = {}
        if traces is None:
            traces, notes = _default_traces(result, facts)
        blocks, figs, drawn = build_blocks(
            result, loaded_scenario, facts, list(traces), provenance, notes, sensitivity
        )
        problems += drawn
    except Exception as exc:  # nothing to build on (e.g. no summary): say so, keep the files
        problems.append(("report", one_line(exc)))
        blocks, figs = _bare_report(loaded_scenario, problems), []
    title = f"rolloutsim report: {loaded_scenario.scenario.name}"
    (out / "figures").mkdir(exist_ok=True)
    os.chmod(out / "figures", 0o755)
    for fig in figs:
        _put(out / "figures" / f"{fig.name}.png", fig.png)
    _put(out / "report.md", to_markdown(blocks).encode())
    _put(out / "report.html", to_html(blocks, title).encode())
    if problems:
        raise ReportIncomplete(out, problems)
    return out


def _load_in_workers() -> None:
    """With a warm worker pool the figures are drawn there (``exhibits._draw``): have it load
    matplotlib now, while this process makes the facts."""
    from sim.runs import pool

    executor = pool.warm_executor()
    if executor is not None:
        from sim.report.plotting import load

        for _ in range(executor._max_workers):  # type: ignore[attr-defined]
            executor.submit(load)


def _put(path: Path, data: bytes) -> None:
    """One file, whole or not at all, readable by everyone like the rest of the folder."""

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)
        os.chmod(tmp, 0o644)

    atomic_write(path, write)


def _bare_report(loaded, problems) -> list:
    what = "; ".join(f"{w}: {why}" for w, why in problems)
    return [
        Heading(f"Release policy report: {loaded.scenario.name}", 1),
        Para(
            f"**This report could not be built** ({what}). The results are in "
            "results.parquet (one row per replication, with any replication's error).",
            "problem",
        ),
    ]


# ---------------------------------------------------------------------------- atomic folder


def _check_target(out: Path) -> None:
    """Refuse to replace anything that is not an earlier report: never delete a user's folder
    (one line, ``sim.runs.files.check_output``; a run checks the same before it starts)."""
    check_output(out, "report")


# ---------------------------------------------------------------------------- files


def _write_results(result, path: Path) -> None:
    if hasattr(result, "to_parquet"):
        result.to_parquet(path)  # keeps the run's provenance in the file's metadata
    else:
        result.frame.to_parquet(path, index=False)


def _differs(result, loaded) -> list[str]:
    """What ran that the scenario file does not say, in words: a seed or replications given by
    the caller, or a world or policies changed after the file was read."""
    file = loaded.scenario
    said = []
    if int(result.seed) != file.seed:
        said.append(f"seed {int(result.seed)} given to the run; the file says {file.seed}")
    ran = dict(result.replications)
    asked = file.replications
    wanted = asked if isinstance(asked, dict) else dict.fromkeys(ran, asked)
    if ran != wanted:
        ran_text = ", ".join(f"{c} {n:,}" for c, n in ran.items())
        asked_text = (
            f"{asked:,}"
            if not isinstance(asked, dict)
            else ", ".join(f"{c} {n:,}" for c, n in asked.items())
        )
        said.append(f"replications {ran_text} given to the run; the file says {asked_text}")
    if run_digest(result.world, result.policy_specs, file.seed) != loaded.digest():
        said.append("the world or the policies differ from the file (changed after it was read)")
    return said


def _provenance(result, loaded, version: str, created: datetime) -> dict:
    path = getattr(loaded, "path", None)
    digest = run_digest(result.world, result.policy_specs, result.seed)
    try:
        differs = _differs(result, loaded)
    except Exception:  # a hand-made scenario without a file's settings to compare with
        differs = []
    return {
        "scenario": loaded.scenario.name,
        "file": str(path) if path else "",
        "seed": int(result.seed),
        "replications": dict(result.replications),
        "failed": int(result.failed),
        "digest": digest,
        "differs": differs,
        "version": version,
        "backend": getattr(result, "backend", ""),
        "wall_time_s": float(getattr(result, "wall_time_s", math.nan)),
        "created": created.isoformat().replace("+00:00", "Z"),
    }


def _resolved_yaml(result, loaded, prov: dict) -> str:
    """The scenario as run, every policy inline: load_scenario() reads it back unchanged."""
    import yaml

    data = loaded.resolved()
    data["world"] = result.world
    data["policies"] = [{**result.policy_specs[n], "name": n} for n in result.policies]
    data["seed"] = int(result.seed)
    data["replications"] = dict(result.replications)
    if getattr(result, "backend", None):
        data["backend"] = result.backend
    wall = prov["wall_time_s"]
    head = [
        "# The scenario exactly as run, every policy inline; loading this file reruns it.",
        f"# rolloutsim: {prov['version']}",
        f"# digest: {prov['digest']}",
        f"# seed: {prov['seed']}",
        f"# replications: {json.dumps(prov['replications'])}",
        f"# failed: {prov['failed']}",
        f"# wall_time_s: {wall:.3f}" if not math.isnan(wall) else "# wall_time_s: unknown",
        f"# written: {prov['created']}",
    ]
    if prov["file"]:
        head.append(
            f"# from: {prov['file']}"
            + (f" ({'; '.join(prov['differs'])})" if prov["differs"] else "")
        )
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(head) + "\n" + body


def _describe_policies(result) -> dict[str, str]:
    """``Kind: step → step → …`` per policy, from ``explain`` (what a reader needs to recall)."""
    from policies.explain import explain
    from policies.loading import parse_policy
    from sim.world.model import World

    try:
        platform = World.model_validate(result.world).platform
    except Exception:
        platform = None
    out = {}
    for name in result.policies:
        spec = result.policy_specs.get(name, {})
        kind = spec.get("kind", "")
        try:
            policy = parse_policy(spec)
            n = platform.resolve_replicas(getattr(policy, "replicas", None)) if platform else 10
            told = explain(policy, n)
        except Exception:  # a description is a courtesy; never fail a report over it
            out[name] = kind
            continue
        found = re.search(r"\(([^()]*)\)\s*$", told.title)
        mode = re.split(r"[;:]", found.group(1))[0].strip() if found else ""
        out[name] = f"{kind}{', ' + mode if mode else ''}: {_steps([r.action for r in told.rows])}"
    return out


def _steps(actions: list[str]) -> str:
    """``20 % → pause 10m → …``: repeats collapsed (``sync ×6``), long schedules cut short."""
    runs: list[list] = []
    for a in actions:
        a = re.sub(r"^(?:setWeight|weight) (\S+)$", r"\1 %", a)
        if runs and runs[-1][0] == a:
            runs[-1][1] += 1
        else:
            runs.append([a, 1])
    words = [a if k == 1 else f"{a} ×{k}" for a, k in runs]
    if len(words) > 9:
        words = [*words[:7], f"… {len(words) - 8} more", words[-1]]
    return " → ".join(words)


# ---------------------------------------------------------------------------- traces


def _worst_bad(world, frame=None) -> str | None:
    """The bad class with the most excess bad requests (in ``frame``, else by its fault)."""
    bad = [c for c in world.releases if c.is_bad]
    if not bad:
        return None
    if frame is not None and len(frame):
        means = frame.groupby("release_class")["excess_bad_requests"].mean()
        return max(bad, key=lambda c: float(means.get(c.name, -math.inf))).name

    def severity(c) -> float:
        try:
            p = c.fault.bad_probability(world.baseline, world.latency_objective, 1e9)
            return float(np.asarray(p).max())
        except Exception:
            return 0.0

    return max(bad, key=severity).name


def _rerun(policy, name: str, cw, cells, seed: int, release, class_index: int, i: int):
    from sim.engine.replication import Replication
    from sim.engine.seeds import replication_seed

    ss = replication_seed(seed, class_index, i)
    rep = Replication(
        cw, cells, policy, release, ss, index=i, run_seed=seed, policy_name=name, trace=True
    )
    rep.run()
    return rep.trace


def _traces(policies: dict, cw, cells, seed: int, classes: list[str], k: int) -> list:
    releases = cw.world.releases
    index = {c.name: i for i, c in enumerate(releases)}
    return [
        _rerun(policy, name, cw, cells, seed, releases[cls], index[cls], i)
        for name, policy in policies.items()
        for cls in classes
        for i in range(k)
    ]


def example_traces(loaded, cw=None, cells=None, *, seed=None, k: int = 1, frame=None) -> list:
    """Traced reruns for the timelines: per policy, replications ``0..k-1`` of the worst bad
    class and of the first good class, in-process, with the runner's seeds for run ``seed``.

    ``cw``/``cells``: the compiled world and user cells (None: built as the runner does from
    ``loaded.world``); ``frame``: a run's frame, to rank the bad classes by excess bad requests.
    """
    from sim.engine.seeds import shared_parts

    seed = loaded.scenario.seed if seed is None else int(seed)
    if cw is None:
        cw, cells = shared_parts(loaded.world, seed)
    elif cells is None:
        _, cells = shared_parts(cw.world, seed)
    world = cw.world
    classes = [c for c in (_worst_bad(world, frame),) if c]
    good = [c.name for c in world.releases if not c.is_bad]
    classes += good[:1]
    return _traces(dict(loaded.policies), cw, cells, seed, classes, k)


def _default_traces(result, facts) -> tuple[list, dict[str, tuple[list[str], list[str]]]]:
    """The report's example timelines: per policy, the first replication of the worst bad class
    and of the first good class whose row did not fail. Returns the traces and, per policy,
    (sentences on failed replications passed over, sentences on reruns that raised)."""
    from policies.loading import parse_policy
    from sim.runs.runner import compiled

    notes: dict[str, tuple[list[str], list[str]]] = {p: ([], []) for p in result.policies}
    try:  # the run's own compiled world and users when this process still has them
        cw, cells = compiled(result.world, int(result.seed))
        world = cw.world
        policies = {n: parse_policy(result.policy_specs[n]) for n in result.policies}
    except Exception as exc:
        for _, errors in notes.values():
            errors.append(f"the example releases could not be rerun ({one_line(exc)})")
        return [], notes
    releases = world.releases
    index = {c.name: i for i, c in enumerate(releases)}
    classes = [c for c in (_worst_bad(world, facts.frame),) if c] + list(facts.good[:1])
    frame = result.frame
    errors_of = frame["error"].fillna("").astype(str)
    traces = []
    for name, policy in policies.items():
        skipped, errors = notes[name]
        for cls in classes:
            rows = frame[(frame["policy"] == name) & (frame["release_class"] == cls)]
            rows = rows.assign(_error=errors_of[rows.index]).sort_values("replication")
            ok = rows[rows["_error"] == ""]
            if ok.empty:
                if len(rows):
                    r = rows.iloc[0]
                    skipped.append(
                        f"Every replication of {cls} failed (#{int(r['replication'])}: "
                        f"{r['_error']}; results.parquet keeps each error): none is shown."
                    )
                continue
            first = int(ok["replication"].iloc[0])
            passed = rows[rows["replication"] < first]
            for _, r in passed.head(2).iterrows():
                skipped.append(
                    f"Replication #{int(r['replication'])} of {cls} failed ({r['_error']}; "
                    "its row in results.parquet keeps the error) and is passed over."
                )
            if len(passed) > 2:
                skipped.append(f"So did {len(passed) - 2} more of {cls} before #{first}.")
            try:
                traces.append(
                    _rerun(
                        policy, name, cw, cells, int(result.seed), releases[cls], index[cls], first
                    )
                )
            except Exception as exc:
                errors.append(f"the rerun of {cls} #{first} raised {one_line(exc)}")
    return traces, notes
