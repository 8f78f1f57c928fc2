"""Cost of each hostile input (issue 18): wall time and peak memory of `noisetrace scan FILE`.

Builds the generated bad-input corpus (tests/hostile_corpus.py: huge declared sizes,
decompression bombs, progressive JPEGs with thousands of scans, forged videos, FIFOs, devices,
odd names ...) in a temporary folder, scans each kind alone in a fresh process and measures
it: wall seconds, the file's own seconds (the record's ``seconds``), and the process's peak
resident memory (``os.wait4``'s rusage, that child only). Ends with the whole corpus in one
`scan --workers 2`, then the worst of each against the goal: no kind above 5 s and 1.5 GB.

    .venv/bin/python benchmarks/hostile.py                 # tiny random srm-cnn (default)
    .venv/bin/python benchmarks/hostile.py --model fast    # a bundled model
    .venv/bin/python benchmarks/hostile.py --kinds png gif # only kinds containing a word

Time is judged on the file's own seconds (process start-up, mostly importing torch, is shown
by the ``baseline`` row: a small good PNG); memory on the whole process's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the corpus lives with the tests that use it


@dataclass
class Cost:
    wall_s: float
    file_s: float | None  # the record's own seconds (None: no record)
    rss_mb: float
    outcome: str


def measure(argv: list[str | bytes], out: Path, timeout: float, n_expected: int = 1) -> Cost:
    """Run ``noisetrace ARGV --jsonl OUT`` and measure that one process (not its siblings)."""
    out.unlink(missing_ok=True)
    cmd: list[str | bytes] = [sys.executable, "-m", "noisetrace.cli", *argv, "--jsonl", str(out),
                              "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                return Cost(time.perf_counter() - t0, None, usage.ru_maxrss / 1024,
                            f"TIMEOUT after {timeout:g} s")  # fmt: skip
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    text = out.read_text("utf-8") if out.exists() else ""
    recs = [json.loads(line) for line in text.splitlines()]
    if "Traceback" in stderr:
        outcome = "TRACEBACK: " + stderr.strip().splitlines()[-1][:60]
    elif proc.returncode != 0:
        outcome = f"EXIT {proc.returncode}: " + (stderr.strip().splitlines() or [""])[-1][:60]
    elif len(recs) != n_expected:
        outcome = f"{len(recs)} RECORDS for {n_expected} input(s)"
    elif n_expected > 1:
        outcome = f"{sum(r['error'] is None for r in recs)} scored, " \
                  f"{sum(r['error'] is not None for r in recs)} error records"  # fmt: skip
    else:
        r = recs[0]
        outcome = "scored" if r["error"] is None else "error: " + r["error"]
    file_s = max((r.get("seconds") or 0.0 for r in recs), default=None)
    return Cost(wall, file_s, rss, outcome)


def prepare(tmp: Path, model: str | None) -> None:
    """In a child process (the parent stays small, see :func:`main`): build the corpus, a
    loop folder, a baseline PNG and the tiny model; print what was made as JSON."""
    import hostile_corpus
    from PIL import Image

    t0 = time.perf_counter()
    items = hostile_corpus.build(tmp / "corpus")
    built = time.perf_counter() - t0
    # A loop named directly would walk the corpus through it: give it its own folder.
    (tmp / "loopdir").mkdir()
    (tmp / "loopdir" / "loop").symlink_to(tmp / "loopdir", target_is_directory=True)
    Image.fromarray(hostile_corpus.synthetic_photo(64, 64)).save(tmp / "baseline.png")
    if model is None:
        from conftest import save_tiny_model

        model = str(save_tiny_model(tmp / "model", "tiny", 0, video_frames=4))
    print(json.dumps({"built_s": built, "model": model,
                      "items": [[k, os.fsencode(p).hex()] for k, p in items]}))  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help="bundled model name or model directory (default: a tiny random "
                    "srm-cnn made here)")  # fmt: skip
    ap.add_argument("--kinds", nargs="*", default=None, help="only kinds containing a word")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per kind before kill")
    ap.add_argument("--goal-s", type=float, default=5.0)
    ap.add_argument("--goal-mb", type=float, default=1536.0)
    ap.add_argument("--width", type=int, default=58, help="outcome column width")
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare, args.model)
        return 0

    # This process imports nothing heavy: a child's peak RSS (ru_maxrss) starts at its
    # parent's high-water mark, copied at fork, so a parent that had built the corpus with
    # torch loaded would put its own 1.7 GB into every row.
    with tempfile.TemporaryDirectory(prefix="noisetrace-hostile-") as tmp_s:
        tmp = Path(tmp_s)
        cmd = [sys.executable, __file__, "--prepare", str(tmp)]
        made = json.loads(subprocess.run(cmd + (["--model", args.model] if args.model else []),
                                         check=True, capture_output=True, text=True).stdout)
        model, built = made["model"], made["built_s"]
        items = [(k, Path(os.fsdecode(bytes.fromhex(h)))) for k, h in made["items"]]
        try:
            rows: list[tuple[str, Cost]] = []
            todo = [("baseline (64x64 good PNG)", tmp / "baseline.png"), *items]
            if args.kinds:
                todo = [(k, p) for k, p in todo
                        if k.startswith("baseline") or any(w in k for w in args.kinds)]  # fmt: skip
            for kind, path in todo:
                target = tmp / "loopdir" if kind == "symlink loop" else path
                cost = measure(["scan", os.fsencode(target), "--model", model],
                               tmp / "out.jsonl", args.timeout)  # fmt: skip
                rows.append((kind, cost))
                print(f"  {kind}: {cost.wall_s:.1f} s", file=sys.stderr, flush=True)
            whole = measure(["scan", str(tmp / "corpus"), "--model", model, "--workers", "2"],
                            tmp / "out.jsonl", args.timeout * 3, n_expected=len(items))  # fmt: skip
        finally:
            locked = tmp / "corpus" / "locked"  # mode 0: TemporaryDirectory could not remove it
            if locked.exists():
                locked.chmod(0o755)

    w = args.width
    print(f"\nmodel {args.model or 'tiny random srm-cnn'} · {len(items)} kinds (built in "
          f"{built:.1f} s) · cpu cores {os.cpu_count()} · "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    head = f"{'kind':38s} | {'wall s':>6s} | {'file s':>6s} | {'peak RSS MB':>11s} | outcome"
    print(head)
    print("-" * (len(head) + w - 7))
    for kind, c in [*rows, ("whole corpus, --workers 2", whole)]:
        fs = "-" if c.file_s is None else f"{c.file_s:.2f}"
        outcome = c.outcome.replace("\n", " ")
        outcome = outcome if len(outcome) <= w else outcome[: w - 1] + "…"
        print(f"{kind[:38]:38s} | {c.wall_s:6.1f} | {fs:>6s} | {c.rss_mb:11.0f} | {outcome}")
    kinds = [(k, c) for k, c in rows if not k.startswith("baseline")]
    if not kinds:
        return 0
    slow_k, slow = max(kinds, key=lambda kc: kc[1].file_s if kc[1].file_s is not None else 1e9)
    fat_k, fat = max(kinds, key=lambda kc: kc[1].rss_mb)
    wall_k, wall = max(kinds, key=lambda kc: kc[1].wall_s)
    base = rows[0][1] if rows[0][0].startswith("baseline") else None
    bad = [k for k, c in kinds if c.outcome.startswith(("TIMEOUT", "TRACEBACK", "EXIT"))
           or "RECORDS" in c.outcome]  # fmt: skip
    slow_s = float("inf") if slow.file_s is None else slow.file_s
    print(f"\nworst file time: {slow_s:.2f} s ({slow_k}); worst wall time: {wall.wall_s:.1f} s "
          f"({wall_k})" + (f", of which start-up ~{base.wall_s:.1f} s" if base else ""))
    print(f"worst peak RSS: {fat.rss_mb:.0f} MB ({fat_k})"
          + (f"; baseline process {base.rss_mb:.0f} MB" if base else ""))  # fmt: skip
    ok = slow_s <= args.goal_s and fat.rss_mb <= args.goal_mb and not bad
    failed = f"; failed: {', '.join(bad)}" if bad else ""
    print(f"goal (no kind above {args.goal_s:g} s and {args.goal_mb:g} MB, one record each, no "
          f"traceback): {'met' if ok else 'NOT met'}{failed}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
