"""SRNet (Boroumand, Chen & Fridrich 2019) as used by DJIN
(``djin-srnet-noise-residual-detector.md``).

SRNet is built from four layer types (their Fig. 1):

* Type 1: conv 3x3 -> BN -> ReLU.
* Type 2: Type 1 -> conv 3x3 -> BN, plus an identity skip.
* Type 3: Type 1 -> conv 3x3 -> BN -> avg-pool 3x3 stride 2, plus a skip conv 1x1 stride 2 -> BN.
* Type 4: Type 1 -> conv 3x3 -> BN, then global average pooling.

Layers: L1-L2 Type 1 (64, 16 filters), L3-L7 Type 2 (16), L8-L11 Type 3 (16, 64, 128, 256),
L12 Type 4 (512), then a fully connected layer with two outputs. Against DJIN's Table 1 this
gives 26 convolutions, 14 of them before the first subsampling (L1-L7 and the two convs of
L8's main branch), and a receptive field of 179 pixels (31 before subsampling, counting L8's
3x3 pooling window). DJIN quotes 5.3M parameters; this structure has 4.78M (see
docs/models.md for the count and the likely reason). No pooling in L1-L7 keeps the
stego-like noise at full resolution; the network is fully convolutional up to the global
pooling, so it scores any image size (tile by tile through ``forward_features``).
"""

from __future__ import annotations

import torch
from torch import nn

from noisetrace.models.registry import register_model


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    # No conv bias: BN right after makes it redundant (SRNet's own layers have none either).
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]


class Type1(nn.Sequential):
    """(B, Cin, H, W) -> (B, Cout, H, W): conv-BN-ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*_conv_bn(cin, cout), nn.ReLU(inplace=True))


class Type2(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): Type 1, conv-BN, identity skip."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(Type1(c, c), *_conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Type3(nn.Module):
    """(B, Cin, H, W) -> (B, Cout, ceil(H/2), ceil(W/2)): the subsampling residual layer."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Type1(cin, cout),
            *_conv_bn(cout, cout),
            # Padding excluded from the mean, like TF's 'SAME' average pooling in SRNet.
            nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        )
        self.skip = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Type4(nn.Sequential):
    """(B, Cin, H, W) -> (B, Cout, H, W): Type 1 then conv-BN (global pooling follows)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(Type1(cin, cout), *_conv_bn(cout, cout))


class SRNet(nn.Module):
    """(B, 3, H, W) in [0, 1] (DJIN divides pixels by 255) -> fake logit (B,).

    Any H, W >= 1 works; the paper scores images at full resolution.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            Type1(in_chans, 64),  # L1
            Type1(64, 16),  # L2
            *[Type2(16) for _ in range(5)],  # L3-L7
            Type3(16, 16),  # L8
            Type3(16, 64),  # L9
            Type3(64, 128),  # L10
            Type3(128, 256),  # L11
            Type4(256, 512),  # L12
        )
        self.num_features = 512
        # Two-class head as in SRNet; forward returns logit_fake - logit_real.
        self.fc = nn.Linear(512, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 512, ceil(H/16), ceil(W/16)) before global pooling."""
        return self.layers(x)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 512) globally averaged features -> (B,) fake logit."""
        z = self.fc(pooled)
        return z[:, 1] - z[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x).mean(dim=(2, 3)))


@register_model("djin")
def djin(**config) -> SRNet:
    """DJIN: SRNet trained on pixels / 255 at any size."""
    model = SRNet(**config)
    model.pretrained_cfg = {"input_size": None, "normalize": "unit", "input": "image"}
    return model
