"""A/B match regexes (#13): compiled with RE2, the engine Istio and Envoy use, so a pattern that
makes a backtracking engine exponential cannot hang ``validate`` or ``run``, and a pattern RE2
lacks (backreferences, lookarounds) or cannot parse is one line at load naming the field: in a
policy, a scenario, a Flagger Canary and an Argo Rollout alike.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from policies.common import (
    MAX_REGEX_LENGTH,
    MAX_REGEX_PROGRAM,
    RouteMatch,
    StringMatch,
    re2_compile,
)
from policies.importers import import_manifests
from policies.loading import parse_policy
from rolloutsim.cli import main
from sim.world.users import Segment

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "tests" / "manifests"
EVIL = "^(a+)+$"
"""Exponential on Python's ``re`` for ``aaaa…!`` (30 a's take minutes), linear on RE2."""


def refused(capfd, *argv: str) -> str:
    """Run the CLI in-process: exit 2 and exactly one line on stderr (RE2's own C++ logging
    included: capfd sees file descriptor 2), returned."""
    assert main(list(argv)) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def ab_policy(match: str) -> str:
    return (
        "kind: ABTest\nname: ab\nprovider: istio\nanalysis:\n  interval: 1m\n  iterations: 3\n"
        f"  match:\n    - headers:\n        x-canary: {match}\n"
        "  metrics:\n    - name: request-success-rate\n      thresholdRange: {min: 99}\n"
    )


# ------------------------------------------------------------------ no catastrophic backtracking


def test_the_evil_pattern_against_a_long_near_miss_is_instant():
    match = StringMatch(regex=EVIL)
    start = time.perf_counter()
    assert not match.matches("a" * 100_000 + "!")
    assert match.matches("a" * 100_000)
    assert time.perf_counter() - start < 0.5


def test_a_segment_is_matched_by_the_evil_pattern_in_linear_time():
    """Where the world decides which users an A/B match selects (sim/world/users.py)."""
    route = RouteMatch(headers={"x-canary": {"regex": EVIL}})
    near_miss = Segment(share=1, header={"name": "X-Canary", "value": "a" * 50_000 + "!"})
    hit = Segment(share=1, header={"name": "x-canary", "value": "a" * 50_000})
    start = time.perf_counter()
    assert not near_miss.matched_by(route)
    assert hit.matched_by(route)
    assert time.perf_counter() - start < 0.5


def test_validate_of_a_scenario_with_the_evil_pattern_finishes_at_once(tmp_path, capfd):
    """The reported hang: the A/B policy's regex against a segment's ``aaaa…!`` header."""
    original = (ROOT / "scenarios" / "segment-bug.yaml").read_text()
    original = original.replace("x-canary: {exact: insider}", f"x-canary: {{regex: '{EVIL}'}}")
    for value, code in (("a" * 40 + "!", 2), ("a" * 40, 0)):
        text = original.replace("value: insider}", f"value: '{value}'}}")
        (tmp_path / "s.yaml").write_text(text)
        start = time.perf_counter()
        assert main(["validate", str(tmp_path / "s.yaml")]) == code
        assert time.perf_counter() - start < 5
        err = capfd.readouterr().err
        assert ("no user segment of the world sends the headers" in err) == (code == 2), err


# ------------------------------------------------------------------ RE2's syntax and semantics


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(unclosed", "missing )"),
        (r"(a)\1", "no backreferences, lookarounds"),
        ("(?=a)a", "no backreferences, lookarounds"),
        ("(?<!a)b", "no backreferences, lookarounds"),
        ("a*+", "no backreferences, lookarounds"),
        ("a{1001}", "invalid repetition size"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_a_policy_regex_re2_refuses_is_one_line_naming_the_field(tmp_path, capfd, pattern, reason):
    policy = tmp_path / "p.yaml"
    policy.write_text(ab_policy("{regex: " + repr(pattern).replace("'", '"') + "}"))
    line = refused(capfd, "validate", str(policy))
    assert line.startswith(
        f"rolloutsim: error: {policy}: analysis.match[0].headers.x-canary.regex:"
    )
    assert "a regex Istio and Envoy take (RE2)" in line and reason in line


def test_a_huge_pattern_is_cut_in_the_message():
    with pytest.raises(ValueError, match="RE2") as info:
        re2_compile("(" + "x" * 5000)
    assert len(str(info.value)) < 300


def test_istios_length_limit_and_envoys_program_size_limit():
    """Istio's validation refuses a regex over 1024 characters; Envoy, with the program size
    limit Istio gives it, NACKs a larger RE2 program (a route that would never be applied)."""
    assert re2_compile("a" * MAX_REGEX_LENGTH).fullmatch("a" * MAX_REGEX_LENGTH)
    with pytest.raises(ValueError, match="1025 characters, and Istio refuses more than 1024"):
        re2_compile("a" * (MAX_REGEX_LENGTH + 1))
    assert re2_compile(".{1000}" * 3).programsize <= MAX_REGEX_PROGRAM
    with pytest.raises(ValueError, match=r"RE2 program size 40004 \(Envoy: 32768 at most\)"):
        re2_compile(".{1000}" * 5)


def test_matching_is_envoys_full_match_with_re2_syntax():
    """Envoy matches a header regex against the whole value; RE2 has ``\\pL`` and ``\\z``, which
    Python's ``re`` refuses (so these would fail if the old engine were still used)."""
    assert not StringMatch(regex="b").matches("abc")
    assert StringMatch(regex=".*b.*").matches("abc")
    assert StringMatch(regex=r"\p{Greek}+").matches("αβγ")
    assert StringMatch(regex=r"(?i)insider\z").matches("INSIDER")
    assert not StringMatch(regex="a.c").matches("a\nc")  # '.' never matches a newline
    assert not StringMatch(regex="x").matches("\ud800")  # no client sends a lone surrogate
    assert not StringMatch(regex="x").matches(None)


# ------------------------------------------------------------------ imported manifests


def flagger_ab(provider: str, header: str, match: str | None = None) -> str:
    """Flagger's A/B example with ``provider`` and one header entry (or a ``match`` block)."""
    text = (MANIFESTS / "flagger" / "ab-testing-nginx-header.yaml").read_text()
    start, end = text.index("    match:\n"), text.index("    metrics:\n")
    match = match or f"    match:\n      - headers:\n{header}"
    return text[:start].replace("provider: nginx", f"provider: {provider}") + match + text[end:]


@pytest.mark.parametrize("provider", ["istio", "nginx"])
@pytest.mark.parametrize(
    ("header", "field", "rule"),
    [
        ('          x-canary:\n            regex: "(unclosed"\n', "x-canary.regex", "missing )"),
        ('          x-canary:\n            regex: "(?=a)a"\n', "x-canary.regex", "lookarounds"),
        ("          x-canary:\n            regex: 5\n", "x-canary", "is not {exact|prefix"),
        ("          x-canary: abc\n", "x-canary", "is not a mapping"),
    ],
)
def test_the_flagger_importer_refuses_a_bad_match_naming_the_manifest_field(
    tmp_path, capfd, provider, header, field, rule
):
    canary = tmp_path / "canary.yaml"
    canary.write_text(flagger_ab(provider, header))
    line = refused(capfd, "import", str(canary))
    assert f"Canary/podinfo: spec.analysis.match[0].headers.{field}: " in line and rule in line


@pytest.mark.parametrize("shape", ["    match: [abc]\n", "    match:\n      - headers: [a, b]\n"])
def test_a_flagger_match_of_the_wrong_shape_is_one_line(tmp_path, capfd, shape):
    (tmp_path / "c.yaml").write_text(flagger_ab("istio", "", shape))
    assert "spec.analysis.match[0]" in refused(capfd, "import", str(tmp_path / "c.yaml"))


def test_an_imported_evil_regex_is_kept_and_simulated_in_linear_time():
    text = flagger_ab("istio", f'          x-canary:\n            regex: "{EVIL}"\n')
    policy = import_manifests(text).policy
    condition = policy.analysis.match[0].headers["x-canary"]
    assert condition.regex == EVIL
    start = time.perf_counter()
    assert not condition.matches("a" * 100_000 + "!")
    assert time.perf_counter() - start < 0.5


def test_a_flagger_suffix_becomes_an_re2_regex_of_the_literal_suffix():
    text = flagger_ab("istio", '          x-canary:\n            suffix: "a b#c~&-.*"\n')
    result = import_manifests(text)
    condition = result.policy.analysis.match[0].headers["x-canary"]
    assert condition.matches("xx a b#c~&-.*") and not condition.matches("xx a b#c~&-..")
    assert any("suffix read as the regex" in note for note in result.notes)


@pytest.mark.parametrize(
    ("manifest", "old", "field"),
    [
        ("step-setheaderroute.yaml", "exact: Mozilla", "setHeaderRoute.match[0].headerValue.regex"),
        ("step-setmirrorroute.yaml", 'exact: "true"', "setMirrorRoute.match[0].headers.x-mirror"),
    ],
)
def test_argo_header_and_mirror_routes_refuse_what_re2_lacks(tmp_path, capfd, manifest, old, field):
    text = (MANIFESTS / "argo" / manifest).read_text()
    assert old in text
    (tmp_path / "r.yaml").write_text(text.replace(old, 'regex: "(?<=x)y"'))
    line = refused(capfd, "import", str(tmp_path / "r.yaml"))
    assert field in line and "lookarounds" in line


def test_argo_header_route_with_the_evil_pattern_imports_and_validates():
    text = (MANIFESTS / "argo" / "step-setheaderroute.yaml").read_text()
    policy = import_manifests(text.replace("exact: Mozilla", f'regex: "{EVIL}"')).policy
    dumped = policy.model_dump(by_alias=True, exclude_none=True)
    assert parse_policy(dumped) == policy
