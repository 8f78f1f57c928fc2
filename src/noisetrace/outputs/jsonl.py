"""``--jsonl FILE``: one JSON record per line, flushed as it is written, so an interrupted scan
leaves a valid file; ``--resume`` reads it back (:func:`read_resume`) and appends to it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from noisetrace.io import atomic_write
from noisetrace.outputs.base import OutputFormat, OutputOptions, RecordSink
from noisetrace.outputs.records import Record, path_key, unescape_path


class JsonlSink(RecordSink):
    """Appends one complete JSON line per record and flushes it, so an interrupted scan
    leaves a valid file that ``--resume`` continues. With ``append`` a partial last line left
    by a crash is dropped first."""

    def __init__(self, path: str | Path, append: bool = False, frame_scores: bool = False):
        if append:
            repair_jsonl(path)
        self.fh = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self.frame_scores = frame_scores

    def write_record(self, record: Record) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self, complete: bool = True) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def _open(value: Any, o: OutputOptions) -> JsonlSink:
    # The file being resumed already holds the earlier records: new ones are appended.
    return JsonlSink(value, append=o.resume, frame_scores=o.frame_scores)


FORMAT = OutputFormat(
    name="jsonl", flag="--jsonl", open=_open,
    help="write one JSON record per line to FILE",
)  # fmt: skip


def repair_jsonl(jsonl: str | Path) -> None:
    """Drop a partial last line left by a crash, so appending keeps the file valid."""
    p = Path(jsonl)
    if not p.exists() or p.stat().st_size == 0:
        return
    data = p.read_bytes()
    if data.endswith(b"\n"):
        return
    atomic_write(p, data[: data.rfind(b"\n") + 1])


def iter_jsonl_records(jsonl: str | Path) -> Iterator[Record]:
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


def read_resume(jsonl: str | Path) -> tuple[set[str], list[Record]]:
    """Inputs already recorded in a JSONL file (as :func:`path_key` keys) and their records,
    the first one per input, for ``--resume``; torn or foreign lines are ignored."""
    done: set[str] = set()
    records: list[Record] = []
    for rec in iter_jsonl_records(jsonl):
        if not isinstance(rec["path"], str):
            continue
        key = path_key(unescape_path(rec["path"]))
        if key not in done:
            done.add(key)
            records.append(rec)
    return done, records


def read_done(jsonl: str | Path) -> set[str]:
    """:func:`path_key` of every input already recorded in a JSONL file (for ``--resume``)."""
    return read_resume(jsonl)[0]
