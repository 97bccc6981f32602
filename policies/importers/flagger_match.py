"""Flagger's ``analysis.match`` in: header and cookie matches as each router applies them.

Istio, App Mesh, Contour, Gloo and the Gateway API route every entry (ORed; the headers of one
entry ANDed); ingress-nginx keeps one cookie and one header (``_nginx_matches``). A regex is
compiled with RE2, as Istio and Envoy compile it, or refused naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from policies.base import brief
from policies.common import re2_compile
from policies.exporters.flagger import cookie_regex
from policies.importers.argo_fields import check_keys, mapping
from policies.importers.context import Context

__all__ = ["matches"]

_COOKIE_RULE = r"\^\(\.\*\?;\)\?\((.+)=always\)\(;\.\*\)\?\$"  # what cookie_regex writes


def _string_match(value: dict, path: str, ctx: Context) -> dict[str, str]:
    """One header's match; a regex that RE2 (Istio's, Envoy's) rejects is refused here."""
    ((kind, text),) = value.items() if len(value) == 1 else (("", ""),)
    if kind not in ("exact", "prefix", "regex", "suffix") or not isinstance(text, str):
        raise ctx.error(path, f"{brief(value)} is not {{exact|prefix|regex|suffix: text}}")
    if kind == "suffix":
        ctx.notes.append(f"{path}: suffix read as the regex .*{text}")
        return {"regex": ".*" + re.escape(text)}
    try:
        return {kind: re2_compile(text).pattern if kind == "regex" else text}
    except ValueError as exc:
        raise ctx.error(f"{path}.regex", str(exc)) from None


def _headers(match: Any, path: str, ctx: Context) -> dict[str, dict]:
    """One match entry's ``headers`` (name -> string match), shape checked (one-line errors)."""
    check_keys(mapping(match, path, ctx), {"headers"}, path, ctx)  # uri, queryParams: not modelled
    headers = mapping(match.get("headers"), f"{path}.headers", ctx)
    return {str(k): dict(mapping(v, f"{path}.headers.{k}", ctx)) for k, v in headers.items()}


def _nginx_matches(matches: list, ctx: Context) -> list[dict[str, Any]]:
    """What Flagger's ingress router writes (``ingress.go`` ``SetRoutes``): one
    ``canary-by-cookie`` (the last exact cookie) and one ``canary-by-header`` (the last header
    of the last entry, with ``-value`` for exact or ``-pattern`` for regex; with neither,
    ingress-nginx routes the header's value ``always``). ingress-nginx ORs them."""
    cookie, header, where = None, None, ""
    for i, match in enumerate(matches):
        path = f"spec.analysis.match[{i}]"
        plain = _headers(match, path, ctx)
        cookie = plain.pop("cookie", {}).get("exact") or cookie
        if len(plain) > 1:  # which one Flagger keeps is Go's map order
            why = "Flagger's ingress-nginx keeps one of these headers at random: not modelled"
            raise ctx.error(f"{path}.headers", why)
        for name, value in plain.items():
            if header is not None:
                ctx.notes.append(
                    f"{where}: dropped, as Flagger's ingress-nginx router keeps only the last"
                    f" header ({path}.headers.{name})"
                )
            kind = "exact" if value.get("exact") else "regex" if value.get("regex") else ""
            if not kind:
                ctx.notes.append(
                    f"{path}.headers.{name}: Flagger writes canary-by-header alone, which"
                    " ingress-nginx matches on the value always"
                )
            written = {kind: value[kind]} if kind else {"exact": "always"}
            if kind == "regex" and isinstance(value["regex"], str):  # ingress-nginx searches
                written = {"regex": _whole_value(value["regex"])}  # the pattern (unanchored)
            header, where = {name: _string_match(written, f"{path}.headers.{name}", ctx)}, path
    out: list[dict[str, Any]] = [{"headers": header}] if header else []
    return out + ([{"cookie": {"exact": cookie}}] if cookie else [])


def _whole_value(pattern: str) -> str:
    """What ingress-nginx's unanchored search of ``pattern`` matches, as a whole-value regex:
    ``^(?:X)$`` (what the exporter writes) is ``X``, any other pattern ``.*(?:pattern).*``."""
    anchored = re.fullmatch(r"\^\(\?:(.*)\)\$", pattern, re.S)
    return anchored.group(1) if anchored else f".*(?:{pattern}).*"


def matches(matches: list, provider: str, ctx: Context) -> list[dict[str, Any]]:
    """``analysis.match`` as the policy's matches: what the provider's router routes."""
    if provider == "nginx":
        return _nginx_matches(matches, ctx)
    out = []
    for i, match in enumerate(matches):
        path = f"spec.analysis.match[{i}]"
        entry: dict[str, Any] = {"headers": {}}
        for header, value in _headers(match, path, ctx).items():
            named = re.fullmatch(_COOKIE_RULE, str(value.get("regex")))
            cookie = re.sub(r"\\(.)", r"\1", named.group(1)) if named else ""
            if header.lower() == "cookie" and named and cookie_regex(cookie) == named.string:
                entry["cookie"] = {"exact": cookie}
                continue
            entry["headers"][header] = _string_match(value, f"{path}.headers.{header}", ctx)
        out.append({key: value for key, value in entry.items() if value})
    return out
