"""Soak of ``noisetrace serve``: good, bad, oversize, bomb and stalled clients at once.

Starts the server as a child process on 127.0.0.1 (never another host) with a private
temporary folder, then, from this process, sends a fixed number of requests over a fixed
number of client threads, mixing good images, a short video, corrupt files, oversize uploads
and decompression bombs (tiny files declaring 15000x15000 or 16000x16000 pixels), while other
clients open uploads and stall mid-body. Each client has its own loopback address (127.0.x.y),
as clients on a network would, so the per-address upload cap is not what is measured.

Prints a table per kind (statuses, latency) and the checks of issue 18: no 5xx other than the
documented load shedding (503 + Retry-After), good requests still answered, bad ones refused
with their 4xx, stalled ones ended with 408, no upload left in the server's temporary folder
while it runs or after it stops; and the server's memory (idle, before, after, peak).
Exit status 1 when a check fails.

    .venv/bin/python benchmarks/serve_load.py                      # bundled default model
    .venv/bin/python benchmarks/serve_load.py --model runs/x/best  # a trained model dir
    .venv/bin/python benchmarks/serve_load.py --random-model       # tiny untrained srm-cnn
    .venv/bin/python benchmarks/serve_load.py --random-model --short  # ~40 s smoke run

A stalled upload ends after the server's idle limit (15 s), so a run lasts at least that.
Inputs are generated here (no third-party data), so any machine gives comparable numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import struct
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


def _gif_screen(w: int, h: int) -> bytes:
    """35 bytes: a GIF whose logical screen is ``w`` x ``h`` around a 1-pixel frame."""
    head = b"GIF89a" + struct.pack("<HH", w, h) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    return head + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00\x02\x02\x44\x01\x00\x3b"


def _jpeg_declaring(w: int, h: int) -> bytes:
    """A ~630-byte JPEG whose frame header declares ``w`` x ``h`` pixels."""
    data = bytearray(_jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def make_inputs(size: tuple[int, int], max_upload_mb: float, tmp: Path) -> dict[str, bytes]:
    """The kinds of upload, as bytes: image, video, corrupt, oversize and bombs."""
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
        "bomb gif": _gif_screen(16000, 16000),  # 35 bytes: cost minutes before issue 18
        "bomb jpeg": _jpeg_declaring(15000, 15000),
    }


# The request mix, repeated: of every 10, 6 images, 1 video, 1 corrupt, 1 oversize, 1 bomb.
MIX = ["image"] * 6 + ["video", "corrupt", "oversize", "bomb"]
BOMBS = ["bomb gif", "bomb jpeg"]
#: kind -> statuses that are its right answer; 503 (load shedding) is allowed for every kind.
WANT = {
    "image": {"200"}, "video": {"200"}, "corrupt": {"422"}, "oversize": {"413"},
    "bomb gif": {"413"}, "bomb jpeg": {"413"}, "stalled": {"408"},
}  # fmt: skip
SHED = "503"
UPLOAD_PREFIX = "noisetrace-serve-"  # the server's upload folders in its temporary folder


def start_server(
    model: str, port: int, args: argparse.Namespace, tmpdir: Path
) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "noisetrace.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--model", model, "--workers", str(args.workers),
        "--queue", str(args.queue), "--max-upload-mb", str(args.max_upload_mb),
        "--timeout", str(args.timeout), "--device", "cpu", "--log-level", "warning",
    ]  # fmt: skip
    # Its own temporary folder, so "no upload left behind" is checked on its files alone.
    return subprocess.Popen(cmd, env={**os.environ, "TMPDIR": str(tmpdir)})


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


def _client_address(i: int, group: int) -> str:
    """A loopback source address of its own for client ``i`` (Linux routes all of 127/8)."""
    return f"127.0.{group}.{2 + i % 250}"


def run_load(base: str, inputs: dict[str, bytes], n: int, concurrency: int) -> dict:
    """Send ``n`` requests over ``concurrency`` threads; returns statuses and latencies."""
    import httpx

    lock = threading.Lock()
    next_i = [0]
    statuses: Counter = Counter()
    latency: dict[str, list[float]] = defaultdict(list)

    def worker(t: int) -> None:
        transport = httpx.HTTPTransport(local_address=_client_address(t, 1))
        with httpx.Client(base_url=base, timeout=300, transport=transport) as client:
            while True:
                with lock:
                    i = next_i[0]
                    if i >= n:
                        return
                    next_i[0] += 1
                kind = MIX[i % len(MIX)]
                if kind == "bomb":
                    kind = BOMBS[(i // len(MIX)) % len(BOMBS)]
                name = {"video": "clip.mp4", "bomb gif": "bomb.gif"}.get(kind, f"{kind}.jpg")
                t0 = time.perf_counter()
                try:
                    r = client.post("/v1/scan", files={"file": (name, inputs[kind])})
                    code = str(r.status_code)
                except httpx.HTTPError as exc:  # e.g. reset while sending an oversize body
                    code = f"reset ({type(exc).__name__})"
                dt = time.perf_counter() - t0
                with lock:
                    statuses[(kind, code)] += 1
                    latency[kind].append(dt)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed": time.perf_counter() - t0, "statuses": statuses, "latency": latency}


class Stallers:
    """``count`` clients that each start an upload, send a few bytes of it and then nothing,
    again and again until stopped; each records the status the server ends it with."""

    HEAD = (b"POST /v1/scan HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            b'Content-Disposition: form-data; name="file"; filename="slow.jpg"\r\n\r\n'
            b"\xff\xd8\xff\xe0")  # fmt: skip

    def __init__(self, port: int, count: int, wait_s: float) -> None:
        self.port, self.wait_s = port, wait_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.latency: list[float] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(count)]

    def __enter__(self) -> Stallers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=self.wait_s,
                                              source_address=(_client_address(i, 2), 0)) as s:
                    s.sendall(self.HEAD)
                    first = s.recv(4096).split(b"\r\n", 1)[0].split()
                    code = first[1].decode() if len(first) > 1 else "closed"
            except TimeoutError:
                code = f"no answer in {self.wait_s:g} s"
            except OSError as exc:
                code = f"reset ({type(exc).__name__})"
            with self.lock:
                self.statuses[("stalled", code)] += 1
                self.latency.append(time.perf_counter() - t0)


def _health(base: str) -> dict:
    import httpx

    return httpx.get(base + "/healthz", timeout=10).json()


def _wait_idle(base: str, upload_root: Path | None, timeout: float = 60) -> tuple[dict, list]:
    """/healthz and what is left in the upload folder, once nothing is in flight."""
    t0 = time.monotonic()
    while True:
        h = _health(base)
        left = sorted(upload_root.iterdir()) if upload_root and upload_root.exists() else []
        idle = h["uploading"] == 0 and h["in_progress"] == 0 and not left
        if idle or time.monotonic() - t0 > timeout:
            return h, left
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="bundled model name or model directory")
    ap.add_argument("--random-model", action="store_true", help="tiny untrained srm-cnn")
    ap.add_argument("--requests", type=int, default=200, help="total requests (fixed)")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads")
    ap.add_argument("--stalled", type=int, default=6, help="clients that stall mid-upload")
    ap.add_argument("--workers", type=int, default=2, help="server --workers")
    ap.add_argument("--queue", type=int, default=8, help="server --queue")
    ap.add_argument("--max-upload-mb", type=float, default=2, help="server --max-upload-mb")
    ap.add_argument("--timeout", type=float, default=120, help="server --timeout")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--short", action="store_true",
                    help="a quick check: 40 requests of 240x320 images")  # fmt: skip
    args = ap.parse_args()
    if args.short:
        args.requests, args.size = min(args.requests, 40), (240, 320)

    from noisetrace.serve.app import free_port

    with tempfile.TemporaryDirectory(prefix="noisetrace-load-") as tmp_s:
        tmp = Path(tmp_s)
        server_tmp = tmp / "server-tmp"
        server_tmp.mkdir()
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
        proc = start_server(model, port, args, server_tmp)
        try:
            wait_ready(base, proc)
            roots = list(server_tmp.glob(UPLOAD_PREFIX + "*"))
            upload_root = roots[0] if len(roots) == 1 else None
            rss_idle, _ = _rss_mb(proc.pid)
            # One of each kind first, so lazy initialisation is not in the measurement.
            warm = run_load(base, inputs, len(MIX) * len(BOMBS), 1)
            rss0, _ = _rss_mb(proc.pid)
            # A stalled upload is answered after the server's idle limit (15 s): wait longer.
            with Stallers(port, args.stalled, wait_s=40) as stallers:
                res = run_load(base, inputs, args.requests, args.concurrency)
            rss1, peak = _rss_mb(proc.pid)
            health, left_running = _wait_idle(base, upload_root)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Upload folders (and their upload.part files) are the server's; libraries may leave
        # their own small files there too (onnxruntime writes ".ses" when imported).
        left_after = sorted(str(p.relative_to(server_tmp)) for p in server_tmp.rglob("*")
                            if p.relative_to(server_tmp).parts[0].startswith(UPLOAD_PREFIX))
        others = sorted(p.name for p in server_tmp.iterdir()
                        if not p.name.startswith(UPLOAD_PREFIX))

    statuses: Counter = res["statuses"] + stallers.statuses
    latency = {**res["latency"], "stalled": stallers.latency}
    n = sum(res["statuses"].values())
    print(
        f"model {model} · {args.requests} requests · {args.concurrency} client threads + "
        f"{args.stalled} stalled clients · server workers {args.workers}, queue {args.queue}, "
        f"max upload {args.max_upload_mb:g} MB · image {args.size[1]}x{args.size[0]} JPEG "
        f"({len(inputs['image']) / 1024:.0f} kB), video 24 frames 320x240 "
        f"({len(inputs['video']) / 1024:.0f} kB) · cpu cores {os.cpu_count()}"
    )
    print(f"warm-up statuses: {dict(sorted(warm['statuses'].items()))}")
    print(f"requests/s: {n / res['elapsed']:.2f}  ({n} in {res['elapsed']:.1f} s)\n")

    failures: list[str] = []
    head = f"{'kind':10s} | {'sent':>4s} | {'statuses':34s} | {'p50 s':>6s} | {'p95 s':>6s} | " \
           f"{'max s':>6s} | check"  # fmt: skip
    print(head)
    print("-" * len(head))
    for kind in WANT:
        codes = {c: k for (kk, c), k in statuses.items() if kk == kind}
        xs = sorted(latency.get(kind, []))
        if not codes:
            continue
        wrong = {c: k for c, k in codes.items() if c not in WANT[kind] | {SHED}}
        if kind == "oversize":  # the server may close the connection while the body is sent
            wrong = {c: k for c, k in wrong.items() if not c.startswith("reset")}
        answered = sum(k for c, k in codes.items() if c in WANT[kind])
        ok = not wrong and answered > 0
        if kind in ("image", "video"):  # good requests: still answered, not just shed
            ok = ok and answered >= 0.9 * sum(codes.values())
        if not ok:
            failures.append(f"{kind}: {dict(codes)}")
        text = ", ".join(f"{c}×{k}" for c, k in sorted(codes.items()))
        p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
        print(f"{kind:10s} | {sum(codes.values()):4d} | {text[:34]:34s} | "
              f"{statistics.median(xs):6.2f} | {p95:6.2f} | {xs[-1]:6.2f} | "
              f"{'ok' if ok else 'FAIL'}")  # fmt: skip
    fives = {c: k for (_, c), k in statuses.items() if c.startswith("5") and c != SHED}
    if fives:
        failures.append(f"5xx other than {SHED}: {fives}")
    if health["uploading"] or health["in_progress"] or left_running:
        failures.append(f"not idle after the load: {health}, left {left_running}")
    if left_after:
        failures.append(f"uploads left in the temporary folder after it stopped: {left_after}")
    if upload_root is None:
        failures.append("could not find the server's upload folder")
    print(
        f"\n5xx other than load shedding ({SHED}): {sum(fives.values())} · uploads left while "
        f"running: {len(left_running)} · uploads left after stop: "
        f"{'none' if not left_after else left_after}"
        + (f" (other files there, not uploads: {', '.join(others)})" if others else "")
    )
    print(
        f"server RSS: idle {rss_idle:.0f} MiB, before load {rss0:.0f} MiB, after "
        f"{rss1:.0f} MiB, peak {peak:.0f} MiB"
    )
    print("all checks passed" if not failures else "FAILED: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
