"""XceptionNet on RGB or SRM residuals, alone or feeding an LSTM
(``xception-lstm-srm-generalization.md``, Atamna, Tkachenko & Miguet, ICIP 2023).

* ``xception-rgb`` / ``xception-srm``: Xception (Chollet 2017; timm's ``legacy_xception``,
  the original definition) with its classifier replaced by a two-class layer.
* ``xception-rgb-lstm`` / ``xception-srm-lstm``: the same backbone without its classifier;
  the 2048-d pooled features of each frame feed a single-layer LSTM with 256 hidden units and
  the LSTM's last output is classified (two classes). Sequences of 5 frames by default;
  any length works (the paper also uses 10, 20, 40, 60).
* SRM domain: the three SRM kernels of the paper's Fig. 2, each expanded over the three colour
  channels (``SRMFilter(3, "sum")``), so the residual has the shape of the RGB input and the
  backbone is unchanged. The residual is computed on the same normalised tensor the RGB
  model sees ((x - 0.5) / 0.5, Xception's own normalisation), so pretrained backbones see
  inputs on the scale they were trained on.

Inputs are pixels / 255 ("unit"); the model applies Xception's normalisation itself.
``pretrained=True`` downloads timm's ImageNet weights (needs network); default False.
"""

from __future__ import annotations

import torch
from torch import nn

from noisetrace.models.registry import register_model
from noisetrace.residuals.srm import SRMFilter


def _backbone(pretrained: bool) -> nn.Module:
    import timm  # heavy import kept out of package import

    # num_classes=0: global-average-pooled 2048-d features, classifier removed.
    return timm.create_model("legacy_xception", pretrained=pretrained, num_classes=0)


class _Front(nn.Module):
    """(B, 3, H, W) in [0, 1] -> normalised RGB, or its SRM residual (same shape)."""

    def __init__(self, domain: str) -> None:
        super().__init__()
        if domain not in ("rgb", "srm"):
            raise ValueError(f"unknown domain {domain!r}; use 'rgb' or 'srm'")
        self.domain = domain
        self.srm = SRMFilter(3, "sum") if domain == "srm" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.5  # legacy_xception's mean/std (Inception style)
        return self.srm(x) if self.srm is not None else x


class XceptionDetector(nn.Module):
    """(B, 3, H, W) in [0, 1] -> fake logit (B,). Fully convolutional up to global pooling."""

    def __init__(self, domain: str = "rgb", pretrained: bool = False, num_classes: int = 2):
        super().__init__()
        self.front = _Front(domain)
        self.backbone = _backbone(pretrained)
        self.num_features = self.backbone.num_features  # 2048
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2048, ~H/32, ~W/32)."""
        return self.backbone.forward_features(self.front(x))

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 2048) -> (B,) fake logit = logit_fake - logit_real."""
        z = self.fc(pooled)
        return z[:, 1] - z[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x).mean(dim=(2, 3)))


class XceptionLSTM(nn.Module):
    """(B, T, 3, H, W) in [0, 1] -> fake logit (B,) for the whole sequence of T frames."""

    def __init__(
        self,
        domain: str = "rgb",
        pretrained: bool = False,
        hidden: int = 256,
        sequence_length: int = 5,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        self.front = _Front(domain)
        self.backbone = _backbone(pretrained)
        self.sequence_length = sequence_length  # the default T; any T is accepted
        self.lstm = nn.LSTM(self.backbone.num_features, hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, 2048) pooled per-frame backbone features."""
        if x.ndim != 5:
            raise ValueError(f"expected (B, T, 3, H, W) frame sequences, got {tuple(x.shape)}")
        b, t = x.shape[:2]
        f = self.backbone(self.front(x.flatten(0, 1)))
        return f.view(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.frame_features(x))
        z = self.fc(out[:, -1])  # the LSTM output after the last frame classifies the sequence
        return z[:, 1] - z[:, 0]


def _cfg(seq: int | None) -> dict:
    # The paper feeds 224x224 face crops (MTCNN box enlarged by 20%).
    return {"input_size": (224, 224), "normalize": "unit", "sequence_length": seq,
            "input": "face"}


@register_model("xception-rgb")
def xception_rgb(**config) -> XceptionDetector:
    model = XceptionDetector(domain="rgb", **config)
    model.pretrained_cfg = _cfg(None)
    return model


@register_model("xception-srm")
def xception_srm(**config) -> XceptionDetector:
    model = XceptionDetector(domain="srm", **config)
    model.pretrained_cfg = _cfg(None)
    return model


@register_model("xception-rgb-lstm")
def xception_rgb_lstm(**config) -> XceptionLSTM:
    model = XceptionLSTM(domain="rgb", **config)
    model.pretrained_cfg = _cfg(model.sequence_length)
    return model


@register_model("xception-srm-lstm")
def xception_srm_lstm(**config) -> XceptionLSTM:
    model = XceptionLSTM(domain="srm", **config)
    model.pretrained_cfg = _cfg(model.sequence_length)
    return model
