"""Bounded local load on ``noisetrace serve``: requests/s of /v1/scan, status counts, RSS.

Starts the server as a child process on 127.0.0.1 (never another host), then sends a fixed
number of requests from this process with a fixed number of client threads, mixing good
images, a short video, corrupt files and oversize uploads. Prints requests/s, latency per
kind, status counts and the server's resident memory before and after (and its peak).

    .venv/bin/python benchmarks/serve_load.py                      # bundled default model
    .venv/bin/python benchmarks/serve_load.py --model runs/x/best  # a trained model dir
    .venv/bin/python benchmarks/serve_load.py --random-model       # tiny untrained srm-cnn

Inputs are generated here (no third-party data), so any machine gives comparable numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MiB, from /proc (Linux)."""
    cur = peak = float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


def _photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour field plus sensor-like noise (JPEG sizes like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 90 * np.sin(xx / (37 + 9 * c) + yy / (53 + 5 * c) + seed + c)
            for c in range(3)
        ],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, q: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=q)
    return buf.getvalue()


def make_inputs(size: tuple[int, int], max_upload_mb: float, tmp: Path) -> dict[str, bytes]:
    """The four kinds of upload, as bytes: image, video, corrupt, oversize."""
    from noisetrace.media.video import write_video

    h, w = size
    img = _jpeg(_photo_like(h, w, 0))
    frames = [_photo_like(240, 320, i) for i in range(24)]
    write_video(tmp / "clip.mp4", frames, fps=12)
    oversize = b"\xff\xd8\xff" + os.urandom(int(max_upload_mb * 2**20) + 4096)
    return {
        "image": img,
        "video": (tmp / "clip.mp4").read_bytes(),
        "corrupt": img[: len(img) // 3],  # JPEG header, body cut short
        "oversize": oversize,
    }


# The request mix, repeated: 7 images, 1 video, 1 corrupt, 1 oversize in every 10.
MIX = ["image"] * 7 + ["video", "corrupt", "oversize"]


def start_server(model: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "noisetrace.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--model", model, "--workers", str(args.workers),
        "--queue", str(args.queue), "--max-upload-mb", str(args.max_upload_mb),
        "--timeout", str(args.timeout), "--device", "cpu", "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(cmd)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} (see above)")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer /healthz within {timeout:.0f} s")


def run_load(base: str, inputs: dict[str, bytes], n: int, concurrency: int) -> dict:
    """Send ``n`` requests over ``concurrency`` threads; returns statuses and latencies."""
    import httpx

    lock = threading.Lock()
    next_i = [0]
    statuses: Counter = Counter()
    latency: dict[str, list[float]] = defaultdict(list)

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=300) as client:
            while True:
                with lock:
                    i = next_i[0]
                    if i >= n:
                        return
                    next_i[0] += 1
                kind = MIX[i % len(MIX)]
                name = {"video": "clip.mp4"}.get(kind, f"{kind}.jpg")
                t0 = time.perf_counter()
                try:
                    r = client.post("/v1/scan", files={"file": (name, inputs[kind])})
                    code = str(r.status_code)
                except httpx.HTTPError as exc:  # e.g. reset while sending an oversize body
                    code = f"client error ({type(exc).__name__})"
                dt = time.perf_counter() - t0
                with lock:
                    statuses[(kind, code)] += 1
                    latency[kind].append(dt)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed": time.perf_counter() - t0, "statuses": statuses, "latency": latency}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="bundled model name or model directory")
    ap.add_argument("--random-model", action="store_true", help="tiny untrained srm-cnn")
    ap.add_argument("--requests", type=int, default=200, help="total requests (fixed)")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads")
    ap.add_argument("--workers", type=int, default=2, help="server --workers")
    ap.add_argument("--queue", type=int, default=8, help="server --queue")
    ap.add_argument("--max-upload-mb", type=float, default=2, help="server --max-upload-mb")
    ap.add_argument("--timeout", type=float, default=120, help="server --timeout")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    args = ap.parse_args()

    from noisetrace.serve.app import free_port

    with tempfile.TemporaryDirectory(prefix="noisetrace-load-") as tmp_s:
        tmp = Path(tmp_s)
        model = args.model
        if args.random_model:
            from noisetrace import models
            from noisetrace.detector import Detector, DetectorConfig

            model = str(tmp / "model")
            cfg = DetectorConfig(name="random", arch="srm-cnn")
            Detector(models.create("srm-cnn"), cfg, device="cpu").save(model)
        inputs = make_inputs(tuple(args.size), args.max_upload_mb, tmp)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(model, port, args)
        try:
            wait_ready(base, proc)
            rss_idle, _ = _rss_mb(proc.pid)
            # One of each kind first, so lazy initialisation is not in the measurement.
            warm = run_load(base, inputs, len(MIX), 1)
            rss0, _ = _rss_mb(proc.pid)
            res = run_load(base, inputs, args.requests, args.concurrency)
            rss1, peak = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    n = sum(res["statuses"].values())
    print(
        f"model {model} · {args.requests} requests · {args.concurrency} client threads · "
        f"server workers {args.workers}, queue {args.queue}, max upload "
        f"{args.max_upload_mb:g} MB · image {args.size[1]}x{args.size[0]} JPEG "
        f"({len(inputs['image']) / 1024:.0f} kB), video 24 frames 320x240 "
        f"({len(inputs['video']) / 1024:.0f} kB) · cpu cores {os.cpu_count()}"
    )
    print(f"warm-up statuses: {dict(sorted(warm['statuses'].items()))}")
    print(f"requests/s: {n / res['elapsed']:.2f}  ({n} in {res['elapsed']:.1f} s)")
    print("status counts:")
    for (kind, code), c in sorted(res["statuses"].items()):
        print(f"  {kind:9s} {code:>4s}  {c}")
    print("latency (s):      p50     p95     max")
    for kind, xs in sorted(res["latency"].items()):
        xs = sorted(xs)
        p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
        print(f"  {kind:9s} {statistics.median(xs):8.3f} {p95:7.3f} {xs[-1]:7.3f}")
    print(
        f"server RSS: idle {rss_idle:.0f} MiB, before load {rss0:.0f} MiB, after "
        f"{rss1:.0f} MiB, peak {peak:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
