"""Where ``noisetrace scan`` writes its records: one module per output format.

Each module in :data:`FORMATS` declares ``FORMAT = OutputFormat(...)``: its command-line
option, help text, optional requirements and how to open its :class:`Sink`. The scan driver
(:func:`noisetrace.scan.run_scan`) writes every result to every open sink. Adding a format is
one new module here plus its name in :data:`FORMATS` (see docs/outputs.md).

Light on purpose: ``noisetrace scan --help`` builds its options from this registry, so format
modules import heavy libraries (pyarrow, rich.table) only when a sink is opened.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable
from typing import Any

from noisetrace.outputs.base import OutputFormat, OutputOptions, RecordSink, Sink
from noisetrace.outputs.records import Record

__all__ = [
    "FORMATS", "OutputFormat", "OutputOptions", "Record", "RecordSink", "Sink", "add_arguments",
    "chosen", "close_all", "formats", "needs", "open_sinks", "option_values",
]  # fmt: skip

# One module per format, in the order sinks are opened and closed (files first, then what is
# printed on the terminal): a module of this package by its name, any other by its full name.
FORMATS: tuple[str, ...] = ("jsonl", "csvfile", "jsonlist", "parquet", "table")


def formats() -> list[OutputFormat]:
    """The registered formats, in :data:`FORMATS` order."""
    return [
        importlib.import_module(m if "." in m else f"noisetrace.outputs.{m}").FORMAT
        for m in FORMATS
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per format that has a flag (``--jsonl FILE``, ``--json`` ...)."""
    from pathlib import Path

    for f in formats():
        if f.flag is None:
            continue
        if f.metavar is None:
            parser.add_argument(f.flag, dest=f.name, action="store_true", help=f.help)
        else:
            parser.add_argument(f.flag, dest=f.name, type=Path, metavar=f.metavar, help=f.help)


def option_values(namespace: Any) -> dict[str, Any]:
    """Each format's option value from parsed arguments (None or False when not given)."""
    return {f.name: getattr(namespace, f.name, None) for f in formats() if f.flag}


def chosen(values: dict[str, Any], quiet: bool = False) -> list[OutputFormat]:
    """The formats these option values ask for, the default terminal view included."""
    fmts = formats()
    picked = [f for f in fmts if f.flag and values.get(f.name)]
    on_stdout = any(f.stdout for f in picked)
    return [f for f in fmts if f in picked or (f.flag is None and not quiet and not on_stdout)]


def needs(values: dict[str, Any]) -> dict[str, str]:
    """module -> requirement for the chosen formats (checked before any work)."""
    out: dict[str, str] = {}
    for f in chosen(values, quiet=True):
        out.update(f.needs)
    return out


def open_sinks(options: OutputOptions) -> list[Sink]:
    """Open a sink for every chosen format. If one cannot be opened, those already open are
    closed and the error goes on."""
    sinks: list[Sink] = []
    try:
        for f in chosen(options.values, options.quiet):
            sinks.append(f.open(options.values.get(f.name), options))
    except BaseException:
        _close_quietly(sinks)
        raise
    return sinks


def close_all(sinks: Iterable[Sink], complete: bool = True) -> None:
    """Close every sink, even when one fails (its error is raised once all are closed)."""
    first: BaseException | None = None
    for s in sinks:
        try:
            s.close(complete)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            first = first or exc
    if first is not None:
        raise first


def _close_quietly(sinks: Iterable[Sink]) -> None:
    for s in sinks:
        try:
            s.close(False)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
