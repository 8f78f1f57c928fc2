"""Scan speed, side by side in one run: `python benchmarks/scan.py` (add --quick for a smoke run).

For each detector and runtime it measures, on the same generated inputs:
- images/s end to end (decode + score) on a folder of 256x256 JPEGs, through `scan_paths`;
- model-only images/s at 256x256, batch 16;
- seconds per megapixel at full resolution (a 12 MP image, tiled as scanning does);
- images/s end to end on typical photos: 3 MP (2000x1500) camera-like JPEGs, 2 workers;
- video frames/s end to end on a 640x480 clip of a face (decode + score; `faces` also with
  its jitter index off: here every one of the clip's 60 frames is sampled, each with its run
  of 12, a worst case for the index; face models such as
  the bundled `faces` and MesoNet also find and crop the face in every frame).
Peers (a plain timm ResNet-50 at 224 px, Corvi's full-resolution ResNet-50, MesoNet) run with
random weights (speed does not depend on them) and, being heavy, on fewer inputs: 8 files, a
0.25 MP full-resolution region, 16 video frames. The last column is each row's typical-photo
rate over the timm ResNet-50's, measured in the same run.
Absolute numbers vary with machine load; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisetrace import models
from noisetrace.detector import Detector, DetectorConfig
from noisetrace.media.video import write_video
from noisetrace.scan import scan_paths
from noisetrace.zoo import list_bundled, load_detector


def make_inputs(root: Path, n_images: int) -> dict[str, Path | list[str]]:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    files = []
    for i in range(n_images):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - 256), rng.integers(0, p.shape[1] - 256)
        f = root / f"img{i:03d}.jpg"
        Image.fromarray(p[y : y + 256, x : x + 256]).save(f, quality=90)
        files.append(str(f))
    typical = []
    for i in range(8):  # 3 MP photos, the size most phones share at
        p = np.asarray(Image.fromarray(photos[i % len(photos)]).resize((2000, 1500)))
        f = root / f"photo{i:02d}.jpg"
        Image.fromarray(p).save(f, quality=90)
        typical.append(str(f))
    big = np.tile(photos[0], (8, 6, 1))[:3000, :4000]  # 12 MP
    big_path = root / "big.jpg"
    Image.fromarray(big).save(big_path, quality=92)
    a = np.asarray(Image.fromarray(photos[0]).resize((800, 800)))
    frames = [np.ascontiguousarray(a[i * 4 : i * 4 + 480, i * 4 : i * 4 + 640]) for i in range(60)]
    video = root / "clip640x480.mp4"
    write_video(video, frames, fps=30)
    return {"files": files, "typical": typical, "big": big_path, "video": video}


def detectors(quick: bool) -> list[tuple[str, Detector, bool]]:
    """(label, detector, is_peer). Peers are heavy: they get fewer inputs (rates stay rates)."""
    out = []
    for name in list_bundled():
        first = load_detector(name, backend="torch")
        if first.config.arch in ("fusion", "feature-head"):  # ONNX Runtime + NumPy heads only
            out.append((f"{name} [{first.backend}]", first, False))
            if first.config.temporal:  # what the jitter index beside the score costs on video
                off = load_detector(name, backend="torch")
                off.config.temporal = None
                out.append((f"{name} without jitter index [{off.backend}]", off, False))
            continue
        for backend in ("torch", "onnx"):
            out.append((f"{name} [{backend}]", load_detector(name, backend=backend), False))
    peers = [p for p in ("corvi-resnet50", "mesonet4") if p in models.list_models()]
    out.append(("timm resnet50 @224 [torch]", _timm_resnet50(), True))
    if not quick:
        for p in peers:
            model = models.create(p)
            # MesoNet is a face model: it finds faces in video frames, as `faces` does.
            cfg = DetectorConfig.for_model(model, p, p)
            if cfg.input == "face":
                cfg.face = {**cfg.face, "size": 256, "detect": {"max_side": 320}}
            det = Detector(model, cfg, backend="torch")
            out.append((f"{p} [torch]", det, True))
            # ONNX Runtime's arena for a stride-1 ResNet-50 exceeds 24 GB at these sizes.
            if p != "corvi-resnet50":
                out.append((f"{p} [onnx]", Detector(det.model, det.config, backend="onnx"), True))
    return out


class _ResNet50At224(torch.nn.Module):
    """A plain timm ResNet-50 classifier fed 224 px (the usual CNN detector baseline)."""

    pretrained_cfg = {"input_size": (224, 224), "normalize": "imagenet", "input": "image"}

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model("resnet50", pretrained=False, num_classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


def _timm_resnet50() -> Detector:
    return Detector(_ResNet50At224(), DetectorConfig(name="resnet50", arch="resnet50"),
                    backend="torch")  # fmt: skip


def timeit(fn, repeat: int) -> float:
    """Mean seconds per call after one warm-up call (repeat 0: time the first call alone)."""
    if repeat == 0:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def bench(det: Detector, inputs: dict, quick: bool, peer: bool) -> dict[str, float]:
    files = inputs["files"][:8] if peer else inputs["files"]
    list(scan_paths(det, files[:2]))
    t0 = time.perf_counter()
    recs = list(scan_paths(det, files, workers=2))
    e2e = len(files) / (time.perf_counter() - t0)
    assert all(r.error is None for r in recs), [r.error for r in recs if r.error]
    batch = np.stack([np.asarray(Image.open(f)) for f in files[:16]])
    model_only = len(batch) / timeit(lambda: det.logits_batch(list(batch)), 1 if quick else 3)
    big = np.asarray(Image.open(inputs["big"]).convert("RGB"))
    if peer:  # a 0.25 MP region at full resolution: s/MP is linear in the area
        big = np.ascontiguousarray(big[:512, :512])
    mp = big.shape[0] * big.shape[1] / 1e6
    s_per_mp = timeit(lambda: det.logit(big), 0 if peer else 1) / mp
    typical = inputs["typical"][:4] if peer else inputs["typical"]
    t0 = time.perf_counter()
    recs = list(scan_paths(det, typical, workers=2))
    photos = len(typical) / (time.perf_counter() - t0)
    assert all(r.error is None for r in recs), [r.error for r in recs if r.error]
    t0 = time.perf_counter()
    r = det.scan(inputs["video"], video_frames=16 if peer else 60)
    vfps = r.frames / (time.perf_counter() - t0)
    return {"images/s e2e @256": e2e, "images/s model @256": model_only,
            "s/MP full-res": s_per_mp, "photos/s e2e @3MP": photos,
            "video frames/s @640x480": vfps}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few inputs, bundled models only")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    args = ap.parse_args()
    n = 16 if args.quick else 64
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), n)
        rows = []
        for label, det, peer in detectors(args.quick):
            rows.append({"detector": label, **bench(det, inputs, args.quick, peer)})
            print(f"measured {label}: {rows[-1]}", file=sys.stderr, flush=True)
    ref = next((r["photos/s e2e @3MP"] for r in rows if r["detector"].startswith("timm")), None)
    for r in rows:
        r["x resnet50 (photos)"] = r["photos/s e2e @3MP"] / ref if ref else float("nan")
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"noisetrace scan speed ({os.cpu_count()} CPU cores, one run)")
    for col in rows[0]:
        table.add_column(col, justify="left" if col == "detector" else "right")
    for r in rows:
        table.add_row(
            escape(r["detector"]),
            *(f"{v:.3f}" if v < 1 else f"{v:.1f}" for v in list(r.values())[1:]),
        )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
