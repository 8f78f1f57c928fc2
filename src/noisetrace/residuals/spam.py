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


def _counts(a: np.ndarray, t: int, direction: str) -> np.ndarray:
    """(2t+1)^3 counts of clipped difference triples along ``direction`` of ``a``: "right"
    (+x), "down" (+y) or "diagonal" (+x+y), as a (k, k, k) array indexed by the shifted
    differences (d1, d2, d3) + t. "down" slices rows instead of transposing: the same counts,
    without strided reads of a transposed view."""
    if direction == "diagonal":
        c = np.clip(a[:-1, :-1] - a[1:, 1:], -t, t) + t
        c1, c2, c3 = c[:-2, :-2], c[1:-1, 1:-1], c[2:, 2:]
    elif direction == "down":
        c = np.clip(a[:-1] - a[1:], -t, t) + t
        c1, c2, c3 = c[:-2], c[1:-1], c[2:]
    else:
        c = np.clip(a[:, :-1] - a[:, 1:], -t, t) + t
        c1, c2, c3 = c[:, :-2], c[:, 1:-1], c[:, 2:]
    k = 2 * t + 1
    return np.bincount(((c1 * k + c2) * k + c3).ravel(), minlength=k**3).reshape(k, k, k)


def _reversed(counts: np.ndarray) -> np.ndarray:
    """Counts of the opposite direction: walking a line backwards turns the triple
    (d1, d2, d3) into (-d3, -d2, -d1), so they are a permutation of the forward counts
    (half the work, exactly the same integers as counting again)."""
    return counts[::-1, ::-1, ::-1].transpose(2, 1, 0)


def _probabilities(counts: np.ndarray) -> np.ndarray:
    """(k, k, k) counts -> (k^3,) transition probabilities P(d3 | d1, d2)."""
    k = counts.shape[0]
    c = counts.astype(np.float64).reshape(k * k, k)
    pair = c.sum(axis=1, keepdims=True)
    return np.divide(c, pair, out=np.zeros_like(c), where=pair > 0).ravel()


def _transitions(a: np.ndarray, t: int, direction: str = "right") -> np.ndarray:
    """(2t+1)^3 transition probabilities along ``direction`` (see :func:`_counts`) of ``a``."""
    return _probabilities(_counts(a, t, direction))


def spam(img: np.ndarray, t: int = 3) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 -> (2 * (2t+1)^3,) float32 SPAM features.

    Images need at least 4 pixels per side.
    """
    g = img if img.ndim == 2 else np.asarray(img, np.float64) @ LUMA
    a = np.round(g).astype(np.int16)
    if min(a.shape) < 4:
        raise ValueError(f"SPAM needs at least 4x4 pixels, got {a.shape}")
    # Directions in the order right, left, down, up and the diagonals down-right, up-left,
    # up-right, down-left; each opposite pair from one count.
    right, down = _counts(a, t, "right"), _counts(a, t, "down")
    dr, ur = _counts(a, t, "diagonal"), _counts(a[::-1, :], t, "diagonal")
    f1 = np.mean([_probabilities(c) for c in (right, _reversed(right), down, _reversed(down))],
                 axis=0)  # fmt: skip
    f2 = np.mean([_probabilities(c) for c in (dr, _reversed(dr), ur, _reversed(ur))], axis=0)
    return np.concatenate([f1, f2]).astype(np.float32)
