"""Detectors built from heads: a linear head on frozen features, and a late fusion of
branches. Both are :class:`~noisetrace.detector.Detector` s, so scanning, evaluation, the
service and the benchmarks score them through the same path as any other model.

Model directories (``config.json`` ``arch``):

* ``feature-head``: ``head.safetensors`` (a :class:`LinearHead`) on the features of the
  extractor in ``extra["extractor"]`` (e.g. CLIP ViT-B/16 views: the semantic branch).
* ``fusion``: one sub-directory per branch (any model directory: a noise-residual CNN, a
  feature head), their raw logits combined by ``extra["fusion"]``: a logistic regression
  stacked on data the branches did not train on, so its output is already a calibrated
  probability (``calibration`` stays the identity unless refitted).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from noisetrace.detector import Detector, DetectorConfig, sha256_file
from noisetrace.errors import InputError, ModelError
from noisetrace.heads.extractors import from_spec, select_feature
from noisetrace.heads.linear import LinearHead
from noisetrace.io import atomic_write

HEAD_ARCHS = ("feature-head", "fusion")
# How far the head's logit on the probe image may move before scores are not trusted:
# JPEG library versions move it by hundredths; an encoder computing differently (ONNX
# Runtime's INT8 kernels differ by version and CPU) moved it by 10 or more.
PROBE_TOLERANCE = 1.0


def probe_image() -> np.ndarray:
    """A fixed 256x256 RGB test pattern (gradients, stripes, hashed noise), the same bytes
    on every machine: no RNG, no image file."""
    y, x = np.mgrid[:256, :256].astype(np.int64)
    noise = ((x * 73856093) ^ (y * 19349663)) % 61
    r = (x + noise) % 256
    g = (y * 2 + (x // 16) * 8 + noise) % 256
    b = (128 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0) + noise).astype(np.int64) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)
_IMAGE_CFG = {"input_size": None, "normalize": "unit", "sequence_length": None, "input": "image"}


class _NoNetworkError(ModelError, AttributeError):
    """A ModelError that ``hasattr`` and ``getattr(..., default)`` read as absence."""


class _NoTorchModel:
    """What ``Detector`` users see as ``.model`` when there is no network to explain."""

    pretrained_cfg = _IMAGE_CFG

    def __getattr__(self, name: str) -> Any:
        raise _NoNetworkError("this model has no noise-residual network to look into (it is a "
                              "head on frozen features); explain it by occlusion "
                              "(`noisetrace explain --method occlusion`)")


def has_network(det: Detector) -> bool:
    """Whether ``det`` has a network to look into (heatmaps, Integrated Gradients); models
    fitted on frozen features have none and are explained by occlusion."""
    return not isinstance(det.model, _NoTorchModel)


class FeatureDetector(Detector):
    """A :class:`LinearHead` on an extractor's features; logit = head(extractor(image))."""

    def __init__(self, extractor: Any, head: LinearHead, feature: str,
                 config: DetectorConfig) -> None:  # fmt: skip
        import torch

        self.device = torch.device("cpu")
        self.config, self.extractor, self.head, self.feature = config, extractor, head, feature
        if hasattr(extractor, "read_only"):  # scoring computes only what the head reads
            extractor.read_only(feature)
        self.model = _NoTorchModel()
        self.cfg = dict(_IMAGE_CFG)
        self.runtime = None  # type: ignore[assignment]

    @property
    def backend(self) -> str:
        return "onnx" if self.extractor.kind == "clip" else "numpy"

    def logit(self, img: np.ndarray) -> float:
        return float(self.logits_batch([img])[0])

    def canonical(self, img: np.ndarray) -> np.ndarray:
        """The compression state the head was fitted on: with ``extra["canonical_jpeg"] = Q``
        every input is JPEG-encoded at Q first, so an uncompressed PNG (real or fake) is not
        judged by an absence of JPEG traces no training image had (training images all
        carried a JPEG history, to keep format out of the decision)."""
        q = self.config.extra.get("canonical_jpeg")
        if not q:
            return img
        from noisetrace.media.image import encode_jpeg

        return encode_jpeg(img, int(q))

    def prepare(self, img: np.ndarray) -> np.ndarray:
        return self.canonical(self.fit_size(img))

    def logits_batch(self, imgs: list[np.ndarray]) -> np.ndarray:
        return self.logits_prepared([self.prepare(i) for i in imgs])

    def logits_prepared(self, imgs: list[np.ndarray]) -> np.ndarray:
        """Logits of images already through :meth:`prepare` (shared by fused branches)."""
        feats = self.extractor.batch(imgs)
        return np.array([self.head.decision_function(select_feature(f, self.feature)[None])[0]
                         for f in feats])  # fmt: skip

    @classmethod
    def load_dir(cls, d: Path, config: DetectorConfig, **_: Any) -> FeatureDetector:
        f = d / "head.safetensors"
        rec = config.extra.get("head_sha256")
        if not f.is_file() or (rec and sha256_file(f) != rec):
            raise ModelError(f"{f} is missing or does not match the hash in config.json; "
                             "refit the head (`noisetrace fit`) or reinstall noisetrace")
        ext = from_spec(config.extra["extractor"])
        det = cls(ext, LinearHead.load(f), config.extra.get("feature", "embeds"), config)
        det.check_numerics()
        return det

    def probe_logit(self) -> float:
        """The head's raw logit on :func:`probe_image`, recorded when the head is saved."""
        return float(self.logits_batch([probe_image()])[0])

    def check_numerics(self) -> None:
        """Warn when this machine's features of the probe image give another logit than
        where the head was fitted: the same file would get another score here."""
        want = self.config.extra.get("probe_logit")
        if want is None:
            return
        got = self.probe_logit()
        if abs(got - want) > PROBE_TOLERANCE:
            import warnings

            warnings.warn(
                f"model {self.config.name!r}: its feature extractor computes differently on "
                f"this machine (probe logit {got:.2f}, {want:.2f} where the head was fitted; "
                f"{self.extractor.kind} via {self.backend}): scores here are not the validated "
                "ones. Use the ONNX Runtime version the model card names, or refit the head "
                "here (`noisetrace fit`, minutes with cached features).",
                RuntimeWarning, stacklevel=3,
            )  # fmt: skip

    def save(self, directory: str | Path, onnx: bool = False) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.head.save(d / "head.safetensors")
        self.config.arch = "feature-head"
        self.config.extra.update(extractor=self.extractor.spec(), feature=self.feature,
                                 head_sha256=sha256_file(d / "head.safetensors"),
                                 probe_logit=self.probe_logit(),
                                 fitted_with={p: _version(p) for p in
                                              ("onnxruntime", "numpy", "pillow")})  # fmt: skip
        _write_config(d, self.config)
        return d


class FusedDetector(Detector):
    """Late fusion: logit = sum_i w_i * logit_i(image) + b over the branch detectors.

    ``model`` (what explanations look at) is the first branch that has a network, so
    `noisetrace explain` shows the noise-residual evidence of a fused model.
    """

    def __init__(self, branches: dict[str, Detector], coef: dict[str, float],
                 intercept: float, config: DetectorConfig) -> None:  # fmt: skip
        self.branches, self.coef, self.intercept, self.config = branches, coef, intercept, config
        first = next((b for b in branches.values() if not isinstance(b.model, _NoTorchModel)),
                     next(iter(branches.values())))  # fmt: skip
        self.device, self.model, self.cfg = first.device, first.model, dict(_IMAGE_CFG)
        self.runtime = first.runtime
        self._pre = getattr(first, "_pre", None)

    @property
    def backend(self) -> str:
        return "+".join(sorted({b.backend for b in self.branches.values()}))

    def branch_logits(self, imgs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw logits of every branch, (N,) each. Feature heads that share a canonical
        compression state get the images prepared once."""
        out: dict[str, np.ndarray] = {}
        prepared: dict[Any, list[np.ndarray]] = {}
        for n, b in self.branches.items():
            if isinstance(b, FeatureDetector):
                key = b.config.extra.get("canonical_jpeg")
                if key not in prepared:
                    prepared[key] = [b.prepare(i) for i in imgs]
                out[n] = np.asarray(b.logits_prepared(prepared[key]), np.float64)
            else:
                out[n] = np.asarray(b.logits_batch(imgs), np.float64)
        return out

    def combine(self, logits: dict[str, np.ndarray]) -> np.ndarray:
        return sum(self.coef[n] * logits[n] for n in self.coef) + self.intercept

    def logit(self, img: np.ndarray) -> float:
        return float(self.logits_batch([img])[0])

    def logits_batch(self, imgs: list[np.ndarray]) -> np.ndarray:
        if not imgs:
            raise InputError("nothing to score")
        return self.combine(self.branch_logits(imgs))

    @classmethod
    def load_dir(cls, d: Path, config: DetectorConfig, device: str | None = "auto",
                 backend: str = "auto") -> FusedDetector:  # fmt: skip
        fu = config.extra.get("fusion") or {}
        names = list(fu.get("coef", {}))
        if not names:
            raise ModelError(f"{d}/config.json: a fusion model needs extra.fusion.coef")
        branches = {n: Detector.load(d / n, device=device, backend=backend) for n in names}
        return cls(branches, {n: float(v) for n, v in fu["coef"].items()},
                   float(fu.get("intercept", 0.0)), config)  # fmt: skip

    def save(self, directory: str | Path, onnx: bool = False) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for n, b in self.branches.items():
            b.save(d / n, onnx=onnx)
        self.config.arch = "fusion"
        self.config.extra["fusion"] = {"coef": self.coef, "intercept": self.intercept}
        _write_config(d, self.config)
        return d


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _write_config(d: Path, config: DetectorConfig) -> None:
    atomic_write(d / "config.json", json.dumps(asdict(config), indent=2) + "\n")


def load_head_model(d: Path, config: DetectorConfig, device: str | None = "auto",
                    backend: str = "auto") -> Detector:  # fmt: skip
    """Entry used by :meth:`Detector.load` for the architectures in ``HEAD_ARCHS``."""
    if config.arch == "fusion":
        return FusedDetector.load_dir(d, config, device=device, backend=backend)
    return FeatureDetector.load_dir(d, config)
