"""Atomic file writing: a file appears under its final name complete, or not at all.

Every output that is written whole (CSV, Parquet, a repaired JSONL) goes through
:func:`atomic_path`: it is written under a temporary name beside the target and renamed over
it when done; when writing fails the temporary file is removed, never left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """noisetrace's cache folder ($NOISETRACE_CACHE, else $XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("NOISETRACE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "noisetrace"


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's content, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def temporary_name(path: str | Path) -> Path:
    """The hidden name ``path`` is written under before the rename (``dir/.name.tmp``)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield :func:`temporary_name` of ``path``; when the block ends it is renamed to ``path``,
    when the block raises (Ctrl-C included) it is removed and the error goes on."""
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
