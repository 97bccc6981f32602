"""Checkpoints of a run: one parquet file per finished chunk, written atomically, beside a
manifest of the inputs; each chunk carries the digest of its run in its metadata, so a chunk
of another run (another seed or other inputs) is never loaded, only redone (DESIGN §6)."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

from policies.errors import PolicyError
from sim.engine.outcome import OUTCOME_FIELDS, Outcome
from sim.runs.files import atomic_write

__all__ = ["TYPES", "Checkpoint", "arrow_schema", "slug"]

_CASTS = {"int": int, "float": float, "bool": bool, "str": str}
TYPES = {f.name: _CASTS[str(f.type)] for f in fields(Outcome)}
"""Each outcome field's Python type (what a record holds, whatever parquet gave back)."""
_RUN_KEY = b"rolloutsim-run"  # a chunk's metadata: the digest of the run it belongs to


class Checkpoint:
    """A directory of finished chunks (one parquet file each, written atomically) + manifest."""

    def __init__(self, directory, manifest: dict) -> None:
        self.dir = Path(directory)
        self.chunks = self.dir / "chunks"
        self.digest = manifest["digest"].encode()
        path = self.dir / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("digest") != manifest["digest"]:
                diff = [k for k in manifest if k != "digest" and old.get(k) != manifest[k]]
                raise PolicyError(
                    f"this checkpoint was made for different inputs ({', '.join(diff) or 'format'}"
                    " differ); resume with the same world, policies, seed, replications and chunk"
                    " size, or use a new directory",
                    file=str(path),
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
        self.chunks.mkdir(parents=True, exist_ok=True)

    def path(self, chunk) -> Path:
        p, c = slug(chunk.policy), slug(chunk.release_class)
        name = f"{chunk.policy_index:03d}-{p}__{chunk.class_index:03d}-{c}__{chunk.index:05d}"
        return self.chunks / f"{name}.parquet"

    def load(self, chunk) -> list[dict] | None:
        """The chunk's records if finished and intact, else None (it is run again)."""
        import pyarrow.parquet as pq

        path = self.path(chunk)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
        except Exception:  # a damaged file is a missing chunk
            return None
        if (table.schema.metadata or {}).get(_RUN_KEY) != self.digest:
            return None  # a chunk of another run (other seed or inputs): never loaded, redone
        records = table.to_pylist()
        if [r.get("replication") for r in records] != list(range(chunk.start, chunk.stop)):
            return None
        if any(k not in records[0] for k in OUTCOME_FIELDS):
            return None  # written by a version with other outcome fields: run it again
        return [{k: TYPES[k](r[k]) for k in OUTCOME_FIELDS} for r in records]

    def save(self, chunk, records: list[dict]) -> None:
        if any(r["error"] for r in records):
            return  # not finished: a resume retries it
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = arrow_schema().with_metadata({_RUN_KEY: self.digest})
        table = pa.Table.from_pylist(records, schema=schema)
        atomic_write(self.path(chunk), lambda tmp: pq.write_table(table, tmp))


def arrow_schema():
    import pyarrow as pa

    kinds = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
    return pa.schema([(name, kinds[TYPES[name]]) for name in OUTCOME_FIELDS])


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40]
