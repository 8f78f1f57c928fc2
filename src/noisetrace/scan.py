"""The one scanning path: expand inputs, scan each with a detector, write records.

The CLI, the web service and the benchmarks all call :func:`iter_inputs` and
:func:`scan_paths`, so every entry point treats bad files the same way.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from noisetrace.detector import Detector, ScanResult
from noisetrace.media.formats import MEDIA_EXTENSIONS, sniff_bytes


@dataclass
class InputListing:
    """Files to scan, errors met while listing (as records) and what was passed over."""

    files: list[str] = field(default_factory=list)
    errors: list[ScanResult] = field(default_factory=list)
    skipped_non_media: list[str] = field(default_factory=list)


def _looks_like_media(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return sniff_bytes(fh.read(64)) is not None
    except OSError:
        return True  # let the scan itself report why it cannot be read


def iter_inputs(paths: Iterable[str | Path]) -> InputListing:
    """Expand files and folders (recursively, following links once) into a sorted listing.

    Files named explicitly are always scanned. Inside folders, files with a media extension
    are scanned, and so is any other file whose content is an image or video; the rest are
    listed in ``skipped_non_media`` so the caller can say so. Missing paths and symlink loops
    become error records.
    """
    out = InputListing()
    seen_dirs: set[str] = set()
    for p in paths:
        p = str(p)
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p, followlinks=True):
                real = os.path.realpath(root)
                if real in seen_dirs:
                    out.errors.append(
                        ScanResult(path=root, error="folder already scanned (symlink loop)")
                    )
                    dirs[:] = []
                    continue
                seen_dirs.add(real)
                dirs.sort()
                for name in sorted(files):
                    f = os.path.join(root, name)
                    if Path(name).suffix.lower() in MEDIA_EXTENSIONS or _looks_like_media(f):
                        out.files.append(f)
                    else:
                        out.skipped_non_media.append(f)
        elif os.path.lexists(p) or os.path.exists(p):
            out.files.append(p)
        else:
            out.errors.append(ScanResult(path=p, error="no such file or folder"))
    return out


def scan_paths(
    detector: Detector,
    files: Iterable[str],
    *,
    video_frames: int | None = None,
    workers: int = 1,
    on_result: Callable[[ScanResult], None] | None = None,
) -> Iterator[ScanResult]:
    """Scan ``files`` in order, yielding one :class:`ScanResult` each.

    With ``workers > 1`` files are decoded and scored in a small thread pool (PIL, PyAV and
    torch release the GIL), results still come back in input order.
    """
    files = list(files)

    def one(f: str) -> ScanResult:
        return detector.scan(f, video_frames=video_frames)

    if workers <= 1:
        results: Iterable[ScanResult] = map(one, files)
        for r in results:
            if on_result:
                on_result(r)
            yield r
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(one, files):
            if on_result:
                on_result(r)
            yield r


# -- writers ---------------------------------------------------------------------------------
def read_done(jsonl: str | Path) -> set[str]:
    """Paths already recorded in a JSONL file (for ``--resume``); a torn last line is ignored."""
    done: set[str] = set()
    p = Path(jsonl)
    if not p.exists():
        return done
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            try:
                done.add(json.loads(line)["path"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def repair_jsonl(jsonl: str | Path) -> None:
    """Drop a partial last line left by a crash, so appending keeps the file valid."""
    p = Path(jsonl)
    if not p.exists() or p.stat().st_size == 0:
        return
    data = p.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(data[:cut])
    tmp.replace(p)


class JsonlWriter:
    """Appends one complete JSON line per record and flushes it, so an interrupted scan
    leaves a valid file that ``--resume`` continues."""

    def __init__(self, path: str | Path, append: bool = False, frame_scores: bool = False):
        if append:
            repair_jsonl(path)
        self.fh = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self.frame_scores = frame_scores

    def write(self, r: ScanResult) -> None:
        self.fh.write(json.dumps(r.to_record(self.frame_scores)) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def write_csv(path: str | Path, records: list[dict]) -> None:
    """Write records as CSV atomically (temporary file, then rename)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ScanResult.FIELDS), extrasaction="ignore")
        w.writeheader()
        for rec in records:
            w.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    tmp.replace(p)
