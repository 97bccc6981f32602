"""Hostile and absurd input (#13): each class of bad file is refused at its root, in one line
naming the file, the line or field and the rule, quickly, and never with a traceback.

The YAML loader bounds what a text may ask for (nodes with aliases expanded, nesting, integer
digits, size), reads only regular UTF-8 files, and so protects every caller: scenarios,
policies, manifests and free-form sections alike.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from policies.base import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    load_yaml,
    read_text_file,
    read_yaml_file,
    validate_model,
)
from policies.conditions import MAX_NESTING, Condition, ConditionError
from policies.durations import MAX_SECONDS, parse_duration
from policies.errors import PolicyError
from rolloutsim.cli import main
from sim.world.distributions import parse_distribution
from sim.world.traffic import Traffic, base_directory
from sim.world.users import MAX_USERS, UserPopulation

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "diurnal.yaml"
PASSWD_LINE = "root:x:0:0:root:/root:/bin/bash"


def refused(capsys, *argv: str) -> str:
    """Run the CLI in-process: exit 2 and exactly one stderr line, returned."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def billion_laughs(section: str = "tune") -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi"):
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text + f"{section}: *i\n"


# ------------------------------------------------------------------ alias expansion


def test_billion_laughs_is_refused_in_milliseconds_naming_file_line_and_rule(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 2048
    start = time.perf_counter()
    err = refused(capsys, "validate", str(path))
    assert time.perf_counter() - start < 1.0
    assert str(path) in err and "line " in err and f"more than {MAX_NODES:,} nodes" in err


def test_aliases_in_free_form_sections_of_a_real_scenario_are_bounded(tmp_path, capsys):
    text = SCENARIO.read_text() + billion_laughs("sweep").replace("sweep: *i", "extra: *i")
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    assert "expands the text to more than" in refused(capsys, "validate", str(path))


def test_shipped_scenarios_with_anchors_still_load():
    for name in ("diurnal.yaml", "five-replicas.yaml", "latent-leak.yaml"):
        assert "&" in (ROOT / "scenarios" / name).read_text()
        assert isinstance(read_yaml_file(ROOT / "scenarios" / name), dict)
    merged = load_yaml("base: &b {k: 1, j: 1}\nm:\n  <<: *b\n  k: 2\n")
    assert merged["m"] == {"k": 2, "j": 1}


def test_an_alias_to_itself_is_refused():
    with pytest.raises(PolicyError, match="alias \\*a refers to itself"):
        load_yaml("a: &a [1, *a]\n", file="x.yaml")


def test_node_count_bounds_time_even_without_aliases():
    with pytest.raises(PolicyError, match=f"more than {MAX_NODES:,} nodes"):
        load_yaml("[" + "1," * MAX_NODES + "1]")


# ------------------------------------------------------------------ nesting, numbers, size


def test_ten_thousand_deep_nesting_is_one_line_not_recursion_error(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    err = refused(capsys, "validate", str(path))
    assert f"nesting deeper than {MAX_DEPTH} levels" in err and "line 1" in err
    load_yaml("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))  # the bound itself loads


@pytest.mark.parametrize("digits", ["9" * 5000, "0x" + "f" * 5000, "-" + "1" * 41])
def test_integers_with_thousands_of_digits_are_refused(digits):
    with pytest.raises(PolicyError, match=r"an integer of \d+ digits \(at most 40\)") as info:
        load_yaml(f"seed: {digits}\n", file="s.yaml")
    assert str(info.value).startswith("s.yaml: line 1: ") and len(str(info.value)) < 120


def test_a_file_over_the_size_bound_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(PolicyError, match="is larger than 1 MiB"):
        read_yaml_file(path)


# ------------------------------------------------------------------ encodings and special files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfen\x00a\x00m\x00e\x00", "is UTF-16 text"),
        (b"\xff\xfe\x00\x00n\x00\x00\x00", "is UTF-32 text"),
        (b"name: caf\xe9\n", "line 1: is not UTF-8 text (byte 0xe9"),
        (b"a: 1\n\x00\x01\x02binary", "line 2: holds a NUL byte"),
    ],
)
def test_files_are_read_as_utf8_with_a_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert message in refused(capsys, "validate", str(path))


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_yaml_file(path) == {"a": 1}


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_special_files_are_refused_before_reading(tmp_path, capsys, kind):
    if kind == "dev-zero":
        path, expected = Path("/dev/zero"), "is a character device, not a regular file"
    elif kind == "fifo":
        path, expected = tmp_path / "fifo.yaml", "is a pipe, not a regular file"
        os.mkfifo(path)  # nobody writes to it: reading it would block forever
    else:
        path, expected = tmp_path, "is a directory, not a regular file"
    if not path.exists():
        pytest.skip(f"{path} does not exist here")
    start = time.perf_counter()
    assert expected in refused(capsys, "validate", str(path))
    assert expected in refused(capsys, "explain", str(path))
    assert time.perf_counter() - start < 5.0
    with pytest.raises(PolicyError, match=expected):
        read_text_file(path)


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize("text", ["５m", "١٢s", "1٠s"])
def test_durations_take_ascii_digits_only(text):
    with pytest.raises(ValueError, match="ASCII digits 0-9 only"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e300, "is longer than"),
        ("1e300", "is longer than"),
        (10**400, "digit duration is longer than 3650d"),
        ("3651d", "is longer than"),
        ("9" * 100 + "s", "characters is not a duration"),
        ("nan", "is not a duration"),
        ("10m\nmore", "is not a duration"),
    ],
)
def test_durations_are_bounded_and_one_line(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_duration(value)
    assert "\n" not in str(info.value)


def test_the_duration_bound_itself_and_ordinary_forms_still_parse():
    assert parse_duration("3650d") == MAX_SECONDS
    assert [parse_duration(v) for v in ("1h30m", "90", ".5", "1e3", " 10m ")] == [
        5400.0,
        90.0,
        0.5,
        1000.0,
        600.0,
    ]


def test_a_non_ascii_duration_in_a_scenario_names_the_field(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.read_text().replace("horizon: 4h", "horizon: '５h'"))
    err = refused(capsys, "validate", str(path))
    assert "world.horizon" in err and "ASCII digits" in err


# ------------------------------------------------------------------ conditions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(" * 5000 + "result" + ")" * 5000, "characters"),
        ("result[0] > 0 || " * 6000 + "true", "characters"),
        ("(" * (MAX_NESTING + 1) + "result[0] > 0" + ")" * (MAX_NESTING + 1), "nested deeper"),
        ("!" * 100 + "(result[0] > 0)", "nested deeper"),
        ("-" * 100 + "result[0] > 0", "nested deeper"),
        ("[" * 100 + "1" + "]" * 100 + " == result", "nested deeper"),
    ],
)
def test_huge_or_deep_conditions_are_one_line_condition_errors(text, message):
    with pytest.raises(ConditionError, match=message) as info:
        Condition(text)
    assert len(str(info.value)) < 1000


def test_conditions_within_the_bounds_still_evaluate():
    deep = "(" * (MAX_NESTING - 1) + "result[0] >= 0.95" + ")" * (MAX_NESTING - 1)
    assert Condition(deep)(0.97) is True
    assert Condition("1+" * 200 + "result[0] > 0")(0.5) is True  # evaluation nests, boundedly


# ------------------------------------------------------------------ trace files


def _trace_scenario(tmp_path: Path, spec: str) -> Path:
    text = SCENARIO.read_text()
    old = "rate: {diurnal: {mean: 1000, amplitude: 0.8, peakAt: 14h}}"
    assert old in text
    path = tmp_path / "trace.yaml"
    path.write_text(text.replace(old, f"rate: {{trace: {spec}}}"))
    return path


def test_a_trace_file_error_never_echoes_the_file(tmp_path, capsys):
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{PASSWD_LINE}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("count\n12\nhunter2-token\n")
    for spec, message in (
        (f"{{file: {passwd}}}", "has no column 'count' (its header has 1)"),
        (f"{{file: {secret}}}", "line 3: count is not a number (value not shown)"),
    ):
        err = refused(capsys, "validate", str(_trace_scenario(tmp_path, spec)))
        assert "world.traffic.rate: trace file" in err and message in err
        assert "root:x" not in err and "daemon" not in err and "hunter2" not in err
    if Path("/etc/passwd").is_file():  # the system's own, as the report found it printed
        err = refused(capsys, "validate", str(_trace_scenario(tmp_path, "{file: /etc/passwd}")))
        assert "root:" not in err and "/bin/" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("count\n1\nnan\n", "line 3: count is not a number (value not shown)"),
        ("count\n1\n１２\n", "line 3: count is not a number"),
        ("count\n" + "9" * 200_000 + "\n", "line 2: not CSV (field larger than field limit"),
        ("minute,n\n0,1\n", "has no column 'count' (its header has 2)"),
    ],
)
def test_trace_files_are_parsed_strictly_without_showing_values(tmp_path, content, message):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(PolicyError, match=re.escape(message)) as info, base_directory(tmp_path):
        validate_model(Traffic, {"rate": {"trace": {"file": "t.csv"}}}, file="s.yaml")
    assert "nan" not in str(info.value).split("is not")[-1] and "１２" not in str(info.value)


def test_special_trace_files_are_refused(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.csv")
    for spec, message in (
        ("{file: /dev/zero}", "is a character device, not a regular file"),
        ("{file: fifo.csv}", "is a pipe, not a regular file"),
        (f"{{file: {tmp_path}}}", "is a directory, not a regular file"),
    ):
        if "/dev/zero" in spec and not Path("/dev/zero").exists():
            continue
        assert message in refused(capsys, "validate", str(_trace_scenario(tmp_path, spec)))


# ------------------------------------------------------------------ world bounds


def test_a_billion_users_is_refused_with_the_reason(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.read_text().replace("count: 20000", "count: 1000000000"))
    err = refused(capsys, "validate", str(path))
    assert "world.users.count" in err and f"more than {MAX_USERS:,}" in err
    assert validate_model(UserPopulation, {"count": MAX_USERS}).count == MAX_USERS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"lognormal": {"median": "80ms", "sigma": 1e300}}, "lognormal.sigma"),
        ({"gamma": {"mean": "10m", "shape": 1e-300}}, "gamma.shape"),
        ({"gamma": {"mean": "10m", "shape": 1e300}}, "gamma.shape"),
        ({"exponential": {"mean": 1e300}}, "is longer than"),
    ],
)
def test_distribution_parameters_that_overflow_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_distribution(spec)


def test_trace_from_csv_never_echoes_the_file(tmp_path):
    """``Trace.from_csv`` (Python) reads as the scenario loader does: no line of the file shown."""
    from sim.world.rates import Trace

    secret = tmp_path / "secret.csv"
    secret.write_text("alice:x:1000:1000:Alice:/home/alice:/bin/bash\nhunter2\n")
    with pytest.raises(ValueError) as raised:
        Trace.from_csv(secret)
    assert "alice" not in str(raised.value) and "hunter2" not in str(raised.value)
