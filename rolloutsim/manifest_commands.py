"""``rolloutsim export`` and ``rolloutsim import``: policies out to the executors' manifests
(or onto a team's own, ``--onto``) and manifests in as policies."""

from __future__ import annotations

import argparse
import sys

from rolloutsim.usage import usage

__all__ = ["export_command", "import_command"]


def export_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from policies.errors import NotExpressibleError
    from policies.exporters import EXECUTORS, Target, export
    from policies.loading import load_policy
    from sim.runs.files import check_name, inside, writable_folder

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
            policy, [Path(m) for m in args.onto], mapping=args.map or None, to=args.to
        )
        if args.output is None:
            for name, text in onto.files.items():
                state = "" if name in onto.changed else " (unchanged)"
                print(f"# file: {name}{state}")
                print(text, end="" if text.endswith("\n") or not text else "\n")
        else:
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
        service=args.service or policy.name,
        namespace=args.namespace or "default",
        replicas=args.replicas,
        **({"image": args.image} if args.image else {}),
    )
    executors = EXECUTORS if args.to == "all" else (args.to,)
    if args.output is not None:  # the service names the files: checked before anything is made
        check_name(target.service, "--service" if args.service else "name", file=args.policy)
        writable_folder(args.output)
    refused = []
    for executor in executors:
        try:
            result = export(policy, executor, target)
        except NotExpressibleError as exc:
            if args.to != "all":
                raise
            refused.append(str(exc))
            continue
        if args.output is None:
            print(result.to_yaml(), end="")
            continue
        from functools import partial

        from sim.runs.files import atomic_write

        folder = Path(args.output) / (executor if args.to == "all" else "")
        folder.mkdir(parents=True, exist_ok=True)
        text = result.to_yaml()
        for name, content in {f"{target.service}.yaml": text, **result.files}.items():
            atomic_write(inside(folder, name), partial(_write_text, text=content))
        print(
            f"{executor}: {folder / f'{target.service}.yaml'}"
            + (f" (+ {', '.join(result.files)})" if result.files else "")
        )
    for reason in refused:
        print(f"refused: {reason}", file=sys.stderr)
    return 0


def _write_text(tmp: str, text: str) -> None:
    from pathlib import Path

    Path(tmp).write_text(text, encoding="utf-8")


def import_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from policies.importers import import_manifests
    from policies.loading import policy_to_yaml

    source = [Path(m) for m in args.manifest]
    result = import_manifests(source, mapping=args.map or None, name=args.name)
    text = policy_to_yaml(result.policy)
    if args.output:
        from sim.runs.files import atomic_write

        atomic_write(args.output, lambda tmp: Path(tmp).write_text(text))
        print(f"{args.output}: {result.policy.kind} {result.policy.name!r}")
    else:
        print(text, end="")
    if args.verbose:
        for item in result.ignored:
            print(f"ignored: {item}", file=sys.stderr)
        for note in getattr(result, "notes", ()):
            print(f"note: {note}", file=sys.stderr)
    return 0
