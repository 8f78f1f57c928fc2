"""Start-up time of the `noisetrace` command beside a bare `python -c pass`.

    .venv/bin/python benchmarks/startup.py            # median of 5 runs each
    .venv/bin/python benchmarks/startup.py --runs 9

Prints one row per command: median and fastest wall time, the ratio to `python -c pass`
(which factors out how busy the machine is) and the target from issue 20 (--help and
--version under 0.5 s, models under 1.5 s on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

# (label, arguments, target in seconds or None)
CASES: list[tuple[str, list[str], float | None]] = [
    ("noisetrace --version", ["--version"], 0.5),
    ("noisetrace --help", ["--help"], 0.5),
    ("noisetrace scan --help", ["scan", "--help"], 0.5),
    ("noisetrace models", ["models"], 1.5),
]


def _noisetrace() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).parent / "noisetrace"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "noisetrace.cli"]


def _times(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    args = ap.parse_args()
    base = _times([sys.executable, "-c", "pass"], args.runs)
    rows = [("python -c pass", base, None)]
    exe = _noisetrace()
    _times(exe + ["--version"], 1)  # warm the file cache once, like a second invocation
    for label, argv, target in CASES:
        rows.append((label, _times(exe + argv, args.runs), target))
    b = statistics.median(base)
    print(f"start-up, median of {args.runs} runs ({sys.executable})")
    print(f"| {'command':<24} | median s | min s | x python -c pass | target   |")
    print(f"|{'-' * 26}|----------|-------|------------------|----------|")
    for label, ts, target in rows:
        med = statistics.median(ts)
        verdict = "" if target is None else f"{'ok' if med < target else 'OVER'} <{target:g}"
        print(f"| {label:<24} | {med:8.3f} | {min(ts):5.3f} | {med / b:16.1f} | {verdict:<8} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
