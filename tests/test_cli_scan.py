import csv
import json

import numpy as np
import pytest

from noisetrace.cli import main
from noisetrace.detector import ScanResult

GOOD = {"a.jpg", "b.png", "c.webp", "d.tiff", "e.bmp", "f.gif", "clip.mp4"}
BAD = {"empty.jpg", "truncated.jpg", "text.jpg"}


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scan_folder_writes_one_record_per_input(media_dir, tiny_model_dir, tmp_path, capsys):
    jl, cv = tmp_path / "out.jsonl", tmp_path / "out.csv"
    rc = main(
        [
            "scan",
            str(media_dir),
            "--model",
            str(tiny_model_dir),
            "--jsonl",
            str(jl),
            "--csv",
            str(cv),
            "--quiet",
        ]
    )
    assert rc == 0
    recs = _records(jl)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in recs}
    assert set(by_name) == GOOD | BAD
    for r in recs:
        assert list(r) == list(ScanResult.FIELDS)
        assert r["model"] == "tiny" and r["threshold"] == 0.5 and r["seconds"] >= 0
    for name in GOOD:
        r = by_name[name]
        assert r["error"] is None and 0.0 <= r["score"] <= 1.0
        assert r["verdict"] == ("fake" if r["score"] >= 0.5 else "real")
    assert by_name["clip.mp4"]["kind"] == "video" and by_name["clip.mp4"]["frames"] == 12
    assert by_name["a.jpg"]["kind"] == "image" and by_name["a.jpg"]["frames"] is None
    for name in BAD:
        r = by_name[name]
        assert r["verdict"] == "error" and r["score"] is None and r["error"]
    assert "empty" in by_name["empty.jpg"]["error"]
    assert "truncated" in by_name["truncated.jpg"]["error"]
    assert "text" in by_name["text.jpg"]["error"]
    rows = list(csv.DictReader(cv.open()))
    assert [r["path"] for r in rows] == [r["path"] for r in recs]
    assert list(rows[0]) == list(ScanResult.FIELDS)


def test_json_stdout_and_strict(media_dir, tiny_model_dir, capsys):
    rc = main(
        [
            "scan",
            str(media_dir / "a.jpg"),
            str(media_dir / "empty.jpg"),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--strict",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert [r["verdict"] == "error" for r in out] == [False, True]


def test_threshold_option_changes_verdicts(media_dir, tiny_model_dir, capsys):
    main(
        [
            "scan",
            str(media_dir / "a.jpg"),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--threshold",
            "0",
        ]
    )
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "fake"
    main(
        [
            "scan",
            str(media_dir / "a.jpg"),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--threshold",
            "1",
        ]
    )
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["verdict"] == "real" and rec["threshold"] == 1.0


def test_missing_path_is_an_error_record(tiny_model_dir, tmp_path, capsys):
    rc = main(["scan", str(tmp_path / "nope.jpg"), "--model", str(tiny_model_dir), "--json"])
    rec = json.loads(capsys.readouterr().out)[0]
    assert rc == 0 and rec["verdict"] == "error" and "no such file" in rec["error"]


def test_usage_errors_exit_2(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["scan"])
    assert e.value.code == 2
    assert main(["scan", str(tmp_path), "--model", str(tmp_path / "missing-model")]) == 2
    assert main(["scan", str(tmp_path), "--model", str(tiny_model_dir), "--threshold", "3"]) == 2
    assert main(["scan", str(tmp_path), "--model", str(tiny_model_dir), "--resume"]) == 2


def test_resume_skips_done_files_and_repairs_a_torn_line(media_dir, tiny_model_dir, tmp_path):
    jl = tmp_path / "scan.jsonl"
    main(
        [
            "scan",
            str(media_dir / "a.jpg"),
            "--model",
            str(tiny_model_dir),
            "--jsonl",
            str(jl),
            "--quiet",
        ]
    )
    with jl.open("a") as fh:  # a crash in the middle of writing the next record
        fh.write('{"path": "half')
    main(
        [
            "scan",
            str(media_dir),
            "--model",
            str(tiny_model_dir),
            "--jsonl",
            str(jl),
            "--resume",
            "--quiet",
        ]
    )
    recs = _records(jl)
    paths = [r["path"] for r in recs]
    assert len(paths) == len(set(paths)) == len(GOOD | BAD)
    assert paths[0].endswith("a.jpg")


def test_non_media_files_in_folders_are_reported_not_scanned(media_dir, tiny_model_dir, capsys):
    (media_dir / "notes.txt").write_text("not media")
    main(["scan", str(media_dir), "--model", str(tiny_model_dir), "--json"])
    captured = capsys.readouterr()
    assert "notes.txt" not in captured.out
    assert "passed over 1 file" in captured.err


def test_symlink_loop_does_not_hang(media_dir, tiny_model_dir, capsys):
    (media_dir / "loop").symlink_to(media_dir, target_is_directory=True)
    rc = main(["scan", str(media_dir), "--model", str(tiny_model_dir), "--json"])
    recs = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert any("symlink loop" in (r["error"] or "") for r in recs)
    assert sum(r["path"].endswith("a.jpg") for r in recs) == 1


def test_ctrl_c_leaves_valid_output_that_resume_completes(tmp_path, tiny_model_dir, photo):
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    d = tmp_path / "many"
    d.mkdir()
    # Large enough that the scan outlasts the signal's way in (small files finished first).
    big = np.tile(photo, (2, 2, 1))
    for i in range(60):
        Image.fromarray(big[i : i + 1000, i : i + 1000]).save(d / f"{i:03d}.jpg", quality=85)
    jl = tmp_path / "scan.jsonl"
    cmd = [sys.executable, "-m", "noisetrace.cli", "scan", str(d), "--model", str(tiny_model_dir),
           "--jsonl", str(jl), "--quiet", "--workers", "1"]  # fmt: skip
    # A test run started in the background of a non-interactive shell inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt: give the scan the default.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and (not jl.exists() or jl.read_text().count("\n") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130, proc.stderr.read()
    done = _records(jl)  # every line is complete JSON
    assert 3 <= len(done) < 60
    assert main(["scan", str(d), "--model", str(tiny_model_dir), "--jsonl", str(jl), "--resume",
                 "--quiet"]) == 0  # fmt: skip
    paths = [r["path"] for r in _records(jl)]
    assert len(paths) == len(set(paths)) == 60


def test_table_shows_names_with_brackets_verbatim(
    tmp_path, photo, tiny_model_dir, capsys, monkeypatch
):
    from PIL import Image

    monkeypatch.setenv("COLUMNS", "400")  # no folding, so names stay on one line
    Image.fromarray(photo[:64, :64]).save(tmp_path / "x[red].png")
    (tmp_path / "y[bold].jpg").write_bytes(b"")
    assert main(["scan", str(tmp_path), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out.replace("\n", "").replace("│", "").replace(" ", "")
    assert "x[red].png" in out and "y[bold].jpg" in out


def test_frame_scores_reach_the_jsonl(media_dir, tiny_model_dir, tmp_path):
    jl = tmp_path / "v.jsonl"
    main(["scan", str(media_dir / "clip.mp4"), "--model", str(tiny_model_dir), "--jsonl",
          str(jl), "--frame-scores", "--frames", "4", "--quiet"])  # fmt: skip
    rec = _records(jl)[0]
    assert len(rec["frame_scores"]) == 4
