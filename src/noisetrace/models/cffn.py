"""Common Fake Feature Network with its classifier (``cffn-two-phase-triplet.md``, Salpekar,
building on Hsu et al. 2020).

Phase 1 trains the CFFN with a triplet loss on ``embed(x)``; phase 2 appends the classifier
network and trains everything with cross-entropy (``forward`` -> fake logit).

* Stem: conv 7x7 stride 4, 3 -> 64 (Hsu et al.'s CFFN; the paper's Fig. 1 starts from it).
  We pad it by 3 so 224 -> 56 (the TF code uses VALID padding, 224 -> 55).
* Two dense residual blocks, one with 3x3 and one with 5x5 kernels, both fed by the stem.
  Each has 15 residual units over 64, 96, 128, 256 channels (2, 4, 3, 6 units): the original
  CFFN's 9 units (64/96/128) plus the paper's 6 extra 256-channel units per block. A residual
  unit is BN -> Swish -> conv -> BN -> Swish -> conv plus a skip (He et al. pre-activation).
  The last unit of each stage moves to the next width and halves the resolution: its input
  is average-pooled 2x2, and the skip zero-pads the new channels (no parameters), as in the
  CFFN. 224 -> 56 -> 28 -> 14 -> 7.
* The two block outputs (256 each) are concatenated: (B, 512, 7, 7) at 224x224.
* Embedding head (phase 1): flatten -> dense 128 -> softmax (the paper: "reshaped before
  being passed to the Softmax layer"). Other input sizes are average-pooled to the 7x7 grid.
* Classifier network (phase 2): BN -> Swish -> conv 3x3 (512 -> 2) -> global mean ->
  dense 2x2; two classes, index 1 = fake, forward returns logit_fake - logit_real.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from noisetrace.models.registry import register_model

_WIDTHS = (64, 96, 128, 256)
_UNITS = (2, 4, 3, 6)  # 9 original units + 6 extra 256-channel units = 15


class ResidualUnit(nn.Module):
    """(B, Cin, H, W) -> (B, Cout, H/s, W/s): BN-Swish-conv twice plus a skip.

    With ``down`` the input is average-pooled 2x2 first and the skip zero-pads the channels
    from Cin to Cout (Cout >= Cin).
    """

    def __init__(self, cin: int, cout: int, k: int, down: bool = False) -> None:
        super().__init__()
        self.down, self.pad = down, cout - cin
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.SiLU(inplace=True), nn.Conv2d(cin, cin, k, padding=k // 2),
            nn.BatchNorm2d(cin), nn.SiLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
        skip = x
        if self.pad:
            lo = self.pad // 2
            skip = F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))
        return skip + self.body(x)


def dense_residual_block(k: int) -> nn.Sequential:
    """15 residual units with kernel ``k``: (B, 64, H, W) -> (B, 256, H/8, W/8)."""
    units: list[nn.Module] = []
    for s, (w, n) in enumerate(zip(_WIDTHS, _UNITS, strict=True)):
        for j in range(n):
            last_of_stage = j == n - 1 and s < len(_WIDTHS) - 1
            units.append(ResidualUnit(w, _WIDTHS[s + 1] if last_of_stage else w, k,
                                      down=last_of_stage))
    return nn.Sequential(*units)


class CFFN(nn.Module):
    """(B, 3, H, W) in [0, 1] -> fake logit (B,); ``embed`` -> (B, 128) triplet encodings."""

    def __init__(self, embed_dim: int = 128, grid: int = 7, num_classes: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, _WIDTHS[0], 7, stride=4, padding=3)
        self.block3 = dense_residual_block(3)
        self.block5 = dense_residual_block(5)
        c = 2 * _WIDTHS[-1]
        self.grid = grid
        self.embedding = nn.Linear(c * grid * grid, embed_dim)
        # Classifier network: BN, Swish, conv to one map per class, global mean, dense.
        self.cls_conv = nn.Sequential(nn.BatchNorm2d(c), nn.SiLU(inplace=True),
                                      nn.Conv2d(c, num_classes, 3, padding=1))
        self.cls_fc = nn.Linear(num_classes, num_classes)
        self.num_features = num_classes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 512, H/32, W/32): both dense blocks, concatenated."""
        s = self.stem(x)
        return torch.cat([self.block3(s), self.block5(s)], dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embed_dim) softmax encodings for the phase-1 triplet loss."""
        f = self.encode(x)
        if f.shape[-2:] != (self.grid, self.grid):
            f = F.adaptive_avg_pool2d(f, self.grid)
        return torch.softmax(self.embedding(f.flatten(1)), dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2, h, w) per-class maps before the classifier's global mean."""
        return self.cls_conv(self.encode(x))

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 2) averaged class maps -> (B,) fake logit."""
        z = self.cls_fc(pooled)
        return z[:, 1] - z[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x).mean(dim=(2, 3)))


@register_model("cffn")
def cffn(**config) -> CFFN:
    model = CFFN(**config)
    # Frames resized to 224x224 and divided by 255 (paper Sec. 3).
    model.pretrained_cfg = {"input_size": (224, 224), "normalize": "unit", "input": "image"}
    return model
