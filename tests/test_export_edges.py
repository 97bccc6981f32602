"""Export and import edge cases (#13): an export that expresses nothing exits 2 naming why each
executor refused; replica counts, namespaces and service names the API server would refuse are
refused at once; output targets that are not ours to replace are refused before anything is
written (``import -o /dev/null`` used to rename a file over the device).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policies.exporters import EXECUTORS, Target, export
from policies.loading import load_policy
from rolloutsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"
CANARY = str(POLICIES / "canary-basic.yaml")
SPRT = str(POLICIES / "canary-sprt.yaml")  # a sequential test: no executor has one
CORE = ("v1", "apps/v1", "networking.k8s.io/v1")
"""The API groups ``k8s_validate`` has schemas for (Services, Deployments, Ingresses)."""
ROLLOUT = ROOT / "tests" / "manifests" / "flagger" / "provider-istio.yaml"


def refused(capsys, *argv: str) -> str:
    """Run the CLI in-process: exit 2, exactly one stderr line and nothing on stdout."""
    assert main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err.strip()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------ --to all that expresses nothing


def test_export_to_all_that_expresses_nothing_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    line = refused(capsys, "export", SPRT, "--to", "all", "-o", str(out))
    assert "no executor can express this policy" in line
    for executor in EXECUTORS:  # each executor's reason, in the one line
        assert f"{executor}: " in line
    assert "sequential" in line
    assert not out.exists()
    refused(capsys, "export", SPRT, "--to", "all")  # printing: the same refusal


def test_export_to_all_that_expresses_some_writes_those_and_lists_the_others(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", CANARY, "--to", "all", "-o", str(out)]) == 0
    printed, err = capsys.readouterr()
    written = sorted(p.name for p in out.iterdir())
    assert written and all(f"{e}: " in printed for e in written)
    assert sorted(line.split()[1] for line in err.splitlines()) == sorted(
        set(EXECUTORS) - set(written)
    )


# ------------------------------------------------------------------ replicas, namespace, service


@pytest.mark.parametrize("replicas", ["-3", "0", str(2**31)])
def test_replica_counts_a_deployment_cannot_have_are_refused(capsys, replicas):
    line = refused(capsys, "export", CANARY, "--to", "argo", "-n", replicas)
    assert line == (
        f"rolloutsim: error: --replicas: {replicas} is not a pod count from 1 to {2**31 - 1}"
    )


def test_the_largest_replica_count_is_written_as_given(capsys):
    assert main(["export", CANARY, "--to", "argo", "--replicas", str(2**31 - 1)]) == 0
    assert f"replicas: {2**31 - 1}\n" in capsys.readouterr().out


@pytest.mark.parametrize("namespace", ["Bad_NS", "a.b", "-x", "x-", "a" * 64, "", "../x"])
def test_namespaces_that_are_not_dns_1123_labels_are_refused(capsys, namespace):
    line = refused(capsys, "export", CANARY, "--to", "argo", f"--namespace={namespace}")
    assert "--namespace: " in line and "DNS-1123 label" in line


@pytest.mark.parametrize("service", ["../x", "/abs", "1abc", "a.b", "A", "a_b", "a" * 56, ""])
def test_service_names_that_cannot_name_services_are_refused(tmp_path, capsys, service):
    line = refused(capsys, "export", CANARY, "--to", "kubernetes", f"--service={service}")
    assert "--service: " in line and "DNS-1035 label" in line and "-primary" in line
    refused(capsys, "export", CANARY, "--to", "argo", f"--service={service}", "-o", str(tmp_path))
    assert files_under(tmp_path) == []


def test_the_longest_service_name_gives_valid_services_everywhere():
    """55 characters: every Service an exporter writes (``-stable``, ``-canary``, ``-preview``)
    and Flagger's ``-primary`` stay within a DNS-1035 label's 63."""
    from policies.exporters.k8s_validate import validate_all

    service = "s" + "x" * 54
    target = Target(service=service)
    for path in sorted(POLICIES.glob("*.yaml")):
        policy = load_policy(path)
        for executor in EXECUTORS:
            try:
                result = export(policy, executor, target)
            except Exception as exc:  # NotExpressibleError: not this executor's policy
                assert type(exc).__name__ == "NotExpressibleError", exc
                continue
            core = [m for m in result.manifests if m["apiVersion"] in CORE]
            assert validate_all(core) == [], (path.name, executor)
    assert len(service + "-primary") == 63


def test_a_policy_name_that_cannot_name_services_asks_for_service(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        (POLICIES / "canary-basic.yaml")
        .read_text()
        .replace("name: canary-basic", "name: canary.basic")
    )
    line = refused(capsys, "export", str(policy), "--to", "argo")
    assert line.startswith(f"rolloutsim: error: {policy}: name: 'canary.basic' is not")
    assert line.endswith("give --service")
    assert main(["export", str(policy), "--to", "argo", "--service", "canary-basic"]) == 0


# ------------------------------------------------------------------ output targets


def test_export_onto_an_existing_file_is_refused(tmp_path, capsys):
    target = tmp_path / "manifests.yaml"
    target.write_text("mine\n")
    line = refused(capsys, "export", CANARY, "--to", "argo", "-o", str(target))
    assert line == f"rolloutsim: error: {target}: exists and is not a folder"
    assert target.read_text() == "mine\n"


def test_a_folder_where_the_manifest_goes_refuses_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "kubernetes" / "canary-basic.yaml").mkdir(parents=True)  # in the way
    line = refused(capsys, "export", CANARY, "--to", "all", "-o", str(out))
    assert "canary-basic.yaml: exists and is not a regular file" in line
    assert files_under(out) == ["kubernetes", "kubernetes/canary-basic.yaml"]  # argo not written


def test_a_file_where_an_executors_folder_goes_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "argo").write_text("mine\n")
    line = refused(capsys, "export", CANARY, "--to", "all", "-o", str(out))
    assert line.endswith("argo: exists and is not a folder")
    assert files_under(out) == ["argo"]


def test_exporting_again_into_the_same_folder_replaces_our_own_files(tmp_path, capsys):
    for _ in range(2):
        assert main(["export", CANARY, "--to", "argo", "-o", str(tmp_path)]) == 0
    assert files_under(tmp_path) == ["argo", "argo/canary-basic.yaml"]


@pytest.mark.parametrize("kind", ["fifo", "folder", "symlink"])
def test_import_output_that_is_not_a_regular_file_is_refused(tmp_path, capsys, kind):
    """The write renames a temporary file over the target: over a device (``/dev/null`` as
    root) it replaced the device; a FIFO stands for it here."""
    out = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "folder":
        out.mkdir()
    else:
        (tmp_path / "elsewhere.yaml").write_text("mine\n")
        out.symlink_to(tmp_path / "elsewhere.yaml")
    line = refused(capsys, "import", str(ROLLOUT), "-o", str(out))
    assert line == f"rolloutsim: error: {out}: exists and is not a regular file: give a policy file"
    assert out.is_symlink() if kind == "symlink" else not out.is_file()


def test_import_output_onto_the_manifest_read_is_refused(tmp_path, capsys):
    manifest = tmp_path / "canary.yaml"
    manifest.write_text(ROLLOUT.read_text())
    line = refused(capsys, "import", str(manifest), "-o", str(tmp_path / "." / "canary.yaml"))
    assert "is a manifest being imported: -o would replace it" in line
    assert manifest.read_text() == ROLLOUT.read_text()


def test_import_output_in_a_missing_folder_is_one_line(tmp_path, capsys):
    line = refused(capsys, "import", str(ROLLOUT), "-o", str(tmp_path / "no" / "p.yaml"))
    assert line.endswith(f"{tmp_path / 'no'} is not a folder")


def test_import_output_replaces_an_earlier_policy_file(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    out.write_text("old\n")
    assert main(["import", str(ROLLOUT), "-o", str(out)]) == 0
    assert load_policy(out).name == "podinfo"
