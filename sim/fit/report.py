"""The fit's report: the data with the fitted profile and latency drawn over it (PNG), and an
HTML page with that figure and the provenance, so a user can see whether to trust the world."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from sim.fit.world import Fitted, provenance
from sim.runs.files import atomic_write

__all__ = ["fit_figure", "write_fit_report"]


def fit_figure(fit: Fitted) -> bytes:
    """The overlay as PNG bytes: traffic, error ratio and (if fitted) latency cdf."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    panels = 3 if fit.latency is not None else 2
    fig = Figure(figsize=(10, 3.2 * panels), layout="constrained")
    axes = fig.subplots(panels, 1)
    t = fit.traffic
    hours = (t.times - t.times[0]) / 3600.0
    ax = axes[0]
    ax.plot(hours, t.observed, ".", ms=2, color="0.6", label="observed rate")
    ax.plot(hours, t.cosine, lw=1.5, color="C0", label=f"cosine (R² {t.r2_cosine:.3f})")
    ax.plot(hours, t.shape, lw=1, color="C1", label=f"harmonics (R² {t.r2_daily:.3f})")
    ax.set_title(f"traffic: written as {t.form}")
    ax.set_xlabel("hours since the window's start")
    ax.set_ylabel("requests / s")
    ax.legend(loc="upper right", fontsize=8)
    e = fit.errors
    ax = axes[1]
    eh = (e.times - t.times[0]) / 3600.0
    ax.plot(eh, e.ratio, ".", ms=2, color="0.6", label="errors / requests per step")
    ax.axhline(e.error_rate, color="C3", label=f"errorRate {e.error_rate:.4g}")
    ax.axhspan(*e.ci, color="C3", alpha=0.2, label="95 % CI")
    ax.set_xlabel("hours since the window's start")
    ax.set_ylabel("error ratio")
    ax.legend(loc="upper right", fontsize=8)
    lat = fit.latency
    if lat is not None:
        ax = axes[2]
        ax.plot(lat.bounds, lat.observed_cdf, "o", color="0.3", label="observed (bucket bounds)")
        grid = np.geomspace(lat.bounds[0] / 2, lat.bounds[-1] * 2, 200)
        ax.plot(grid, lat.cdf(grid), color="C0", label=f"lognormal (max gap {lat.distance:.3f})")
        if lat.form == "empirical":
            values = np.sort(lat.empirical)
            ax.step(
                values,
                np.arange(1, values.size + 1) / values.size,
                where="post",
                color="C1",
                label="empirical (written)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("P(latency ≤ x)")
        ax.set_title(f"latency: written as {lat.form}")
        ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def write_fit_report(fit: Fitted, stem: str | Path) -> tuple[Path, Path]:
    """``<stem>.png`` and ``<stem>.html`` (the figure embedded, the provenance listed)."""
    png = fit_figure(fit)
    png_path, html_path = Path(f"{stem}.png"), Path(f"{stem}.html")
    atomic_write(png_path, lambda tmp: Path(tmp).write_bytes(png))
    items = "\n".join(f"<li>{html.escape(line)}</li>" for line in provenance(fit))
    data = base64.b64encode(png).decode()
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>rolloutsim fit</title></head>"
        "<body style='font-family:sans-serif;max-width:60em'>\n<h1>The fitted world</h1>\n"
        f"<ul>\n{items}\n</ul>\n<img alt='data and fit' style='max-width:100%'"
        f" src='data:image/png;base64,{data}'>\n</body></html>\n"
    )
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return png_path, html_path
