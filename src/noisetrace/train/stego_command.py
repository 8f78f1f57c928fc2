"""``noisetrace pretrain-stego``: JIN-style steganalysis pre-training (see docs/stego.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.4,0.2: {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 6,3: {text!r}") from None


def _run(args: argparse.Namespace) -> int:
    from noisetrace.train.stego import StegoConfig, pretrain

    raw: dict = {}
    if args.config:
        import yaml

        raw = yaml.safe_load(Path(args.config).read_text()) or {}
    names = {f.name for f in dataclasses.fields(StegoConfig)}
    unknown = set(raw) - names
    if unknown:
        raise SystemExit(f"noisetrace pretrain-stego: unknown config keys {sorted(unknown)}")
    for name in names:
        v = getattr(args, name, None)
        if v not in (None, [], False):
            raw[name] = v
    if not raw.get("covers"):
        raise SystemExit("noisetrace pretrain-stego: give --covers (folders of real photos)")
    summary = pretrain(StegoConfig(**raw))
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone reports
        return 0
    final = summary.get("final") or {}
    if "val_acc" in final:
        print(
            f"held-out steganalysis accuracy at payload {final['payload']:g}: "
            f"{final['val_acc']:.3f} (pair accuracy {final['val_pair_acc']:.3f})"
        )
    print(f"initialisation: {raw.get('out', 'runs/stego-init')} (use it as init: DIR for djin)")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace pretrain-stego`` (registered in
    ``noisetrace.cli.COMMANDS``). Options default to None so a --config recipe's values are
    kept; the defaults in the help texts are StegoConfig's."""
    p.description = (
        "Make cover/stego pairs from real photos (J-UNIWARD for JPEG covers, HILL or "
        "S-UNIWARD for lossless ones), train SRNet on pair-constrained batches with a payload "
        "curriculum from high to low, and write model.safetensors + config.json that a djin "
        "training run starts from (init: DIR). Resumable with --resume."
    )
    p.epilog = """examples:
  noisetrace pretrain-stego --covers my_photos/ --out runs/stego-init
  noisetrace pretrain-stego --config configs/pretrain_stego.yaml --out runs/stego-init
  noisetrace train --config configs/djin.yaml --set init=runs/stego-init"""
    p.add_argument("--config", help="YAML recipe (configs/pretrain_stego.yaml); flags override")
    p.add_argument("--covers", nargs="+", help="folders/manifests/files of real photos")
    p.add_argument("--out", help="output directory (default: runs/stego-init)")
    p.add_argument("--arch", help="architecture to pre-train (default: djin)")
    p.add_argument("--quality", type=int, help="JPEG quality of the covers (default: 75)")
    p.add_argument("--payloads", type=_floats,
                   help="curriculum, high to low (default: 0.4,0.2,0.1)")
    p.add_argument("--spatial", dest="spatial_method", choices=("hill", "suniward"),
                   help="embedding for lossless covers (default: hill)")  # fmt: skip
    p.add_argument("--crop", type=int, help="crop side in pixels, multiple of 16 (default: 128)")
    p.add_argument("--crops-per-image", dest="crops_per_image", type=int,
                   help="crops taken from each cover (default: 8)")
    p.add_argument("--epochs", type=_ints,
                   help="epochs per stage, e.g. 6,3,3; the last repeats (default: 4)")
    p.add_argument("--batch-pairs", dest="batch_pairs", type=int,
                   help="cover/stego pairs per batch (default: 16)")
    p.add_argument("--lr", type=float, help="learning rate (default: 0.001)")
    p.add_argument("--val-fraction", dest="val_fraction", type=float,
                   help="covers held out for validation (default: 0.2)")
    p.add_argument("--max-images", dest="max_images", type=int,
                   help="use at most this many covers (default: all)")
    p.add_argument("--workers", type=int, help="processes for embedding (default: 1)")
    p.add_argument("--seed", type=int, help="seed of the split and crops (default: 0)")
    p.add_argument("--device", help="auto, cpu, cuda ... (default: auto)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(func=_run, needs=needs)


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional modules the embedding simulators need (checked before any work)."""
    return {m: "noisetrace[stego]" for m in ("conseal", "jpeglib")}
