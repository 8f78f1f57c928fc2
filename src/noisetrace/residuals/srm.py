"""SRM high-pass residuals: the three kernels of Zhou et al. used by the seed papers.

The kernels are exactly those printed in ``xception-lstm-srm-generalization.md`` (Fig. 2),
the same three that ``srm-filters-light-cnn.md`` uses. Each sums to zero, so flat regions give
a zero residual and only the noise left after predicting a pixel from its neighbours remains.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

SRMMode = Literal["per_channel", "sum"]

_K1 = (
    torch.tensor(
        [
            [0, 0, 0, 0, 0],
            [0, -1, 2, -1, 0],
            [0, 2, -4, 2, 0],
            [0, -1, 2, -1, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=torch.float64,
    )
    / 4.0
)
_K2 = (
    torch.tensor(
        [
            [-1, 2, -2, 2, -1],
            [2, -6, 8, -6, 2],
            [-2, 8, -12, 8, -2],
            [2, -6, 8, -6, 2],
            [-1, 2, -2, 2, -1],
        ],
        dtype=torch.float64,
    )
    / 12.0
)
_K3 = (
    torch.tensor(
        [
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 1, -2, 1, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=torch.float64,
    )
    / 2.0
)

#: The three 5x5 SRM kernels, shape (3, 5, 5), float64 as printed in the paper.
SRM_KERNELS: torch.Tensor = torch.stack([_K1, _K2, _K3])


def srm_weight(in_channels: int, mode: SRMMode = "per_channel") -> torch.Tensor:
    """Convolution weight that applies the SRM kernels.

    ``per_channel``: shape (3*C, 1, 5, 5) for a grouped conv (groups=C); output channel
    ``3*c + k`` is kernel ``k`` on colour ``c`` (the light-CNN paper filters each colour).
    ``sum``: shape (3, C, 5, 5); each kernel is expanded over the C input channels, giving a
    3-channel map with the same shape as RGB (the Xception paper's SRM domain).
    """
    k = SRM_KERNELS.to(torch.float32)
    if mode == "per_channel":
        return k.unsqueeze(1).repeat(in_channels, 1, 1, 1)
    if mode == "sum":
        return k.unsqueeze(1).repeat(1, in_channels, 1, 1)
    raise ValueError(f"unknown SRM mode {mode!r}; use 'per_channel' or 'sum'")


def srm_residual(x: torch.Tensor, mode: SRMMode = "per_channel") -> torch.Tensor:
    """SRM noise residual of a batch of images.

    Args:
        x: (B, C, H, W) float tensor (any scale; the filters are linear).
        mode: ``per_channel`` -> (B, 3*C, H, W); ``sum`` -> (B, 3, H, W).

    Reflect padding keeps the output the size of the input and keeps a constant image's
    residual exactly zero at the borders too.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    w = srm_weight(x.shape[1], mode).to(dtype=x.dtype, device=x.device)
    return _apply(x, w, mode)


def _apply(x: torch.Tensor, weight: torch.Tensor, mode: SRMMode) -> torch.Tensor:
    # Reflect needs at least 3 pixels per side; replicate is the same on tiny inputs.
    pad_mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    xp = F.pad(x, (2, 2, 2, 2), mode=pad_mode)
    return F.conv2d(xp, weight.to(x.dtype), groups=x.shape[1] if mode == "per_channel" else 1)


class SRMFilter(nn.Module):
    """Fixed (non-trainable) SRM layer; see :func:`srm_residual`.

    Input (B, C, H, W) -> output (B, 3*C, H, W) for ``per_channel``, (B, 3, H, W) for ``sum``.
    """

    def __init__(self, in_channels: int = 3, mode: SRMMode = "per_channel") -> None:
        super().__init__()
        self.in_channels = in_channels
        self.mode: SRMMode = mode
        self.register_buffer("weight", srm_weight(in_channels, mode), persistent=False)
        self.out_channels = 3 * in_channels if mode == "per_channel" else 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply(x, self.weight, self.mode)
