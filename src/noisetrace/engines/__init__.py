"""Where ``noisetrace scan`` runs: ``local`` (threads in this process) or ``ray`` (a cluster).

This package is light on purpose: the CLI imports it for every scan, and the local path must
never import Ray or pyarrow. The Ray engine lives in :mod:`noisetrace.engines.ray_engine`; the
Parquet writer here imports pyarrow only when a Parquet file is asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from noisetrace.detector import ScanResult
from noisetrace.errors import NoisetraceError

ENGINES = ("local", "ray")

# "s3://bucket/key", "gs://...", "file:///tmp/x": anything with a URL scheme of 2+ letters
# (a single letter is a Windows drive, "C:\\...").
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(path: str | Path) -> bool:
    """True for object-storage style inputs (``s3://``, ``gs://``, ``file://`` ...)."""
    return isinstance(path, str) and bool(_URI.match(path))


def iter_jsonl_records(jsonl: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL scan output, one at a time; torn or foreign lines are skipped."""
    p = Path(jsonl)
    if not p.exists():
        return
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "path" in rec:
                yield rec


def result_from_record(rec: dict[str, Any]) -> ScanResult:
    """Inverse of :meth:`ScanResult.to_record` (unknown keys are ignored)."""
    keys = (*ScanResult.FIELDS, "frame_scores")
    return ScanResult(**{k: rec[k] for k in keys if k in rec})


def _arrow_type(pa: Any, annotation: str) -> Any:
    """Arrow type of a :class:`ScanResult` field from its annotation (``"float | None"``), so
    fields added to the record later get a column without touching this writer."""
    base = annotation.replace("| None", "").strip()
    return {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}.get(base, pa.string())


class ParquetRecordWriter:
    """Writes scan records to one Parquet file, for runs too large for CSV or a JSON list.

    Rows are buffered and written as row groups of ``rows_per_group`` (memory stays bounded);
    the file is written under a temporary name and renamed on :meth:`close`, so ``FILE`` is
    never a half-written Parquet file. Parquet cannot be appended to after a crash, so with
    ``seed_jsonl`` (``--resume``) the records already in that JSONL file are written first:
    the finished file then holds the whole scan, old and new records alike (or pass those
    records as ``seed_records``). Paths are escaped as every writer does
    (:func:`noisetrace.scan.escape_path`), so any file name fits Parquet's UTF-8 strings.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        frame_scores: bool = False,
        rows_per_group: int = 10_000,
        seed_jsonl: str | Path | None = None,
        seed_records: Iterable[dict[str, Any]] | None = None,
    ) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise NoisetraceError(
                "--parquet needs pyarrow: pip install 'noisetrace[ray]' (or pip install pyarrow)"
            ) from None
        self._pa = pa
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.frame_scores = frame_scores
        self.rows_per_group = rows_per_group
        types = {f.name: str(f.type) for f in dataclasses.fields(ScanResult)}
        fields = [(k, _arrow_type(pa, types.get(k, "str"))) for k in ScanResult.FIELDS]
        if frame_scores:
            fields.append(("frame_scores", pa.list_(pa.float64())))
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []
        self.count = 0
        if seed_jsonl is not None:
            from noisetrace.scan import read_resume

            seed_records = read_resume(seed_jsonl)[1]  # one record per input
        for rec in seed_records or ():
            self.write_record(rec)

    def write(self, r: ScanResult) -> None:
        from noisetrace.scan import to_record  # scan imports this package

        self.write_record(to_record(r, self.frame_scores))

    def write_record(self, rec: dict[str, Any]) -> None:
        self._rows.append({k: rec.get(k) for k in self.schema.names})
        self.count += 1
        if len(self._rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            table = self._pa.Table.from_pylist(self._rows, schema=self.schema)
            self._writer.write_table(table)
            self._rows = []

    def close(self) -> None:
        """Write what is buffered, finish the file and move it into place (on failure the
        temporary file is removed, never left behind)."""
        try:
            self._flush()
            self._writer.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
