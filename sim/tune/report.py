"""The tune output folder: the recommendation, the evidence for it, the front, the exports.

A team adopting a schedule needs more than its name: what it was compared with, how sure the
choice is (the guarantee, stated with its assumptions), what the runner-up costs, how much
simulation bought that certainty against brute force, and the manifests to apply. The folder is
written whole or not at all (built beside the target, then renamed), like a run report:

    tune.md            the answer, the guarantee, the finalists, the replications spent
    tune.json          the same facts for machines
    recommended.yaml   the chosen policy (a policy file: ``rolloutsim explain`` reads it)
    exports/           its manifests for every executor that can express it, one folder each
                       (exports/<executor>/, as `rolloutsim export -o` writes them)
    candidates.csv     one row per candidate: knobs, verdict, estimates, constraint bounds
    front.csv, front.png   the Pareto front of rollout time against the objective
    results.parquet    every simulated replication, with its phase, block and stage
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from policies.exporters import EXECUTORS, export
from policies.loading import policy_to_yaml
from sim.report.plotting import (
    WIDTH_IN,
    draw_png,
    log_axis,
    note_better,
    place_labels,
    thousands,
    time_axis,
    wrap,
)
from sim.report.render import md_escape
from sim.report.text import fmt_duration
from sim.runs.files import (
    check_name,
    check_output,
    folder_for,
    inside,
    output_lock,
    staged_folder,
)
from sim.tune.space import expressible

__all__ = ["TUNE_FILES", "finished_tune", "front_figure", "tune_scenario", "write_tune_report"]

TUNE_FILES = ("tune.md", "tune.json", "candidates.csv", "front.csv", "front.png", "results.parquet")
"""Always in a tune folder (plus recommended.yaml and exports/ when something was chosen)."""

_STATUS = {  # status -> (colour, marker, legend)
    "selected": ("#D55E00", "*", "recommended"),
    "finalist": ("#0072B2", "o", "finalist (fresh replications)"),
    "eliminated": ("#999999", "o", "eliminated by a significantly better one"),
    "infeasible": ("#CC79A7", "x", "breaks a constraint"),
    "undecided": ("#E69F00", "^", "constraint undecided"),
}


def tune_scenario(
    path,
    out=None,
    *,
    exportable_to: str | None = None,
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    resume: bool = False,
    progress: bool | None = None,
):
    """``rolloutsim tune SCENARIO``: tune, write the folder, return (folder, result).

    ``path``: the scenario file or its ``TuneScenario``. The checkpoint lives beside the folder
    (``<out>.checkpoint``): ``resume`` continues an interrupted tune from it, otherwise a stale
    one is discarded; it is removed once the folder is written (``finished_tune`` reads a
    finished one back). ``out`` defaults to ``reports/<scenario name>-tune``.
    """
    import sys

    from sim.tune.search import TuneScenario, load_tune_scenario, tune

    scenario = path if isinstance(path, TuneScenario) else load_tune_scenario(path)
    check_name(scenario.name, "name", file=str(scenario.path) if scenario.path else None)
    default = out is None
    folder = folder_for("reports", scenario.name, "name", "-tune") if default else Path(out)
    check_output(folder, "tune")  # before the search: a bad target is refused now, not after
    with output_lock(folder):
        checkpoint = folder.with_name(folder.name + ".checkpoint")
        if checkpoint.exists() and not resume:
            shutil.rmtree(checkpoint)
        result = tune(
            scenario,
            exportable_to=exportable_to,
            backend=backend,
            workers=workers,
            scheduler=scheduler,
            seed=seed,
            checkpoint=checkpoint,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        write_tune_report(result, folder)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return folder, result


def finished_tune(out, source, *, seed=None, exportable_to=None) -> dict | None:
    """tune.json's facts when the folder ``out`` holds this very tune finished (the same
    inputs: ``sim.tune.search.tune_inputs`` of the other arguments), so a resume of it
    simulates nothing; None when it holds no finished tune. A finished tune of other inputs is
    refused: resuming it would replace it."""
    from policies.errors import PolicyError
    from sim.tune.search import tune_inputs

    path = Path(out) / "tune.json"
    if not ((Path(out) / "tune.md").is_file() and path.is_file()):
        return None
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):  # a damaged file: tune again
        return None
    if not isinstance(facts, dict) or "inputs" not in facts:
        return None  # written by an older version: tune again
    if facts["inputs"] != tune_inputs(source, seed=seed, exportable_to=exportable_to):
        raise PolicyError(
            "holds a finished tune of other inputs (world, space, goal or seed differ): --resume"
            " continues only the same tune; give --overwrite instead to start over",
            file=str(out),
        )
    return facts


def write_tune_report(result, out_dir) -> Path:
    """Write ``result`` (a ``sim.tune.search.TuneResult``) as the folder ``out_dir``; returns it.

    An existing ``out_dir`` must be an earlier tune folder (it holds tune.md) or empty: it is
    replaced only once the new folder is complete.
    """
    out = check_output(out_dir, "tune")
    chosen = result.recommended
    exports = _exports(chosen.policy) if chosen is not None else {}
    with staged_folder(out) as tmp:
        result.table.to_csv(tmp / "candidates.csv", index=False)
        front = result.table.set_index("candidate").loc[list(result.front)]
        front.reset_index().to_csv(tmp / "front.csv", index=False)
        (tmp / "front.png").write_bytes(front_figure(result))
        result.frame.to_parquet(tmp / "results.parquet", index=False)
        if chosen is not None:
            (tmp / "recommended.yaml").write_text(policy_to_yaml(chosen.policy), encoding="utf-8")
            (tmp / "exports").mkdir()
            for executor, made in exports.items():  # the layout of `export -o DIR`
                if isinstance(made, str):
                    continue
                files = {f"{chosen.policy.name}.yaml": made.to_yaml(), **made.files}
                for name, text in files.items():  # names from the policy: kept inside
                    target = inside(tmp / "exports", executor, name)
                    target.parent.mkdir(exist_ok=True)
                    target.write_text(text, "utf-8")
        facts = _facts(result, exports)
        (tmp / "tune.json").write_text(json.dumps(facts, indent=1, default=_json), "utf-8")
        (tmp / "tune.md").write_text(_markdown(result, facts), encoding="utf-8")
    return out


def _exports(policy) -> dict:
    """executor -> Export, or the executor's refusal (a string)."""
    out = {}
    for executor in EXECUTORS:
        why = expressible(policy, executor)
        out[executor] = why if why is not None else export(policy, executor)
    return out


def _json(value):
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def _facts(result, exports) -> dict:
    sel, spec, rows = result.selection, result.spec, result.rows_per_observation
    chosen = result.recommended
    table = result.table.set_index("candidate")
    finalists = [r for r in sel.records.values() if r.status in ("selected", "finalist")]
    return {
        "scenario": result.name,
        "recommended": chosen.name if chosen else None,
        "params": {k: _clean(v) for k, v in (chosen.params if chosen else {}).items()},
        "message": sel.message,
        "objective": spec.objective.label(),
        "constraints": [c.label() for c in spec.constraints],
        "indifference": spec.indifference,
        "confidence": spec.confidence,
        "alphas": sel.alphas,
        "candidates": len(result.candidates),
        "excluded": result.excluded,
        "status": {s: int((table["status"] == s).sum()) for s in _STATUS},
        "finalists": {
            r.name: {"mean": r.mean_select, "n": r.n_select, "mcb": list(r.mcb)} for r in finalists
        },
        "replications": {
            "per_observation": rows,
            "spent": result.replications,
            "new_this_run": result.replications_new,
            "exhaustive_grid": result.exhaustive_replications,
            "grid_observations_per_candidate": sel.grid_n,
            "exhaustive_at_final_n": result.exhaustive_final_replications,
            "final_stage_n": sel.final_n,
            "one_shot_procedure_b": result.one_shot_replications,
        },
        "stages": [
            {"phase": s.phase, "block": s.block, "candidates": len(s.candidates), "new": s.new}
            for s in sel.stages
        ],
        "front": list(result.front),
        "exports": {e: (m if isinstance(m, str) else f"exports/{e}/") for e, m in exports.items()},
        "seed": result.seed,
        "backend": result.backend,
        "wall_time_s": result.wall_time_s,
        "inputs": result.inputs,
    }


def _num(x: float, digits: int = 4) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.{digits}g}"


def _markdown(result, facts: dict) -> str:
    sel, spec = result.selection, result.spec
    table = result.table.set_index("candidate")
    chosen = result.recommended
    lines = [f"# rolloutsim tune: {md_escape(result.name)}", ""]
    if chosen is None:
        lines += [f"**No recommendation**: {md_escape(sel.message)}.", ""]
    else:
        row = table.loc[chosen.name]
        knobs = ", ".join(
            md_escape(f"{k} {_show(k, v)}")
            for k, v in chosen.params.items()
            if not (isinstance(v, float) and math.isnan(v))
        )
        lines += [
            f"**Recommended: {_code(chosen.name)}** ({md_escape(chosen.family)}"
            f"{': ' + knobs if knobs else ''}).",
            "",
            f"- {spec.objective.label()}: {_num(row['objective'])} "
            f"(± {_num(row['objective_ci'], 2)}, 95 % CI over {int(row['n_screen'])} + "
            f"{int(row['n_select'])} observations)",
            f"- rollout time of good releases: {fmt_duration(row['rollout_time'])} on average "
            f"when promoted, p95 {fmt_duration(row['rollout_p95'])}",
        ]
        for con, check in zip(spec.constraints, result.selection.checks):
            lo, hi = row[f"{check.name} [low]"], row[f"{check.name} [high]"]
            what = _checked(con)
            lines.append(
                f"- {check.name}: {what} lies in [{_num(lo)}, {_num(hi)}] "
                f"(must be ≤ {check.limit:g})"
            )
        lines += ["", "Files: `recommended.yaml`; exports:"]
        lines += [
            f"- {e}: `{m}`" if m.startswith("exports/") else f"- {e}: refused ({md_escape(m)})"
            for e, m in facts["exports"].items()
        ]
    a = sel.alphas
    lines += [
        "",
        "## How sure",
        "",
        f"With probability at least {spec.confidence:.0%} the recommendation meets every "
        "constraint and its objective is within "
        f"{spec.indifference:g} of the best candidate that meets them with margin (each "
        "constraint's tolerance). Error budget split by Bonferroni: feasibility "
        f"{a['feasibility']:.3g} (betting confidence sequences at {a['per_constraint']:.3g} per "
        f"candidate and constraint, valid at every look, no normality), screening "
        f"{a['screening']:.3g} (paired t-tests on common random numbers), selection "
        f"{a['selection']:.3g} (Nelson–Matejcik Procedure B on fresh replications). Assumed: "
        "the objective's per-observation values are close to normal (each observation already "
        "averages a replication of every release class); a quantile objective targets the "
        "expected quantile of its batch.",
        "",
        f"Outcome: {md_escape(sel.message)}.",
    ]
    finalists = facts["finalists"]
    if len(finalists) > 1:
        lines += [
            "",
            "| finalist | mean (fresh) | n | μ − best other (MCB interval) |",
            "|---|---:|---:|---|",
        ]
        for name, f in sorted(finalists.items(), key=lambda kv: kv[1]["mean"]):
            lo, hi = f["mcb"]
            lines.append(
                f"| {_code(name)} | {_num(f['mean'])} | {f['n']} | [{lo:+.3g}, {hi:+.3g}] |"
            )
    r = facts["replications"]
    status = ", ".join(f"{n} {s}" for s, n in facts["status"].items() if n)
    if result.excluded:
        status += f"; {len(result.excluded)} not expressible by {spec.exportable_to}"
    k, fresh = len(result.candidates), r["new_this_run"]
    final = "there was no final stage"
    if sel.final_n:
        final = (
            f"the final stage needed {sel.final_n} per finalist "
            f"({r['exhaustive_at_final_n']:,} if every candidate had had that many)"
        )
    resumed = ""
    if fresh < r["spent"]:
        resumed = f" {fresh:,} were simulated in this run, the rest came from the checkpoint."
    lines += [
        "",
        "## Replications",
        "",
        f"{r['spent']:,} simulated releases ({r['per_observation']} per observation) over "
        f"{len(sel.stages)} stages, against {r['exhaustive_grid']:,} "
        f"for an exhaustive grid at the recommendation's resolution ({k} candidates × "
        f"{sel.grid_n} observations) and {r['one_shot_procedure_b']:,} for the same guarantee "
        f"in one shot (Procedure B on every candidate at once); {final}.{resumed}",
        "",
        f"Candidates: {status}. See candidates.csv.",
        "",
        "## Pareto front: rollout time against the objective",
        "",
        "![front](front.png)",
        "",
        "| candidate | rollout time (good, mean) | objective | status |",
        "|---|---:|---:|---|",
    ]
    for name in result.front:
        row = table.loc[name]
        lines.append(
            f"| {_code(name)} | {fmt_duration(row['rollout_time'])} | {_num(row['objective'])} | "
            f"{row['status']} |"
        )
    return "\n".join(lines) + "\n"


def _code(name: str) -> str:
    """A name in tune.md: in a code span when that is safe, else escaped text; one line."""
    text = " ".join(str(name).splitlines())
    return md_escape(text) if ("`" in text or "|" in text) else f"`{text}`"


def _show(key: str, value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if key in ("pause", "interval", "analysis", "autoPromotionSeconds", "scaleDownDelaySeconds"):
        return fmt_duration(value)
    return str(value)


def _checked(con) -> str:
    """What a constraint's confidence sequence is about, in words (see ``Constraint.values``)."""
    if con.quantile is not None:
        over = f"the share over {con.max}"
        if con.missing == "ignore":
            return f"{over} minus {1 - con.quantile:g} × the share where it happened"
        return f"{over} (or where it never happened)"
    if con.missing == "ignore" and con.metric in ("rollout_duration", "t_detect", "t_mitigated"):
        return f"the mean of (value − {con.max}) where it happened"
    return "the mean"


def front_figure(result) -> bytes:
    """Every candidate at (rollout time of good releases, objective ± 95 % CI), coloured by its
    verdict; the Pareto front as a staircase; labels on the front and the recommendation."""
    pts = result.table.dropna(subset=["rollout_time", "objective"])
    chosen = result.selection.selected
    title = f"{result.name}: {len(result.table)} candidates; " + (
        f"recommended {chosen}" if chosen else "no recommendation"
    )

    def draw(fig) -> None:
        ax = fig.subplots()
        for status, (color, marker, label) in _STATUS.items():
            part = pts[pts["status"] == status]
            if part.empty:
                continue
            ax.errorbar(
                part["rollout_time"],
                part["objective"],
                yerr=part["objective_ci"].fillna(0),
                fmt=marker,
                color=color,
                ms=16 if status == "selected" else 7,
                capsize=3,
                label=label,
                zorder=5 if status == "selected" else 3,
                alpha=0.9,
            )
        front = pts.set_index("candidate").loc[list(result.front)]
        if len(front) > 1:
            ax.step(
                front["rollout_time"],
                front["objective"],
                where="post",
                color="black",
                lw=1.1,
                ls="--",
                zorder=2,
                label="Pareto front",
            )
        for c in result.spec.constraints:
            if c.metric == "rollout_duration":
                ax.axvline(
                    c.limit,
                    color="#C00000",
                    lw=1,
                    ls=":",
                    zorder=1,
                    label=f"rollout-time limit ({c.statistic})",
                )
        ax.legend(loc="upper right", fontsize=9.5)
        ylog = log_axis(ax, "y", pts["objective"].to_numpy(float))
        if not ylog:
            ax.yaxis.set_major_formatter(thousands())
        ax.margins(x=0.15, y=0.2)
        lo, hi = ax.get_xlim()
        time_axis(ax.xaxis, max(lo, 1e-9), hi)
        ax.set_xlabel("rollout time of good releases (mean, when promoted)")
        ax.set_ylabel(result.spec.objective.label() + (" (log scale)" if ylog else ""))
        note_better(ax)
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")
        named = [
            n for n in dict.fromkeys([*result.front, chosen]) if n in front.index or n == chosen
        ]
        labels = []
        for name in named:
            if name is None or name not in set(pts["candidate"]):
                continue
            r = pts.set_index("candidate").loc[name]
            labels.append((r["rollout_time"], r["objective"], name, name == chosen))
        place_labels(fig, ax, labels)

    return draw_png((WIDTH_IN, 6.0), draw)
