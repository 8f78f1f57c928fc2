"""Spectral statistics of the noise residual: where generators leave periodic traces.

Upsampling layers (transposed convolutions, nearest / bilinear upsampling in GAN and
autoencoder decoders) repeat a pattern every 2, 4 or 8 pixels. In the image itself the
content hides it; in the residual (the pixel minus the mean of its four neighbours) it
shows as peaks of the power spectrum at multiples of 1/8 of the sampling frequency and as
a changed fall-off of high frequencies (Durall et al., CVPR 2020; Corvi et al., ICASSP
2023). Real photos carry demosaicing and JPEG periodicities too, so the features are
learned against reals with the same compression history, never read as a rule.

Pure NumPy on the luma channel. The spectrum is averaged over ``tile``-pixel tiles of the
image (Welch's method: stable peaks, bounded cost), then summarised as

* ``radial``: mean log power in ``bins`` rings from low to the highest frequency
  (the fall-off), relative to the ring mean;
* ``peaks``: at each grid frequency (u, v) in {0, 1/8, ..., 1/2}^2 but DC, the log power
  there over the median of its neighbourhood (a periodic trace is a narrow peak);
* ``axes``: mean log power of the horizontal and the vertical frequency axis in ``bins``
  bands each (row / column structure such as interpolation along one direction).
"""

from __future__ import annotations

import numpy as np

from noisetrace.residuals.spam import LUMA


def residual(gray: np.ndarray) -> np.ndarray:
    """(H, W) float -> (H-2, W-2): the pixel minus the mean of its four neighbours."""
    c = gray[1:-1, 1:-1]
    nb = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return c - nb / 4.0


def power_spectrum(img: np.ndarray, tile: int = 256, max_tiles: int = 16) -> np.ndarray:
    """(H, W, 3) uint8 -> (tile, tile) mean log power spectrum of the residual (DC at [0, 0]).

    Tiles are taken on a regular grid over the image's centre (at most ``max_tiles``);
    an image smaller than one tile is reflected to fill it.
    """
    gray = img[..., :3].astype(np.float32) @ LUMA.astype(np.float32) if img.ndim == 3 else (
        img.astype(np.float32))
    if min(gray.shape) < 3:  # a residual needs both neighbours of a pixel
        gray = np.pad(gray, ((0, max(0, 3 - gray.shape[0])), (0, max(0, 3 - gray.shape[1]))),
                      mode="edge")  # fmt: skip
    r = residual(gray)
    h, w = r.shape
    if h < tile or w < tile:
        r = np.pad(r, ((0, max(0, tile - h)), (0, max(0, tile - w))), mode="reflect")
        h, w = r.shape
    ny, nx = h // tile, w // tile
    while ny * nx > max_tiles:  # the centre tiles: bounded cost on large images
        if ny >= nx:
            ny -= 1
        else:
            nx -= 1
    y0, x0 = (h - ny * tile) // 2, (w - nx * tile) // 2
    win = np.outer(np.hanning(tile), np.hanning(tile)).astype(np.float32)
    acc = np.zeros((tile, tile), np.float64)
    for i in range(ny):
        for j in range(nx):
            t = r[y0 + i * tile : y0 + (i + 1) * tile, x0 + j * tile : x0 + (j + 1) * tile]
            t = (t - t.mean()) * win
            acc += np.abs(np.fft.fft2(t)) ** 2
    return np.log(acc / (ny * nx) + 1e-8).astype(np.float32)


def spectrum_features(img: np.ndarray, tile: int = 256, bins: int = 32) -> np.ndarray:
    """(H, W, 3) uint8 -> (bins + 24 + 2 * bins,) float32: ``radial``, ``peaks``, ``axes``."""
    p = power_spectrum(img, tile)
    n = tile
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    rad = np.sqrt(fx**2 + fy**2) / 0.5  # 0 at DC, 1 at the Nyquist frequency on an axis
    ring = np.minimum((rad * bins).astype(int), bins - 1)
    ok = rad <= 1.0
    sums = np.bincount(ring[ok], weights=p[ok], minlength=bins)
    cnt = np.bincount(ring[ok], minlength=bins)
    radial = sums / np.maximum(cnt, 1)
    radial = radial - radial.mean()
    peaks = []
    half = 3
    for u in range(5):
        for v in range(5):
            if u == 0 and v == 0:
                continue
            y, x = (u * n // 8) % n, (v * n // 8) % n
            ys = np.arange(y - half, y + half + 1) % n
            xs = np.arange(x - half, x + half + 1) % n
            nb = p[np.ix_(ys, xs)]
            peaks.append(p[y, x] - np.median(nb))
    band = np.minimum((np.abs(f) / 0.5 * bins).astype(int), bins - 1)
    per_band = np.maximum(np.bincount(band, minlength=bins), 1)
    row = np.bincount(band, weights=p[0, :], minlength=bins) / per_band
    col = np.bincount(band, weights=p[:, 0], minlength=bins) / per_band
    axes = np.concatenate([row - row.mean(), col - col.mean()])
    return np.concatenate([radial, np.asarray(peaks), axes]).astype(np.float32)
