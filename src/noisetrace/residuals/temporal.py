"""Temporal residuals of a face against the ring around it.

A face swapped frame by frame is rendered anew in every frame, so its change from one frame
to the next comes and goes, where a filmed face's change (a head turning, a mouth opening)
keeps going. :func:`frame_jitter` and :func:`jitter_index` measure that, face against ring,
and hold on talking heads (docs/models.md: 0.81 AUC on DeepFaceLive against the same clips'
real halves, no training). :func:`frame_changes` and :func:`still_flicker`, the face's change
against the ring's where the ring changes least, were the first statistic: expression moves
the face and not its ring, so they mistake talking for rendering.

Inputs are windows of consecutive frames cut with one face square (the square does not
follow the face inside a window, so the ring's change measures head and camera motion).
The ring is the crop's margin outside the face box, as in the face-ring branch
(``heads.extractors.FaceRingExtractor``): ``(1 - 1 / scale) / 2`` of each side plus 4 px.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
EPS = 1e-2  # grey levels: keeps log() finite on a frozen (duplicated) frame


def ring_mask(size: int, scale: float = 1.3) -> np.ndarray:
    """(size, size) bool, True in the ring of a face crop ``scale`` times the face box."""
    if scale <= 1:
        raise ValueError(f"the crop must be larger than the face (scale > 1), got {scale}")
    m = max(1, round(size * (1 - 1 / scale) / 2) + 4)
    if 2 * m >= size:
        raise ValueError(f"a {size} px crop leaves no face inside a {m} px ring")
    ring = np.ones((size, size), bool)
    ring[m : size - m, m : size - m] = False
    return ring


def frame_changes(window: np.ndarray, scale: float = 1.3, highpass: bool = False) -> np.ndarray:
    """Log mean absolute change between consecutive frames, face and ring.

    ``window``: (T, S, S, 3) uint8 RGB crops of T >= 2 consecutive frames, one square, or
    their (T, S, S) luma.
    ``highpass``: the change of the 4-neighbour Laplacian of the luma instead of the luma
    itself (texture and noise, not shading). Returns (T - 1, 2) float32: per frame pair,
    ``[log change inside the face, log change in the ring]``.
    """
    y = _luma(window, 2, highpass)
    ring = ring_mask(window.shape[1], scale)
    d = np.abs(np.diff(y, axis=0))
    face = np.log(d[:, ~ring].mean(axis=1) + EPS)
    around = np.log(d[:, ring].mean(axis=1) + EPS)
    return np.stack([face, around], axis=1).astype(np.float32)


def frame_jitter(window: np.ndarray, scale: float = 1.3, highpass: bool = False) -> np.ndarray:
    """Whether the change between frames goes on or comes back, face and ring.

    For each three consecutive frames ``a, b, c``: ``log mean |b - a| - log mean |c - a|``.
    Smooth motion (a head turning, a mouth opening) keeps going, so the two-frame change is
    about twice the one-frame change and the value is near ``-log 2``; change that comes and
    goes (sensor noise, a face re-rendered every frame) makes both alike and the value near
    0. Expression and pose move the face more than its ring, so a filmed face reads lower
    than its ring; a rendered one's jitter lifts it. ``window``: (T, S, S, 3) uint8 RGB
    crops of T >= 3 consecutive frames, one square, or their (T, S, S) luma (the value is
    nearly the same for any luma scaled or offset: only ratios of changes enter). Returns
    (T - 2, 2) float32:
    ``[face, ring]`` per triple.
    """
    y = _luma(window, 3, highpass)
    ring = ring_mask(window.shape[1], scale)
    one, two = np.abs(y[1:-1] - y[:-2]), np.abs(y[2:] - y[:-2])
    out = [np.log(one[:, m].mean(axis=1) + EPS) - np.log(two[:, m].mean(axis=1) + EPS)
           for m in (~ring, ring)]  # fmt: skip
    return np.stack(out, axis=1).astype(np.float32)


def jitter_index(jitter: np.ndarray) -> float:
    """Face minus ring, averaged over the (N, 2) rows of :func:`frame_jitter` of a video.
    Higher: the face's frame-to-frame change comes and goes more than its surroundings'."""
    j = np.asarray(jitter, np.float64)
    if j.ndim != 2 or j.shape[1] != 2 or len(j) == 0:
        raise ValueError(f"expected (N, 2) frame jitter, got {j.shape}")
    return float(np.mean(j[:, 0] - j[:, 1]))


def _luma(window: np.ndarray, min_frames: int, highpass: bool) -> np.ndarray:
    """(T, S, S) float32 luma (or its Laplacian) of a (T, S, S, 3) RGB window or of a
    (T, S, S) window that is luma already, checked."""
    rgb = window.ndim == 4 and window.shape[-1] == 3
    if not (rgb or window.ndim == 3) or window.shape[1] != window.shape[2]:
        raise ValueError(f"expected (T, S, S, 3) or (T, S, S) square crops, got {window.shape}")
    if len(window) < min_frames:
        raise ValueError(f"a window needs at least {min_frames} frames, got {len(window)}")
    y = window.astype(np.float32) @ LUMA if rgb else window.astype(np.float32)
    if highpass:
        y = np.stack([ndimage.convolve(f, LAPLACIAN, mode="nearest") for f in y])
    return y


def still_flicker(changes: np.ndarray, still: float = 1 / 3) -> float:
    """How much more the face changes than its ring while the scene holds still.

    ``changes``: (N, 2) rows of :func:`frame_changes` pooled over a video's windows.
    The mean of ``face - ring`` over the frame pairs whose ring change is among the
    lowest ``still`` fraction (at least one pair). Higher: more flicker in the face.
    """
    c = np.asarray(changes, np.float64)
    if c.ndim != 2 or c.shape[1] != 2 or len(c) == 0:
        raise ValueError(f"expected (N, 2) frame changes, got {c.shape}")
    if not 0 < still <= 1:
        raise ValueError(f"still must be in (0, 1], got {still}")
    k = max(1, int(np.ceil(still * len(c))))
    calm = np.argsort(c[:, 1], kind="stable")[:k]
    return float(np.mean(c[calm, 0] - c[calm, 1]))
