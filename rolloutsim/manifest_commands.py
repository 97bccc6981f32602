"""``rolloutsim export`` and ``rolloutsim import``: policies out to the executors' manifests
(or onto a team's own, ``--onto``) and manifests in as policies."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from rolloutsim.usage import usage

__all__ = ["export_command", "import_command"]


def export_command(args: argparse.Namespace) -> int:
    from policies.errors import NotExpressibleError, PolicyError
    from policies.exporters import EXECUTORS, Target, export
    from policies.loading import load_policy
    from sim.runs.files import inside, writable_folder

    policy = load_policy(args.policy)
    if args.onto:
        from policies.onto import export_onto

        given = [o for o in ("service", "namespace", "replicas", "image") if getattr(args, o)]
        if given:
            raise usage(
                f"--{given[0]}: --onto takes names, namespace and replicas from the manifests"
            )
        if args.to == "all":
            raise usage("--onto: give --to argo for a Rollout or --to flagger for a Canary")
        onto = export_onto(
            policy,
            [Path(m) for m in args.onto],
            mapping=args.map or None,
            to=args.to,
            name=args.name,
        )
        if args.output is None:
            for name, text in onto.files.items():
                state = "" if name in onto.changed else " (unchanged)"
                print(f"# file: {name}{state}")
                print(text, end="" if text.endswith("\n") or not text else "\n")
        else:  # the team's own files under their own names, flat: not the export layout
            from functools import partial

            from sim.runs.files import atomic_write

            folder = writable_folder(args.output)
            names = [Path(name).name for name in onto.files]
            if len(set(names)) != len(names):
                raise usage(
                    "--onto: two manifests share a file name; -o would write one over the other"
                )
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in onto.files.items():
                out = inside(folder, Path(name).name)
                atomic_write(out, partial(_write_text, text=text))
                print(f"{out}" + ("" if name in onto.changed else " (unchanged)"))
        for note in onto.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    if args.map:
        raise usage("--map: only with --onto (the mapping the manifests' import needed)")
    target = Target(
        service=_service(args.service, policy.name, args.policy),
        namespace=_namespace(args.namespace),
        replicas=_replicas(args.replicas),
        **({"image": args.image} if args.image else {}),
    )
    executors = EXECUTORS if args.to == "all" else (args.to,)
    results: list[tuple[str, Any]] = []  # (executor, Export)
    refused: list[NotExpressibleError] = []
    for executor in executors:  # every export made (and refused) before anything is written
        try:
            results.append((executor, export(policy, executor, target)))
        except NotExpressibleError as exc:
            if args.to != "all":
                raise
            refused.append(exc)
    if not results:  # --to all and no executor can express it: nothing written, say why
        each = "; ".join(f"{e.executor}: {_cut(f'{e.field}: {e.reason}', 90)}" for e in refused)
        raise PolicyError(f"no executor can express this policy ({each})", file=args.policy)
    if args.output is None:
        for _, result in results:
            print(result.to_yaml(), end="")
    else:
        _write_exports(Path(args.output), results, target.service)
    for refusal in refused:
        print(f"refused: {refusal}", file=sys.stderr)
    return 0


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAMESPACE_RULE = (
    "a namespace name (DNS-1123 label): lower-case letters, digits and '-', starting and"
    " ending with a letter or digit, at most 63 characters"
)
_SERVICE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_SERVICE_ROOM = 63 - len("-primary")
"""A Service name is a DNS-1035 label of at most 63 characters, and the exporters and
executors name Services ``<service>-stable``, ``-canary``, ``-preview``, Flagger's ``-primary``:
the service's name leaves room for the longest."""
_SERVICE_RULE = (
    "a name for its Services (DNS-1035 label): lower-case letters, digits and '-', starting"
    f" with a letter, ending with a letter or digit, at most {_SERVICE_ROOM} characters so that"
    " '-primary' fits"
)


def _namespace(value: str | None) -> str:
    """``--namespace``, checked now: the API server would refuse it only at apply."""
    from policies.base import brief

    if value is None:
        return "default"
    if len(value) > 63 or not _NAMESPACE.fullmatch(value):
        raise usage(f"--namespace: {brief(value, 60)} is not {_NAMESPACE_RULE}")
    return value


def _service(given: str | None, name: str, file: str) -> str:
    """The service's name (``--service``, else the policy's): it names the Services."""
    from policies.base import brief
    from policies.errors import PolicyError

    value = name if given is None else given
    if len(value) <= _SERVICE_ROOM and _SERVICE.fullmatch(value):
        return value
    if given is not None:
        raise usage(f"--service: {brief(value, 60)} is not {_SERVICE_RULE}")
    raise PolicyError(
        f"{brief(value, 60)} is not {_SERVICE_RULE}: give --service", path="name", file=file
    )


def _replicas(value: int | None) -> int | None:
    """``--replicas``: pods of a Deployment or Rollout, an int32 of at least 1."""
    if value is not None and not 1 <= value <= 2**31 - 1:
        raise usage(f"--replicas: {value} is not a pod count from 1 to {2**31 - 1}")
    return value


def _write_exports(out: Path, results: list, service: str) -> None:
    """Each executor's files in ``out/<executor>/``, for one executor as for ``--to all``, so a
    folder holds the same paths whichever was asked: every target is checked first, so a file or
    folder in the way refuses the export before anything is written."""
    from functools import partial

    from sim.runs.files import OutputRefused, atomic_write, inside, writable_folder

    writable_folder(out)
    planned: list[tuple[Path | None, str]] = []  # (file, content) or (None, line to print)
    for executor, result in results:
        folder = writable_folder(out / executor)
        files = {f"{service}.yaml": result.to_yaml(), **result.files}
        for name, content in files.items():
            path = inside(folder, name)
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise OutputRefused("exists and is not a regular file", file=str(path))
            planned.append((path, content))
        extra = f" (+ {', '.join(result.files)})" if result.files else ""
        planned.append((None, f"{executor}: {folder / f'{service}.yaml'}{extra}"))
    for target, content in planned:
        if target is None:
            print(content)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, partial(_write_text, text=content))


def _write_text(tmp: str, text: str) -> None:
    Path(tmp).write_text(text, encoding="utf-8")


def import_command(args: argparse.Namespace) -> int:
    from policies.importers import import_manifests
    from policies.loading import policy_to_yaml

    source = [Path(m) for m in args.manifest]
    if args.output:  # checked before reading: never a device, a folder or a manifest read
        _policy_file(Path(args.output), source)
    result = import_manifests(source, mapping=args.map or None, name=args.name)
    text = policy_to_yaml(result.policy)
    if args.output:
        from functools import partial

        from sim.runs.files import atomic_write

        atomic_write(args.output, partial(_write_text, text=text))
        print(f"{args.output}: {result.policy.kind} {result.policy.name!r}")
    else:
        print(text, end="")
    if args.verbose:
        for item in result.ignored:
            print(f"ignored: {item}", file=sys.stderr)
        for note in getattr(result, "notes", ()):
            print(f"note: {note}", file=sys.stderr)
    return 0


def _policy_file(out: Path, source: list[Path]) -> None:
    """Refuse an ``import -o`` target that is not a new or regular file in a folder, or that
    is one of the manifests read: the write renames a file over it, which would replace a device
    (``/dev/null``) or the team's own manifest."""
    from policies.errors import PolicyError
    from sim.runs.files import OutputRefused

    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise OutputRefused("exists and is not a regular file: give a policy file", file=str(out))
    if out.exists() and any(m.exists() and out.samefile(m) for m in source):
        raise OutputRefused("is a manifest being imported: -o would replace it", file=str(out))
    if not out.parent.is_dir():
        raise PolicyError(f"{out.parent} is not a folder", file=str(out))
