"""Where scores go: atomic part files while a run goes on, one consolidated Parquet file when it ends.

Layout for ``--out scores.parquet``:

- ``scores.parquet.parts/part-<ns>-<uuid>.parquet``: one file per batch, written to a hidden temporary name,
  fsynced, then renamed (``os.replace``, atomic on POSIX). A kill (SIGKILL, Ctrl-C, power) leaves either a
  whole part or none, so at most the batch in flight is lost and nothing written is ever half a file.
- ``scores.parquet``: when the run ends, the existing file and every part are merged (one row per path, the
  newest wins), written the same atomic way, and only then are the parts removed. A kill between the two steps
  leaves parts whose rows the file already has; the next merge drops the duplicates.

A re-run with the same ``--out`` skips every image whose (path, SHA-256) already has scores from the same
weights; files that could not be read at all (no SHA-256) are tried again. Rows of other weights are refused,
so one file never mixes two models. Two runs must not write the same ``--out`` at once.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cxr.scoring.rows import rows_table

METADATA_KEY = b"cxr.score"


class StoreError(RuntimeError):
    """The output cannot be resumed (other weights, other columns); ``str(err)`` says why."""


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``cxr.score`` metadata of a scores file: cxr version, weights provenance, config, labels."""
    raw = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in raw:
        raise StoreError(f"{Path(path).name} is not a cxr scores file (no {METADATA_KEY.decode()} metadata).")
    return json.loads(raw[METADATA_KEY])


class ScoreStore:
    """The parts folder and the consolidated file of one ``--out``.

    Args:
        out: the consolidated Parquet file.
        schema: the row schema (:func:`cxr.scoring.rows.score_schema`).
        metadata: JSON-ready facts stored in the file's metadata under ``cxr.score``.
        weights_sha256: the weights scoring this run; rows of other weights make the store refuse to resume.
    """

    def __init__(self, out: str | Path, schema: pa.Schema, metadata: dict[str, Any], weights_sha256: str) -> None:
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata).encode()})
        self.weights_sha256 = weights_sha256

    def _tables(self) -> Iterator[pa.Table]:
        sources = ([self.out] if self.out.is_file() else []) + sorted(self.parts.glob("part-*.parquet"))
        for source in sources:
            table = pq.read_table(source)
            if not table.schema.equals(self.schema, check_metadata=False):
                raise StoreError(
                    f"{source} has other columns than this run writes (another model's labels or another manifest's "
                    "columns); write to another --out."
                )
            others = set(table.column("weights_sha256").to_pylist()) - {self.weights_sha256}
            if others:
                raise StoreError(
                    f"{source} holds scores of other weights (SHA-256 {sorted(others)[0][:12]}…); "
                    "write to another --out."
                )
            yield table

    def done(self) -> set[tuple[str, str]]:
        """(path, SHA-256) of every image already scored (or found undecodable) with these weights."""
        keys: set[tuple[str, str]] = set()
        for table in self._tables():
            paths, shas = table.column("path").to_pylist(), table.column("sha256").to_pylist()
            keys.update((p, s) for p, s in zip(paths, shas, strict=True) if s is not None)
        return keys

    def write_part(self, rows: Sequence[dict[str, Any]]) -> Path | None:
        """Write one batch of rows as a new part, atomically; returns its path (None for no rows)."""
        if not rows:
            return None
        self.parts.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        return _write_atomically(rows_table(rows, self.schema), self.parts / name)

    def consolidate(self) -> pa.Table:
        """Merge the file and the parts into ``out`` (one row per path, the newest kept); remove the parts."""
        tables = list(self._tables())
        # An earlier run's file may carry other metadata text (e.g. why these weights were chosen): this run's wins.
        table = (
            pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
            if tables
            else rows_table([], self.schema)
        )
        latest = {path: i for i, path in enumerate(table.column("path").to_pylist())}
        table = table.take(sorted(latest.values())).replace_schema_metadata(self.schema.metadata)
        _write_atomically(table, self.out)
        for part in [*self.parts.glob("part-*.parquet"), *self.parts.glob(".*.tmp")]:  # .tmp: a killed write
            part.unlink()
        if self.parts.is_dir() and not any(self.parts.iterdir()):
            self.parts.rmdir()
        return table


def _write_atomically(table: pa.Table, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path
