"""The whole hostile corpus (tests/hostile_corpus.py, issue 18) through every way in: `scan`
with two workers, the `serve` app over a real socket, and the Ray engine. Each input gets one
record (or one 4xx answer), never a traceback, a 5xx or a hang: every run has a hard deadline
and fails when it passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import save_tiny_model
from hostile_corpus import EXPECTED, NOT_UPLOADABLE, build, unlock

from noisetrace.outputs.records import escape_path

DEADLINE_S = 60  # per run; the scan itself takes a few seconds on 2 busy cores


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, Path]]]:
    d = tmp_path_factory.mktemp("hostile") / "corpus"
    items = build(d)
    yield d, items
    unlock(d)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"), "tiny", 0, video_frames=4)


def run_cli(argv: list[str], timeout: float = DEADLINE_S) -> subprocess.CompletedProcess:
    """``noisetrace ARGV`` in its own process group, killed (with its children, Ray's
    included) when it runs past ``timeout``: a hang fails the test instead of blocking it."""
    proc = subprocess.Popen([sys.executable, "-m", "noisetrace.cli", *argv], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"noisetrace {' '.join(argv[:2])} still running after {timeout} s "
                    f"(a hang); stderr:\n{err[-3000:]}")  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def check_records(recs: list[dict], items: list[tuple[str, Path]]) -> None:
    """Exactly one record per input, each scored or with an error message, and the outcome
    the corpus documents for its kind."""
    want = {escape_path(str(p)): kind for kind, p in items}
    counts = Counter(r["path"] for r in recs)
    assert not [p for p, n in counts.items() if n > 1], "duplicated records"
    assert set(counts) == set(want), (
        f"missing: {sorted(set(want) - set(counts))}, unexpected: {sorted(set(counts) - set(want))}"
    )
    for r in recs:
        kind = want[r["path"]]
        if r["error"] is None:
            assert r["verdict"] in ("real", "fake") and 0 <= r["score"] <= 1, (kind, r)
        else:
            assert r["verdict"] == "error" and r["score"] is None, (kind, r)
            assert isinstance(r["error"], str) and len(r["error"]) > 10, (kind, r)
        expected = EXPECTED[kind]
        if kind == "unreadable folder" and r["path"].endswith("locked"):
            expected = "cannot be listed"  # not root: the folder itself is the record
        if expected == "score":
            assert r["error"] is None, (kind, r["error"])
        elif expected is not None:
            assert r["error"] and expected.lower() in r["error"].lower(), (kind, r["error"])


def test_corpus_has_every_kind_the_issue_names(corpus) -> None:
    _, items = corpus
    assert len(items) >= 35 and len({k for k, _ in items}) == len(items)
    for p in (p for _, p in items):
        assert os.path.lexists(p), p


def test_scan_with_two_workers_gives_one_record_per_input(corpus, model_dir, tmp_path) -> None:
    d, items = corpus
    out = tmp_path / "out.jsonl"
    res = run_cli(["scan", str(d), "--model", str(model_dir), "--workers", "2", "--jsonl",
                   str(out), "--quiet"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "Warning" not in res.stderr, res.stderr[-3000:]
    check_records([json.loads(line) for line in out.read_text("utf-8").splitlines()], items)


def test_ray_engine_gives_one_record_per_input(corpus, model_dir, tmp_path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'noisetrace[ray]'")
    pytest.importorskip("ray.data")
    d, items = corpus
    out = tmp_path / "ray.jsonl"
    res = run_cli(["scan", str(d), "--model", str(model_dir), "--engine", "ray", "--workers",
                   "2", "--jsonl", str(out), "--quiet"], timeout=180)  # fmt: skip (Ray starts)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    check_records([json.loads(line) for line in out.read_text("utf-8").splitlines()], items)


def test_serve_answers_every_upload_with_2xx_or_4xx(corpus, model_dir) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from conftest import live_server

    from noisetrace.serve.app import create_app

    _, items = corpus
    uploads = [(k, p) for k, p in items if k not in NOT_UPLOADABLE]
    app = create_app(str(model_dir), max_upload_mb=4, workers=2, timeout_s=DEADLINE_S,
                     queue=len(uploads), device="cpu", bundled=False)  # fmt: skip
    svc = app.state.service

    with live_server(app) as port:

        def post(item: tuple[str, Path]) -> tuple[str, int, dict]:
            kind, p = item
            files = {"file": (escape_path(p.name), p.read_bytes())}
            r = httpx.post(f"http://127.0.0.1:{port}/v1/scan", files=files, timeout=DEADLINE_S)
            return kind, r.status_code, r.json()

        with ThreadPoolExecutor(4) as pool:  # several at once, as clients would send them
            answers = list(pool.map(post, uploads))
        status = svc.status()
        left = list(svc.upload_root.iterdir())

    assert len(answers) == len(uploads)
    for kind, code, body in answers:
        assert 200 <= code < 500, (kind, code, body)
        expected = EXPECTED[kind]
        if code == 200:
            assert 0 <= body["score"] <= 1 and body["error"] is None, (kind, body)
        else:
            assert body.get("detail"), (kind, code, body)
        if expected == "score":
            assert code == 200, (kind, code, body)
        elif expected is not None:
            assert code >= 400 and expected.lower() in body["detail"].lower(), (kind, code, body)
    assert status["uploading"] == 0 and status["in_progress"] == 0, status
    assert left == [], left  # every upload removed once answered
