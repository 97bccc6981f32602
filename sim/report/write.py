"""Reports: a run's results as a folder a colleague can read, check and rerun (DESIGN §6).

``write_report`` writes report.html (self-contained), report.md, results.parquet (one row per
replication), summary.csv, figures/*.png and scenario.resolved.yaml. The folder appears whole
or not at all: it is built in a temporary directory beside the target and renamed into place,
and an existing report is replaced only once the new one is complete. ``example_traces`` reruns
a few replications with traces on, in-process, for the timelines: the same seeds as the runner,
so a timeline is exactly that replication's row in results.parquet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sim.report.content import build_blocks
from sim.report.render import to_html, to_markdown
from sim.report.text import Facts

__all__ = ["REPORT_FILES", "example_traces", "write_report"]

REPORT_FILES = (
    "report.html",
    "report.md",
    "results.parquet",
    "summary.csv",
    "scenario.resolved.yaml",
)
"""What every report folder holds, besides figures/."""


def write_report(result, loaded_scenario, out_dir, *, traces=None, version=None) -> Path:
    """Write the report of ``result`` (a ``sim.runs.runner.RunResult``) into the folder ``out_dir``.

    ``loaded_scenario`` names the scenario and where it came from; the numbers, the world and
    the policies are taken from ``result`` (what really ran, e.g. with a shortened horizon).
    ``traces``: the timelines' ``Trace`` objects; None reruns the examples (``example_traces``),
    an empty list leaves the timelines out. An existing ``out_dir`` must be an earlier report
    (or empty): it is replaced only after the new folder is complete.
    """
    out = Path(out_dir)
    _check_target(out)
    version = version or getattr(result, "version", "") or _package_version()
    facts = Facts.build(result, kinds=_describe_policies(result))
    if traces is None:
        traces = _default_traces(result, loaded_scenario, facts)
    created = datetime.now(UTC).replace(microsecond=0)
    provenance = _provenance(result, loaded_scenario, version, created)
    blocks, figs = build_blocks(result, loaded_scenario, facts, list(traces), provenance)
    title = f"rolloutsim report: {loaded_scenario.scenario.name}"
    with _staging(out) as tmp:
        (tmp / "figures").mkdir()
        for fig in figs:
            (tmp / "figures" / f"{fig.name}.png").write_bytes(fig.png)
        (tmp / "report.html").write_text(to_html(blocks, title), encoding="utf-8")
        (tmp / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
        _write_results(result, tmp / "results.parquet")
        summary = facts.summary.reset_index()
        summary.to_csv(tmp / "summary.csv", index=False)
        (tmp / "scenario.resolved.yaml").write_text(
            _resolved_yaml(result, loaded_scenario, provenance), encoding="utf-8"
        )
    return out


# ---------------------------------------------------------------------------- atomic folder


def _check_target(out: Path) -> None:
    """Refuse to replace anything that is not an earlier report: never delete a user's folder."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"{out} exists and is not a report folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.html").exists():
        raise FileExistsError(
            f"{out} is a folder that holds no report.html: refusing to replace it "
            "(give a new or empty folder, or an earlier report's)"
        )


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temp folder beside ``out``; renamed to ``out`` on success, deleted on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        yield tmp
        for path in (tmp, *tmp.rglob("*")):  # mkdtemp/mkstemp make 0700/0600; reports are shared
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "report")
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / "report", out)  # put the old report back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- files


def _write_results(result, path: Path) -> None:
    if hasattr(result, "to_parquet"):
        result.to_parquet(path)  # keeps the run's provenance in the file's metadata
    else:
        result.frame.to_parquet(path, index=False)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("rolloutsim")
    except PackageNotFoundError:
        return "unknown"


def _run_digest(result) -> str:
    """``LoadedScenario.digest()``'s recipe on what ran: equal to it for an unchanged scenario."""
    data = {"world": result.world, "policies": result.policy_specs, "seed": result.seed}
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _provenance(result, loaded, version: str, created: datetime) -> dict:
    path = getattr(loaded, "path", None)
    digest = _run_digest(result)
    try:
        changed = digest != loaded.digest()
    except Exception:  # a hand-made scenario without a digest
        changed = False
    return {
        "scenario": loaded.scenario.name,
        "file": str(path) if path else "",
        "seed": int(result.seed),
        "replications": dict(result.replications),
        "failed": int(result.failed),
        "digest": digest,
        "changed": changed,
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
            f"# from: {prov['file']}" + (" (changed before the run)" if prov["changed"] else "")
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


def _traces(policies: dict, cw, cells, seed: int, classes: list[str], k: int) -> list:
    from sim.engine.replication import Replication
    from sim.engine.seeds import replication_seed

    releases = cw.world.releases
    index = {c.name: i for i, c in enumerate(releases)}
    out = []
    for name, policy in policies.items():
        for cls in classes:
            for i in range(k):
                ss = replication_seed(seed, index[cls], i)
                rep = Replication(
                    cw,
                    cells,
                    policy,
                    releases[cls],
                    ss,
                    index=i,
                    run_seed=seed,
                    policy_name=name,
                    trace=True,
                )
                rep.run()
                out.append(rep.trace)
    return out


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


def _default_traces(result, loaded, facts) -> list:
    from policies.loading import parse_policy
    from sim.engine.seeds import shared_parts
    from sim.world.model import World

    world = World.model_validate(result.world)
    cw, cells = shared_parts(world, int(result.seed))
    policies = {n: parse_policy(result.policy_specs[n]) for n in result.policies}
    classes = [c for c in (_worst_bad(world, facts.frame),) if c] + list(facts.good[:1])
    return _traces(policies, cw, cells, int(result.seed), classes, 1)
