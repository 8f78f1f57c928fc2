"""``noisetrace export``: write a model's ONNX graphs (and a copy of its weights and card)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def export(model: str, out: str | Path) -> list[Path]:
    """Copy the model directory to ``out`` and add verified ONNX graphs beside the weights."""
    from noisetrace.zoo import load_detector, resolve

    src, dst = resolve(model), Path(out)
    if dst.resolve() != src.resolve():
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("MODEL_CARD.md", "card.json"):
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)
    det = load_detector(model, device="cpu", backend="torch")
    det.save(dst, onnx=True)
    return sorted(dst.glob("*.onnx"))


def _run(args: argparse.Namespace) -> int:
    for f in export(args.model, args.out):
        print(f)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write ONNX graphs of a model (for ONNX Runtime)")
    p.add_argument("--model", default="default", help="bundled model name or model directory")
    p.add_argument("--out", required=True, help="output model directory")
    p.set_defaults(func=_run)
