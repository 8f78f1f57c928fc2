"""Where in the image the detector sees fake noise: a local score map and its overlay.

For fully convolutional detectors the head is applied to features averaged over windows
(``window`` input pixels, half-overlapping), giving the fake logit each region would get on
its own. This is the map ``scan --explain`` and the web service show.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from noisetrace.detector import Detector
from noisetrace.errors import ModelError


@torch.inference_mode()
def local_logit_map(det: Detector, img: np.ndarray, window: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w) float32 map of local fake logits (one per window step)."""
    model = det.model
    if not hasattr(model, "forward_features"):
        raise ModelError(f"model {det.config.arch!r} has no spatial features to map")
    img = det.fit_size(img)
    h, w = img.shape[:2]
    t = det.config.tile
    x = det.to_tensor(img)
    rows = []
    # Tile to bound memory; the stride of the features is found from the first tile.
    for y0 in range(0, h, t):
        row = []
        for x0 in range(0, w, t):
            f = model.forward_features(x[:, :, y0 : y0 + t, x0 : x0 + t]).float()
            row.append(f)
        rows.append(torch.cat(row, dim=3))
    feats = torch.cat(rows, dim=2)  # (1, F, h', w')
    stride = max(1, round(h / feats.shape[2]))
    k = max(1, window // stride)
    if min(feats.shape[2:]) >= k:
        feats = F.avg_pool2d(feats, kernel_size=k, stride=max(1, k // 2))
    fh, fw = feats.shape[2:]
    vec = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
    return model.forward_head(vec).reshape(fh, fw).float().cpu().numpy()


def probability_map(det: Detector, img: np.ndarray, window: int = 64) -> np.ndarray:
    """Local calibrated fake probabilities, resized to the image: (H, W) float in [0, 1]."""
    m = det.calibrate(local_logit_map(det, img, window)).astype(np.float32)
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(m, mode="F").resize((w, h), Image.BILINEAR))


def colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8, blue (real) through yellow to red (fake)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    blue, yellow, red = (
        np.array([40, 90, 230.0]),
        np.array([250, 220, 60.0]),
        np.array([220, 30, 30.0]),
    )
    lo = blue + (yellow - blue) * np.clip(v * 2, 0, 1)
    out = np.where(v < 0.5, lo, yellow + (red - yellow) * np.clip(v * 2 - 1, 0, 1))
    return out.astype(np.uint8)


def overlay(img: np.ndarray, prob_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured probability map over the image: (H, W, 3) uint8."""
    heat = colormap(prob_map).astype(np.float32)
    return (img.astype(np.float32) * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)
