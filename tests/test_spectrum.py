"""Spectral residual statistics (noisetrace.residuals.spectrum) on images the tests make."""

from __future__ import annotations

import numpy as np

from noisetrace.heads.extractors import from_spec
from noisetrace.residuals.spectrum import power_spectrum, residual, spectrum_features


def _noise(seed: int = 0, side: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 196, (side, side, 3)).astype(np.uint8)


def test_residual_removes_smooth_content():
    yy, xx = np.mgrid[:64, :64].astype(np.float64)
    assert np.allclose(residual(3 * xx + 2 * yy + 7), 0)  # a linear ramp is fully predicted


def test_shape_dtype_and_brightness_invariance():
    img = _noise()
    f = spectrum_features(img, tile=128, bins=16)
    assert f.shape == (16 + 24 + 32,) and f.dtype == np.float32 and np.isfinite(f).all()
    brighter = (img.astype(np.int16) + 20).clip(0, 255).astype(np.uint8)
    assert np.allclose(spectrum_features(brighter, tile=128, bins=16), f, atol=1e-3)


def test_a_periodic_trace_shows_as_a_peak_at_its_frequency():
    img = _noise(1).astype(np.int16)
    img[::4, :, :] += 12  # a faint row pattern every 4 pixels (as an upsampling layer leaves)
    traced = img.clip(0, 255).astype(np.uint8)
    p = power_spectrum(traced, tile=128)
    # Frequency 1/4 in y: bin 128 / 4 = 32 on the vertical axis; far above its neighbours.
    assert p[32, 0] - np.median(p[28:37, 0]) > 3
    peaks = spectrum_features(traced, tile=128, bins=16)[16:40]
    clean = spectrum_features(_noise(1), tile=128, bins=16)[16:40]
    # (u, v) = (2/8, 0) is the 10th of the 24 grid frequencies (u-major, DC skipped).
    assert peaks[9] > clean[9] + 3


def test_small_images_are_reflected_to_a_tile_and_the_extractor_round_trips():
    small = _noise(2, side=40)
    assert np.isfinite(spectrum_features(small, tile=64, bins=8)).all()
    ext = from_spec({"kind": "spectrum", "max_side": 256, "tile": 64, "bins": 8})
    again = from_spec(ext.spec())
    a, b = ext(_noise(3, 300))["spectrum"], again(_noise(3, 300))["spectrum"]
    assert a.shape == (1, 8 * 3 + 24) and np.array_equal(a, b) and again.id == ext.id


def test_images_of_one_or_two_pixels_still_give_finite_features():
    for shape in [(1, 1, 3), (2, 5, 3), (3, 300, 3)]:
        f = spectrum_features(_noise(4, 8)[: shape[0], : shape[1]], tile=64, bins=8)
        assert f.shape == (8 * 3 + 24,) and np.isfinite(f).all(), shape
