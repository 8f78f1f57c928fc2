"""Bundled models: each a folder with model.safetensors, config.json and MODEL_CARD.md."""

from __future__ import annotations

from pathlib import Path

from noisetrace.detector import Detector
from noisetrace.errors import ModelError

ZOO_DIR = Path(__file__).resolve().parent


def list_bundled() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A bundled model's name or a path to a model directory -> the directory."""
    s = str(name_or_path)
    if s in list_bundled():
        return ZOO_DIR / s
    p = Path(s).expanduser()
    if p.is_dir():
        return p
    raise ModelError(
        f"unknown model {s!r}: not a bundled model ({', '.join(list_bundled()) or 'none'}) "
        "and not a model directory"
    )


def load_detector(
    name: str | Path = "default", device: str | None = "auto", backend: str = "auto"
) -> Detector:
    """Load a bundled model by name, or a trained model directory by path; ``WHOLE+FACES``
    (e.g. ``default+faces``) loads both and scans with each (:mod:`noisetrace.combined`).

    ``backend``: ``auto`` (ONNX Runtime on CPU when installed, else PyTorch), ``torch``, ``onnx``.
    """
    s = str(name)
    if "+" in s and s not in list_bundled() and not Path(s).expanduser().is_dir():
        from noisetrace.combined import load_combined

        return load_combined(s, device=device, backend=backend)
    return Detector.load(resolve(name), device=device, backend=backend)
