"""The one scanning path: expand inputs, scan each with a detector, write records.

The CLI, the web service and the benchmarks all call :func:`iter_inputs` and
:func:`scan_paths`, so every entry point treats bad files the same way.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noisetrace.detector import Detector, ScanResult
from noisetrace.engines import is_uri, iter_jsonl_records
from noisetrace.errors import InputError
from noisetrace.media.formats import MEDIA_EXTENSIONS, not_regular_reason, read_head, sniff_bytes


@dataclass
class InputListing:
    """Files to scan, errors met while listing (as records) and what was passed over."""

    files: list[str] = field(default_factory=list)
    errors: list[ScanResult] = field(default_factory=list)
    skipped_non_media: list[str] = field(default_factory=list)


# -- identity and record text of a path -------------------------------------------------------
def path_key(path: str | Path) -> str:
    """Canonical identity of an input: its real path (``./a.jpg``, ``a.jpg`` and a link to it
    are one input), so a resumed or repeated scan never records a file twice. URIs are their
    own key."""
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    return p if is_uri(p) else os.path.realpath(p)


# Escapes are only produced on POSIX, where names are bytes; Windows names are text already
# and use the backslash as separator.
_ESCAPES = os.sep == "/"
_UNESCAPE = re.compile(rb"\\(\\|x[0-9a-fA-F]{2})")


def escape_path(path: str) -> str:
    """A file name as record text: valid UTF-8 and reversible (:func:`unescape_path`).

    Bytes of a name that are not UTF-8 (Python holds them as surrogate escapes, which CSV and
    Parquet cannot store) are written as ``\\xNN`` and a backslash as ``\\\\``; every other
    name is unchanged.
    """
    if not _ESCAPES or ("\\" not in path and _is_utf8(path)):
        return path
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate that no file system name produces
        raw = path.encode("utf-8", "surrogatepass")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def unescape_path(text: str) -> str:
    """The file name a record's ``path`` stands for (inverse of :func:`escape_path`)."""
    if not _ESCAPES or "\\" not in text:
        return text
    raw = _UNESCAPE.sub(
        lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]),
        text.encode("utf-8", "surrogateescape"),
    )
    return os.fsdecode(raw)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str) -> str:
    """Any message as valid UTF-8 (a path quoted in an error may carry surrogate escapes)."""
    if _is_utf8(value):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def to_record(r: ScanResult, frame_scores: bool = False) -> dict[str, Any]:
    """``r.to_record()`` with text every output format can hold: the path escaped by
    :func:`escape_path`. Every writer (JSONL, CSV, JSON, Parquet) takes records from here."""
    rec = r.to_record(frame_scores)
    rec["path"] = escape_path(rec["path"])
    if rec.get("error"):
        rec["error"] = _text(rec["error"])
    return rec


def for_terminal(text: str) -> str:
    """``text`` with control and format characters (terminal escape codes, bidi overrides,
    newlines) shown as ``\\xNN`` / ``\\uNNNN``, so a file name cannot act on the terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def for_table(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of records whose path and error are safe to print (see :func:`for_terminal`)."""
    out = []
    for r in records:
        r = dict(r)
        r["path"] = for_terminal(r["path"])
        if r.get("error"):
            r["error"] = for_terminal(r["error"])
        out.append(r)
    return out


# -- listing ----------------------------------------------------------------------------------
def _looks_like_media(path: str) -> bool:
    try:
        return sniff_bytes(read_head(path)) is not None
    except InputError:
        return True  # let the scan itself report why it cannot be read


def _listing_error(path: str, exc: OSError, what: str) -> ScanResult:
    why = exc.strerror or str(exc)
    hint = " (check its permissions)" if isinstance(exc, PermissionError) else ""
    return ScanResult(path=path, error=f"{what}: {why}{hint}")


def iter_inputs(paths: Iterable[str | Path]) -> InputListing:
    """Expand files and folders (recursively, following links once) into a sorted listing.

    Files named explicitly are always scanned. Inside folders, files with a media extension
    are scanned, and so is any other file whose content is an image or video; the rest are
    listed in ``skipped_non_media`` so the caller can say so. Error records, never silence,
    for: missing paths, FIFOs, sockets and devices (never opened: they block or never end),
    folders that cannot be listed (no permission) and symlink loops. An input reached twice
    (named twice, ``d`` and ``./d``, a folder inside another one named, two links to one
    file) is listed once, under its first name.
    """
    out = InputListing()
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()

    def add_file(f: str, mode: int | None, named: bool) -> None:
        key = os.path.realpath(f)
        if key in seen_files:
            return
        why = None if mode is None else not_regular_reason(mode)
        if why:
            out.errors.append(ScanResult(path=f, error=why))
        elif named or Path(f).suffix.lower() in MEDIA_EXTENSIONS or _looks_like_media(f):
            out.files.append(f)
        else:
            out.skipped_non_media.append(f)  # still scanned if also named explicitly
            return
        seen_files.add(key)

    for p in paths:
        p = os.fsdecode(os.fspath(p))
        try:
            mode = os.stat(p).st_mode
        except FileNotFoundError:
            if os.path.lexists(p):  # a dangling link: the scan says "file not found"
                add_file(p, None, named=True)
            else:
                out.errors.append(ScanResult(path=p, error="no such file or folder"))
            continue
        except OSError as exc:
            out.errors.append(_listing_error(p, exc, "cannot be read"))
            continue
        if stat.S_ISDIR(mode):
            _walk(p, out, seen_dirs, add_file)
        else:
            add_file(p, mode, named=True)
    return out


def _walk(
    top: str,
    out: InputListing,
    seen_dirs: set[str],
    add_file: Callable[[str, int | None, bool], None],
) -> None:
    """Depth-first, sorted walk of ``top`` with ``os.scandir``, so the type of each entry is
    known without opening it and a folder that cannot be listed becomes an error record."""
    # (folder, real paths of the folders above it and itself): a link back into that chain
    # is a loop; a folder reached again by another way was already listed.
    stack: list[tuple[str, tuple[str, ...]]] = [(top, (os.path.realpath(top),))]
    while stack:
        folder, chain = stack.pop()
        if chain[-1] in seen_dirs:
            continue
        seen_dirs.add(chain[-1])
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.errors.append(_listing_error(folder, exc, "folder cannot be listed"))
            continue
        subdirs: list[tuple[str, tuple[str, ...]]] = []
        for e in entries:
            try:
                mode: int | None = e.stat().st_mode  # follows links
            except FileNotFoundError:
                mode = None  # a dangling link or a file gone since: the scan reports it
            except OSError as exc:
                out.errors.append(_listing_error(e.path, exc, "cannot be read"))
                continue
            if mode is not None and stat.S_ISDIR(mode):
                real = os.path.realpath(e.path)
                if real in chain:
                    out.errors.append(
                        ScanResult(path=e.path, error="folder already scanned (symlink loop)")
                    )
                elif real not in seen_dirs:
                    subdirs.append((e.path, (*chain, real)))
            else:
                add_file(e.path, mode, False)
        stack.extend(reversed(subdirs))


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
def read_resume(jsonl: str | Path) -> tuple[set[str], list[dict[str, Any]]]:
    """Inputs already recorded in a JSONL file (as :func:`path_key` keys) and their records,
    the first one per input, for ``--resume``; torn or foreign lines are ignored."""
    done: set[str] = set()
    records: list[dict[str, Any]] = []
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
        self.fh.write(json.dumps(to_record(r, self.frame_scores)) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def write_csv(path: str | Path, records: list[dict]) -> None:
    """Write records as CSV atomically (temporary file, then rename; no temporary file is
    left behind when writing fails)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(ScanResult.FIELDS), extrasaction="ignore")
            w.writeheader()
            for rec in records:
                w.writerow({k: ("" if v is None else v) for k, v in rec.items()})
        tmp.replace(p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
