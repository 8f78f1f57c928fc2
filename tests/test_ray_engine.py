"""`noisetrace scan --engine ray` on a local two-CPU Ray cluster, against the local engine.

Tests that need Ray skip (with the install command) where `noisetrace[ray]` is not installed;
the local engine's independence from Ray is checked either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from noisetrace.cli import main
from noisetrace.engines import ParquetRecordWriter, is_uri, result_from_record

NEED_RAY = "Ray is not installed: pip install 'noisetrace[ray]' to run the Ray engine tests"


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason=NEED_RAY)
    pytest.importorskip("ray.data", reason=NEED_RAY)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture()
def corpus(media_dir: Path, photo) -> Path:
    """The shared media folder (every format, a video, three broken files) plus a sub-folder
    and a file that is not media, so listing rules are exercised too."""
    sub = media_dir / "sub"
    sub.mkdir()
    for i in range(4):
        Image.fromarray(photo[i * 40 : i * 40 + 96, 100:196]).save(sub / f"p{i}.jpg", quality=85)
    (media_dir / "notes.txt").write_text("not a picture, passed over in folders\n")
    return media_dir


def _scan_jsonl(argv: list[str], out: Path) -> list[dict]:
    assert main([*argv, "--jsonl", str(out), "--quiet"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def _key(recs: list[dict]) -> list[dict]:
    """Records without timing, in path order (the Ray engine writes in completion order);
    nested objects that Parquet holds as JSON strings are decoded."""
    def plain(r: dict) -> dict:
        return {k: (json.loads(v) if k == "provenance" and isinstance(v, str) else v)
                for k, v in r.items() if k != "seconds"}  # fmt: skip

    return sorted((plain(r) for r in recs), key=lambda r: r["path"])


def test_records_identical_to_local_engine(ray_cluster, corpus, tiny_model_dir, tmp_path):
    """One Ray run over a local folder, a missing path, an object-storage prefix (file://, so
    it goes through pyarrow listing, bytes read in tasks and a local copy scanned in the
    actor) and a missing prefix: every record equals the local engine's, path aside."""
    model = ["--model", str(tiny_model_dir)]
    missing = str(tmp_path / "missing.jpg")
    local = _scan_jsonl(["scan", str(corpus), missing, *model], tmp_path / "local.jsonl")
    assert len(local) == 15  # 6 images + a video + 3 broken + 4 in sub/ + a missing path
    assert sum(r["verdict"] == "error" for r in local) == 4

    uri, gone = "file://" + str(corpus / "sub"), "file://" + str(tmp_path / "no-such-prefix")
    pq_path = tmp_path / "ray.parquet"
    argv = ["scan", str(corpus), missing, uri, gone, *model, "--engine", "ray"]
    got = _scan_jsonl([*argv, "--parquet", str(pq_path)], tmp_path / "ray.jsonl")
    assert all(list(r) == list(local[0]) for r in got)  # same fields, same order
    by_uri = [r for r in got if is_uri(r["path"])]
    plain = [r for r in got if not is_uri(r["path"])]
    assert _key(plain) == _key(local)
    assert [r["error"] for r in by_uri if r["path"] == gone] == ["no such file or folder"]
    remote = [{**r, "path": r["path"].removeprefix("file://")} for r in by_uri if r["path"] != gone]
    assert len(remote) == 4 and _key(remote) == _key([r for r in local if "/sub/" in r["path"]])
    import pyarrow.parquet as pq

    assert _key(pq.read_table(pq_path).to_pylist()) == _key(got)


def test_killed_worker_and_resume_lose_and_duplicate_nothing(
    ray_cluster, corpus, tiny_model_dir, tmp_path, monkeypatch
):
    """A scan that crashed after four records is resumed with --engine ray; during the resume
    the worker handed sub/p3.jpg dies (os._exit, like a lost process or node). The batch is
    retried: every file ends up in the JSONL, the Parquet and the CSV file exactly once, and
    the records equal a clean local scan. The resume spells the folder differently
    (``..././media``): inputs are matched by their real path."""
    from noisetrace.engines import ray_engine

    model = ["--model", str(tiny_model_dir)]
    full = _scan_jsonl(["scan", str(corpus), *model], tmp_path / "full.jsonl")
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    assert not any('p3.jpg"' in line for line in lines[:4])  # the victim is still to do
    part = tmp_path / "part.jsonl"
    part.write_text("\n".join(lines[:4]) + "\n" + lines[4][: len(lines[4]) // 2])  # torn line

    marker = str(tmp_path / "crashed")

    class Worker(ray_engine.ScanWorker):  # a local class: Ray pickles it by value
        def __call__(self, batch):
            if any(p.endswith("sub/p3.jpg") for p in batch.column("path").to_pylist()):
                try:  # exactly once across restarts: the marker is created atomically
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    os._exit(1)  # no exception, no cleanup
            return super().__call__(batch)

    monkeypatch.setattr(ray_engine, "ScanWorker", Worker)
    pq_path, csv_path = tmp_path / "part.parquet", tmp_path / "part.csv"
    spelled = f"{corpus.parent}/./{corpus.name}"
    argv = ["scan", spelled, *model, "--engine", "ray", "--resume", "--parquet", str(pq_path),
            "--csv", str(csv_path)]  # fmt: skip
    assert main([*argv, "--jsonl", str(part), "--quiet"]) == 0
    assert os.path.exists(marker), "the fault was never injected: the test would prove nothing"

    def real(recs: list[dict]) -> list[dict]:
        return _key([{**r, "path": os.path.realpath(r["path"])} for r in recs])

    resumed = [json.loads(line) for line in part.read_text().splitlines()]
    assert sorted(os.path.realpath(r["path"]) for r in resumed) == sorted(
        os.path.realpath(r["path"]) for r in full
    )  # once each
    assert real(resumed) == real(full)
    import csv

    import pyarrow.parquet as pq

    assert real(pq.read_table(pq_path).to_pylist()) == real(full)  # old and new records
    with open(csv_path, newline="") as fh:
        assert sorted(r["path"] for r in csv.DictReader(fh)) == sorted(r["path"] for r in resumed)


def test_listing_is_lazy_and_dedup_bitmap():
    """The remote listing is a generator (nothing is walked before it is consumed) and the
    driver's duplicate filter drops a retried index."""
    from noisetrace.engines.ray_engine import _Seen, list_inputs

    listing, stream = list_inputs(["file:///definitely/not/here"])
    assert listing.errors == []  # not listed yet
    assert list(stream) == [] and listing.errors[0].error == "no such file or folder"
    seen = _Seen()
    assert [seen.add(i) for i in (5, 1_000_003, 5, 0, 1_000_003)] == [
        True, True, False, True, False,
    ]  # fmt: skip
    assert len(seen.bits) < 300_000


def test_parquet_writer_is_atomic_and_seeds_from_jsonl(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow not installed")
    jl = tmp_path / "done.jsonl"
    old = {"path": "old.jpg", "kind": "image", "score": 0.25, "verdict": "real",
           "threshold": 0.5, "model": "m", "frames": None, "seconds": 0.1, "error": None,
           "width": 8, "height": 9}  # fmt: skip
    jl.write_text(json.dumps(old) + "\n" + '{"path": "torn.jp')
    out = tmp_path / "out.parquet"
    w = ParquetRecordWriter(out, rows_per_group=2, seed_jsonl=jl)
    new = result_from_record({**old, "path": "new.jpg", "verdict": "error", "score": None})
    for _ in range(3):
        w.write(new)
    assert not out.exists()  # only complete files appear under the final name
    w.close()
    rows = pq.read_table(out).to_pylist()
    assert {k: v for k, v in rows[0].items() if k in old} == old
    assert [r["path"] for r in rows] == ["old.jpg"] + ["new.jpg"] * 3
    assert rows[1]["score"] is None and rows[1]["verdict"] == "error"


def test_local_engine_never_imports_ray(media_dir, tiny_model_dir, tmp_path):
    code = (
        "import sys; from noisetrace.cli import main; "
        f"rc = main(['scan', {str(media_dir / 'a.jpg')!r}, '--model', {str(tiny_model_dir)!r}, "
        f"'--quiet', '--jsonl', {str(tmp_path / 'o.jsonl')!r}]); "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'ray']; "
        "assert rc == 0 and not bad, (rc, bad)"
    )
    env = {**os.environ, "NOISETRACE_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
