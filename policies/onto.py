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
with a note when they changed. An arg whose place in a query the edit moves (a router switch
turns the canary Service's name into a pod name's prefix) takes E1's value in every analysis that
passes it: the document's value was chosen for the old place. The result is checked: the edited
files must import back as a policy exporting to E1, and a pod matcher pinning a ReplicaSet hash
must fit the Rollout's pod names, else a ``PolicyError`` says which field cannot be written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from policies.base import load_yaml
from policies.errors import PolicyError
from policies.exporters import Target, export
from policies.exporters.promql_versions import ARG, ARG_CANARY_HASH, ARG_STABLE_HASH, argo_arg
from policies.importers import import_manifests
from policies.onto_files import Chunk, File, documents, name_of, read, render, sources
from policies.onto_merge import Names, convert, merge
from policies.regexes import re2_compile

__all__ = ["OntoResult", "export_onto"]

_TEMPLATES = ("AnalysisTemplate", "ClusterAnalysisTemplate", "MetricTemplate")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_AROUND = re.compile(r"\x00[^\x00]*\x00|\w+(?:\.\w+)*|[^\w\s]")
_HASHES = {"latest": ARG_CANARY_HASH, "stable": ARG_STABLE_HASH}
_SAMPLE_HASH = "5d8f7c9b4"


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


def _blocks(rollout: dict) -> Iterator[tuple[set[tuple[str, str]], dict]]:
    """Every block of a Rollout passing args to templates (experiments' analyses too), with the
    templates it passes them to."""
    seen: dict[int, tuple[set[tuple[str, str]], dict]] = {}
    for ref, block in _argo_refs(rollout).values():
        seen.setdefault(id(block), (set(), block))[0].add(_ref_key(ref))
    yield from seen.values()
    canary = (((rollout.get("spec") or {}).get("strategy") or {}).get("canary")) or {}
    for step in canary.get("steps") or []:
        for run in ((step or {}).get("experiment") or {}).get("analyses") or []:
            if isinstance(run, dict) and run.get("templateName"):
                yield {_ref_key(run)}, run


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


def _declare_args(tmpl: dict, e1_tmpl: dict) -> None:
    """An Argo query written from E1 uses E1's args: declare the ones the template lacks (the
    blocks using it are given their values with the other moved args, ``_pass_args``)."""
    spec = tmpl.get("spec") or {}
    used = {a for m in spec.get("metrics") or [] for a in ARG.findall(str(m.get("provider")))}
    declared = {str(a.get("name")) for a in spec.get("args") or []}
    e1_args = {str(a["name"]): a for a in (e1_tmpl.get("spec") or {}).get("args") or []}
    for name in sorted(used - declared):
        spec.setdefault("args", []).append(convert(e1_args.get(name, {"name": name}), Names()))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _places(tmpl: dict) -> dict[str, set[str]]:
    """Where each ``{{args.x}}`` sits in the template's queries (its label matcher, else the
    tokens either side): a value passed for an arg means what its place makes it mean."""
    out: dict[str, set[str]] = {}
    for metric in (tmpl.get("spec") or {}).get("metrics") or []:
        for text in _strings((metric or {}).get("provider")):
            text = ARG.sub(lambda g: argo_arg(g[1]), text)
            for m in _MATCHER.finditer(text):
                for name in ARG.findall(m[3]):
                    out.setdefault(name, set()).add(f"{m[1]}{m[2]}{m[3]}")
            rest = ARG.sub(lambda g: f"\x00{g[1]}\x00", _MATCHER.sub(" ", text))
            tokens = _AROUND.findall(rest)
            for i, token in enumerate(tokens):
                if token.startswith("\x00"):
                    around = " ".join(tokens[max(0, i - 2) : i + 3])
                    out.setdefault(token.strip("\x00"), set()).add(around)
    return out


def _moves(before: dict[str, set[str]], after: dict[str, set[str]]) -> tuple[set, set]:
    """(args the edit puts in a new place, args still in a place they had)."""
    moved = {a for a, places in after.items() if places - before.get(a, set())}
    kept = {a for a, places in after.items() if places & before.get(a, set())}
    return moved, kept


def _pass_args(main: dict, e1_main: dict, moves: dict[tuple[str, str], tuple[set, set]]) -> bool:
    """Every block passing a moved arg to a template passes E1's value for it, as E1 does; one
    the document's own query still reads at its old place with another value cannot be
    written. True if the Rollout changed."""
    passed = {str(a["name"]): a for _, block in _blocks(e1_main) for a in block.get("args") or []}
    changed = False
    for keys, block in _blocks(main):
        moved = set().union(*(moves.get(k, (set(), set()))[0] for k in keys))
        kept = set().union(*(moves.get(k, (set(), set()))[1] for k in keys))
        for name in sorted(moved & set(passed)):
            new = convert(passed[name], Names())
            args = block.setdefault("args", [])
            entry = next((a for a in args if str(a.get("name")) == name), None)
            if entry is None:
                args.append(new)
                changed = True
                continue
            if _given(entry) == _given(new):
                continue
            if name in kept:
                used = ", ".join(n for _, n in sorted(keys))
                raise PolicyError(
                    f"this change cannot be written onto the manifests: arg {name} (to {used})"
                    f" is read by the document's own query as {_short(entry.get('value'))} and"
                    f" by the policy's new one as {_short(new.get('value', new.get('valueFrom')))}"
                )
            for k in ("value", "valueFrom"):
                if k not in new:
                    entry.pop(k, None)
            for k, v in _given(new).items():
                entry[k] = v
            changed = True
    return changed


def _given(arg: dict) -> dict:
    """What an args entry passes: its value or valueFrom, without its name."""
    return {k: v for k, v in convert(arg, Names()).items() if k != "name"}


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
    moves: dict[tuple[str, str], tuple[set, set]] = {}
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
        places = _places(doc) if executor == "argo" and key[0] in _TEMPLATES else None
        merge(doc, old, new, match.names)
        chunk.dirty = True
        if places is not None:
            _declare_args(doc, new)
            moves[_key(doc)] = _moves(places, _places(doc))
        if doc.get("kind") == "ClusterAnalysisTemplate":
            result.notes.append(
                f"ClusterAnalysisTemplate/{name_of(doc)} changed: it is cluster-wide, so every"
                " Rollout using it changes too"
            )
    if moves and _pass_args(main, e1_main, moves):
        main_chunk.dirty = True
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
    kept = [m for m in e1 if _key(m) not in skipped]
    _check(result, mapping, name, executor, target, kept, [f.text for f in files], name_of(main))
    return result


def _values(spec: dict, block: dict) -> dict[str, str]:
    """The args one block passes a template, as the importer resolves them: the template's
    defaults, then the block's values, ReplicaSet hashes as their ``{{args.x}}`` placeholders."""
    out = {str(a["name"]): str(a["value"]) for a in spec.get("args") or [] if "value" in a}
    for a in block.get("args") or []:
        hash_of = str(((a.get("valueFrom") or {}).get("podTemplateHashValue")) or "").lower()
        if hash_of in _HASHES:
            out[str(a["name"])] = argo_arg(_HASHES[hash_of])
        elif "value" in a:
            out[str(a["name"])] = str(a["value"])
    return out


def _misfits(query: str, values: dict[str, str], rollout: str) -> list[str]:
    """The ``=~`` pod matchers of a query, its args resolved, that pin a ReplicaSet hash and
    cannot match a pod of the Rollout."""
    out = []
    for m in _MATCHER.finditer(ARG.sub(lambda g: values.get(g[1], g[0]), query)):
        pattern = m[3].replace("\\\\", "\\")
        for h in _HASHES.values():
            pattern = pattern.replace(argo_arg(h), _SAMPLE_HASH)
        if m[2] != "=~" or _SAMPLE_HASH not in pattern or ARG.search(pattern):
            continue
        try:  # Prometheus' regexes are RE2's, anchored at both ends
            fits = re2_compile(pattern).fullmatch(f"{rollout}-{_SAMPLE_HASH}-x7k2q")
        except ValueError:
            continue
        if not fits:
            out.append(f'{m[1]}=~"{m[3]}"')
    return out


def _unserved(texts: list[str], rollout: str) -> list[str]:
    """Pod matchers that pin a ReplicaSet hash yet fit no pod of the Rollout, with the args
    passed resolved: Argo names its pods ``<rollout>-<hash>-<suffix>``, so such a query
    selects nothing, every measurement is an Error and the rollout aborts. The import reads
    only the query's form, so the read-back check cannot see this."""
    found = [d for t in texts for d in load_yaml(t, multi=True) if isinstance(d, dict)]
    found += [i for d in found if d.get("kind") == "List" for i in d.get("items") or []]
    docs = {_key(d): d for d in found if isinstance(d, dict)}
    out: list[str] = []
    for keys, block in _blocks(docs.get(("Rollout", rollout)) or {}):
        for key in sorted(keys):
            spec = (docs.get(key) or {}).get("spec") or {}
            values = _values(spec, block)
            for metric in spec.get("metrics") or []:
                query = str(((metric.get("provider") or {}).get("prometheus") or {}).get("query"))
                out += [
                    f"{key[0]}/{key[1]} metric {metric.get('name')}: {matcher} selects no pod of"
                    f" Rollout/{rollout} (named {rollout}-<hash>-<suffix>): check the args passed"
                    for matcher in _misfits(query, values, rollout)
                ]
    return out


def _check(
    result: OntoResult,
    mapping: Any,
    name: str | None,
    executor: str,
    target: Target,
    e1: list[dict],
    originals: list[str],
    rollout: str,
) -> None:
    """The edited files must import back as a policy that exports to ``e1`` (less what was
    skipped), and select the Rollout's own pods where the document did: never write a
    manifest that runs another policy than the one asked for."""
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
    if executor == "argo":
        had = set(_unserved(originals, rollout))
        for problem in _unserved(texts, rollout):
            if problem not in had:
                raise PolicyError(f"this change cannot be written onto the manifests: {problem}")
