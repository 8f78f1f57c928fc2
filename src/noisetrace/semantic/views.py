"""How the semantic branch looks at an image of any size: fixed-size square views.

Pure functions on (H, W, 3) uint8 arrays. A view policy is a string of ``+``-joined parts:

* ``resize``: the shorter side scaled to ``size`` (antialiased), then the centre square:
  the whole scene, as CLIP was trained to see it.
* ``center``: the centre ``size`` square at native resolution: no resampling, so the
  generator's pixel-level texture survives.
* ``grid<K>``: ``K`` native-resolution squares spread evenly over the image (K = 1 is
  ``center``).

Images smaller than ``size`` are upscaled (bicubic) until the square fits, for every part.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

VIEW_SIZE = 224


def _upscale_to(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) >= size:
        return img
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    return np.asarray(Image.fromarray(img).resize((nw, nh), Image.BICUBIC))


def _centre(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return img[y : y + size, x : x + size]


def resized_view(img: np.ndarray, size: int = VIEW_SIZE) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3): shorter side to ``size``, centre square."""
    h, w = img.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BICUBIC, reducing_gap=3.0))
    return np.ascontiguousarray(_centre(img, size))


def grid_views(img: np.ndarray, k: int, size: int = VIEW_SIZE) -> list[np.ndarray]:
    """(H, W, 3) -> ``k`` native-resolution (size, size, 3) squares, centre first, the
    rest spread over a near-square grid of the image."""
    img = _upscale_to(img, size)
    h, w = img.shape[:2]
    out = [np.ascontiguousarray(_centre(img, size))]
    if k <= 1:
        return out
    rows = max(1, int(round(np.sqrt((k - 1) * h / w))))
    cols = max(1, int(np.ceil((k - 1) / rows)))
    ys = np.linspace(0, h - size, rows + 2)[1:-1] if rows > 1 else [(h - size) / 2]
    xs = np.linspace(0, w - size, cols + 2)[1:-1] if cols > 1 else [(w - size) / 2]
    for y in ys:
        for x in xs:
            if len(out) >= k:
                break
            yi, xi = int(round(y)), int(round(x))
            out.append(np.ascontiguousarray(img[yi : yi + size, xi : xi + size]))
    return out


def parse_policy(policy: str) -> list[tuple[str, int]]:
    """``"resize+grid4"`` -> [("resize", 1), ("grid", 4)]; raises ValueError when unknown."""
    parts = []
    for part in policy.split("+"):
        part = part.strip()
        if part == "resize":
            parts.append(("resize", 1))
        elif part == "center":
            parts.append(("grid", 1))
        elif part.startswith("grid") and part[4:].isdigit() and int(part[4:]) >= 1:
            parts.append(("grid", int(part[4:])))
        else:
            raise ValueError(f"unknown view {part!r} in policy {policy!r}: use resize, center, "
                             "gridK, joined with +")  # fmt: skip
    return parts


def views(img: np.ndarray, policy: str = "resize", size: int = VIEW_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> (V, size, size, 3) uint8, the views ``policy`` names, in order."""
    out: list[np.ndarray] = []
    for kind, k in parse_policy(policy):
        out += [resized_view(img, size)] if kind == "resize" else grid_views(img, k, size)
    return np.stack(out)
