"""``--json``: every record in one JSON list on standard output, printed when the scan ends
(interrupted or not). After ``--resume`` it holds the whole scan, earlier records first."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from noisetrace.outputs.base import OutputFormat, OutputOptions, RecordSink
from noisetrace.outputs.records import Record


class JsonListSink(RecordSink):
    def __init__(self, earlier: Iterable[Record] = (), frame_scores: bool = False) -> None:
        self.records: list[Record] = list(earlier)
        self.frame_scores = frame_scores

    def write_record(self, record: Record) -> None:
        self.records.append(record)

    def close(self, complete: bool = True) -> None:
        sys.stdout.write(json.dumps(self.records, indent=2) + "\n")
        sys.stdout.flush()


def _open(value: Any, o: OutputOptions) -> JsonListSink:
    return JsonListSink(earlier=o.earlier, frame_scores=o.frame_scores)


FORMAT = OutputFormat(
    name="json", flag="--json", metavar=None, stdout=True, open=_open,
    help="print records as a JSON list on stdout",
)  # fmt: skip
