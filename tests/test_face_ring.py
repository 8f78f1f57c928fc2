"""The face-ring extractor: SPAM of a face crop's interior beside the ring around the face."""

import numpy as np
import pytest

from noisetrace.heads.extractors import FaceRingExtractor, from_spec
from noisetrace.residuals.spam import spam


def _noisy(rng: np.random.Generator, side: int, sigma: float) -> np.ndarray:
    base = np.linspace(60, 190, side)[None, :, None] * np.ones((side, 1, 3))
    return np.clip(base + rng.normal(0, sigma, (side, side, 1)), 0, 255).astype(np.uint8)


def test_layout_matches_spam_of_the_regions():
    rng = np.random.default_rng(0)
    img = _noisy(rng, 130, 4.0)
    out = FaceRingExtractor(scale=1.3)(img)["face_ring"]
    assert out.shape == (1, 3 * 686) and out.dtype == np.float32
    m = round(130 * (1 - 1 / 1.3) / 2) + 4
    inner, ring, diff = np.split(out[0], 3)
    np.testing.assert_allclose(inner, spam(img[m:-m, m:-m]), atol=1e-6)
    strips = [img[:m], img[-m:], img[:, :m].transpose(1, 0, 2), img[:, -m:].transpose(1, 0, 2)]
    np.testing.assert_allclose(ring, np.mean([spam(s) for s in strips], 0), atol=1e-6)
    np.testing.assert_allclose(diff, inner - ring, atol=1e-6)


def test_a_pasted_face_with_other_noise_stands_out():
    """One noise everywhere: interior and ring agree. A smooth face pasted into a noisy
    frame (or the reverse): they disagree, by far more than between two noisy crops."""
    rng = np.random.default_rng(1)
    ext = FaceRingExtractor(scale=1.3)
    same = [np.abs(np.split(ext(_noisy(rng, 256, 6.0))["face_ring"][0], 3)[2]).sum()
            for _ in range(3)]
    pasted = _noisy(rng, 256, 6.0)
    pasted[50:206, 50:206] = _noisy(rng, 156, 0.5)
    diff = np.abs(np.split(ext(pasted)["face_ring"][0], 3)[2]).sum()
    assert diff > 5 * max(same)


def test_spec_round_trip_tiny_inputs_and_bad_scale():
    ext = from_spec({"kind": "face_ring", "scale": 1.5})
    again = from_spec(ext.spec())
    assert again.id == ext.id and ext.id != FaceRingExtractor(1.3).id
    tiny = np.full((6, 9, 3), 128, np.uint8)  # padded, not an error: faces can be tiny
    assert ext(tiny)["face_ring"].shape == (1, 3 * 686)
    with pytest.raises(ValueError, match="scale > 1"):
        FaceRingExtractor(scale=1.0)


def test_ring_level_sees_a_smoother_pasted_face():
    """The noise-level numbers: inside and ring agree on one noise, and a smooth face pasted
    into a noisy frame shows as a negative inside-minus-ring difference for every residual."""
    from noisetrace.heads.extractors import RingLevelExtractor

    rng = np.random.default_rng(2)
    ext = RingLevelExtractor(scale=1.3)
    same = ext(_noisy(rng, 256, 6.0))["ring_level"]
    assert same.shape == (1, 54) and same.dtype == np.float32
    diffs = same[0].reshape(9, 6)[:, [2, 5]]  # (residual x channel, mean / p90 differences)
    assert np.abs(diffs).max() < 0.1
    pasted = _noisy(rng, 256, 6.0)
    pasted[50:206, 50:206] = _noisy(rng, 156, 0.5)
    d = ext(pasted)["ring_level"][0].reshape(9, 6)[:, [2, 5]]
    assert (d < -0.3).all()  # the smooth face: every residual smaller inside
    again = from_spec(ext.spec())
    assert again.id == ext.id
    assert ext(np.full((6, 9, 3), 128, np.uint8))["ring_level"].shape == (1, 54)
    with pytest.raises(ValueError, match="scale > 1"):
        RingLevelExtractor(scale=0.9)


@pytest.mark.parametrize("shape", [(7, 9), (64, 64), (131, 250), (256, 256)])
def test_ring_level_histogram_path_matches_masks_and_percentiles(shape):
    # 8-bit crops take the histogram path; float input the reference path (boolean masks,
    # np.percentile). Both must give the numbers the fitted heads were trained on.
    rng = np.random.default_rng(sum(shape))
    img = (rng.random((*shape, 3)) ** 3 * 255).astype(np.uint8)  # skewed, many ties
    for scale in (1.1, 1.3, 1.8):
        ext = from_spec({"kind": "ring_level", "scale": scale})
        fast = ext(img)["ring_level"]
        ref = ext(img.astype(np.float32))["ring_level"]
        assert fast.shape == ref.shape == (1, 54)
        np.testing.assert_allclose(fast, ref, atol=1e-5)


def test_ring_profile_locates_a_blend_band():
    """One noise everywhere: every band's level is the centre's. A face whose outer band was
    smoothed (a feathered blend) shows a dip in the fine-scale level at exactly those bands,
    and a face upscaled from a smaller render a lower fine / coarse ratio inside."""
    from scipy.ndimage import uniform_filter, zoom

    rng = np.random.default_rng(3)
    ext = from_spec({"kind": "ring_profile", "bands": 8})
    flat = ext(_noisy(rng, 256, 6.0))["ring_profile"][0]
    assert flat.shape == (3 * 8 + 2,)
    assert np.abs(flat[:8]).max() < 0.1  # log fine level of each band minus the centre's

    img = _noisy(rng, 256, 6.0)
    band = img.astype(float)
    smooth = uniform_filter(band, (5, 5, 1))
    d = np.minimum.outer(np.minimum(np.arange(256), np.arange(256)[::-1]),
                         np.minimum(np.arange(256), np.arange(256)[::-1]))  # fmt: skip
    ring = (d >= 32) & (d < 48)  # bands 2 (32-47 px from the edge at 8 bands of 16 px)
    img[ring] = smooth[ring].astype(np.uint8)
    prof = ext(img)["ring_profile"][0]
    assert prof[2] < -1.0 and np.abs(np.delete(prof[:8], 2)).max() < 0.2

    face = _noisy(rng, 256, 6.0)
    small = _noisy(rng, 80, 6.0).astype(float)
    face[88:168, 88:168] = small[::1, ::1]  # a noisy patch at the frame's own scale: no change
    same_scale = ext(face)["ring_profile"][0]
    face[64:192, 64:192] = np.clip(zoom(small[:64, :64], (2, 2, 1), order=1), 0, 255)
    upscaled = ext(face)["ring_profile"][0]
    fine_over_coarse = slice(16, 24)
    assert upscaled[fine_over_coarse][-1] < same_scale[fine_over_coarse][-1] - 0.5


def test_ring_profile_spec_tiny_and_bad_bands():
    ext = from_spec({"kind": "ring_profile", "bands": 6})
    assert from_spec(ext.spec()).id == ext.id == "ring_profile:v1:b6"
    assert ext(np.full((5, 11, 3), 90, np.uint8))["ring_profile"].shape == (1, 20)
    with pytest.raises(ValueError, match="at least 2 bands"):
        from_spec({"kind": "ring_profile", "bands": 1})
