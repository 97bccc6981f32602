"""Mutation fuzz of our manifest corpus (tests/manifests/): one field of one object set to a value
of another shape (None, a string, a number, a list, a mapping, a non-ASCII digit...). Whatever
the API server would refuse, the import refuses in one line naming the field — never a
traceback (issues #13 and #19). Seeded: the same cases every run."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import yaml

from policies.errors import PolicyError
from policies.importers import import_manifests

CORPUS = Path(__file__).parent / "manifests"
VALUES = [None, "x", 5, -1, 2.5, [], {}, ["x"], {"a": 1}, True, "1e400", "９", [{}], [None]]
PER_FILE = 25


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _set(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _cases():
    rng = random.Random(7)
    for file in sorted(CORPUS.glob("*/*.yaml")):
        try:
            docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
        except yaml.YAMLError:
            continue  # the file that is deliberately not plain YAML (a {{...}} key)
        for _ in range(PER_FILE):
            mutated = copy.deepcopy(docs)
            doc = rng.choice(mutated)
            path = rng.choice([p for p in _paths(doc) if p])
            _set(doc, path, rng.choice(VALUES))
            yield file.name, path, yaml.safe_dump_all(mutated)


def test_a_mutated_manifest_imports_or_is_refused_in_one_line():
    tried, refused, tracebacks = 0, 0, []
    for name, path, text in _cases():
        tried += 1
        try:
            import_manifests(text)
        except PolicyError as exc:
            refused += 1
            assert "\n" not in str(exc)
        except Exception as exc:  # the bug this test is for
            tracebacks.append(f"{name} {path}: {type(exc).__name__}: {exc}")
    assert tried > 1000 and refused > tried // 4
    assert not tracebacks, "\n".join(tracebacks[:10])
