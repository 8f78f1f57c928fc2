"""Corvi et al. (2023) baseline that DJIN compares with: ResNet-50 without early down-sampling.

DJIN (Sec. 3.2): "ResNet50 with a dropout rate 0.5, a padding of 1, and a stride of 1 in the
first convolutional layer, which avoids down-sampling in the first layer". DJIN's Table 1
(17 conv layers / 4 before subsampling, receptive field 113 / 15, 23.5M parameters) counts
the stem plus the 16 bottleneck blocks, and "4 before subsampling" with a receptive field of
15 only holds if the stem's 3x3 max-pool also has stride 1 (7x7 conv -> 7, pool -> 9, three
3x3 bottleneck convs -> 15), as in Gragnaniello et al.'s ``stride0=1`` ResNet. So both the
stem conv and the stem max-pool use stride 1 here; layers 2-4 subsample as usual.
The stem conv keeps ResNet's 7x7 kernel with padding 3 (DJIN's "padding of 1" would shrink
the map by 4 pixels per side; we keep the size-preserving padding).
"""

from __future__ import annotations

import torch
from torch import nn

from noisetrace.models.registry import register_model


class CorviResNet50(nn.Module):
    """(B, 3, H, W) ImageNet-normalised -> fake logit (B,). Fully convolutional until pooling."""

    def __init__(self, dropout: float = 0.5, pretrained: bool = False) -> None:
        super().__init__()
        import timm  # heavy import kept out of package import

        # timm's resnet50 is torchvision's layout (conv1, bn1, layer1-4, fc), so torchvision
        # or Corvi checkpoints load by key; pretrained=True fetches ImageNet weights.
        self.backbone = timm.create_model("resnet50", pretrained=pretrained, num_classes=0,
                                          global_pool="")
        self.backbone.conv1.stride = (1, 1)
        self.backbone.maxpool.stride = 1
        self.num_features = self.backbone.num_features  # 2048
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2048, ceil(H/8), ceil(W/8))."""
        return self.backbone.forward_features(x)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 2048) pooled features -> (B,) fake logit (single-logit head, as Corvi's)."""
        return self.fc(self.dropout(pooled)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x).mean(dim=(2, 3)))


@register_model("corvi-resnet50")
def corvi_resnet50(**config) -> CorviResNet50:
    model = CorviResNet50(**config)
    model.pretrained_cfg = {"input_size": None, "normalize": "imagenet", "input": "image"}
    return model
