"""A model's checkpoint: the config that travels with the weights, the weights and their
hashes, and where its ONNX Runtime graphs live. Nothing here scores an image
(:mod:`noisetrace.detector` does); this is what a model directory *is*."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from noisetrace import models
from noisetrace.errors import ModelError
from noisetrace.io import cache_dir, sha256_file

ONNX_FILES = ("features.onnx", "head.onnx", "forward.onnx")


@dataclass
class DetectorConfig:
    """What travels with the weights (``config.json``)."""

    name: str
    arch: str
    arch_config: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    # Platt scaling fitted on validation data: p = sigmoid(a * logit + b).
    calibration: dict[str, float] = field(default_factory=lambda: {"a": 1.0, "b": 0.0})
    tile: int = 1024  # tile side for full-resolution scoring with bounded memory
    video_frames: int = 16
    # How a video's frame scores become its score (metrics.AGGREGATIONS); configs written
    # before this field existed mean "mean".
    video_aggregate: str = "mean"
    # Face models: "face" makes scanning find faces and score their crops (see face_scores).
    input: str = "image"
    face: dict[str, Any] = field(
        default_factory=lambda: {"backend": "auto", "scale": 1.3, "size": 128, "no_face": "whole"}
    )
    # Face models on video: the jitter index of the largest face (residuals.temporal),
    # reported beside the score (and in it where ``combine`` holds a learned combination,
    # Detector.temporal_score): each sampled frame read with the ``frames``
    # consecutive frames after it, crops of ``size`` px, ``highpass`` (the Laplacian's
    # change), and ``real``: the index of the real videos it was calibrated on, sorted
    # (Detector.jitter_evidence). None: not measured.
    temporal: dict[str, Any] | None = None
    weights_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_model(cls, model: Any, name: str, arch: str, **fields: Any) -> DetectorConfig:
        """A config for ``model`` that takes what the architecture declares in its
        ``pretrained_cfg`` (today ``input``: whole image, face, face + background), so a
        face network is never saved as a whole-image model. ``fields`` override."""
        declared = getattr(model, "pretrained_cfg", None) or {}
        if "input" in declared and "input" not in fields:
            fields["input"] = declared["input"]
        return cls(name=name, arch=arch, **fields)


def read_config(d: Path) -> DetectorConfig:
    """``d/config.json`` as a :class:`DetectorConfig`; a missing, unreadable or malformed file
    is a :class:`ModelError` that says which file and what is wrong."""
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ModelError(
            f"{d} is not a noisetrace model directory (no config.json); train one with "
            "`noisetrace train`, or pick a bundled model (`noisetrace models`)"
        )
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise TypeError("expected a JSON object")
        from noisetrace.metrics import AGGREGATIONS

        if raw.get("video_aggregate", "mean") not in AGGREGATIONS:
            raise TypeError(f"video_aggregate {raw['video_aggregate']!r} is not one of "
                            f"{', '.join(AGGREGATIONS)}")  # fmt: skip
        return DetectorConfig(**raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ModelError(
            f"{cfg_path} is not a valid model config ({type(exc).__name__}: {exc}); restore it "
            "from the model's source or retrain"
        ) from None


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def onnx_complete(d: Path) -> bool:
    """True when ``d`` holds a whole set of exported graphs."""
    d = Path(d)
    return (d / "forward.onnx").is_file() or all(
        (d / f).is_file() for f in ("features.onnx", "head.onnx")
    )


def onnx_cache_dir(model: torch.nn.Module, config: DetectorConfig) -> Path:
    """Where a model's exported graphs are cached: keyed on the weights' content, so two
    unsaved models never share a graph (the one place this key is computed)."""
    key = config.weights_sha256 or state_sha256(model)
    return cache_dir() / "onnx" / f"{config.arch}-{key[:16]}"


def load_weights(d: Path, config: DetectorConfig) -> torch.nn.Module:
    """The architecture of ``config`` with ``d/model.safetensors`` loaded, its hash checked."""
    w_path = d / "model.safetensors"
    if not w_path.is_file():
        raise ModelError(
            f"{d} is not a noisetrace model directory (needs config.json and "
            "model.safetensors); train one with `noisetrace train` or pick a bundled model"
        )
    if config.weights_sha256 and sha256_file(w_path) != config.weights_sha256:
        raise ModelError(
            f"weights in {w_path} do not match the hash recorded in config.json; "
            "the file is damaged or was replaced. Reinstall noisetrace or retrain."
        )
    try:
        model = models.create(config.arch, **config.arch_config)
    except KeyError as exc:
        raise ModelError(str(exc)) from None
    state = load_file(str(w_path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"weights do not fit architecture {config.arch!r}: "
            f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )
    return model


def save_checkpoint(model: torch.nn.Module, config: DetectorConfig, directory: str | Path,
                    onnx: bool = False, device: torch.device | None = None) -> Path:  # fmt: skip
    """Write weights and config atomically (temporary names, then rename); records the
    weights' hash in ``config``.

    ``onnx=True`` also exports the ONNX graphs and records their hashes; otherwise stale
    graphs from an earlier save are removed so they can never disagree with the weights.
    """
    from noisetrace.runtime import export_onnx

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp_w = d / ".model.safetensors.tmp"
    save_file(state, str(tmp_w))
    config.weights_sha256 = sha256_file(tmp_w)
    for f in ONNX_FILES:
        (d / f).unlink(missing_ok=True)
    config.extra.pop("onnx_sha256", None)
    if onnx:
        files = export_onnx(model, d)
        model.to(device or torch.device("cpu"))
        config.extra["onnx_sha256"] = {f.name: sha256_file(f) for f in files}
    tmp_c = d / ".config.json.tmp"
    tmp_c.write_text(json.dumps(asdict(config), indent=2) + "\n")
    tmp_w.replace(d / "model.safetensors")
    tmp_c.replace(d / "config.json")
    return d
