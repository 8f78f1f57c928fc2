"""Kill -9 and resume (issue 18): an 800-file scan killed at random points three times and
resumed each time with its input spelled differently loses and duplicates nothing, and every
output format holds the whole scan at the end."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from noisetrace.outputs.records import unescape_path

N_FILES = 800
DEADLINE_S = 90  # per run: a hang fails the test instead of blocking it


def _lines(p: Path) -> int:
    try:
        return p.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "noisetrace.cli", *argv], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def _finish(proc: subprocess.Popen) -> str:
    try:
        return proc.communicate(timeout=DEADLINE_S)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"scan still running after {DEADLINE_S} s:\n{proc.communicate()[1][-2000:]}")


def _kill_at(argv: list[str], cwd: Path, jsonl: Path, at: int, rng: random.Random) -> int:
    """Run a scan and SIGKILL it once ``jsonl`` holds ``at`` lines, a random moment later
    (between two records or in the middle of writing one). Returns the lines then."""
    proc = _start(argv, cwd)
    t0 = time.monotonic()
    while _lines(jsonl) < at:
        if proc.poll() is not None:
            pytest.fail(f"the scan ended (status {proc.returncode}) before {at} records:\n"
                        f"{proc.stderr.read()[-2000:]}")  # fmt: skip
        if time.monotonic() - t0 > DEADLINE_S:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"fewer than {at} records after {DEADLINE_S} s")
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.02))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the scan finished before it was killed"
    return _lines(jsonl)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 tiny distinct PNGs in 8 sub-folders, plus a tiny model beside them."""
    root = tmp_path_factory.mktemp("killresume")
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        sub = root / "many" / f"s{i % 8}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    save_tiny_model(root / "model", "tiny", 0)
    (root / "link").symlink_to(root / "many", target_is_directory=True)
    return root


def test_kill_9_three_times_then_resume_loses_and_duplicates_nothing(many: Path) -> None:
    seed = int(os.environ.get("NOISETRACE_KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    where = f"(seed {seed}: NOISETRACE_KILL_SEED={seed} repeats these kill points)"
    jl, out_csv, out_pq = many / "scan.jsonl", many / "scan.csv", many / "scan.parquet"
    for p in (jl, out_csv, out_pq):
        p.unlink(missing_ok=True)
    outputs = ["--jsonl", jl.name, "--csv", out_csv.name, "--workers", "2", "--quiet"]
    have_pq = True
    try:
        import pyarrow.parquet as pq
    except ImportError:
        have_pq = False
    if have_pq:
        outputs += ["--parquet", out_pq.name]
    model = ["--model", str(many / "model")]

    # Killed three times, resumed with the folder spelled another way each time.
    have = 0
    for i, spelling in enumerate(["many", "./many", "many/"]):
        at = have + rng.randint(1, (N_FILES - have) // 3)
        argv = ["scan", spelling, *model, *outputs, *(["--resume"] if i else [])]
        have = _kill_at(argv, many, jl, at, rng)
        assert have >= at, where
    assert have < N_FILES, where

    # Resumed to the end by its absolute path, then once more through a symlink (a no-op).
    for spelling in (str(many / "many"), "link"):
        err = _finish(_start(["scan", spelling, *model, *outputs, "--resume"], many))
        assert "Traceback" not in err, err[-2000:]

    files = {str(p.resolve()) for p in (many / "many").rglob("*.png")}
    assert len(files) == N_FILES
    recs = [json.loads(line) for line in jl.read_text("utf-8").splitlines()]  # none torn
    # Paths are as each run spelled them, relative to its folder: compare the files.
    keys = [os.path.realpath(many / unescape_path(r["path"])) for r in recs]
    dup = len(keys) - len(set(keys))
    lost = len(files - set(keys))
    assert (lost, dup) == (0, 0), f"{lost} lost, {dup} duplicated {where}"
    assert set(keys) == files and not any(r["error"] for r in recs), where
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == [r["path"] for r in recs], f"CSV incomplete {where}"
    if have_pq:
        got = pq.read_table(out_pq).column("path").to_pylist()
        assert got == [r["path"] for r in recs], f"Parquet incomplete {where}"


def test_resume_keeps_a_complete_record_that_lost_its_newline(many: Path, tmp_path) -> None:
    """SIGKILL after a record but before its newline reached the file: the record parses, yet
    appending drops that unterminated line, so it must not count as done."""
    src = many / "many" / "s0"
    argv = ["scan", str(src), "--model", str(many / "model"), "--quiet", "--jsonl"]
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    _finish(_start([*argv, str(full)], tmp_path))
    lines = full.read_text("utf-8").splitlines()
    part.write_text("\n".join(lines[:3]), "utf-8")  # the third record has no newline
    _finish(_start([*argv, str(part), "--resume"], tmp_path))
    paths = [json.loads(line)["path"] for line in part.read_text("utf-8").splitlines()]
    assert sorted(paths) == sorted(json.loads(line)["path"] for line in lines)
