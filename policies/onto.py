"""``export --onto``: a policy written back onto the team's own manifests, changing only what
the policy owns and keeping everything else, key order and comments (issue #19, item 6).

``export_onto(policy, manifests, *, mapping=None) -> OntoResult`` takes the original files (a
Rollout or Canary and its template files; paths or texts, as ``import_manifests`` does) and
returns ``OntoResult.files``, the edited text of every file, with notes. It is diff-based: the
originals import as P0 (with the same ``mapping`` the import needed); P0 and the new policy
export with one target (the original's name and namespace) as E0 and E1; the changes made are
exactly diff(E0, E1), applied to the originals read by ruamel.yaml in round-trip mode
(``policies.onto_merge`` has the rules). So an unchanged policy gives the files back byte for
byte, and a changed one changes only its fields, in the document's own spelling.

Documents are matched, not named: the Rollout or Canary to the original one, templates by
walking E0's and the original's references in parallel (the importer keeps the structure but
renames templates). Templates E1 adds are appended to the file holding the Rollout or Canary;
templates it drops are removed (a ClusterAnalysisTemplate is shared: kept, with a note).
Exported objects the originals do not hold (a Flagger target Deployment not given) are skipped,
with a note when they changed. The result is checked: the edited files must import back as a
policy exporting to E1, else a ``PolicyError`` says which field cannot be written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policies.errors import PolicyError
from policies.exporters import Target, export
from policies.exporters.promql_versions import ARG
from policies.importers import import_manifests
from policies.onto_files import Chunk, File, documents, name_of, read, render, sources
from policies.onto_merge import Names, convert, merge

__all__ = ["OntoResult", "export_onto"]

_TEMPLATES = ("AnalysisTemplate", "ClusterAnalysisTemplate", "MetricTemplate")


@dataclass
class OntoResult:
    """The edited text of every given file (by name, in order), the ones changed, and notes."""

    executor: str
    files: dict[str, str]
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _argo_refs(rollout: dict) -> dict[tuple, tuple[dict, dict]]:
    """Every template reference of a Rollout by where it sits: (ref, its analysis block)."""
    strategy = (rollout.get("spec") or {}).get("strategy") or {}
    canary, bg = strategy.get("canary") or {}, strategy.get("blueGreen") or {}
    blocks: list[tuple[tuple, Any]] = [(("analysis",), canary.get("analysis"))]
    blocks += [
        (("steps", i), (s or {}).get("analysis")) for i, s in enumerate(canary.get("steps") or [])
    ]
    blocks += [((k,), bg.get(k)) for k in ("prePromotionAnalysis", "postPromotionAnalysis")]
    out = {}
    for where, block in blocks:
        if isinstance(block, dict):
            for j, ref in enumerate(block.get("templates") or []):
                out[(*where, j)] = (ref, block)
    return out


def _flagger_refs(canary: dict) -> dict[tuple, dict]:
    metrics = ((canary.get("spec") or {}).get("analysis") or {}).get("metrics") or []
    return {("metrics", i): m["templateRef"] for i, m in enumerate(metrics) if m.get("templateRef")}


def _ref_key(ref: dict) -> tuple[str, str]:
    kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
    return kind, str(ref.get("templateName"))


class _Match:
    """E0's documents -> the originals, and the exporter's template names -> the document's."""

    def __init__(self, files: list[File], main: dict, e0: list[dict], service: str) -> None:
        self.main = main
        self.names = Names()
        self.by_key: dict[tuple[str, str], tuple[File, Chunk, dict]] = {}
        for f, c, doc in documents(files):
            self.by_key.setdefault((str(doc.get("kind")), name_of(doc)), (f, c, doc))
        e_main = next(d for d in e0 if d.get("kind") == main.get("kind"))
        if main.get("kind") == "Rollout":
            ours = _argo_refs(main)
            for where, (ref, _) in _argo_refs(e_main).items():
                if where in ours:
                    self.names.refs.setdefault(str(ref["templateName"]), _ref_key(ours[where][0]))
            for _, block in ours.values():
                key = tuple(_ref_key(r) for r in block.get("templates") or [])
                self.names.args.setdefault(key, block.get("args"))
        else:
            mine = _flagger_refs(main)
            for where, ref in _flagger_refs(e_main).items():
                if where in mine:
                    pair = ("MetricTemplate", str(mine[where].get("name")))
                    self.names.refs.setdefault(str(ref.get("name")), pair)
        for doc in e0:  # unreferenced templates: by the importer's naming (<service>-<name>)
            kind, name = str(doc.get("kind")), name_of(doc)
            short = name[len(service) + 1 :] if name.startswith(f"{service}-") else name
            kinds = (kind,) if kind == "MetricTemplate" else _TEMPLATES[:2]
            if kind in _TEMPLATES and name not in self.names.refs:
                found = [(k, n) for k in kinds for n in (name, short) if (k, n) in self.by_key]
                if found:
                    self.names.refs[name] = found[0]
        self.target_deployment = str(((main.get("spec") or {}).get("targetRef") or {}).get("name"))

    def original(self, doc: dict) -> tuple[File, Chunk, dict] | None:
        """The original (file, chunk, document) an exported document stands for, or None."""
        kind, name = str(doc.get("kind")), name_of(doc)
        if kind == self.main.get("kind"):
            return next((v for v in self.by_key.values() if v[2] is self.main), None)
        if kind in _TEMPLATES:
            key = self.names.refs.get(name)
            return self.by_key.get(key) if key else None
        if kind == "Deployment":
            return self.by_key.get(("Deployment", self.target_deployment))
        return None


def _fix_args(tmpl: dict, e1_tmpl: dict, e1_main: dict, main: dict) -> bool:
    """An Argo query written from E1 uses E1's args: declare the ones the template lacks and
    pass them from every analysis block of the Rollout that uses the template. True if the
    Rollout changed."""
    spec = tmpl.get("spec") or {}
    used = {a for m in spec.get("metrics") or [] for a in ARG.findall(str(m.get("provider")))}
    declared = {str(a.get("name")) for a in spec.get("args") or []}
    missing = sorted(used - declared)
    if not missing:
        return False
    e1_args = {str(a["name"]): a for a in (e1_tmpl.get("spec") or {}).get("args") or []}
    spec.setdefault("args", [])
    for name in missing:
        spec["args"].append(convert(e1_args.get(name, {"name": name}), Names()))
    passed = {
        str(a["name"]): a
        for _, block in _argo_refs(e1_main).values()
        for a in block.get("args") or []
    }
    key, changed = (str(tmpl.get("kind")), name_of(tmpl)), False
    for ref, block in _argo_refs(main).values():
        if _ref_key(ref) != key:
            continue
        have = {str(a.get("name")) for a in block.get("args") or []}
        for name in missing:
            if name not in have and name in passed:
                block.setdefault("args", []).append(convert(passed[name], Names()))
                have.add(name)
                changed = True
    return changed


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path} reads back as {_short(a)}, not {_short(b)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(manifest: dict) -> tuple[str, str]:
    return str(manifest.get("kind")), name_of(manifest)


def _keyed(manifests: list[dict]) -> dict[tuple[str, str], dict]:
    return {_key(m): m for m in manifests}


def _main(files: list[File], name: str | None) -> tuple[File, Chunk, dict]:
    kinds = (("Rollout", "argoproj.io"), ("Canary", "flagger.app"))
    return next(  # import_manifests found exactly one (of that name)
        (f, c, d)
        for f, c, d in documents(files)
        if (d.get("kind"), str(d.get("apiVersion", "")).rpartition("/")[0]) in kinds
        and (name is None or (d.get("metadata") or {}).get("name") == name)
    )


def export_onto(
    policy: Any,
    manifests: Any,
    *,
    mapping: Any = None,
    to: str | None = None,
    name: str | None = None,
) -> OntoResult:
    """``policy`` written onto ``manifests`` (the files of its Rollout or Canary).

    ``mapping``, ``name`` (the Rollout or Canary among several): as for ``import_manifests``.
    ``to``: the executor asked for; refused unless it is the manifests' own (argo for a
    Rollout, flagger for a Canary)."""
    given = sources(manifests)
    imported = import_manifests([source for _, _, source in given], mapping=mapping, name=name)
    files = [read(file_name, text) for file_name, text, _ in given]
    main_file, main_chunk, main = _main(files, name)
    executor = "argo" if main.get("kind") == "Rollout" else "flagger"
    if to is not None and to != executor:
        label = f"{main.get('kind')}/{name_of(main)}"
        raise PolicyError(
            f"--onto: {label} is exported with --to {executor}, not {to}", file=main_file.name
        )
    namespace = (main.get("metadata") or {}).get("namespace")
    target = Target(service=str(imported.policy.name), namespace=str(namespace or "default"))
    e0 = export(imported.policy, executor, target).manifests
    e1 = export(policy, executor, target).manifests
    result = OntoResult(executor, {f.name: f.text for f in files})
    if e0 == e1:
        return result
    match = _Match(files, main, e0, target.service)
    before, after = _keyed(e0), _keyed(e1)
    skipped: set[tuple[str, str]] = set()
    e1_main = after[(str(main.get("kind")), target.service)]
    for key, new in after.items():
        label = f"{key[0]}/{key[1]}"
        old = before.get(key)
        if old is None and key[0] in _TEMPLATES:
            doc = convert(new, match.names)
            if not namespace:
                doc.get("metadata", {}).pop("namespace", None)
            main_file.added.append(doc)
            result.notes.append(f"{label}: added to {main_file.name}")
            continue
        if old == new:
            continue
        found = match.original(old) if old is not None else None
        if found is None:
            result.notes.append(f"{label}: changed by the policy, not among the manifests: skipped")
            skipped.add(key)
            continue
        _, chunk, doc = found
        merge(doc, old, new, match.names)
        chunk.dirty = True
        if executor == "argo" and key[0] in _TEMPLATES and _fix_args(doc, new, e1_main, main):
            main_chunk.dirty = True
        if doc.get("kind") == "ClusterAnalysisTemplate":
            result.notes.append(
                f"ClusterAnalysisTemplate/{name_of(doc)} changed: it is cluster-wide, so every"
                " Rollout using it changes too"
            )
    for key, old in before.items():
        found = match.original(old) if key not in after else None
        if found is None:
            continue
        f, chunk, doc = found
        label = f"{doc.get('kind')}/{name_of(doc)}"
        if doc.get("kind") == "ClusterAnalysisTemplate" or chunk.doc is not doc:
            result.notes.append(f"{label}: no longer in the policy; kept (shared or in a List)")
        else:
            chunk.removed = True
            result.notes.append(f"{label}: no longer in the policy; removed from {f.name}")
    for f in files:
        text = render(f)
        if text != f.text:
            result.files[f.name] = text
            result.changed.append(f.name)
    _check(result, mapping, name, executor, target, [m for m in e1 if _key(m) not in skipped])
    return result


def _check(
    result: OntoResult,
    mapping: Any,
    name: str | None,
    executor: str,
    target: Target,
    e1: list[dict],
) -> None:
    """The edited files must import back as a policy that exports to ``e1`` (less what was
    skipped): never write a manifest that runs another policy than the one asked for."""
    texts = [t for t in result.files.values() if t.strip()]
    try:
        again = import_manifests(texts, mapping=mapping, name=name).policy
    except PolicyError as exc:
        raise PolicyError(f"the edited manifests no longer import ({exc}): not written") from None
    back, wanted = _keyed(export(again, executor, target).manifests), _keyed(e1)
    for key in wanted:
        if back.get(key) != wanted.get(key):
            where = _first_difference(back.get(key), wanted.get(key))
            hint = " (a --map entry names this metric?)" if mapping else ""
            raise PolicyError(
                f"this change cannot be written onto the manifests: {key[0]}/{key[1]} {where}"
                + hint
            )
