"""What every output format shares: the :class:`Sink` interface, the options sinks are opened
with, and :class:`OutputFormat`, the one declaration a format module makes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from noisetrace.outputs.records import Record, to_record

if TYPE_CHECKING:
    from noisetrace.detector import ScanResult


class Sink(Protocol):
    """Where scan results go. The driver calls :meth:`write` once per result, as soon as it
    exists (so an interrupted scan leaves every finished file in every output), and
    :meth:`close` exactly once at the end. ``complete`` is False when the scan was interrupted
    or failed; the output must still be valid, holding everything written so far."""

    def write(self, result: ScanResult) -> None: ...

    def close(self, complete: bool = True) -> None: ...


class RecordSink:
    """Base of the bundled sinks: turns each result into its record once (:func:`to_record`,
    escaped text, frame scores when asked for) and hands it to :meth:`write_record`, which
    also takes records of an earlier run (``--resume``)."""

    frame_scores: bool = False

    def write(self, result: ScanResult) -> None:
        self.write_record(to_record(result, self.frame_scores))

    def write_record(self, record: Record) -> None:
        raise NotImplementedError

    def close(self, complete: bool = True) -> None:
        pass


@dataclass
class OutputOptions:
    """Everything an output may need, none of it argparse: option values by format name, and
    what the scan knows about itself."""

    values: dict[str, Any] = field(default_factory=dict)  # {"jsonl": Path, "json": True, ...}
    frame_scores: bool = False  # records carry per-frame scores (``--frame-scores``)
    resume: bool = False  # continuing the scan in ``values["jsonl"]``
    earlier: list[Record] = field(default_factory=list)  # that scan's records (``--resume``)
    quiet: bool = False  # no table
    model: str = ""  # shown in the table's title
    threshold: float = 0.5


@dataclass(frozen=True)
class OutputFormat:
    """One output format, declared by its module as ``FORMAT = OutputFormat(...)``.

    ``open(value, options)`` returns the sink; ``value`` is what its option was given (a path
    for ``--csv FILE``, True for a switch like ``--json``). A format with ``flag`` None is the
    default terminal view: opened unless ``--quiet`` or another ``stdout`` format was chosen.
    """

    name: str  # also the option's dest: ``--csv`` -> "csv"
    open: Callable[[Any, OutputOptions], Sink]
    flag: str | None = None  # "--csv"
    help: str = ""
    metavar: str | None = "FILE"  # None: a switch without a value
    stdout: bool = False  # writes to standard output (then the table is not printed)
    needs: dict[str, str] = field(default_factory=dict)  # module -> requirement to install
