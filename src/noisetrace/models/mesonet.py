"""MesoNet (Afchar et al., WIFS 2018): Meso-4 and MesoInception-4, a PyTorch port that loads
the authors' released Keras weights (``../shared/weights/mesonet/*.h5``, read with h5py).

The peer two seed papers compare with (``siamese-dncnn-face-background.md`` Tables 2-3;
``cffn-two-phase-triplet.md`` related work). Layer by layer as in the authors' Keras
``classifiers.py`` (input 256x256x3 in [0, 1]):

* Meso-4: [conv 3x3 x8, conv 5x5 x8, conv 5x5 x16, conv 5x5 x16], each ReLU -> BN ->
  max-pool (2, 2, 2, 4); flatten (16*8*8 = 1024) -> dropout 0.5 -> dense 16 -> LeakyReLU 0.1
  -> dropout 0.5 -> dense 1 (sigmoid in Keras).
* MesoInception-4: the first two convs are Inception blocks (a, b, c, d) = (1, 4, 4, 2) and
  (2, 4, 4, 2): 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 dilation 2 | 1x1 -> 3x3 dilation 3,
  concatenated on channels, each conv ReLU; the rest as Meso-4.

Port details that matter for bit-faithful scores: Keras BN epsilon is 1e-3 (torch 1e-5), the
Keras flatten runs over (H, W, C) so we flatten channels-last, Keras 'same' max-pooling pads at
the bottom/right (``ceil_mode``). The Keras output is sigmoid(z) = P(real): the authors train
with ``flow_from_directory``, whose alphabetical class order puts "df"/"f2f" at 0 and "real" at
1 (checked on DFDC crops, docs/models.md). ``forward`` returns the *fake* logit, -z.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noisetrace.errors import ModelError
from noisetrace.models.registry import register_model

_KERAS_BN_EPS = 1e-3
_KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 on the moving average = torch momentum 0.01


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_KERAS_BN_EPS, momentum=_KERAS_BN_MOMENTUM)


class _ConvReLU(nn.Module):
    """Keras ``Conv2D(..., padding='same', activation='relu')``: (B,Cin,H,W) -> (B,Cout,H,W)."""

    def __init__(self, cin: int, cout: int, k: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Inception(nn.Module):
    """MesoInception block: (B, Cin, H, W) -> (B, a+b+c+d, H, W)."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.b1 = _ConvReLU(cin, a, 1)
        self.b2 = nn.Sequential(_ConvReLU(cin, b, 1), _ConvReLU(b, b, 3))
        self.b3 = nn.Sequential(_ConvReLU(cin, c, 1), _ConvReLU(c, c, 3, dilation=2))
        self.b4 = nn.Sequential(_ConvReLU(cin, d, 1), _ConvReLU(d, d, 3, dilation=3))
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)

    def keras_convs(self) -> list[nn.Conv2d]:
        """Convs in Keras creation order (x1, x2 1x1, x2 3x3, x3 1x1, x3 3x3, x4 1x1, x4 3x3)."""
        return [self.b1.conv, self.b2[0].conv, self.b2[1].conv, self.b3[0].conv,
                self.b3[1].conv, self.b4[0].conv, self.b4[1].conv]  # fmt: skip


class MesoNet(nn.Module):
    """(B, 3, 256, 256) in [0, 1] -> fake logit (B,).

    ``inception=False``: Meso-4; ``True``: MesoInception-4. ``hidden_act``: the activation
    after the 16-unit dense layer, "leaky_relu" (the authors' code) or "linear" (what the
    layer list of the released Meso4 .h5 files shows; ``load_keras_weights`` sets it).
    """

    def __init__(
        self, inception: bool = False, dropout: float = 0.5, hidden_act: str = "leaky_relu"
    ) -> None:
        super().__init__()
        self.inception = inception
        # A buffer, not a plain attribute, so the activation the loaded .h5 implies travels
        # with the weights through Detector.save/load: LeakyReLU slope 0.1, or 1.0 = linear.
        self.register_buffer("hidden_slope", torch.tensor(0.1))
        self.hidden_act = hidden_act
        if inception:
            b1 = Inception(3, 1, 4, 4, 2)
            b2 = Inception(b1.out_channels, 2, 4, 4, 2)
            self.block1, self.block2 = b1, b2
            c2 = b2.out_channels  # 12
        else:
            self.block1, self.block2 = _ConvReLU(3, 8, 3), _ConvReLU(8, 8, 5)
            c2 = 8
        c1 = 11 if inception else 8
        self.bn1, self.bn2 = _bn(c1), _bn(c2)
        self.block3, self.bn3 = _ConvReLU(c2, 16, 5), _bn(16)
        self.block4, self.bn4 = _ConvReLU(16, 16, 5), _bn(16)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.dense1 = nn.Linear(16 * 8 * 8, 16)
        self.dense2 = nn.Linear(16, 1)

    @property
    def hidden_act(self) -> str:
        return "linear" if float(self.hidden_slope) == 1.0 else "leaky_relu"

    @hidden_act.setter
    def hidden_act(self, value: str) -> None:
        if value not in ("leaky_relu", "linear"):
            raise ValueError("hidden_act must be 'leaky_relu' or 'linear'")
        self.hidden_slope.fill_(1.0 if value == "linear" else 0.1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage maps for the layer-by-layer check: (B,C1,128,128) ... (B,16,8,8)."""
        outs = []
        for blk, bn, pool in ((self.block1, self.bn1, 2), (self.block2, self.bn2, 2),
                              (self.block3, self.bn3, 2), (self.block4, self.bn4, 4)):
            x = F.max_pool2d(bn(blk(x)), pool, ceil_mode=True)  # Keras 'same' pooling
            outs.append(x)
        return outs

    def real_logit(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) -> (B,) the Keras pre-sigmoid output z, sigmoid(z) = P(real)."""
        f = self.features(x)[-1]
        if f.shape[-2:] != (8, 8):
            raise ValueError(
                f"MesoNet needs 256x256 inputs (its dense layer expects 8x8 maps); got "
                f"{tuple(x.shape[-2:])}. Resize the face crop to 256x256 first."
            )
        y = self.drop1(f.permute(0, 2, 3, 1).flatten(1))  # Keras flattens (H, W, C)
        y = self.dense1(y)
        y = torch.where(y >= 0, y, y * self.hidden_slope)  # LeakyReLU, or identity at slope 1
        return self.dense2(self.drop2(y)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.real_logit(x)


def _keras_layers(f, prefix: str) -> list[str]:
    """Names of the h5 weight groups of one layer type, in Keras creation order."""
    names = [n for n in f.keys() if re.fullmatch(rf"{prefix}_\d+", n) and len(f[n].keys())]
    return sorted(names, key=lambda n: int(n.rsplit("_", 1)[1]))


def _weights(f, name: str) -> dict[str, np.ndarray]:
    g = f[name]
    out: dict[str, np.ndarray] = {}
    g.visititems(lambda k, v: out.__setitem__(k.rsplit("/", 1)[-1].split(":")[0], v[()])
                 if hasattr(v, "shape") else None)
    return out


def _copy(dst: torch.Tensor, src: np.ndarray, what: str) -> None:
    t = torch.from_numpy(np.ascontiguousarray(src)).to(dst.dtype)
    if t.shape != dst.shape:
        raise ModelError(f"{what}: weight file has shape {tuple(t.shape)}, model expects "
                         f"{tuple(dst.shape)}; is this the right MesoNet variant?")
    with torch.no_grad():
        dst.copy_(t)


def load_keras_weights(model: MesoNet, h5_path: str | Path) -> MesoNet:
    """Load the authors' released Keras ``.h5`` weights into ``model`` (in place).

    Conv kernels (kh, kw, in, out) -> (out, in, kh, kw); dense (in, out) -> (out, in); BN
    gamma/beta/moving mean/variance -> weight/bias/running_mean/running_var. The Meso4 vs
    MesoInception variant must match the file (raises ``ModelError`` otherwise).
    """
    import h5py

    path = Path(h5_path)
    if not path.is_file():
        raise ModelError(f"no MesoNet weight file at {path}; pass the path of a released "
                         "Meso4_*.h5 or MesoInception_*.h5")
    with h5py.File(path, "r") as f:
        if "model_weights" in f:  # a full-model save: weights sit one level down
            f = f["model_weights"]
        convs = _keras_layers(f, "conv2d")
        bns = _keras_layers(f, "batch_normalization")
        denses = _keras_layers(f, "dense")
        mods: list[nn.Conv2d] = []
        for blk in (model.block1, model.block2):
            mods += blk.keras_convs() if isinstance(blk, Inception) else [blk.conv]
        mods += [model.block3.conv, model.block4.conv]
        if len(convs) != len(mods) or len(bns) != 4 or len(denses) != 2:
            kind = "MesoInception" if model.inception else "Meso4"
            raise ModelError(f"{path.name} has {len(convs)} conv layers, {kind} has "
                             f"{len(mods)}: use mesonet4 for Meso4_*.h5 and mesoinception4 "
                             "for MesoInception_*.h5")
        for name, conv in zip(convs, mods, strict=True):
            w = _weights(f, name)
            _copy(conv.weight, w["kernel"].transpose(3, 2, 0, 1), name)
            _copy(conv.bias, w["bias"], name)
        for name, bn in zip(bns, (model.bn1, model.bn2, model.bn3, model.bn4), strict=True):
            w = _weights(f, name)
            _copy(bn.weight, w["gamma"], name)
            _copy(bn.bias, w["beta"], name)
            _copy(bn.running_mean, w["moving_mean"], name)
            _copy(bn.running_var, w["moving_variance"], name)
        for name, dense in zip(denses, (model.dense1, model.dense2), strict=True):
            w = _weights(f, name)
            _copy(dense.weight, w["kernel"].T, name)
            _copy(dense.bias, w["bias"], name)
        layer_names = [n.decode() if isinstance(n, bytes) else str(n)
                       for n in f.attrs.get("layer_names", [])]
    if layer_names:
        # The saved graph is the authority on the hidden activation: the released Meso4 files
        # list no LeakyReLU layer between dense_3 and dense_4 (the code on GitHub has one).
        has_leaky = any(n.startswith("leaky_re_lu") for n in layer_names)
        model.hidden_act = "leaky_relu" if has_leaky else "linear"
    return model


def _cfg() -> dict:
    return {"input_size": (256, 256), "normalize": "unit", "input": "face"}


@register_model("mesonet4")
def mesonet4(**config) -> MesoNet:
    model = MesoNet(inception=False, **config)
    model.pretrained_cfg = _cfg()
    return model


@register_model("mesoinception4")
def mesoinception4(**config) -> MesoNet:
    model = MesoNet(inception=True, **config)
    model.pretrained_cfg = _cfg()
    return model
