"""A scan record as every output writes it: one :class:`ScanResult` as a dict of plain values
whose text any format can hold (UTF-8, reversible names), and the identity of its input.

Light on purpose (no detector, no torch): ``noisetrace scan --help`` imports this package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from noisetrace.detector import ScanResult

Record = dict[str, Any]

# "s3://bucket/key", "gs://...", "file:///tmp/x": anything with a URL scheme of 2+ letters
# (a single letter is a Windows drive, "C:\\...").
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(path: str | Path) -> bool:
    """True for object-storage style inputs (``s3://``, ``gs://``, ``file://`` ...)."""
    return isinstance(path, str) and bool(_URI.match(path))


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


def to_record(r: ScanResult, frame_scores: bool = False) -> Record:
    """``r.to_record()`` with text every output format can hold: the path escaped by
    :func:`escape_path`. Every output (JSONL, CSV, JSON, Parquet, table) takes records from
    here."""
    rec = r.to_record(frame_scores)
    rec["path"] = escape_path(rec["path"])
    if rec.get("error"):
        rec["error"] = _text(rec["error"])
    return rec


def result_from_record(rec: Record) -> ScanResult:
    """Inverse of :meth:`ScanResult.to_record` (unknown keys are ignored)."""
    from noisetrace.detector import ScanResult

    keys = (*ScanResult.FIELDS, "frame_scores")
    return ScanResult(**{k: rec[k] for k in keys if k in rec})


def record_fields() -> tuple[str, ...]:
    """The flat fields of a record, in order: ``ScanResult.FIELDS`` less the nested objects
    (``provenance``), which table-like outputs (CSV, Parquet) do not take as a plain column."""
    from noisetrace.detector import ScanResult

    return tuple(k for k in ScanResult.FIELDS if k not in ScanResult.NESTED)


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


def for_table(records: Iterable[Record]) -> list[Record]:
    """Copies of records whose path and error are safe to print (see :func:`for_terminal`)."""
    out = []
    for r in records:
        r = dict(r)
        r["path"] = for_terminal(r["path"])
        if r.get("error"):
            r["error"] = for_terminal(r["error"])
        out.append(r)
    return out
