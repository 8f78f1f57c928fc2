"""``--csv FILE``: every record as a CSV row (the fields of a record, per-frame scores left
out, provenance as a one-line summary in the column ``provenance``, judged faces and the
temporal evidence as compact JSON in ``face_boxes`` and ``temporal``), written atomically
when the scan ends, interrupted or not. After ``--resume`` it holds the whole scan, earlier
records first."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from noisetrace.io import atomic_path
from noisetrace.outputs.base import OutputFormat, OutputOptions, RecordSink
from noisetrace.outputs.records import Record, record_fields


class CsvSink(RecordSink):
    """Keeps the records (CSV has no appending after a crash) and writes them on close."""

    def __init__(self, path: str | Path, earlier: Iterable[Record] = ()) -> None:
        self.path = Path(path)
        self.records: list[Record] = list(earlier)

    def write_record(self, record: Record) -> None:
        self.records.append(record)

    def close(self, complete: bool = True) -> None:
        write_csv(self.path, self.records)


def write_csv(path: str | Path, records: Iterable[Record]) -> None:
    """Write records as CSV atomically (temporary file, then rename; no temporary file is
    left behind when writing fails)."""
    from noisetrace.detector import ScanResult  # lazy: `--help` must not import torch

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*record_fields(), *ScanResult.NESTED],
                           extrasaction="ignore")  # fmt: skip
        w.writeheader()
        for rec in records:
            row = {k: ("" if v is None else v) for k, v in rec.items()}
            row["provenance"] = _provenance_cell(rec.get("provenance"))
            for k in ("face_boxes", "temporal"):  # compact JSON: one cell, machine-readable
                v = rec.get(k)
                row[k] = "" if v is None else json.dumps(v, separators=(",", ":"))
            w.writerow(row)


def _provenance_cell(prov: Any) -> str:
    """The provenance object as one line (``ai-claimed: png-text (ComfyUI)``), empty when
    none was read."""
    if not isinstance(prov, dict):
        return ""
    from noisetrace.media.provenance import summary

    return summary(prov)


def _open(value: Any, o: OutputOptions) -> CsvSink:
    return CsvSink(value, earlier=o.earlier)


FORMAT = OutputFormat(name="csv", flag="--csv", open=_open, help="write records as CSV to FILE")
