"""SPAM: second-order Markov statistics of pixel differences (Pevny, Bas and Fridrich,
IEEE TIFS 2010), the classical steganalysis residual feature.

Differences between neighbours are the simplest noise residual (the image predicted by
its neighbour, subtracted). For each of the 8 directions, differences are truncated to
[-T, T] and the transition probabilities P(d3 | d1, d2) of three consecutive differences
are counted; the 4 axis directions and the 4 diagonals are averaged separately, giving
2 * (2T + 1)^3 features (686 for T = 3). Pure NumPy on the luma channel.
"""

from __future__ import annotations

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114])


def _transitions(a: np.ndarray, t: int, diagonal: bool) -> np.ndarray:
    """(2t+1)^3 transition probabilities along +x (or the +x+y diagonal) of ``a``."""
    if diagonal:
        d = a[:-1, :-1] - a[1:, 1:]
        d1, d2, d3 = d[:-2, :-2], d[1:-1, 1:-1], d[2:, 2:]
    else:
        d = a[:, :-1] - a[:, 1:]
        d1, d2, d3 = d[:, :-2], d[:, 1:-1], d[:, 2:]
    k = 2 * t + 1
    idx = ((np.clip(d1, -t, t) + t) * k + (np.clip(d2, -t, t) + t)) * k + np.clip(d3, -t, t) + t
    counts = np.bincount(idx.ravel(), minlength=k**3).astype(np.float64).reshape(k * k, k)
    pair = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, pair, out=np.zeros_like(counts), where=pair > 0).ravel()


def spam(img: np.ndarray, t: int = 3) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 -> (2 * (2t+1)^3,) float32 SPAM features.

    Images need at least 4 pixels per side.
    """
    g = img if img.ndim == 2 else np.asarray(img, np.float64) @ LUMA
    a = np.round(g).astype(np.int16)
    if min(a.shape) < 4:
        raise ValueError(f"SPAM needs at least 4x4 pixels, got {a.shape}")
    axis = [a, a[:, ::-1], a.T, a.T[:, ::-1]]  # right, left, down, up
    diag = [a, a[::-1, ::-1], a[::-1, :], a[:, ::-1]]  # the four diagonal directions
    f1 = np.mean([_transitions(x, t, False) for x in axis], axis=0)
    f2 = np.mean([_transitions(x, t, True) for x in diag], axis=0)
    return np.concatenate([f1, f2]).astype(np.float32)
