"""Pieces several policy kinds share: the policy base, analysis references, header matches."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_serializer, model_validator

from policies.analysis import AnalysisTemplate
from policies.base import Model
from policies.regexes import MAX_REGEX_LENGTH, MAX_REGEX_PROGRAM, re2_compile

__all__ = [
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_PROGRAM",
    "HeaderMatch",
    "PolicyBase",
    "RollbackWindow",
    "RolloutAnalysis",
    "RouteMatch",
    "StringMatch",
    "TemplateRef",
    "check_template_refs",
    "re2_compile",
]


class PolicyBase(Model):
    """What every policy has: a kind, a name, and the manifest's replica count if imported.

    The replica count belongs to the service (the world); ``replicas`` here is only the default
    a world takes when it names none (DESIGN §4).
    """

    kind: str
    name: str = Field(min_length=1)
    description: str = ""
    replicas: int | None = Field(None, ge=0)

    @model_serializer(mode="wrap")
    def _kind_first(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if isinstance(data, dict):  # kind and name always lead, even though kind is a default
            head = {"kind": self.kind, "name": self.name}
            return head | {k: v for k, v in data.items() if k not in head}
        return data


class TemplateRef(Model):
    """``templates: [{templateName: success-rate}]`` as in an Argo Rollout."""

    template_name: str = Field(min_length=1)


class RolloutAnalysis(Model):
    """An analysis a rollout starts: the templates merged into one AnalysisRun."""

    templates: tuple[TemplateRef, ...] = Field(min_length=1)


class RollbackWindow(Model):
    """``rollbackWindow: {revisions: N}``: undo to the last N revisions skips steps and analysis."""

    revisions: int = Field(ge=0)


class StringMatch(Model):
    """Istio/Argo string match: exactly one of exact, prefix, regex."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("give exactly one of exact, prefix, regex")
        return self

    @field_validator("regex")
    @classmethod
    def _re2(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            re2_compile(pattern)
        return pattern

    def matches(self, value: str | None) -> bool:
        """Envoy's semantics: exact, prefix, or a regex (RE2) matching the whole value."""
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact
        if self.prefix is not None:
            return value.startswith(self.prefix)
        try:
            return re2_compile(self.regex or "").fullmatch(value) is not None
        except UnicodeEncodeError:  # a lone surrogate: no HTTP client can send it
            return False


class HeaderMatch(Model):
    """One header condition of a route: ``{headerName: x-beta, headerValue: {exact: "true"}}``."""

    header_name: str = Field(min_length=1)
    header_value: StringMatch


class RouteMatch(Model):
    """One entry of a match list (entries are ORed, conditions inside one entry ANDed — Istio).

    ``headers`` maps a header name to a string match (Flagger/Istio form); ``cookie`` names a
    cookie whose value must match (ingress-nginx sends a request to the canary when it is
    ``always``). The world decides which users carry which headers and cookies.
    """

    headers: dict[str, StringMatch] = Field(default_factory=dict)
    cookie: StringMatch | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> RouteMatch:
        if not self.headers and self.cookie is None:
            raise ValueError("a match needs headers or a cookie")
        return self


def check_template_refs(
    templates: tuple[AnalysisTemplate, ...],
    refs: dict[str, RolloutAnalysis | None],
    ending: dict[str, RolloutAnalysis | None] | None = None,
) -> None:
    """Every templateName used (in ``refs`` or ``ending``, by where it is) must be defined once
    under analysisTemplates; an analysis that gates a step (``ending``: a step's, a
    prePromotion's or a postPromotion's) must end (Argo's reference validation: a metric with an
    interval and no count "runs indefinitely", and the Rollout is InvalidSpec; a background
    analysis may run until the rollout ends)."""
    names = [t.name for t in templates]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"analysisTemplates: names must be unique (repeated: {', '.join(dupes)})")
    gates = ending or {}
    for where, analysis in {**gates, **refs}.items():
        for ref in analysis.templates if analysis is not None else ():
            if ref.template_name not in names:
                known = ", ".join(names) or "none defined"
                raise ValueError(
                    f"{where}: templateName {ref.template_name!r} is not in analysisTemplates"
                    f" ({known})"
                )
            if where in gates:
                _check_bounded(where, templates[names.index(ref.template_name)])


def _check_bounded(where: str, template: AnalysisTemplate) -> None:
    for metric in template.metrics:
        if metric.effective_count is None:
            raise ValueError(
                f"{where}: template {template.name!r} metric {metric.name!r} runs indefinitely"
                " (an interval and no count): Argo refuses such a Rollout (InvalidSpec), so give"
                " it a count"
            )
