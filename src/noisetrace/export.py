"""``noisetrace export``: write a model's ONNX graphs (and a copy of its weights and card), or
turn third-party weights (the MesoNet authors' Keras ``.h5`` files) into a model directory."""

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


def from_keras(h5: str | Path, out: str | Path, name: str | None = None) -> list[Path]:
    """A face model directory (safetensors + ONNX) from a released MesoNet ``.h5`` file.

    The variant follows the file (``MesoInception_*`` -> mesoinception4, else mesonet4); the
    model scores face crops found while scanning, as the authors' models were trained to.
    """
    from noisetrace import models
    from noisetrace.detector import Detector, DetectorConfig
    from noisetrace.models.mesonet import load_keras_weights

    h5 = Path(h5)
    arch = "mesoinception4" if "inception" in h5.name.lower() else "mesonet4"
    model = load_keras_weights(models.create(arch), h5)
    config = DetectorConfig(
        name=name or h5.stem.lower(), arch=arch, input="face",
        extra={"source": f"{h5.name} (MesoNet authors' Keras weights, Apache-2.0)"},
    )  # fmt: skip
    det = Detector(model, config, device="cpu", backend="torch")
    det.save(out, onnx=True)
    return sorted(Path(out).glob("*.onnx"))


def _run(args: argparse.Namespace) -> int:
    files = (
        from_keras(args.keras, args.out, args.name) if args.keras else export(args.model, args.out)
    )
    for f in files:
        print(f)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write ONNX graphs of a model (for ONNX Runtime)")
    p.add_argument("--model", default="default", help="bundled model name or model directory")
    p.add_argument(
        "--keras",
        metavar="H5",
        help="instead of --model: a MesoNet authors' .h5 file to turn into a model",
    )
    p.add_argument("--name", help="model name for --keras (default: the file name)")
    p.add_argument("--out", required=True, help="output model directory")
    p.set_defaults(func=_run)
