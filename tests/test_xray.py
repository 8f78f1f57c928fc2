"""Cross-blended faces (Face X-ray's blended images, issue 17) on images the tests make from
scikit-image's astronaut."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from test_sbi import ASTRONAUT_68, _check_fake, _region  # noqa: E402

from noisetrace.data import xray  # noqa: E402


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def _warp(img: np.ndarray, pts: np.ndarray, angle: float, scale: float, size: tuple[int, int]):
    """``img`` rotated and scaled about its face into the middle of a ``size`` (W, H) canvas,
    its landmarks moved alike, and its colours changed (another 'person')."""
    import cv2

    cx, cy = pts.mean(0)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale)
    m[:, 2] += (size[0] / 2 - cx, size[1] / 2 - cy)
    out = cv2.warpAffine(img, m, size, borderMode=cv2.BORDER_REFLECT)
    out = np.ascontiguousarray(out[..., ::-1])  # BGR order: a face of other colours
    return out, (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (68, 2))
    a = np.deg2rad(17.0)
    rot = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ rot.T + np.array([30.0, -12.0])
    m = xray.similarity(src, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], [30.0, -12.0], atol=1e-7)
    assert xray.landmark_distance(src, dst) < 1e-9
    bent = dst + rng.normal(0, 3, dst.shape)
    assert 0.002 < xray.landmark_distance(src, bent) < 0.05
    with pytest.raises(ValueError):
        xray.similarity(src[:2], dst[:2])
    with pytest.raises(ValueError):
        xray.similarity(np.zeros((5, 2)), dst[:5])


def test_nearest_donor_respects_allowed_and_picks_the_closest() -> None:
    rng = np.random.default_rng(1)
    target = ASTRONAUT_68.astype(np.float64)
    near = target * 0.5 + 10 + rng.normal(0, 0.3, target.shape)  # same shape, other place
    far = target + rng.normal(0, 6, target.shape)
    pool = [far, None, near, far]
    assert xray.nearest_donor(target, pool, rng) == 2
    assert xray.nearest_donor(target, pool, rng, allowed=[True, True, False, True]) in (0, 3)
    assert xray.nearest_donor(target, pool, rng, allowed=[False, True, False, False]) is None


def test_colour_transfer_matches_the_face_statistics(astronaut: np.ndarray) -> None:
    import cv2

    mask = np.zeros(astronaut.shape[:2], np.float32)
    mask[90:170, 180:270] = 1.0
    other = np.ascontiguousarray(astronaut[..., ::-1])
    out = xray.colour_transfer(other, astronaut, mask)
    assert out.shape == other.shape and out.dtype == np.uint8
    lab = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2LAB).astype(np.float32)[mask > 0]  # noqa: E731
    before = np.abs(lab(other).mean(0) - lab(astronaut).mean(0)).max()
    after = np.abs(lab(out).mean(0) - lab(astronaut).mean(0)).max()
    assert after < 2.0 < before
    assert np.abs(lab(out).std(0) - lab(astronaut).std(0)).max() < 3.0


def test_align_donor_lands_on_the_target(astronaut: np.ndarray) -> None:
    donor, dp = _warp(astronaut, ASTRONAUT_68, 15.0, 1.8, (900, 800))
    warped, valid = xray.align_donor(donor, dp, ASTRONAUT_68, astronaut.shape[:2])
    assert warped.shape == astronaut.shape and valid.shape == astronaut.shape[:2]
    face = _region(ASTRONAUT_68, astronaut.shape, 0.0)
    assert valid[face].all()
    # the donor is the astronaut with its channels swapped: aligned back, the face matches
    err = np.abs(warped[..., ::-1].astype(int) - astronaut.astype(int))[face].mean()
    assert err < 12
    # a small donor leaves no pixels far from its face
    small, sp = _warp(astronaut, ASTRONAUT_68, 0.0, 1.0, (512, 512))
    tiny = np.ascontiguousarray(small[190:330, 190:330])  # the face and a little around it
    _, valid = xray.align_donor(tiny, sp - [190, 190], ASTRONAUT_68, astronaut.shape[:2])
    assert valid[:40].sum() == 0 and valid[face].mean() > 0.9


@pytest.mark.parametrize("seed", range(5))
def test_cross_blend_changes_the_face_only(astronaut: np.ndarray, seed: int) -> None:
    donor, dp = _warp(astronaut, ASTRONAUT_68, -10.0 + 5 * seed, 0.7 + 0.3 * seed, (700, 640))
    before = astronaut.copy()
    fake, mask = xray.cross_blend(astronaut, ASTRONAUT_68, donor, dp, np.random.default_rng(seed))
    assert np.array_equal(astronaut, before)  # input untouched
    _check_fake(astronaut, fake, mask, _region(ASTRONAUT_68, astronaut.shape, 0.35))


def test_cross_blend_is_deterministic_and_checks_inputs(astronaut: np.ndarray) -> None:
    donor, dp = _warp(astronaut, ASTRONAUT_68, 8.0, 1.2, (600, 600))
    a = xray.cross_blend(astronaut, ASTRONAUT_68, donor, dp, np.random.default_rng(7))
    b = xray.cross_blend(astronaut, ASTRONAUT_68, donor, dp, np.random.default_rng(7))
    c = xray.cross_blend(astronaut, ASTRONAUT_68, donor, dp, np.random.default_rng(8))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        xray.cross_blend(astronaut.astype(np.float32), ASTRONAUT_68, donor, dp, rng)
    with pytest.raises(ValueError):
        xray.cross_blend(astronaut, ASTRONAUT_68, donor[..., 0], dp, rng)
    with pytest.raises(ValueError):
        xray.cross_blend(astronaut, ASTRONAUT_68 + 10_000, donor, dp, rng)  # face off the image
