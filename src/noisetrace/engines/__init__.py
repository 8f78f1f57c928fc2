"""Where ``noisetrace scan`` runs: ``local`` (threads in this process) or ``ray`` (a cluster).

An engine only produces results: :meth:`Engine.list_inputs` expands the inputs (errors met
while listing become error records, files passed over are counted) and :meth:`Engine.results`
scans files into :class:`ScanResult` records. Listing filters, resume, progress, outputs and
exit codes are the scan driver's (:func:`noisetrace.scan.run_scan`), the same for every
engine. Engines take :class:`EngineOptions`, plain values, never the command line.

This package is light on purpose: the local path never imports Ray or pyarrow; an engine's
module is imported only when :func:`open_engine` is asked for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

# Kept importable from here for earlier callers; they live with the outputs now.
from noisetrace.outputs.jsonl import iter_jsonl_records
from noisetrace.outputs.parquet import ParquetRecordWriter
from noisetrace.outputs.records import is_uri, result_from_record

if TYPE_CHECKING:
    from noisetrace.detector import Detector, ScanResult
    from noisetrace.scan import InputListing

__all__ = [
    "ENGINES", "Engine", "EngineOptions", "ParquetRecordWriter", "is_uri", "iter_jsonl_records",
    "open_engine", "result_from_record",
]  # fmt: skip


@dataclass
class EngineOptions:
    """How to scan, as plain values (what ``noisetrace scan``'s options say)."""

    model: str = "default"  # bundled model name or model directory (Ray actors load it)
    device: str = "auto"
    video_frames: int | None = None  # None: the model's
    frame_scores: bool = False  # keep per-frame scores in the results
    workers: int = 2  # local: files in flight at once
    address: str | None = None  # ray: cluster address (None: a local Ray)


class Engine(Protocol):
    """What the scan driver needs from an engine."""

    name: str

    def list_inputs(self, paths: Iterable[str]) -> tuple[InputListing, Iterable[str]]:
        """The listing (errors and files passed over; it may grow while the files are
        consumed) and the files to scan, a list when known up front or a lazy stream."""
        ...

    def results(self, files: Iterable[str]) -> Iterator[ScanResult]:
        """One result per file, in any order."""
        ...


# name -> "module:class"; the class is built as cls(detector, options).
ENGINES: dict[str, str] = {
    "local": "noisetrace.engines.local:LocalEngine",
    "ray": "noisetrace.engines.ray_engine:RayEngine",
}


def open_engine(name: str, detector: Detector, options: EngineOptions) -> Engine:
    """The engine called ``name``, for ``detector`` (loaded by the caller: it validated the
    model and carries the threshold)."""
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)(detector, options)
