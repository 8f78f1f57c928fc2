"""Occlusion: which regions carry the fake score, for any model, networks or not.

A model fitted on frozen features (the bundled ``default`` and ``faces``: CLIP and SPAM heads)
has no network whose gradients or spatial features could be read. What every model can do is
score an image, so each cell of a ``grid`` x ``grid`` partition is replaced in turn by a
Gaussian-blurred copy of itself, which removes the cell's noise residual and fine detail and
keeps its colours and layout, and the image is scored again (Zeiler and Fergus, ECCV 2014).
A cell's value is how far its blurring lowered the fake logit: evidence *for* "fake" there.

Cost: ``grid ** 2 + 1`` scorings of the whole image (37 for the default grid of 6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from noisetrace.detector import Detector


def cells(h: int, w: int, grid: int) -> list[tuple[int, int, int, int]]:
    """The ``grid`` x ``grid`` partition of an (h, w) image as (y0, y1, x0, x1), row-major;
    fewer rows or columns where a side has fewer pixels than ``grid``."""
    ys = np.unique(np.linspace(0, h, min(grid, h) + 1).round().astype(int))
    xs = np.unique(np.linspace(0, w, min(grid, w) + 1).round().astype(int))
    return [(int(y0), int(y1), int(x0), int(x1))
            for y0, y1 in zip(ys[:-1], ys[1:], strict=True)
            for x0, x1 in zip(xs[:-1], xs[1:], strict=True)]  # fmt: skip


def occlusion_map(det: Detector, img: np.ndarray, grid: int = 6, sigma: float = 4.0,
                  progress: Callable[[int, int], None] | None = None,
                  ) -> tuple[np.ndarray, float, dict[str, Any]]:  # fmt: skip
    """(H, W, 3) uint8 -> (map, logit, details).

    ``map`` (H, W) float32 in [0, 1]: each cell's fall of the fake logit when it is blurred,
    over the largest fall (0 where blurring did not lower it); ``logit`` is the unoccluded
    image's. ``details`` has the grid, the blur and every cell's fall in logits (``drops``,
    rows of the grid), so the map's scale can be read back.
    """
    from noisetrace.explain.ig import gaussian_blur

    if grid < 1:
        raise ValueError(f"grid must be at least 1, got {grid}")
    h, w = img.shape[:2]
    blurred = gaussian_blur(img.astype(np.float32), sigma).round().clip(0, 255).astype(np.uint8)
    base = float(det.logit(img))
    parts = cells(h, w, grid)
    drops = np.zeros(len(parts), np.float64)
    for i, (y0, y1, x0, x1) in enumerate(parts):
        occluded = img.copy()
        occluded[y0:y1, x0:x1] = blurred[y0:y1, x0:x1]
        drops[i] = base - float(det.logit(occluded))
        if progress is not None:
            progress(i + 1, len(parts))
    top = float(drops.max())
    m = np.zeros((h, w), np.float32)
    if top > 0:
        for (y0, y1, x0, x1), d in zip(parts, drops, strict=True):
            m[y0:y1, x0:x1] = max(d, 0.0) / top
    n_cols = len({(x0, x1) for _, _, x0, x1 in parts})
    details = {"grid": grid, "sigma": sigma, "cells": len(parts),
               "drops": drops.reshape(-1, n_cols).round(4).tolist()}  # fmt: skip
    return m, base, details
