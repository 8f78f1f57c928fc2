"""The one scanning path: expand inputs, scan each with a detector, write the records.

- :func:`iter_inputs` lists files and folders (the rules every entry point shares);
- :func:`scan_paths` scans files in this process (the local engine, the API, the service);
- :func:`run_scan` is the one driver of ``noisetrace scan``: it takes any engine
  (:mod:`noisetrace.engines`), applies ``--resume``, writes every result to every output
  (:mod:`noisetrace.outputs`), shows progress, and returns the exit status.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noisetrace.detector import Detector, ScanResult
from noisetrace.errors import InputError
from noisetrace.media.formats import MEDIA_EXTENSIONS, not_regular_reason, read_head, sniff_bytes
from noisetrace.outputs import OutputOptions, close_all, open_sinks
from noisetrace.outputs.csvfile import write_csv
from noisetrace.outputs.jsonl import JsonlSink, read_done, read_resume, repair_jsonl
from noisetrace.outputs.records import (
    escape_path,
    for_table,
    for_terminal,
    is_uri,
    path_key,
    to_record,
    unescape_path,
)

if TYPE_CHECKING:
    from rich.console import Console

    from noisetrace.engines import Engine

JsonlWriter = JsonlSink  # the name earlier callers (benchmarks) import

__all__ = [
    "InputListing", "JsonlWriter", "escape_path", "for_table", "for_terminal", "is_uri",
    "iter_inputs", "path_key", "read_done", "read_resume", "repair_jsonl", "run_scan",
    "scan_paths", "to_record", "unescape_path", "write_csv",
]  # fmt: skip


@dataclass
class InputListing:
    """Files to scan, errors met while listing (as records) and what was passed over."""

    files: list[str] = field(default_factory=list)
    errors: list[ScanResult] = field(default_factory=list)
    skipped_non_media: list[str] = field(default_factory=list)


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
) -> Iterator[ScanResult]:
    """Scan ``files`` in order, yielding one :class:`ScanResult` each.

    With ``workers > 1`` files are decoded and scored in a small thread pool (PIL, PyAV and
    torch release the GIL), results still come back in input order.
    """
    files = list(files)

    def one(f: str) -> ScanResult:
        return detector.scan(f, video_frames=video_frames)

    if workers <= 1:
        yield from map(one, files)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(one, files)


# -- the driver ------------------------------------------------------------------------------
def run_scan(
    engine: Engine,
    paths: Iterable[str | Path],
    outputs: OutputOptions,
    *,
    resume: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    after: Callable[[ScanResult], None] | None = None,
    err: Console | None = None,
) -> int:
    """One scan, whatever the engine: list ``paths``, scan the files, write every result to
    every output as soon as it exists, and return the exit status: 0, 1 with ``strict`` when
    any record is an error, 130 when interrupted (every output then holds every file finished
    so far and is valid).

    ``resume`` is the JSONL file of a scan to continue: inputs it records (matched by real
    path) are not scanned again, and its records go to the outputs that are written whole
    (CSV, JSON, Parquet, the table), so after a resume every output holds the whole scan.
    Errors met while listing are records like any other: those known before the scan first,
    those a lazy listing meets later (object storage) at the end. ``after`` is called with each
    scanned result (``--explain``).
    """
    from rich.console import Console
    from rich.markup import escape

    err = err or Console(stderr=True)
    try:
        listing, files = engine.list_inputs([os.fsdecode(os.fspath(p)) for p in paths])
    except KeyboardInterrupt:
        err.print("[yellow]interrupted while listing the inputs: nothing was scanned[/yellow]")
        return 130
    done: set[str] = set()
    if resume is not None:
        # Drop a last line cut short by a crash before reading what is done: appending drops
        # it anyway, so counting it as done (a complete record that lost only its newline
        # parses) would lose that file.
        repair_jsonl(resume)
        done, outputs.earlier = read_resume(resume)
        outputs.resume = True
        if isinstance(files, list):
            files = [f for f in files if path_key(f) not in done]
        else:  # a lazy listing stays lazy
            files = (f for f in files if path_key(f) not in done)
    listed = len(listing.errors)
    errors = [r for r in listing.errors if path_key(r.path) not in done]
    total = len(files) + len(errors) if isinstance(files, list) else None
    if resume is not None:
        to_go = "" if total is None else f", {total} to go"
        err.print(f"resuming: {len(outputs.earlier)} already in {escape(str(resume))}{to_go}",
                  highlight=False)  # fmt: skip

    tally = {"all": len(outputs.earlier), "fake": 0, "error": 0}
    for rec in outputs.earlier:
        if rec.get("verdict") in tally:
            tally[rec["verdict"]] += 1
    sinks = open_sinks(outputs)
    bar = _progress(err, engine.name, total, enabled=progress)

    def emit(r: ScanResult) -> None:
        for s in sinks:  # every output, as soon as the result exists (valid output on Ctrl-C)
            s.write(r)
        tally["all"] += 1
        if r.verdict in tally:
            tally[r.verdict] += 1
        bar.advance(task)

    t0 = time.perf_counter()
    interrupted = complete = False
    try:
        with bar:
            task = bar.add_task("scan", total=total)
            for r in errors:
                emit(r)
            for r in engine.results(files):
                emit(r)
                if after is not None:
                    after(r)
            for r in listing.errors[listed:]:  # met while a lazy listing was consumed
                if path_key(r.path) not in done:
                    emit(r)
        complete = True
    except KeyboardInterrupt:
        interrupted = True
        how = ("run the same command with --resume to continue" if outputs.values.get("jsonl")
               else "to be able to continue with --resume, write --jsonl FILE")  # fmt: skip
        err.print(f"[yellow]interrupted: the output holds every file finished so far; {how}"
                  "[/yellow]")  # fmt: skip
    finally:
        close_all(sinks, complete)
    elapsed = time.perf_counter() - t0

    if listing.skipped_non_media:
        err.print(
            f"[yellow]passed over {len(listing.skipped_non_media)} file(s) in folders that are "
            "not images or videos[/yellow] (name a file explicitly to scan it anyway)"
        )
    n, n_fake, n_err = tally["all"], tally["fake"], tally["error"]
    earlier = f" ({len(outputs.earlier)} from the earlier run)" if outputs.earlier else ""
    err.print(f"{n} scanned{earlier} in {elapsed:.1f}s: {n_fake} fake, {n - n_fake - n_err} "
              f"real, {n_err} error(s)", highlight=False)  # fmt: skip
    if interrupted:
        return 130
    return 1 if (strict and n_err) else 0


def _progress(err: Console, engine: str, total: int | None, enabled: bool) -> Any:
    """A transient progress bar on ``err``, only on a terminal and for more than one input
    (its length is unknown while a lazy listing is being consumed)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    label = "scanning" if engine == "local" else f"scanning ({engine})"
    columns: list[Any] = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    show = enabled and err.is_terminal and (total is None or total >= 2)
    return Progress(*columns, console=err, transient=True, disable=not show)
