"""Residual strength across scales (residuals/level.py) and its extractor."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from noisetrace.heads.extractors import from_spec
from noisetrace.residuals.level import QUANTILES, hist_stats, level_features


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_hist_stats_equal_mean_and_percentiles(n):
    rng = np.random.default_rng(n)
    v = (rng.random(n) ** 3 * 300).astype(int)  # skewed, many ties
    got = hist_stats(np.bincount(v), (0.1, 0.5, 0.9, 0.99))
    want = [v.mean(), *np.percentile(v, [10, 50, 90, 99])]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _photo(rng: np.random.Generator, side: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    base = 120 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    return np.clip(base[..., None] + rng.normal(0, 5, (side, side, 3)), 0, 255).astype(np.uint8)


def test_smoothing_lowers_the_finest_scale_most():
    """A light blur (what a decoder's smooth synthesis does) takes fine-scale residual
    strength away and leaves the coarse scales nearly as they were."""
    rng = np.random.default_rng(0)
    img = _photo(rng)
    soft = np.clip(gaussian_filter(img.astype(float), (0.8, 0.8, 0)), 0, 255).astype(np.uint8)
    a, b = level_features(img), level_features(soft)
    per = 3 * (1 + len(QUANTILES))
    assert a.shape == (3 * per + 3,) and a.dtype == np.float32
    fall = (a - b)[: 3 * per].reshape(3, per).mean(axis=1)  # mean fall per scale
    assert fall[0] > 0.5 and fall[0] > 2 * fall[2]


def test_extractor_spec_tiny_inputs_and_bad_dtype():
    ext = from_spec({"kind": "noise_level", "max_side": 128})
    assert from_spec(ext.spec()).id == ext.id == "noise_level:v1:k3:centre128"
    big = _photo(np.random.default_rng(1), 300)
    np.testing.assert_array_equal(ext(big)["noise_level"][0],
                                  level_features(big[86:214, 86:214]))  # fmt: skip
    for shape in [(1, 1, 3), (4, 9, 3), (7, 7, 3)]:
        out = ext(np.full(shape, 77, np.uint8))["noise_level"]
        assert out.shape == (1, 30) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="uint8"):
        level_features(np.zeros((8, 8, 3), np.float32))
