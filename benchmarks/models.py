"""Side-by-side cost of every registered detector, measured in one run on this machine.

For each model: trainable parameters, GFLOPs of one forward item at 256x256 (counted with
``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per multiply-add), and CPU forward
throughput in images/s at batch 16 (eval mode, inference_mode, median of ``--repeats`` timed
runs after one warm-up).

What one "item" is: an image for image models; a sequence of T=5 frames for the
``*-lstm`` models (GFLOPs per sequence; throughput counts frames, with 16 // T = 3
sequences per batch so a batch holds ~16 images like the others); a [face, background] pair
for ``siamese-dncnn``, whose input size is fixed at 64x64 by design (its FC widths depend on
it), so it is measured there; MesoNet is 256x256 by design.

    .venv/bin/python benchmarks/models.py [--size 256] [--batch 16] [--repeats 3]
                                          [--models djin cffn ...] [--threads N] [--json F]
                                          [--skip-timing]

Run it on a quiet machine: throughput is only comparable between models measured together
while nothing else competes for the CPU (the script prints the load average it started at).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def item_input(model: torch.nn.Module, n: int, size: int) -> tuple[torch.Tensor, int, str]:
    """A batch of ``n`` items -> (tensor, images in it, description of one item)."""
    cfg = model.pretrained_cfg
    if cfg.get("input") == "face_background":
        s = cfg["input_size"][0]
        return torch.rand(n, 2, 3, s, s), n * 2, f"pair of {s}x{s}"
    if cfg.get("sequence_length"):
        t = cfg["sequence_length"]
        seqs = max(1, n // t)
        return torch.rand(seqs, t, 3, size, size), seqs * t, f"{t} frames {size}x{size}"
    fixed = cfg.get("input_size")
    if fixed and not hasattr(model, "forward_features"):
        size = fixed[0]  # not fully convolutional (MesoNet's dense layer): its own size
    return torch.rand(n, 3, size, size), n, f"{size}x{size}"


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward, counted on the meta device (shapes only, no arithmetic), so
    counting costs nothing even for the 170-GFLOP models."""
    import copy

    meta = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        meta(x.to("meta"))
    return counter.get_total_flops() / 1e9


def throughput(model: torch.nn.Module, x: torch.Tensor, images: int, repeats: int) -> float:
    with torch.inference_mode():
        model(x)  # warm-up: allocations, oneDNN kernel selection
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return images / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="parameters, GFLOPs and CPU throughput per model")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="*", help="subset of registry names (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--skip-timing", action="store_true",
                    help="parameters and GFLOPs only (throughput needs a quiet machine)")
    args = ap.parse_args(argv)

    from noisetrace import models

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or models.list_models()
    unknown = set(names) - set(models.list_models())
    if unknown:
        print(f"unknown models {sorted(unknown)}; available: {models.list_models()}")
        return 2
    import os

    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch "
          f"{args.batch}, size {args.size}, median of {args.repeats}", flush=True)
    rows = []
    for name in names:
        torch.manual_seed(0)
        m = models.create(name).eval()
        params = sum(p.numel() for p in m.parameters() if p.requires_grad)
        x1, _, item = item_input(m, 1 if not m.pretrained_cfg.get("sequence_length") else
                                 m.pretrained_cfg["sequence_length"], args.size)
        g = gflops(m, x1)
        xb, imgs, _ = item_input(m, args.batch, args.size)
        ips = float("nan") if args.skip_timing else throughput(m, xb, imgs, args.repeats)
        rows.append({"model": name, "params_M": params / 1e6, "gflops": g, "item": item,
                     "images_per_s": ips, "batch_images": imgs})
        r = rows[-1]  # progress line: a slow model does not hide the finished ones
        print(f"  {name:18s} {r['params_M']:.2f}M {r['gflops']:.2f} GFLOPs "
              f"{r['images_per_s']:.1f} img/s", file=sys.stderr, flush=True)
    print(f"\n{'model':18s} {'params (M)':>10s} {'GFLOPs/item':>12s} {'img/s':>8s}  "
          f"{'item':22s} batch")
    for r in rows:
        print(f"{r['model']:18s} {r['params_M']:10.2f} {r['gflops']:12.2f} "
              f"{r['images_per_s']:8.1f}  {r['item']:22s} {r['batch_images']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
