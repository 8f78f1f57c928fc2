"""A face model on video, side by side in one run: face finding (every frame searched in full,
``track: 0``, or faces followed, ``track: 5``) x encoder calls (one at a time, or two side by
side on single-threaded sessions, ``OnnxImageEncoder.embed_each``), video frames/s end to end
on the generated 640x480 clip of ``benchmarks/scan.py``, each setting timed ``--rounds``
times in turn.

Run: ``.venv/bin/python benchmarks/faces_video.py [--model faces] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scan import make_inputs  # noqa: E402

from noisetrace.semantic import backbones  # noqa: E402
from noisetrace.zoo import load_detector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="faces", help="a face model (bundled name or folder)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=60)
    a = ap.parse_args()
    video = make_inputs(Path(tempfile.mkdtemp()), 1)["video"]
    det = load_detector(a.model)
    side_by_side = backbones.OnnxImageEncoder.embed_each

    def one_at_a_time(self, chunks):  # the same calls, in turn
        return [self.embed(c) for c in chunks]

    settings = [(calls, track) for calls in ("one at a time", "side by side") for track in (0, 5)]
    fps: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    det.scan(video, video_frames=8)  # warm-up: sessions, face detectors
    for _ in range(a.rounds):
        for calls, track in settings:
            backbones.OnnxImageEncoder.embed_each = (  # type: ignore[method-assign]
                side_by_side if calls == "side by side" else one_at_a_time)
            det.config.face = {**det.config.face, "track": track}
            t0 = time.perf_counter()
            r = det.scan(video, video_frames=a.frames)
            fps[(calls, track)].append(r.frames / (time.perf_counter() - t0))
    backbones.OnnxImageEncoder.embed_each = side_by_side  # type: ignore[method-assign]
    base = statistics.median(fps[("one at a time", 0)])
    print(f"{a.model}: video frames/s at 640x480 end to end, median of {a.rounds} rounds")
    print(f"{'encoder calls':>14} {'face finding':>14} {'frames/s':>9} {'x first':>8}")
    for calls, track in settings:
        m = statistics.median(fps[(calls, track)])
        find = "followed (5)" if track else "full search"
        print(f"{calls:>14} {find:>14} {m:9.1f} {m / base:8.2f}")


if __name__ == "__main__":
    main()
