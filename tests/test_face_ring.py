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
