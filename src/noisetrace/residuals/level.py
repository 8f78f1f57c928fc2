"""The noise *level* of an image across scales: how much fine detail it has for its contrast.

A decoder (an autoencoder's, a generator's) synthesises fine texture from a coarse latent:
its output is smoother at the finest scale for the structure it shows at coarser ones, or
sharper where it invents texture, and the balance is not a camera's. SPAM (normalised
co-occurrences of differences) sees the *pattern* of the residual, not its strength; these
numbers are its strength, per scale.

Pure NumPy on integer sums of the colour channels (R + G + B), so every residual is an
integer and its median and percentiles come from value histograms (exact, as
``np.percentile`` with linear interpolation, at a fraction of the cost of sorting). Scale
``k`` sums 2^k x 2^k blocks. Residuals: horizontal and vertical first differences and the
4-neighbour Laplacian. Per residual and scale: log mean, log median and log 90th percentile
of the absolute residual, each minus log of the scale's block size (so a flat rescaling of
the image moves every number alike); then, per scale, the spread (standard deviation) over
64 px tiles of the tile's log mean absolute Laplacian (a decoder smooths evenly, a photo's
focus and noise vary).
"""

from __future__ import annotations

import numpy as np

#: Quantiles read from every residual's histogram, besides the mean.
QUANTILES = (0.5, 0.9)


def hist_stats(counts: np.ndarray, qs: tuple[float, ...] = QUANTILES) -> tuple[float, ...]:
    """Mean and quantiles (``np.percentile``'s linear method) of the values 0, 1, 2, ...
    whose histogram is ``counts`` (1-D, integer)."""
    n = int(counts.sum())
    cum = np.cumsum(counts)
    out = [float(counts @ np.arange(len(counts))) / n]
    for q in qs:
        pos = q * (n - 1)
        lo = int(np.floor(pos))
        t = pos - lo
        # The sorted sample's k-th value is the first value whose cumulative count exceeds k.
        a, b = (float(v) for v in np.searchsorted(cum, [lo, min(lo + 1, n - 1)], side="right"))
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)  # np's lerp
    return tuple(out)


def laplacian(x: np.ndarray) -> np.ndarray:
    """(..., H, W) -> the 4-neighbour Laplacian over the last two axes, zero on the border."""
    out = np.zeros_like(x)
    out[..., 1:-1, 1:-1] = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
                            - x[..., 1:-1, :-2] - x[..., 1:-1, 2:])  # fmt: skip
    return out


def residuals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., H, W) -> horizontal and vertical first differences and :func:`laplacian`."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :], laplacian(x)


def _abs_residuals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W) int -> absolute residuals, the Laplacian without its zero border."""
    dx, dy, lap = residuals(x)
    return np.abs(dx), np.abs(dy), np.abs(lap[1:-1, 1:-1])


def _block_sum(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))


def _tile_spread(lap: np.ndarray, tile: int) -> float:
    th, tw = lap.shape[0] // tile, lap.shape[1] // tile
    if th * tw < 2:
        return 0.0
    t = lap[: th * tile, : tw * tile].reshape(th, tile, tw, tile).mean(axis=(1, 3))
    return float(np.log(t + 1.0).std())


def level_features(img: np.ndarray, scales: int = 3, tile: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 -> (3 * (1 + len(QUANTILES)) * scales + scales,) float32.

    Order: for each scale, for each residual (horizontal, vertical, Laplacian): log mean,
    log quantiles; then the tile spreads, one per scale. Images too small for a scale
    repeat the previous scale's numbers (no NaN for tiny inputs).
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"level_features needs (H, W, 3) uint8, got {img.shape} {img.dtype}")
    x = img.astype(np.int32).sum(axis=2)
    per_scale: list[list[float]] = []
    spreads: list[float] = []
    for k in range(scales):
        if k and min(x.shape) >= 6:
            x = _block_sum(x)
        elif k or min(x.shape) < 3:  # too small for this scale: repeat the last one
            per_scale.append(per_scale[-1] if per_scale else [0.0] * 3 * (1 + len(QUANTILES)))
            spreads.append(spreads[-1] if spreads else 0.0)
            continue
        norm = np.log(4.0**k)  # a block of 4^k pixels sums 4^k times the level
        row: list[float] = []
        res = _abs_residuals(x)
        for r in res:
            row += [float(np.log(s + 1.0) - norm) for s in hist_stats(np.bincount(r.ravel()))]
        per_scale.append(row)
        spreads.append(_tile_spread(res[2], max(4, tile >> k)))
    return np.array([v for row in per_scale for v in row] + spreads, np.float32)
