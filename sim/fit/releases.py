"""Release classes from a team's release history: how often releases go bad, and how.

The CSV has a header row and one row per past release; ``outcome`` is required (``good``,
``rolled back`` or ``incident``; ``rolled-back``/``rollback`` also read), ``errorRate`` (a
fraction or "5%") and ``latencyMultiplier`` (the latency ratio new/old) give what was observed
where known; other columns (a release id, a date) are ignored. Each outcome seen becomes a
release class; a bad class's fault is the median of its observed values.

Probabilities: a Jeffreys prior, Dirichlet(½, …, ½) over the K classes seen, so each class's
probability has the Beta(nₖ + ½, N − nₖ + (K − 1)/2) posterior; the written probability is its
mean (the means sum to 1) and the interval is its 2.5 % and 97.5 % quantiles.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field

from policies.base import read_text_file
from policies.errors import PolicyError
from sim.world.versions import parse_probability

__all__ = ["OUTCOMES", "ReleaseClassFit", "fit_releases"]

OUTCOMES = {
    "good": "good",
    "rolled back": "rolled-back",
    "rolled-back": "rolled-back",
    "rolledback": "rolled-back",
    "rollback": "rolled-back",
    "incident": "incident",
}
_ORDER = ("good", "rolled-back", "incident")


@dataclass
class ReleaseClassFit:
    """One class: its count, posterior probability and interval, and its fault (None: good)."""

    name: str
    count: int
    probability: float
    ci: tuple[float, float]
    fault: dict[str, float] | None
    observed: dict[str, int] = field(default_factory=dict)  # rows giving each fault value


def _number(text: str, file: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PolicyError("is not a number", path=where, file=file) from None
    if not (value > 0 and value < 1e6):
        raise PolicyError("must be a positive number", path=where, file=file)
    return value


def fit_releases(path: str) -> tuple[list[ReleaseClassFit], list[str]]:
    """The release classes of the history in ``path``, and notes."""
    from scipy import stats

    text = read_text_file(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if "outcome" not in header:
        raise PolicyError("has no outcome column (good, rolled back or incident)", file=path)
    rows: dict[str, list[dict[str, float]]] = {}
    try:
        for row in reader:
            line = f"line {reader.line_num}"
            raw = (row.get("outcome") or "").strip().lower()
            if not raw:
                continue
            if raw not in OUTCOMES:
                raise PolicyError(
                    f"{raw[:30]!r} is not an outcome (good, rolled back, incident)",
                    path=f"{line}.outcome",
                    file=path,
                )
            seen: dict[str, float] = {}
            rate = (row.get("errorRate") or "").strip()
            if rate:
                try:
                    seen["errorRate"] = parse_probability(rate)
                except ValueError as exc:
                    raise PolicyError(str(exc), path=f"{line}.errorRate", file=path) from None
            mult = (row.get("latencyMultiplier") or "").strip()
            if mult:
                seen["latencyMultiplier"] = _number(mult, path, f"{line}.latencyMultiplier")
            rows.setdefault(OUTCOMES[raw], []).append(seen)
    except csv.Error as exc:
        raise PolicyError(f"not CSV ({exc})", path=f"line {reader.line_num}", file=path) from None
    total = sum(len(v) for v in rows.values())
    if total == 0:
        raise PolicyError("has no releases (no row with an outcome)", file=path)
    names = [n for n in _ORDER if n in rows]
    k = len(names)
    fits, notes = [], []
    for name in names:
        n = len(rows[name])
        a, b = n + 0.5, total - n + (k - 1) / 2.0
        fault = None
        observed: dict[str, int] = {}
        if name != "good":
            fault = {}
            for key in ("errorRate", "latencyMultiplier"):
                values = [r[key] for r in rows[name] if key in r]
                if values:
                    fault[key] = round(statistics.median(values), 6)
                    observed[key] = len(values)
            if not fault:
                raise PolicyError(
                    f"no {name} release gives errorRate or latencyMultiplier, so what such a"
                    " release does is unknown: give it for at least one",
                    path="outcome",
                    file=path,
                )
        lo, hi = (float(v) for v in stats.beta.ppf([0.025, 0.975], a, b))
        fits.append(ReleaseClassFit(name, n, a / (a + b), (lo, hi), fault, observed))
    _round_to_one(fits)
    notes.append(
        f"releases: {total} past releases; probabilities are posterior means under a Jeffreys"
        " Dirichlet(1/2, ...) prior, intervals the 95 % Beta posterior quantiles"
    )
    return fits, notes


def _round_to_one(fits: list[ReleaseClassFit]) -> None:
    """Four decimals each, the largest class taking the rounding so they sum to exactly 1."""
    for f in fits:
        f.probability = round(f.probability, 4)
    largest = max(fits, key=lambda f: f.probability)
    largest.probability = round(1.0 - sum(f.probability for f in fits if f is not largest), 4)
