"""The Kubernetes name rule, once: a policy's, a scenario's and a manifest's names are DNS-1123
subdomains, because they become ``metadata.name`` of the objects the exporters write and the
folders the runs write (``reports/<scenario>``, ``live-state/<policy>``)."""

from __future__ import annotations

import re

from policies.errors import PolicyError

__all__ = ["DNS1123_SUBDOMAIN", "NAME_RULE", "check_name"]

NAME_RULE = (
    "a Kubernetes name (DNS-1123 subdomain): lower-case letters, digits, '-' and '.', starting"
    " and ending with a letter or digit, at most 253 characters"
)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_name(name: object, what: str, *, file: str | None = None) -> str:
    """``name`` if it is a Kubernetes name, else a one-line ``PolicyError`` naming ``what``:
    ``../x``, ``/x``, ``.``, a newline or 300 characters never reach a path or the API server."""
    if isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.fullmatch(name):
        return name
    shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:57] + "...")
    raise PolicyError(f"{shown} is not {NAME_RULE}", path=what, file=file)
