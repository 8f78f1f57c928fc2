"""``--parquet FILE``: records as one Parquet file, for runs too large for CSV or a JSON list.
Needs pyarrow, imported only when the file is opened."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from noisetrace.errors import NoisetraceError
from noisetrace.io import atomic_path, temporary_name
from noisetrace.outputs.base import OutputFormat, OutputOptions, RecordSink
from noisetrace.outputs.records import Record, record_fields


def _arrow_type(pa: Any, annotation: str) -> Any:
    """Arrow type of a :class:`ScanResult` field from its annotation (``"float | None"``), so
    fields added to the record later get a column without touching this writer."""
    base = annotation.replace("| None", "").strip()
    return {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}.get(base, pa.string())


class ParquetRecordWriter(RecordSink):
    """Writes scan records to one Parquet file.

    Rows are buffered and written as row groups of ``rows_per_group`` (memory stays bounded);
    the file is written under a temporary name and renamed on :meth:`close`, so ``FILE`` is
    never a half-written Parquet file. Parquet cannot be appended to after a crash, so with
    ``seed_jsonl`` (``--resume``) the records already in that JSONL file are written first:
    the finished file then holds the whole scan, old and new records alike (or pass those
    records as ``seed_records``). Paths are escaped as every output does
    (:func:`noisetrace.outputs.records.escape_path`), so any file name fits Parquet's UTF-8.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        frame_scores: bool = False,
        rows_per_group: int = 10_000,
        seed_jsonl: str | Path | None = None,
        seed_records: Iterable[Record] | None = None,
    ) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise NoisetraceError(
                "--parquet needs pyarrow: pip install 'noisetrace[ray]' (or pip install pyarrow)"
            ) from None
        from noisetrace.detector import ScanResult

        self._pa = pa
        self.path = Path(path)
        self.tmp = temporary_name(self.path)
        self.frame_scores = frame_scores
        self.rows_per_group = rows_per_group
        types = {f.name: str(f.type) for f in dataclasses.fields(ScanResult)}
        fields = [(k, _arrow_type(pa, types.get(k, "str"))) for k in record_fields()]
        # Nested objects (provenance) vary in shape: one JSON string column each.
        self._nested = ScanResult.NESTED
        fields += [(k, pa.string()) for k in self._nested]
        if frame_scores:
            fields.append(("frame_scores", pa.list_(pa.float64())))
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self._rows: list[Record] = []
        self.count = 0
        if seed_jsonl is not None:
            from noisetrace.outputs.jsonl import read_resume

            seed_records = read_resume(seed_jsonl)[1]  # one record per input
        for rec in seed_records or ():
            self.write_record(rec)

    def write_record(self, record: Record) -> None:
        row = {k: record.get(k) for k in self.schema.names}
        for k in self._nested:
            if row.get(k) is not None and not isinstance(row[k], str):
                row[k] = json.dumps(row[k], ensure_ascii=False)
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            table = self._pa.Table.from_pylist(self._rows, schema=self.schema)
            self._writer.write_table(table)
            self._rows = []

    def close(self, complete: bool = True) -> None:
        """Write what is buffered, finish the file and move it into place (on failure the
        temporary file is removed, never left behind)."""
        with atomic_path(self.path):  # self.tmp, renamed when both steps succeed
            self._flush()
            self._writer.close()


def _open(value: Any, o: OutputOptions) -> ParquetRecordWriter:
    return ParquetRecordWriter(value, frame_scores=o.frame_scores, seed_records=o.earlier)


FORMAT = OutputFormat(
    name="parquet", flag="--parquet", open=_open, needs={"pyarrow": "noisetrace[ray]"},
    help="also write records as Parquet (large runs; needs pyarrow)",
)  # fmt: skip
