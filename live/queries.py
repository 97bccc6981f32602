"""The PromQL the live executor sends, over HAProxy's exporter metric names.

Two kinds of query, for two jobs:

* **Counts for the controller.** A gate is fed ``WindowStats`` — the requests and 5xx answers
  of each version in the window — exactly as the simulator feeds it (whole scrape intervals of
  exact counts). ``increase(...[w])`` would extrapolate to the window's edges and give
  non-integers with ~w/(w − scrape) inflated variance, which changes what a count-based test
  (SPRT, mSPRT) concludes. So the executor fetches the raw counter samples of the window
  (``counter_samples``: a range selector, samples with their timestamps) and takes differences
  between the last scrape at or before the window's end and the scrape one window earlier,
  series by series, a drop between two samples counted as a reset the way ``increase`` does.
* **The Argo query, as a witness.** For a metric whose provider is a query, the executor also
  evaluates the very PromQL the Argo exporter writes into the AnalysisTemplate
  (``policies.exporters.promql.query_for`` with the ``haproxy`` source) at the same instant and
  logs its value beside the count-based one, so a reader can check that the gate saw what Argo
  would have seen. It never decides.

Metric names (HAProxy 2.6): ``haproxy_server_http_responses_total{proxy, server, code}`` with
``code`` in 1xx…5xx, other; 2.6 has no per-server request total, so requests are the sum over
codes. HAProxy exports no latency histogram: a latency quantile has no query here.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "RESPONSES",
    "argo_query",
    "counter_samples",
    "label_matchers",
    "prom_duration",
    "up_query",
]

RESPONSES = "haproxy_server_http_responses_total"
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label_matchers(backend: str, servers: tuple[str, ...], extra: dict[str, str] | None = None):
    """``proxy="be", server=~"stable|canary"`` plus any extra exact labels (e.g. a job)."""
    for name in extra or {}:
        if not _LABEL.match(name):
            raise ValueError(f"{name!r} is not a Prometheus label name")
    alternatives = "|".join(re.escape(s) for s in servers)
    parts = [f"proxy={_quote(backend)}", f"server=~{_quote(alternatives)}"]
    parts += [f"{k}={_quote(v)}" for k, v in sorted((extra or {}).items())]
    return ", ".join(parts)


def prom_duration(seconds: float) -> str:
    """A Prometheus range duration in whole milliseconds ("12500ms", "30s")."""
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"range {seconds} s must be a positive duration")
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def counter_samples(
    backend: str, servers: tuple[str, ...], span_s: float, extra: dict[str, str] | None = None
) -> str:
    """Raw samples of every response counter of the two servers over the last ``span_s``."""
    return f"{RESPONSES}{{{label_matchers(backend, servers, extra)}}}[{prom_duration(span_s)}]"


def up_query(job: str) -> str:
    """``up{job="..."}``: 1 once Prometheus has scraped the target."""
    return f"up{{job={_quote(job)}}}"


def argo_query(query, backend: str, window_s: float) -> str | None:
    """The Argo exporter's PromQL for a simulated ``Query`` over HAProxy, or None if it has none.

    The exporter's HAProxy selector names the servers after the versions (``server="canary"``),
    so this is only the exported query when the servers are called ``stable`` and ``canary``.
    """
    try:
        from policies.exporters.promql import query_for
    except ImportError:  # pragma: no cover - the exporter module is part of the package
        return None
    try:
        return query_for(
            query, "haproxy", service=backend, window=window_s, nan_filter=query.nan_filter
        )
    except ValueError:  # e.g. a latency quantile: HAProxy has no histogram
        return None
