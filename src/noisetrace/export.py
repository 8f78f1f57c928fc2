"""``noisetrace export``: write a model's ONNX graphs (and a copy of its weights and card), or
turn third-party weights (the MesoNet authors' Keras ``.h5`` files) into a model directory."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from noisetrace.errors import NoisetraceError

_COPIED = ("MODEL_CARD.md", "card.json", "NOTICE")  # travel with the weights


def _build_atomically(out: str | Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp)`` in a temporary folder beside ``out`` and move its files into place
    only once it has succeeded, so a failed export (a missing exporter, Ctrl-C) leaves no
    half-written model folder. An existing ``out`` keeps its other files."""
    dst = Path(out)
    if dst.exists() and not dst.is_dir():
        raise NoisetraceError(f"--out {dst} is a file; give a folder for the model")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would become the model folder's mode
    try:
        build(tmp)
        if dst.is_dir():
            made = sorted(tmp.iterdir())
            for f in set(dst.glob("*.onnx")) - {dst / g.name for g in made}:
                f.unlink()  # graphs of earlier weights would disagree with the new ones
            for f in made:
                os.replace(f, dst / f.name)
        else:
            os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def export(model: str, out: str | Path) -> list[Path]:
    """Copy the model directory to ``out`` and add verified ONNX graphs beside the weights."""
    from noisetrace.zoo import load_detector, resolve

    src = resolve(model)
    det = load_detector(model, device="cpu", backend="torch")

    def build(tmp: Path) -> None:
        for f in _COPIED:
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / f)
        det.save(tmp, onnx=True)

    dst = _build_atomically(out, build)
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
    config = DetectorConfig.for_model(
        model, name or h5.stem.lower(), arch,
        extra={"source": f"{h5.name} (MesoNet authors' Keras weights, Apache-2.0)"},
    )  # fmt: skip
    det = Detector(model, config, device="cpu", backend="torch")
    dst = _build_atomically(out, lambda tmp: det.save(tmp, onnx=True))
    return sorted(dst.glob("*.onnx"))


def _run(args: argparse.Namespace) -> int:
    files = (
        from_keras(args.keras, args.out, args.name) if args.keras else export(args.model, args.out)
    )
    for f in files:
        print(f)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace export`` (registered in ``noisetrace.cli.COMMANDS``)."""
    p.description = ("Write a model directory with ONNX graphs beside the weights (what ONNX "
                     "Runtime runs on a CPU), or turn a MesoNet authors' Keras .h5 file into "
                     "a model directory. Nothing is left behind in --out if it fails.")
    p.epilog = """examples:
  noisetrace export --model runs/mine/best --out models/mine
  noisetrace export --keras MesoInception_F2F.h5 --name faces-f2f --out models/faces-f2f"""
    p.add_argument("--model", default="default", help="bundled model name or model directory")
    p.add_argument(
        "--keras",
        metavar="H5",
        help="instead of --model: a MesoNet authors' .h5 file to turn into a model",
    )
    p.add_argument("--name", help="model name for --keras (default: the file name)")
    p.add_argument("--out", required=True, help="output model directory")
    p.set_defaults(func=_run, needs=needs)


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional modules an export needs (checked before the model is loaded)."""
    out = {"onnx": "noisetrace[onnx]"}  # torch's ONNX exporter writes through it
    if args.keras:
        out["h5py"] = "noisetrace[models]"
    return out
