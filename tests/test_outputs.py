"""The scan driver and its outputs (issue 19 item 2): one driver for every engine, output
formats as pluggable sinks (one module each, one registration line), engines that take plain
options; and the table's manners (issue 20 item 9): paths shortened from the left, a word about
--frame-scores, an interrupt message that names --resume."""

from __future__ import annotations

import ast
import csv
import json
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from PIL import Image

import noisetrace
from noisetrace import outputs
from noisetrace.cli import build_parser, main
from noisetrace.detector import ScanResult
from noisetrace.engines import EngineOptions, open_engine
from noisetrace.io import atomic_path, atomic_write
from noisetrace.outputs import OutputOptions
from noisetrace.outputs.table import shorten_left
from noisetrace.scan import InputListing, run_scan, scan_paths

PKG = Path(noisetrace.__file__).parent


def _result(path: str, verdict: str = "real", score: float | None = 0.25) -> ScanResult:
    return ScanResult(path=path, kind="image", score=score, verdict=verdict, model="m",
                      seconds=0.01, frame_scores=[0.1, 0.2])  # fmt: skip


class FakeEngine:
    """An engine with a lazy listing like Ray's: one error known up front, one met while the
    files are consumed, one file passed over; optionally interrupted after ``stop`` results."""

    name = "fake"

    def __init__(self, n: int = 5, stop: int | None = None) -> None:
        self.n, self.stop = n, stop

    def list_inputs(self, paths: Iterable[str]) -> tuple[InputListing, Iterator[str]]:
        listing = InputListing(errors=[ScanResult(path="/gone.jpg", error="no such file")],
                               skipped_non_media=["/x/notes.txt"])  # fmt: skip

        def stream() -> Iterator[str]:
            yield from (f"/data/{i}.jpg" for i in range(self.n))
            listing.errors.append(ScanResult(path="s3://b/p", error="cannot list this folder"))

        return listing, stream()

    def results(self, files: Iterable[str]) -> Iterator[ScanResult]:
        for i, f in enumerate(files):
            if self.stop is not None and i == self.stop:
                raise KeyboardInterrupt
            yield _result(f, "fake" if i % 2 else "real")


def _opts(tmp_path: Path, **values) -> OutputOptions:
    return OutputOptions(values=values, model="m", threshold=0.5)


# -- the registry --------------------------------------------------------------------------------
def test_each_format_is_one_module_with_its_option():
    names = {f.name: f for f in outputs.formats()}
    assert set(names) == {"jsonl", "csv", "json", "parquet", "table"}
    for module in outputs.FORMATS:
        assert (PKG / "outputs" / f"{module}.py").is_file()
    args = build_parser(["scan"]).parse_args(
        ["scan", "d", "--jsonl", "a.jsonl", "--csv", "a.csv", "--json", "--parquet", "a.pq"]
    )
    assert outputs.option_values(args) == {
        "jsonl": Path("a.jsonl"), "csv": Path("a.csv"), "json": True, "parquet": Path("a.pq"),
    }  # fmt: skip
    assert outputs.needs({"parquet": Path("x")}) == {"pyarrow": "noisetrace[ray]"}
    # the table is the default view: not with --quiet, not when --json takes stdout
    assert [f.name for f in outputs.chosen({}, quiet=False)] == ["table"]
    assert [f.name for f in outputs.chosen({"json": True})] == ["json"]
    assert outputs.chosen({}, quiet=True) == []


def test_a_new_format_is_one_file_plus_one_registration_line(
    tmp_path, monkeypatch, media_dir, tiny_model_dir, capsys
):
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "__init__.py").write_text("")
    (plug / "tsv.py").write_text(
        textwrap.dedent("""
        from noisetrace.io import atomic_write
        from noisetrace.outputs import OutputFormat, RecordSink


        class TsvSink(RecordSink):
            def __init__(self, path, earlier=()):
                self.path, self.lines = path, [r["path"] for r in earlier]

            def write_record(self, record):
                self.lines.append(f"{record['path']}\\t{record['verdict']}")

            def close(self, complete=True):
                atomic_write(self.path, "".join(line + "\\n" for line in self.lines))


        FORMAT = OutputFormat(name="tsv", flag="--tsv", help="path and verdict per line",
                              open=lambda value, o: TsvSink(value, o.earlier))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(outputs, "FORMATS", (*outputs.FORMATS, "plug.tsv"))
    out = tmp_path / "out.tsv"
    rc = main(["scan", str(media_dir / "a.jpg"), str(media_dir / "empty.jpg"), "--model",
               str(tiny_model_dir), "--tsv", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert [Path(p).name for p, _ in rows] == ["a.jpg", "empty.jpg"]
    assert rows[1][1] == "error"


# -- the driver ----------------------------------------------------------------------------------
def test_driver_writes_every_result_to_every_sink_with_a_lazy_listing(tmp_path, capsys):
    jl, cv = tmp_path / "o.jsonl", tmp_path / "o.csv"
    o = _opts(tmp_path, jsonl=jl, csv=cv, json=True)
    o.frame_scores = True
    rc = run_scan(FakeEngine(), ["/data"], o, strict=True)
    out = capsys.readouterr()
    listed = json.loads(out.out)
    paths = [r["path"] for r in listed]
    # known listing errors first, then results, then errors met while listing lazily
    assert paths == ["/gone.jpg", *(f"/data/{i}.jpg" for i in range(5)), "s3://b/p"]
    assert [json.loads(line)["path"] for line in jl.read_text().splitlines()] == paths
    with open(cv, newline="") as fh:
        assert [r["path"] for r in csv.DictReader(fh)] == paths
    assert listed[1]["frame_scores"] == [0.1, 0.2]
    assert rc == 1  # --strict with error records
    assert out.err.count("passed over 1 file") == 1
    assert "7 scanned" in out.err and "2 fake, 3 real, 2 error(s)" in out.err


def test_table_cap_is_the_same_for_every_engine(tmp_path, capsys, monkeypatch):
    from noisetrace.outputs import table

    monkeypatch.setattr(table, "TABLE_LIMIT", 3)
    monkeypatch.setenv("COLUMNS", "200")
    assert run_scan(FakeEngine(), ["/data"], _opts(tmp_path)) == 0
    out = capsys.readouterr()
    assert "the table shows the first 3 of 7 records" in out.err
    assert "/data/1.jpg" in out.out and "/data/2.jpg" not in out.out


def test_interrupt_leaves_every_output_valid_and_names_resume(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    files = {k: tmp_path / f"o.{k}" for k in ("jsonl", "csv", "parquet")}
    o = _opts(tmp_path, **files, json=True)
    assert run_scan(FakeEngine(stop=2), ["/data"], o) == 130
    out = capsys.readouterr()
    assert "interrupted" in out.err and "--resume" in out.err
    want = ["/gone.jpg", "/data/0.jpg", "/data/1.jpg"]
    assert [r["path"] for r in json.loads(out.out)] == want
    assert [json.loads(x)["path"] for x in files["jsonl"].read_text().splitlines()] == want
    with open(files["csv"], newline="") as fh:
        assert [r["path"] for r in csv.DictReader(fh)] == want
    assert pq.read_table(files["parquet"]).column("path").to_pylist() == want
    assert not list(tmp_path.glob(".*.tmp"))
    # resumed: the lazy stream is filtered by real path, every output holds the whole scan
    assert run_scan(FakeEngine(), ["/data"], _opts(tmp_path, **files, json=True),
                    resume=files["jsonl"]) == 0  # fmt: skip
    out = capsys.readouterr()
    whole = ["/gone.jpg", *(f"/data/{i}.jpg" for i in range(5)), "s3://b/p"]
    assert sorted(r["path"] for r in json.loads(out.out)) == sorted(whole)
    assert pq.read_table(files["parquet"]).num_rows == len(whole)
    assert "resuming: 3 already in" in out.err and "(3 from the earlier run)" in out.err


def test_interrupt_without_jsonl_says_how_to_make_a_scan_resumable(tmp_path, capsys):
    assert run_scan(FakeEngine(stop=1), ["/data"], _opts(tmp_path, json=True)) == 130
    assert "write --jsonl FILE" in capsys.readouterr().err


def test_local_engine_takes_plain_options(media_dir, tiny_detector):
    engine = open_engine("local", tiny_detector, EngineOptions(workers=1, video_frames=4))
    listing, files = engine.list_inputs([str(media_dir)])
    got = [(r.path, r.score, r.frames) for r in engine.results(files)]
    want = [(r.path, r.score, r.frames) for r in scan_paths(tiny_detector, files, video_frames=4)]
    assert got == want and any(f == 4 for _, _, f in got)


def test_engines_and_outputs_never_import_the_cli():
    """Engines produce results; the Ray engine no longer borrows the CLI's table printer."""
    for f in [*(PKG / "engines").glob("*.py"), *(PKG / "outputs").glob("*.py"),
              PKG / "scan.py"]:  # fmt: skip
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "noisetrace.cli", f
            elif isinstance(node, ast.Import):
                assert all(a.name != "noisetrace.cli" for a in node.names), f


# -- the table -----------------------------------------------------------------------------------
def test_long_paths_are_shortened_from_the_left_in_80_columns(
    tmp_path, photo, tiny_model_dir, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "80")
    deep = tmp_path / "an" / "archive" / "with" / "rather" / "deeply" / "nested" / "folders"
    deep.mkdir(parents=True)
    for name in ("holiday_photo_0001.png", "holiday_photo_0002.png"):
        Image.fromarray(photo[:48, :48]).save(deep / name)
    assert main(["scan", str(deep), "--model", str(tiny_model_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if "holiday_photo" in line]
    assert len(rows) == 2  # one line each: the names are not folded over several lines
    assert all(len(line) <= 80 for line in lines)
    assert all("…" in r for r in rows)
    assert "holiday_photo_0001.png" in rows[0] and "holiday_photo_0002.png" in rows[1]


def test_shorten_left_keeps_the_end_and_counts_cells():
    assert shorten_left("short.jpg", 20) == "short.jpg"
    assert shorten_left("/a/very/long/folder/name.jpg", 12) == "…er/name.jpg"
    wide = shorten_left("/写真/写真/写真.jpg", 10)
    from rich.cells import cell_len

    assert wide.endswith("真.jpg") and cell_len(wide) <= 10


def test_frame_scores_in_table_mode_are_not_silently_dropped(media_dir, tiny_model_dir, capsys):
    assert main(["scan", str(media_dir / "clip.mp4"), "--model", str(tiny_model_dir),
                 "--frame-scores", "--frames", "4"]) == 0  # fmt: skip
    assert "per-frame scores are not shown in the table" in capsys.readouterr().err


# -- small debts ---------------------------------------------------------------------------------
def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    p = tmp_path / "out.txt"
    atomic_write(p, "first")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert p.read_text() == "first" and list(tmp_path.iterdir()) == [p]
    atomic_write(p, b"second")
    assert p.read_text() == "second"
