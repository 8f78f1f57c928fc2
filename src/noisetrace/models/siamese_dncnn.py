"""Siamese DnCNN face/background detector (``siamese-dncnn-face-background.md``).

A face square and a background square (the one farthest from the face) of the same frame go
through one shared DnCNN noise extractor (their Fig. 3: conv+ReLU, 18 x conv+BN+ReLU, conv).
The two noise maps are compared by the cosine similarity matrix of their Eq. 1,

    S_ij = F_i . B_j / (||F_i||_2 ||B_j||_2),

between column i of the face noise F and column j of the background noise B, computed per
colour channel (each channel's noise is an H x W matrix, so S is (3, W, W)). One deviation
(``center=True``, default): each noise map's spatial mean is removed before Eq. 1; without it a
randomly initialised DnCNN's constant offset makes every S_ij ~ 1 and nothing trains; with the
pre-trained GRIP DnCNN the maps are near zero-mean anyway. Then
conv 3x3 (stride 1) + max-pool 2x2 (stride 2) blocks, each halving the size (64 -> 4 after
four), and fully connected layers each shrinking the width fourfold down to the two classes
(2048 -> 512 -> 128 -> 32 -> 8 -> 2), with softmax/cross-entropy (their Eq. 2). Inputs are
64x64 (their Sec. 4.2). The paper gives neither the number of conv blocks nor their widths;
ours (16, 32, 64, 128) make the flattened width 128 * 4 * 4 = 2048 = 2 * 4^5, so every FC
layer shrinks exactly fourfold.

Input: (B, 2, 3, 64, 64) = [face, background] stacked on dim 1, pixels in [0, 1].
``load_dncnn`` starts the extractor from a pre-trained colour DnCNN (e.g. GRIP's 17-layer
``model_best.th``): matching layers are copied; the extra middle layers are set to identity so
the loaded extractor computes exactly the pre-trained function until training moves them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisetrace.errors import ModelError
from noisetrace.models.registry import register_model


class DnCNN(nn.Sequential):
    """(B, 3, H, W) -> (B, 3, H, W) noise: conv+ReLU, ``depth`` x conv+BN+ReLU, conv.

    Indexed like the common DnCNN checkpoints (``0`` first conv, ``2+3k``/``3+3k`` the k-th
    middle conv/BN, last conv at ``2+3*depth``). Reflect padding: the GRIP weights give
    border values ~1e4 times the interior with zero padding on a flat image, ~1e-2 with reflect.
    """

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 18) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, padding=1, padding_mode="reflect"),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False, padding_mode="reflect"),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, channels, 3, padding=1, padding_mode="reflect"))
        super().__init__(*layers)
        self.depth = depth


def _set_identity(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Make conv+BN(+ReLU) an identity on non-negative inputs (the previous ReLU's output)."""
    with torch.no_grad():
        conv.weight.zero_()
        c = min(conv.in_channels, conv.out_channels)
        conv.weight[torch.arange(c), torch.arange(c), 1, 1] = 1.0
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) == x


def load_dncnn(path: str | Path, into: nn.Module | None = None) -> DnCNN:
    """Load a pre-trained colour DnCNN checkpoint into a DnCNN where layers match.

    ``path``: a torch file holding a DnCNN state dict, directly or under key ``network``
    (GRIP's ``model_best.th``: conv, 15 x conv+BN, conv). ``into``: a :class:`SiameseDnCNN`
    (its extractor is loaded), a :class:`DnCNN`, or None (a new 18-layer DnCNN).
    The first conv, the first ``n`` middle blocks and the last conv are copied; middle blocks
    beyond the checkpoint's are set to identity (so the result equals the pre-trained DnCNN
    exactly in eval mode). Returns the DnCNN, with ``load_report`` (a dict) attached.
    """
    net = into.extractor if isinstance(into, SiameseDnCNN) else into
    net = net if net is not None else DnCNN()
    if not isinstance(net, DnCNN):
        raise TypeError("into must be a SiameseDnCNN, a DnCNN or None")
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"no DnCNN checkpoint at {path}") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as exc:
        # torch's own message suggests weights_only=False: never for a file from elsewhere.
        raise ModelError(f"{path} is not a readable DnCNN checkpoint (a torch file of tensors: "
                         f"{type(exc).__name__}); check the file or download it again") from None
    state: dict[str, torch.Tensor] = raw.get("network", raw) if isinstance(raw, dict) else {}
    convs = sorted({int(k.split(".")[0]) for k, v in state.items()
                    if isinstance(k, str) and k.endswith(".weight")
                    and isinstance(v, torch.Tensor) and v.ndim == 4})
    if len(convs) < 2:
        raise ModelError(f"{path} does not look like a DnCNN state dict (no conv weights)")
    first, last, middle = convs[0], convs[-1], convs[1:-1]
    n_mid = min(len(middle), net.depth)
    src_of = {0: first, 2 + 3 * net.depth: last}
    for k in range(n_mid):
        src_of[2 + 3 * k] = middle[k]
        src_of[3 + 3 * k] = middle[k] + 1  # its BN
    new: dict[str, torch.Tensor] = {}
    own = net.state_dict()
    for dst, src in src_of.items():
        for key in own:
            if key.split(".")[0] != str(dst):
                continue
            s = state.get(f"{src}.{key.split('.', 1)[1]}")
            if s is None or s.shape != own[key].shape:
                raise ModelError(f"DnCNN checkpoint layer {src} does not fit layer {dst} "
                                 f"({key}): {None if s is None else tuple(s.shape)} vs "
                                 f"{tuple(own[key].shape)}")
            new[key] = s
    net.load_state_dict(new, strict=False)
    for k in range(n_mid, net.depth):
        _set_identity(net[2 + 3 * k], net[3 + 3 * k])
    net.load_report = {
        "checkpoint_middle_blocks": len(middle),
        "copied_middle_blocks": n_mid,
        "identity_middle_blocks": list(range(n_mid, net.depth)),
        "ignored_checkpoint_blocks": max(0, len(middle) - net.depth),
    }
    return net


def similarity_matrix(f: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 1 per channel: (B, C, H, W) face and background noise -> (B, C, W, W) cosines."""
    fn = f / f.norm(dim=2, keepdim=True).clamp_min(eps)  # unit columns
    bn = b / b.norm(dim=2, keepdim=True).clamp_min(eps)
    return torch.einsum("bchi,bchj->bcij", fn, bn)


class SiameseDnCNN(nn.Module):
    """(B, 2, 3, 64, 64) [face, background] in [0, 1] -> fake logit (B,)."""

    def __init__(
        self,
        depth: int = 18,
        width: int = 64,
        conv_channels: tuple[int, ...] = (16, 32, 64, 128),
        input_size: int = 64,
        center: bool = True,
    ) -> None:
        super().__init__()
        self.center = center
        self.extractor = DnCNN(3, width, depth)
        blocks: list[nn.Module] = []
        cin = 3
        for c in conv_channels:
            blocks += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = c
        self.refine = nn.Sequential(*blocks)
        side = input_size // 2 ** len(conv_channels)
        width_in = cin * side * side
        fcs: list[nn.Module] = []
        while width_in // 4 >= 2:  # shrink fourfold until the two classes
            fcs += [nn.Linear(width_in, width_in // 4), nn.ReLU(inplace=True)]
            width_in //= 4
        if not fcs or width_in != 2:
            raise ValueError(f"flattened width {cin * side * side} is not 2 * 4^k; pick "
                             "conv_channels/input_size so the FC layers shrink fourfold to 2")
        self.classifier = nn.Sequential(nn.Flatten(), *fcs[:-1])  # last layer: logits, no ReLU
        self.input_size = input_size

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W) extracted noise trace (for visualisation)."""
        return self.extractor(x)

    def load_pretrained(self, path: str | Path) -> dict:
        """Start the shared extractor from a pre-trained DnCNN checkpoint (the paper's
        starting point; :func:`load_dncnn`, tensors only). ``noisetrace train`` calls it for
        ``init: <checkpoint>.th``. Returns the load report."""
        return load_dncnn(path, into=self).load_report

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 2:
            raise ValueError(f"expected (B, 2, 3, H, W) [face, background] pairs, got "
                             f"{tuple(x.shape)}")
        b = x.shape[0]
        n = self.extractor(x.flatten(0, 1)).unflatten(0, (b, 2))  # one pass, shared weights
        if self.center:
            # Noise is zero-mean by definition; a DnCNN's output also carries a per-channel
            # offset (large at random init) that would make every cosine ~1 (S constant, no
            # gradient). Removing each map's mean keeps Eq. 1's column structure.
            n = n - n.mean(dim=(-2, -1), keepdim=True)
        s = similarity_matrix(n[:, 0], n[:, 1])
        z = self.classifier(self.refine(s))
        return z[:, 1] - z[:, 0]


@register_model("siamese-dncnn")
def siamese_dncnn(**config: Any) -> SiameseDnCNN:
    model = SiameseDnCNN(**config)
    size = model.input_size
    model.pretrained_cfg = {"input_size": (size, size), "normalize": "unit",
                            "input": "face_background"}
    return model
