"""Hostile inputs, round two (issue 18): files that block, folders that cannot be listed,
names that are not UTF-8 or drive the terminal, resume with inputs spelled differently,
forged video headers and odd formats. Every input is generated here."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import deadline, forged_avi, gif_screen, jpeg_declaring, unix_socket
from PIL import Image

from noisetrace.cli import main
from noisetrace.errors import InputError
from noisetrace.media.formats import sniff, sniff_bytes
from noisetrace.media.image import decode_image
from noisetrace.media.video import SampleReport, count_frames, read_frames, write_video
from noisetrace.scan import escape_path, for_terminal, iter_inputs, unescape_path, write_csv


def _png(path: Path, photo: np.ndarray, size: int = 48) -> None:
    Image.fromarray(photo[:size, :size]).save(path)


def _scan_json(args: list[str], model: Path, capsys) -> tuple[int, list[dict], str]:
    rc = main(["scan", *args, "--model", str(model), "--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def _by_name(recs: list[dict]) -> dict[str, dict]:
    return {os.path.basename(r["path"]): r for r in recs}


# -- item 2: FIFOs, sockets, devices ---------------------------------------------------------
@pytest.fixture()
def special_dir(tmp_path, photo):
    d = tmp_path / "d"
    d.mkdir()
    _png(d / "good.png", photo)
    os.mkfifo(d / "pipe.jpg")  # a media name: listed by name, must not be opened
    os.mkfifo(d / "pipe")  # no extension: content sniffing must not open it either
    (d / "null.jpg").symlink_to("/dev/null")  # a character device behind a link
    unix_socket(d / "sock.png")
    return d


def test_fifos_sockets_and_devices_in_folders_are_error_records(special_dir, tiny_model_dir,
                                                                capsys):  # fmt: skip
    with deadline(120):
        rc, recs, _ = _scan_json([str(special_dir), "--workers", "2"], tiny_model_dir, capsys)
    assert rc == 0
    by = _by_name(recs)
    assert set(by) == {"good.png", "pipe.jpg", "pipe", "null.jpg", "sock.png"}
    assert by["good.png"]["error"] is None
    for name, what in (("pipe.jpg", "FIFO"), ("pipe", "FIFO"), ("null.jpg", "character device"),
                       ("sock.png", "socket")):  # fmt: skip
        r = by[name]
        assert r["verdict"] == "error" and "not a regular file" in r["error"], r
        assert what in r["error"]


def test_fifo_named_directly_is_an_error_record(special_dir, tiny_model_dir, tiny_detector,
                                                capsys):  # fmt: skip
    fifo = special_dir / "pipe.jpg"
    with deadline(120):
        rc, recs, _ = _scan_json([str(fifo), "/dev/zero"], tiny_model_dir, capsys)
        direct = tiny_detector.scan(fifo)  # the API path: Detector.scan sniffs without blocking
        with pytest.raises(InputError, match="not a regular file"):
            sniff(fifo)
    assert rc == 0 and [r["verdict"] for r in recs] == ["error", "error"]
    assert "not a regular file" in recs[0]["error"] and "device" in recs[1]["error"]
    assert direct.verdict == "error" and "FIFO" in direct.error


def test_ctrl_c_while_listing_exits_130_without_traceback(tmp_path, tiny_model_dir, capsys,
                                                          monkeypatch):  # fmt: skip
    import noisetrace.scan

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(noisetrace.scan, "_walk", interrupted)
    rc = main(["scan", str(tmp_path), "--model", str(tiny_model_dir), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 130 and "interrupted" in err and "Traceback" not in err


# -- item 3: folders that cannot be listed ---------------------------------------------------
def test_unlistable_folder_is_an_error_record_and_fails_strict(tmp_path, photo, tiny_model_dir,
                                                               capsys, monkeypatch):  # fmt: skip
    d = tmp_path / "d"
    (d / "locked").mkdir(parents=True)
    _png(d / "good.png", photo)
    _png(d / "locked" / "hidden.png", photo)
    locked = str(d / "locked")
    real_scandir = os.scandir

    def scandir(path="."):  # root lists any folder, so refuse the way a user would be refused
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rc = main(["scan", str(d), "--model", str(tiny_model_dir), "--json", "--strict"])
    recs = json.loads(capsys.readouterr().out)
    assert rc == 1
    by = _by_name(recs)
    assert set(by) == {"good.png", "locked"}
    assert "folder cannot be listed" in by["locked"]["error"]
    assert "Permission denied" in by["locked"]["error"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder whatever its permissions")
def test_unreadable_folder_really_chmodded(tmp_path, photo):
    d = tmp_path / "d"
    (d / "locked").mkdir(parents=True)
    _png(d / "locked" / "x.png", photo)
    (d / "locked").chmod(0)
    try:
        listing = iter_inputs([d])
    finally:
        (d / "locked").chmod(0o755)
    assert listing.files == [] and "cannot be listed" in listing.errors[0].error


# -- item 4: names that are not UTF-8, or that talk to the terminal --------------------------
def test_escape_path_round_trips_and_is_identity_for_plain_names():
    names = [b"plain/photo.jpg", b"caf\xe9.png", b"a\\b.png", b"\\xff.png", b"\xff\xfe\\x41",
             "日本/写真.jpg".encode(), b"tab\there\n.png"]  # fmt: skip
    for raw in names:
        name = os.fsdecode(raw)
        text = escape_path(name)
        text.encode("utf-8")  # every output format can hold it
        assert unescape_path(text) == name, raw
    assert escape_path("plain/photo.jpg") == "plain/photo.jpg"
    assert escape_path(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert escape_path("a\\b.png") == "a\\\\b.png"


def test_non_utf8_names_are_written_losslessly_in_every_format(tmp_path, photo, tiny_model_dir,
                                                                capsys):  # fmt: skip
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = tmp_path / "names"
    d.mkdir()
    raw_names = [b"caf\xe9.png", b"back\\slash.png", b"\x1b[31mred\x1b[0m.png", b"ok.png"]
    for raw in raw_names:
        _png(Path(os.fsdecode(os.path.join(os.fsencode(d), raw))), photo)
    (d / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"not an image")
    out = {k: tmp_path / f"out.{k}" for k in ("jsonl", "csv", "parquet")}
    outputs = ["--jsonl", str(out["jsonl"]), "--csv", str(out["csv"]), "--parquet",
               str(out["parquet"])]  # fmt: skip
    rc = main(["scan", str(d), "--model", str(tiny_model_dir), "--json", *outputs])
    assert rc == 0
    json_paths = [r["path"] for r in json.loads(capsys.readouterr().out)]
    lines = out["jsonl"].read_text("utf-8").splitlines()
    jsonl_paths = [json.loads(line)["path"] for line in lines]
    with open(out["csv"], newline="", encoding="utf-8") as fh:
        csv_paths = [r["path"] for r in csv.DictReader(fh)]
    parquet_paths = pq.read_table(out["parquet"]).column("path").to_pylist()
    assert json_paths == jsonl_paths == csv_paths == parquet_paths
    assert len(json_paths) == 5
    on_disk = {os.path.join(str(d), os.fsdecode(n)) for n in os.listdir(os.fsencode(d))}
    assert {unescape_path(p) for p in json_paths} == on_disk  # reversible: the exact names
    assert not list(tmp_path.glob(".*.tmp"))


def test_table_escapes_control_characters(tmp_path, photo, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    _png(tmp_path / "\x1b[2J\x1b]0;owned\x07evil.png", photo)
    assert main(["scan", str(tmp_path), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out.replace("\n", "").replace("│", "").replace(" ", "")
    assert for_terminal("a\u202eb\nc") == "a\\u202eb\\x0ac"


def test_failed_csv_write_leaves_no_temporary_file(tmp_path):
    bad = {"path": "x", "verdict": "error", "error": "\udcff"}  # cannot be encoded as UTF-8
    with pytest.raises(UnicodeEncodeError):
        write_csv(tmp_path / "o.csv", [bad])
    assert list(tmp_path.iterdir()) == []


def test_failed_parquet_write_leaves_no_temporary_file(tmp_path):
    pytest.importorskip("pyarrow")
    from noisetrace.engines import ParquetRecordWriter

    w = ParquetRecordWriter(tmp_path / "o.parquet")
    w.write_record({"path": "x", "score": "not a number"})
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own conversion error
        w.close()
    assert list(tmp_path.iterdir()) == []


# -- item 6: resume and inputs named twice ---------------------------------------------------
@pytest.fixture()
def many(tmp_path, photo, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "many"
    (d / "sub").mkdir(parents=True)
    for i in range(6):
        _png(d / f"{i}.png", photo[i * 8 :])
    for i in range(3):
        _png(d / "sub" / f"s{i}.png", photo[:, i * 8 :])
    return d


def test_resume_matches_inputs_by_real_path_and_completes_every_output(many, tiny_model_dir):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    jl = Path("scan.jsonl")
    base = ["--model", str(tiny_model_dir), "--quiet", "--jsonl", str(jl)]
    assert main(["scan", "many", "nope.jpg", *base]) == 0
    lines = jl.read_text().splitlines()
    assert len(lines) == 10
    jl.write_text("\n".join(lines[:4]) + "\n")  # the scan was killed after four records
    for _ in range(2):  # resume twice, spelled differently each time
        assert main(["scan", "./many/", str(Path("nope.jpg").resolve()), *base, "--resume",
                     "--csv", "out.csv", "--parquet", "out.parquet"]) == 0  # fmt: skip
        recs = [json.loads(line) for line in jl.read_text().splitlines()]
        keys = [os.path.realpath(r["path"]) for r in recs]
        assert len(keys) == len(set(keys)) == 10  # 9 files + one record for the missing input
        assert sum("no such file" in (r["error"] or "") for r in recs) == 1
        rows = list(csv.DictReader(open("out.csv", encoding="utf-8")))
        assert [r["path"] for r in rows] == [r["path"] for r in recs]  # old + new records
        assert pq.read_table("out.parquet").column("path").to_pylist() == [r["path"] for r in recs]


def test_same_input_twice_is_scanned_once_and_is_no_symlink_loop(many, tiny_model_dir, capsys):
    for args in (["many", "many"], ["many", "./many", "many/0.png"], ["many/sub", "many"],
                 ["many", str(many / "sub")]):  # fmt: skip
        rc, recs, _ = _scan_json(args, tiny_model_dir, capsys)
        assert rc == 0
        assert len(recs) == 9, args
        assert not any(r["error"] for r in recs), [r["error"] for r in recs if r["error"]]
    (many / "link").symlink_to(many / "sub", target_is_directory=True)  # not a loop either
    rc, recs, _ = _scan_json(["many"], tiny_model_dir, capsys)
    assert len(recs) == 9 and not any(r["error"] for r in recs)


def test_real_symlink_loop_is_still_reported(many):
    (many / "sub" / "up").symlink_to(many, target_is_directory=True)
    listing = iter_inputs([many])
    assert len(listing.files) == 9
    assert [e.error for e in listing.errors] == ["folder already scanned (symlink loop)"]


# -- item 8: a forged frame count ------------------------------------------------------------
def test_forged_frame_count_does_not_decide_the_sampled_frames(tmp_path, tiny_detector):
    import av

    forged = forged_avi(tmp_path)
    with av.open(str(forged)) as c:  # the forgery works: the header says 2**31 - 1
        assert c.streams.video[0].frames == 2**31 - 1
    assert count_frames(forged) == 8
    report = SampleReport()
    frames = read_frames(forged, n=4, report=report)
    assert [f.index for f in frames] == [0, 2, 5, 7]  # spread over what is really there
    assert report.claimed == 2**31 - 1 and report.available == 8 and report.note is None
    report = SampleReport()
    assert len(read_frames(forged, n=16, report=report)) == 8
    assert "holds only 8" in report.note and "claims 2147483647" in report.note
    r = tiny_detector.scan(forged, video_frames=4)
    assert r.error is None and r.frames == 4 and r.frames_note is None
    r = tiny_detector.scan(forged, video_frames=16)  # the record says why only 8 were scored
    assert r.frames == 8 and "holds only 8" in r.frames_note and "claims" in r.frames_note
    assert r.to_record()["frames_note"] == r.frames_note


# -- item 9: float TIFFs with NaN/inf, AVIF, HEIC --------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_float_tiff_is_an_error(bad):
    a = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    a[3, 4] = bad
    buf = io.BytesIO()
    Image.fromarray(a, "F").save(buf, format="TIFF")
    with pytest.raises(InputError, match="NaN or infinite"):
        decode_image(buf.getvalue())
    a[3, 4] = 0.5  # the same image without the bad pixel decodes
    buf = io.BytesIO()
    Image.fromarray(a, "F").save(buf, format="TIFF")
    assert decode_image(buf.getvalue()).shape == (20, 30, 3)


def test_avif_is_an_image_and_heic_is_clearly_unsupported(tmp_path, photo, tiny_detector):
    from PIL import features

    heic = tmp_path / "photo.heic"
    heic.write_bytes(struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    r = tiny_detector.scan(heic)
    assert r.verdict == "error" and "unsupported format: HEIC" in r.error
    assert iter_inputs([tmp_path]).files == [str(heic)]  # reported, not passed over
    mp4 = struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isomiso2" + bytes(40)
    assert sniff_bytes(mp4) == ("video", "mp4")
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    avif = tmp_path / "photo.avif"
    Image.fromarray(photo[:64, :80]).save(avif, format="AVIF")
    assert sniff(avif) == ("image", "avif")  # never a video
    r = tiny_detector.scan(avif)
    assert r.error is None and r.kind == "image" and (r.width, r.height) == (80, 64)


# -- item 1: a decoding budget checked before decoding ---------------------------------------
@pytest.fixture()
def budget():
    from noisetrace.media.image import set_max_pixels

    yield set_max_pixels
    set_max_pixels(None)


@pytest.mark.parametrize(
    "data, declared",
    [(jpeg_declaring(15000, 15000), "15000x15000"), (gif_screen(16000, 16000), "16000x16000")],
)
def test_image_over_the_budget_is_refused_before_decoding(data, declared):
    import time

    t0 = time.perf_counter()
    with pytest.raises(InputError) as e:
        decode_image(data)
    assert time.perf_counter() - t0 < 2  # nothing was decoded
    msg = str(e.value)
    assert f"declares {declared} pixels, over the limit of 100,000,000" in msg
    assert "--max-pixels" in msg


def test_max_pixels_sets_the_budget_of_images_and_video_frames(budget, tmp_path, photo,
                                                              tiny_detector):  # fmt: skip
    img, vid = tmp_path / "a.png", tmp_path / "v.mp4"
    _png(img, photo, size=64)
    write_video(vid, [photo[:64, :64]] * 4, fps=4)
    assert tiny_detector.scan(img).error is None and tiny_detector.scan(vid).error is None
    budget(1000)
    r = tiny_detector.scan(img)
    assert "declares 64x64 pixels, over the limit of 1,000" in r.error
    r = tiny_detector.scan(vid)
    assert r.verdict == "error" and "video frame is too large: it declares 64x64" in r.error
    budget(None)
    assert tiny_detector.scan(img).error is None


def test_scan_command_applies_max_pixels(budget, tmp_path, photo, tiny_model_dir, capsys):
    from noisetrace.cli import _scan, build_parser

    _png(tmp_path / "a.png", photo, size=64)
    args = build_parser().parse_args(["scan", str(tmp_path), "--model", str(tiny_model_dir),
                                      "--json"])  # fmt: skip
    args.max_pixels = 1000  # the option itself is registered with the scan parser
    assert _scan(args) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert "over the limit of 1,000; scan it with a higher --max-pixels" in rec["error"]


def test_progressive_jpeg_with_too_many_scans_is_refused(monkeypatch):
    import noisetrace.media.image as image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, format="JPEG", progressive=True)
    data = buf.getvalue()
    assert decode_image(data).shape == (64, 64, 3)
    monkeypatch.setattr(image, "MAX_JPEG_SCANS", 3)  # a real progressive JPEG has about 10
    with pytest.raises(InputError, match="progressive JPEG has .* scans, over the limit of 3"):
        decode_image(data)


def test_sixteen_bit_and_float_conversion_is_exact_without_a_float64_copy(monkeypatch):
    import noisetrace.media.image as image

    monkeypatch.setattr(image, "_ROWS_PIXELS", 64)  # many row blocks
    a = np.linspace(0, 65535, 48 * 32).astype(np.uint16).reshape(32, 48)
    out = image.to_rgb(Image.frombytes("I;16", (48, 32), a.astype("<u2").tobytes()))
    want = np.clip(a / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(np.asarray(out)[..., 0].astype(int) - want).max() <= 1
    f = np.linspace(0, 1, 48 * 32, dtype=np.float32).reshape(32, 48)
    out = image.to_rgb(Image.fromarray(f, "F"))
    assert np.abs(np.asarray(out)[..., 0].astype(int) - np.round(f * 255)).max() <= 1
