"""The command line as a user meets it: output, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policies import load_policy
from rolloutsim import __version__
from rolloutsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rolloutsim", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_explain_shows_argos_real_traffic_share_on_three_replicas(capsys) -> None:
    assert main(["explain", str(POLICIES / "canary-basic.yaml"), "--replicas", "3"]) == 0
    out = capsys.readouterr().out
    first_step = next(line for line in out.splitlines() if line.startswith("0 "))
    assert "setWeight 5" in first_step and "1 / 3" in first_step
    assert "25 %  (asked 5 %)" in first_step
    assert "setWeight 5 really sends 25 % of traffic" in out


def test_explain_json_on_five_replicas(capsys) -> None:
    assert main(["explain", str(POLICIES / "canary-basic.yaml"), "-n", "5", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    row = table["rows"][0]
    assert (row["canary_pods"], row["stable_pods"]) == (1, 5)
    assert row["canary_share"] == pytest.approx(100 / 6)


def test_explain_traffic_routed_weight_is_the_router_weight(capsys) -> None:
    assert main(["explain", str(POLICIES / "canary-nginx.yaml"), "-n", "20"]) == 0
    out = capsys.readouterr().out
    first_step = next(line for line in out.splitlines() if line.startswith("0 "))
    assert "1 / 20" in first_step and first_step.rstrip().endswith("5 %")
    assert "scaled down after 30s" in out


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_policy_explains(path: Path, capsys) -> None:
    assert main(["explain", str(path), "-n", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{load_policy(path).kind} ")


def test_validate_ok(capsys) -> None:
    assert main(["validate", str(POLICIES / "bluegreen.yaml")]) == 0
    assert "OK (BlueGreen 'bluegreen')" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Canary\nname: x\nsteps:\n  - setWeight: 5\n    pause: {}\n")
    result = run_cli("validate", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    rule = "a step has exactly one action (got setWeight and pause)"
    assert lines == [f"rolloutsim: error: {bad}: steps[0]: {rule}"]


def test_missing_file_exits_2() -> None:
    result = run_cli("explain", "no-such-policy.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no-such-policy.yaml: cannot read file" in result.stderr


def test_bad_replicas_exit_2(capsys) -> None:
    assert main(["explain", str(POLICIES / "canary-basic.yaml"), "-n", "0"]) == 2
    assert "--replicas: 0 must be >= 1" in capsys.readouterr().err


def test_version_and_schema() -> None:
    assert run_cli("--version").stdout.strip() == f"rolloutsim {__version__}"
    schema = json.loads(run_cli("schema", "policy").stdout)
    assert schema["title"] == "rolloutsim policy"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from rolloutsim.cli import build_parser; build_parser();"
        "print([m for m in ('numpy', 'scipy', 'pandas', 'simpy', 'pydantic') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
