"""The terminal table: the default view of ``noisetrace scan`` (no option; left out with
``--quiet`` or when ``--json`` takes standard output). It shows at most :data:`TABLE_LIMIT`
records (the files hold all), paths shortened from the left to fit the terminal, and every
name and message with control characters made visible (:func:`for_terminal`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from noisetrace.outputs.base import OutputFormat, OutputOptions, RecordSink
from noisetrace.outputs.records import Record, for_table, for_terminal

TABLE_LIMIT = 10_000  # records shown in the terminal table; files hold them all
COLUMNS = ("file", "kind", "score", "verdict", "frames", "seconds", "error")
# Width of everything but the file and error columns: kind, score, verdict, frames and seconds
# at their widest (5 + 5 + 7 + 6 + 7), one space of padding each side of 7 columns, 8 rules.
_FIXED = 30 + 7 * 2 + 8
_MIN_PATH = 16
_COLOUR = {"fake": "red", "real": "green", "error": "yellow"}


class TableSink(RecordSink):
    """Keeps the first ``limit`` records and prints them as a table on close (interrupted or
    not), then says what the table leaves out."""

    def __init__(
        self,
        model: str,
        threshold: float,
        *,
        earlier: Iterable[Record] = (),
        frame_scores: bool = False,
        limit: int | None = None,
    ) -> None:
        self.model, self.threshold = model, threshold
        self.limit = TABLE_LIMIT if limit is None else limit
        self.asked_frame_scores = frame_scores  # not shown: the note on close says so
        self.rows: list[Record] = []
        self.total = 0
        for rec in earlier:
            self.write_record(rec)

    def write_record(self, record: Record) -> None:
        self.total += 1
        if len(self.rows) < self.limit:
            self.rows.append(record)

    def close(self, complete: bool = True) -> None:
        from rich.console import Console

        print_table(self.rows, self.model, self.threshold)
        err = Console(stderr=True, highlight=False)
        if self.total > len(self.rows):
            err.print(f"(the table shows the first {len(self.rows)} of {self.total} records; "
                      "--jsonl, --csv or --parquet write them all)")  # fmt: skip
        if self.asked_frame_scores:
            err.print("(--frame-scores: per-frame scores are not shown in the table; "
                      "--jsonl, --json and --parquet write them)")  # fmt: skip


def shorten_left(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells from the left (``…der/name.jpg``): the end of
    a path, the file's own name, is what tells files apart."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    cut = 0
    while cut < len(text) and cell_len(text[cut:]) > width - 1:
        cut += 1
    return "…" + text[cut:]


def path_width(terminal: int, records: Iterable[Record]) -> int:
    """Cells for the file column in a ``terminal`` wide table: what the other columns leave,
    keeping some room for error messages when there are any."""
    longest_error = max((len(r.get("error") or "") for r in records), default=0)
    error = min(max(len("error"), longest_error), max(10, (terminal - _FIXED) // 3))
    return max(_MIN_PATH, terminal - _FIXED - error)


def print_table(records: list[Record], model: str, threshold: float, console: Any = None) -> None:
    """Print ``records`` as a rich table on ``console`` (default: standard output)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    rows = for_table(records)  # names cannot drive the terminal
    width = path_width(console.width, rows)
    # Whole image + faces (--model default+faces): the face model's score · faces judged.
    faces_col = any(r.get("face_threshold") is not None for r in rows)
    if faces_col:
        width = max(_MIN_PATH - 4, width - 12)
    # Face models on video: the jitter index and (in brackets) the share of the model's real
    # calibration videos above it; red when unusual for a real video.
    jitter_col = any(isinstance(r.get("temporal"), dict) for r in rows)
    if jitter_col:
        width = max(_MIN_PATH - 4, width - 15)
    table = Table(title=f"noisetrace · model {model} · threshold {threshold:.2f}")
    table.add_column("file", no_wrap=True)
    for col in COLUMNS[1:]:
        if col == "verdict" and faces_col:
            table.add_column("faces", no_wrap=True)
        table.add_column(col, overflow="fold")
        if col == "verdict" and jitter_col:
            table.add_column("jitter", no_wrap=True)
    for r in rows:
        score, frames, seconds = r.get("score"), r.get("frames"), r.get("seconds")
        verdict = str(r.get("verdict") or "")
        cells = [Text(shorten_left(r["path"], width)), r.get("kind") or "",
                 "" if score is None else f"{score:.3f}"]  # fmt: skip
        if faces_col:
            fs, n = r.get("face_score"), r.get("faces") or 0
            judged = r.get("face_threshold") is not None  # errors have no face judgement
            cells.append(f"{fs:.3f}·{n}" if fs is not None else "none" if judged else "")
        late = [_jitter_cell(r.get("temporal"))] if jitter_col else []
        table.add_row(
            *cells, Text(verdict, style=_COLOUR.get(verdict, "")), *late,
            "" if frames is None else str(frames),
            "" if seconds is None else f"{seconds:.2f}", Text(r.get("error") or ""),
        )  # fmt: skip
    console.print(table)


def _jitter_cell(t: Any) -> Any:
    """``+0.120 (2%)``, red when unusual for a real video; why not, when it could not be read."""
    from rich.text import Text

    if not isinstance(t, dict):
        return ""
    if "jitter_index" not in t:
        return Text(for_terminal(str(t.get("error", "none")))[:11])
    above = t.get("real_above")
    text = f"{t['jitter_index']:+.3f}" + ("" if above is None else f" ({above:.0%})")
    return Text(text, style="red" if t.get("unusual") else "")


def _open(value: Any, o: OutputOptions) -> TableSink:
    return TableSink(o.model, o.threshold, earlier=o.earlier, frame_scores=o.frame_scores)


FORMAT = OutputFormat(name="table", open=_open, help="the table on the terminal")
