"""Scan throughput of the local engine and the Ray engine in one run, and a cluster estimate.

    python benchmarks/scale.py                    # 240 generated 256x256 JPEGs
    python benchmarks/scale.py --quick            # a smoke run
    python benchmarks/scale.py --nodes 4,16 --cores 16,64 --json out.json

On the same generated files it measures:
- local engine, one worker: seconds per file on one core (decode + score), the unit cost;
- local engine, one worker per core: files/s on this machine;
- Ray engine on a local Ray with every core: files/s end to end (start-up included), the
  steady files/s once actors are up (record arrival rate after the first tenth), and the
  actors' own seconds per file (decode + score, from the records);
- the driver's ceiling: JSONL records/s it can write (every record goes through it).
Then it estimates what N nodes of M cores would do: N*M / (per-file core-seconds under Ray),
capped by the driver's ceiling, plus one actor start-up per window of the listing. Storage
bandwidth is not modelled (the generated files sit on local disk): multiply files/s by the
mean file size and compare with what the store gives.
Absolute numbers move with machine load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from noisetrace.detector import Detector, DetectorConfig
from noisetrace.scan import JsonlWriter, scan_paths


def make_files(root: Path, n: int, side: int) -> list[str]:
    """``n`` JPEG crops of scikit-image's bundled photos (real camera content)."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - side), rng.integers(0, p.shape[1] - side)
        f = root / f"img{i:05d}.jpg"
        Image.fromarray(p[y : y + side, x : x + side]).save(f, quality=90)
        files.append(str(f))
    return files


def model_dir(root: Path, name: str | None) -> str:
    """A bundled model by name, else a randomly initialised srm-cnn (speed does not depend on
    the weights)."""
    from noisetrace.zoo import list_bundled

    if name:
        return name
    if "default" in list_bundled():
        return "default"
    import torch

    from noisetrace import models

    torch.manual_seed(0)
    d = root / "model"
    Detector(models.create("srm-cnn"), DetectorConfig(name="srm-cnn", arch="srm-cnn")).save(d)
    return str(d)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_local(model: str, files: list[str], cores: int) -> tuple[dict[str, float], str]:
    from noisetrace.zoo import load_detector

    det = load_detector(model)
    list(scan_paths(det, files[:4]))  # warm-up: ONNX export/session, page cache
    t1 = timed(lambda: list(scan_paths(det, files, workers=1)))
    tn = timed(lambda: list(scan_paths(det, files, workers=cores)))
    return {"s/file 1 core": t1 / len(files), "local files/s": len(files) / tn}, det.backend


def bench_ray(model: str, files: list[str], cores: int) -> dict[str, float]:
    import ray

    from noisetrace.engines.ray_engine import WorkerConfig, connect, scan_ray

    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    connect(None)
    t_init = time.perf_counter() - t0
    cfg = WorkerConfig(model=model, device="cpu")
    t0 = time.perf_counter()
    stamps, work = [], 0.0
    for r in scan_ray(files, cfg):
        assert r.error is None, r.error
        stamps.append(time.perf_counter() - t0)
        work += r.seconds
    ray.shutdown()
    # Steady state: the arrival rate after the first tenth of the records (actors are up and
    # busy by then), so the fixed start-up cost does not dilute the per-file cost.
    k = max(1, len(stamps) // 10)
    steady = (len(stamps) - k) / max(1e-9, stamps[-1] - stamps[k - 1])
    return {
        "ray init s": t_init,
        "ray files/s e2e": len(files) / stamps[-1],
        "ray time to first record s": stamps[0],
        "ray files/s steady": steady,
        "ray actor s/file (decode+score)": work / len(files),
    }


def bench_driver(n: int = 20_000) -> float:
    """Records/s the driver's JSONL writer sustains (it flushes every record)."""
    from noisetrace.detector import ScanResult

    r = ScanResult(path="/data/archive/2026/01/01/some-file-name-000001.jpg", kind="image",
                   score=0.123456, verdict="real", model="default", seconds=0.01,
                   width=1024, height=768)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        w = JsonlWriter(Path(tmp) / "out.jsonl")
        t = timed(lambda: [w.write(r) for _ in range(n)])
        w.close()
    return n / t


def estimate(
    core_s_per_file: float, driver_cap: float, startup_s: float, nodes: list[int], cores: list[int]
) -> list[dict]:
    """files/s = min(N*M / core-s per file, driver cap); 10M files also pay one actor start-up
    per window of the listing (``scan_ray``'s ``window``)."""
    from noisetrace.engines.ray_engine import scan_ray

    window = scan_ray.__kwdefaults__["window"]
    rows = []
    for n in nodes:
        for m in cores:
            fps = min(n * m / core_s_per_file, driver_cap)
            hours = (1e7 / fps + math.ceil(1e7 / window) * startup_s) / 3600
            rows.append({"nodes": n, "cores/node": m, "files/s": fps,
                         "hours per 10M files": hours,
                         "bound": "driver" if fps == driver_cap else "cores"})  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few files (a smoke run)")
    ap.add_argument("--files", type=int, default=240, help="generated files (default 240)")
    ap.add_argument("--side", type=int, default=256, help="image side in pixels")
    ap.add_argument("--model", default=None, help="bundled model or model directory")
    ap.add_argument("--nodes", default="1,4,16,64", help="node counts for the estimate")
    ap.add_argument("--cores", default="16,64", help="cores per node for the estimate")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print("Ray is not installed: pip install 'noisetrace[ray]'", file=sys.stderr)
        return 2
    os.environ.setdefault("NOISETRACE_CACHE", tempfile.mkdtemp(prefix="nt-bench-cache-"))
    cores = os.cpu_count() or 1
    n = 48 if args.quick else args.files
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_files(root, n, args.side)
        model = model_dir(root, args.model)
        local, backend = bench_local(model, files, cores)
        print(f"local engine measured ({backend})", file=sys.stderr)
        ray_res = bench_ray(model, files, cores)
        print("ray engine measured", file=sys.stderr)
    driver = bench_driver()
    # Per-file core-seconds under Ray: the larger of the actors' own decode+score time and
    # what the steady arrival rate implies (records arrive in bursts of a block, so on a
    # short run the rate alone can look faster than the work allows).
    core_s = max(ray_res["ray actor s/file (decode+score)"], cores / ray_res["ray files/s steady"])
    nodes = [int(x) for x in args.nodes.split(",")]
    per_node = [int(x) for x in args.cores.split(",")]
    est = estimate(core_s, driver, ray_res["ray time to first record s"], nodes, per_node)

    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"noisetrace scan throughput: {n} JPEGs {args.side}x{args.side}, "
                    f"{cores} cores, {backend}, one run")  # fmt: skip
    t.add_column("measure")
    t.add_column("value", justify="right")
    measured = {**local, **ray_res,
                "core-s/file under Ray": core_s, "driver JSONL records/s": driver}  # fmt: skip
    for k, v in measured.items():
        t.add_row(k, f"{v:.4f}" if v < 1 else f"{v:,.1f}")
    con.print(t)
    startup = ray_res["ray time to first record s"]
    e = Table(
        title=f"estimate: N nodes x M cores at {core_s * 1000:.1f} core-ms/file, driver cap "
        f"{driver:,.0f} records/s, {startup:.0f} s start-up per window"
    )
    for col in est[0]:
        e.add_column(col, justify="right")
    for r in est:
        e.add_row(str(r["nodes"]), str(r["cores/node"]), f"{r['files/s']:,.0f}",
                  f"{r['hours per 10M files']:,.2f}", r["bound"])  # fmt: skip
    con.print(e)
    if args.json:
        args.json.write_text(json.dumps({"measured": measured, "estimate": est}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
