"""Media preprocessing speed, side by side in one run.

- decode fps: all frames vs keyframes only (I-frames decoded alone);
- face detection ms/frame for every installed backend;
- end-to-end crops/s (decode + detect + track + crop + resize) per backend;
- a face model's face finding per backend, frames/s: every frame searched in full (two
  threads, ``face: {track: 0}``) vs faces followed from frame to frame (``track: 5``, the
  default: a full search every 5th frame, a window around the last face in between).

By default on a generated 640x480 video (the astronaut's head moving over the coffee photo,
skimage's bundled images); ``--video`` takes any other file, e.g. a DFDC clip from
``../shared/data``. Run: ``.venv/bin/python benchmarks/media.py [--frames 120] [--json F]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from noisetrace.media.crops import FaceCropper
from noisetrace.media.faces import available_backends, get_face_detector
from noisetrace.media.video import count_frames, read_frames, write_video
from noisetrace.prepare import PrepareConfig, extract_crops


def make_video(path: Path, n: int, fps: int = 25, gop: int = 25) -> None:
    """n frames, 640x480: a 240-px head sliding across a still background."""
    bg = np.asarray(Image.fromarray(data.coffee()).resize((640, 480)))
    head = np.asarray(Image.fromarray(data.astronaut()[0:256, 96:352]).resize((240, 240)))
    frames = []
    for i in range(n):
        f = bg.copy()
        x = 40 + (i * 3) % 340
        f[100:340, x : x + 240] = head
        frames.append(f)
    write_video(path, frames, fps=fps, codec="libx264" if _has("libx264") else "mpeg4", gop=gop)


def _has(codec: str) -> bool:
    import av

    return codec in av.codecs_available


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls (s)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, help="video to use instead of the generated one")
    ap.add_argument("--frames", type=int, default=120, help="length of the generated video")
    ap.add_argument("--detect-frames", type=int, default=20, help="frames timed per backend")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    video = args.video or Path(tmp.name) / "bench.mp4"
    if not args.video:
        make_video(video, args.frames)
    total = count_frames(video)
    res: dict = {"video": str(video), "frames": total, "machine": platform.processor() or
                 platform.machine(), "backends": {}}  # fmt: skip

    t_all = timed(lambda: read_frames(video, "all"), 2)
    keys = read_frames(video, "keyframes")
    t_key = timed(lambda: read_frames(video, "keyframes"), 2)
    res["decode_all_fps"] = total / t_all
    res["decode_keyframes_fps"] = len(keys) / t_key
    res["keyframes"] = len(keys)
    res["keyframes_video_seconds_per_s"] = total / t_key  # video covered per second of work

    frames = [f.image for f in read_frames(video, "even", args.detect_frames)]
    res["frame_shape"] = list(frames[0].shape)
    every = [f.image for f in read_frames(video, "all")][: args.frames]  # consecutive frames
    for b in available_backends():
        det = get_face_detector(b)
        det.detect(frames[0])  # warm-up (model load, first-call allocations)
        found = 0

        def run(det=det) -> None:
            nonlocal found
            found = sum(bool(det.detect(f)) for f in frames)

        t = timed(run)
        cfg = PrepareConfig(frames="all", faces=b, size=256)
        n_crops = 0

        def e2e(det=det, cfg=cfg) -> None:
            nonlocal n_crops
            n_crops = len(extract_crops(video, cfg, det))

        te = timed(e2e)
        follow = {}
        for track in (0, 5):
            fc = FaceCropper({"backend": b, "scale": 1.3, "size": 256, "track": track})
            list(fc.map(every[:2]))  # warm-up: the threads' detectors
            follow[track] = len(every) / timed(lambda fc=fc, v=every: list(fc.map(v)))
        res["backends"][b] = {
            "detect_ms_per_frame": 1000 * t / len(frames),
            "frames_with_face": f"{found}/{len(frames)}",
            "crops_per_s": n_crops / te,
            "crops": n_crops,
            "find_fps_full": follow[0],
            "find_fps_followed": follow[5],
        }

    print(f"video {video.name}: {total} frames {res['frame_shape'][1]}x{res['frame_shape'][0]}, "
          f"{res['keyframes']} keyframes")  # fmt: skip
    print(f"decode all frames : {res['decode_all_fps']:8.1f} frames/s")
    print(f"decode keyframes  : {res['decode_keyframes_fps']:8.1f} frames/s "
          f"({res['keyframes_video_seconds_per_s']:.0f} video frames covered/s)")  # fmt: skip
    print(f"{'backend':10s} {'detect ms/frame':>16s} {'faces found':>12s} {'e2e crops/s':>12s} "
          f"{'find fps full':>14s} {'find fps followed':>18s}")  # fmt: skip
    for b, r in res["backends"].items():
        print(f"{b:10s} {r['detect_ms_per_frame']:16.1f} {r['frames_with_face']:>12s} "
              f"{r['crops_per_s']:12.1f} {r['find_fps_full']:14.1f} "
              f"{r['find_fps_followed']:18.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
