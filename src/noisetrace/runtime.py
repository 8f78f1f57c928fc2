"""Inference runtimes behind one interface: PyTorch (CPU/CUDA) and ONNX Runtime.

Both take uint8 images (B, H, W, 3) as decoded, so normalisation lives in one place (the
``Preprocess`` wrapper, exported into the ONNX graph too). Fully convolutional models run as
two graphs, ``features`` (image -> (B, F) mean of the feature map) and ``head``
((B, F) -> (B,) fake logit), so large images can be tiled; other models as one ``forward``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """uint8 (B, ..., H, W, 3) -> normalised float (B, ..., 3, H, W), as the model was
    trained: (B, H, W, 3) images, or (B, 2, H, W, 3) [face, background] pairs."""

    def __init__(self, normalize: str = "unit") -> None:
        super().__init__()
        self.imagenet = normalize == "imagenet"
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Explicit permutations (not movedim(-1, -3)): ONNX's Transpose takes no negative axes.
        perm = (0, 1, 4, 2, 3) if x.dim() == 5 else (0, 3, 1, 2)
        x = x.permute(*perm).float() / 255.0
        return (x - self.mean) / self.std if self.imagenet else x


class _Features(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.pre, self.model = Preprocess(model.pretrained_cfg.get("normalize", "unit")), model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(self.pre(x)).float().mean(dim=(2, 3))


class _Head(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(pooled).float()


class _Forward(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.pre, self.model = Preprocess(model.pretrained_cfg.get("normalize", "unit")), model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.pre(x)).float()


def is_fully_convolutional(model: nn.Module) -> bool:
    return hasattr(model, "forward_features") and hasattr(model, "forward_head")


class TorchRuntime:
    """Runs the PyTorch model on its device (CPU or CUDA)."""

    kind = "torch"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device = device
        self.fully_conv = is_fully_convolutional(model)
        if self.fully_conv:
            self._features = _Features(model).to(device).eval()
            self._head = _Head(model).to(device).eval()
        self._forward = _Forward(model).to(device).eval()

    def _in(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(x, np.uint8, ["C", "W"])).to(self.device)

    @torch.inference_mode()
    def features(self, x: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) -> (B, F) spatial mean of the feature map."""
        return self._features(self._in(x)).cpu().numpy()

    @torch.inference_mode()
    def head(self, pooled: np.ndarray) -> np.ndarray:
        return self._head(torch.from_numpy(pooled).to(self.device)).cpu().numpy().reshape(-1)

    @torch.inference_mode()
    def forward(self, x: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) -> (B,) fake logits."""
        return self._forward(self._in(x)).cpu().numpy().reshape(-1)


def export_onnx(model: nn.Module, directory: str | Path, opset: int = 17) -> list[Path]:
    """Write ``features.onnx`` + ``head.onnx`` (fully convolutional) or ``forward.onnx``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    size = model.pretrained_cfg.get("input_size") or (64, 64)
    x = torch.zeros(1, size[0], size[1], 3, dtype=torch.uint8)
    dyn_img = {"image": {0: "batch", 1: "height", 2: "width"}}
    jobs: list[tuple[nn.Module, tuple, str, list[str], list[str], dict]] = []
    if is_fully_convolutional(model):
        feats = _Features(model).eval()
        with torch.no_grad():
            pooled = feats(x)
        jobs.append((feats, (x,), "features.onnx", ["image"], ["features"],
                     {**dyn_img, "features": {0: "batch"}}))  # fmt: skip
        jobs.append((_Head(model).eval(), (pooled,), "head.onnx", ["features"], ["logit"],
                     {"features": {0: "batch"}, "logit": {0: "batch"}}))  # fmt: skip
    else:
        jobs.append((_Forward(model).eval(), (x,), "forward.onnx", ["image"], ["logit"],
                     {**dyn_img, "logit": {0: "batch"}}))  # fmt: skip
    written = []
    for module, args, name, ins, outs, dyn in jobs:
        tmp = d / f".{name}.tmp"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), input_names=ins, output_names=outs,
                              dynamic_axes=dyn, opset_version=opset, dynamo=False)  # fmt: skip
        tmp.replace(d / name)
        written.append(d / name)
    model.eval()  # the exporter restores the wrappers' mode; keep the model in eval
    return written


class OnnxRuntime:
    """Runs exported graphs with ONNX Runtime (CUDA provider when available, else CPU)."""

    kind = "onnx"

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        d = Path(directory)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        avail = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.fully_conv = (d / "features.onnx").is_file()

        def session(name: str):
            return ort.InferenceSession(str(d / name), so, providers=providers)

        if self.fully_conv:
            self._features, self._head = session("features.onnx"), session("head.onnx")
        else:
            self._forward = session("forward.onnx")

    def features(self, x: np.ndarray) -> np.ndarray:
        return self._features.run(None, {"image": np.ascontiguousarray(x, np.uint8)})[0]

    def head(self, pooled: np.ndarray) -> np.ndarray:
        feed = {"features": np.ascontiguousarray(pooled, np.float32)}
        return self._head.run(None, feed)[0].reshape(-1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.fully_conv:
            return self.head(self.features(x))
        return self._forward.run(None, {"image": np.ascontiguousarray(x, np.uint8)})[0].reshape(-1)


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
