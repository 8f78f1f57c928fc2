"""Self-Blended Images generator (issue 17) on images the tests make or scikit-image ships."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from noisetrace.data import sbi  # noqa: E402

# dlib's 68 points on scikit-image's astronaut (computed once with the dlib68 backend), so the
# landmark path is tested without dlib installed.
ASTRONAUT_68 = np.array(
    [[179, 104], [179, 116], [180, 127], [181, 139], [185, 151], [191, 160], [200, 169],
     [209, 176], [221, 178], [232, 177], [243, 171], [253, 164], [260, 154], [265, 144],
     [268, 132], [270, 120], [272, 108], [186, 94], [192, 88], [200, 87], [208, 89], [216, 92],
     [236, 93], [244, 91], [252, 91], [260, 92], [265, 98], [225, 103], [225, 111], [225, 119],
     [225, 127], [214, 131], [219, 132], [224, 134], [229, 133], [234, 132], [195, 101],
     [200, 98], [207, 98], [212, 104], [206, 104], [199, 104], [238, 105], [244, 101],
     [250, 101], [255, 104], [250, 107], [244, 106], [201, 140], [209, 139], [218, 139],
     [223, 141], [229, 140], [237, 140], [245, 141], [237, 151], [229, 155], [222, 156],
     [216, 155], [208, 150], [204, 141], [217, 143], [223, 144], [229, 143], [243, 142],
     [229, 150], [223, 150], [217, 150]],
    np.float32,
)  # fmt: skip


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def _synthetic_face(seed: int = 0, size: tuple[int, int] = (200, 240)):
    """A textured image with a bright elliptic 'face' and 24 landmark points on its outline."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 90.0)], -1)
    img += rng.normal(0, 12, img.shape)
    cx, cy, ax, ay = w / 2, h / 2, w / 5, h / 4
    inside = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
    img[inside] = img[inside] * 0.4 + np.array([200.0, 160.0, 140.0]) * 0.6
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = np.stack([cx + 0.9 * ax * np.cos(t), cy + 0.9 * ay * np.sin(t)], -1).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), pts


def _region(pts_or_box, shape, margin: float = 0.3) -> np.ndarray:
    """Boolean (H, W): the face's bounding box grown by ``margin`` of its size on each side."""
    a = np.asarray(pts_or_box, np.float32)
    if a.ndim == 2:
        x0, y0 = a.min(0)
        x1, y1 = a.max(0)
    else:
        x0, y0, x1, y1 = a
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    region = np.zeros(shape[:2], bool)
    ys, xs = (
        slice(max(0, int(y0 - my)), int(np.ceil(y1 + my))),
        slice(max(0, int(x0 - mx)), int(np.ceil(x1 + mx))),
    )
    region[ys, xs] = True
    return region


def _check_fake(img: np.ndarray, fake: np.ndarray, mask: np.ndarray, region: np.ndarray):
    assert fake.shape == img.shape and fake.dtype == img.dtype == np.uint8
    assert mask.shape == img.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0.0 and 0.0 < mask.max() <= 1.0
    # the mask stays inside the face region
    assert not (mask > 0)[~region].any()
    # no change outside the mask, bit for bit
    outside = mask == 0
    assert np.array_equal(fake[outside], img[outside])
    # and the blend changes the face: where the source weighs at least a quarter
    inner = mask >= 0.25
    assert inner.sum() > 50
    diff = np.abs(fake.astype(np.int16) - img.astype(np.int16)).max(-1)
    assert (diff[inner] > 0).mean() > 0.3
    assert diff[inner].mean() > 1.0


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_landmarks(seed: int) -> None:
    img, pts = _synthetic_face(seed)
    fake, mask = sbi.self_blend(img, np.random.default_rng(seed), landmarks=pts)
    _check_fake(img, fake, mask, _region(pts, img.shape))


@pytest.mark.parametrize("variant", sbi.HULL_VARIANTS)
def test_astronaut_68_point_hull_variants(astronaut: np.ndarray, variant: str) -> None:
    base = sbi.hull_mask(astronaut.shape, ASTRONAUT_68, variant=variant)
    assert base.dtype == np.float32 and set(np.unique(base)) == {0.0, 1.0}
    assert not base[~_region(ASTRONAUT_68, astronaut.shape, 0.3)].any()
    for seed in range(3):
        fake, mask = sbi.self_blend(
            astronaut, np.random.default_rng(seed), landmarks=ASTRONAUT_68, hull_variant=variant
        )
        _check_fake(astronaut, fake, mask, _region(ASTRONAUT_68, astronaut.shape, 0.35))


def test_hull_variants_differ() -> None:
    shape = (256, 256)
    areas = {v: sbi.hull_mask(shape, ASTRONAUT_68 - 60, variant=v).sum() for v in sbi.HULL_VARIANTS}
    assert areas["extended"] > areas["full"] > areas["inner"]
    assert areas["full"] > areas["lower"]


def test_box_ellipse_mask(astronaut: np.ndarray) -> None:
    box = (175.0, 76.0, 266.0, 167.0)
    base = sbi.box_mask(astronaut.shape, box)
    inside = _region(box, astronaut.shape, 0.0)
    assert base.any() and not base[~inside].any()
    for seed in range(4):
        fake, mask = sbi.self_blend(astronaut, np.random.default_rng(seed), box=box)
        _check_fake(astronaut, fake, mask, _region(box, astronaut.shape, 0.3))


def test_deterministic_for_a_seed(astronaut: np.ndarray) -> None:
    a = sbi.self_blend(astronaut, np.random.default_rng(123), landmarks=ASTRONAUT_68)
    b = sbi.self_blend(astronaut, np.random.default_rng(123), landmarks=ASTRONAUT_68)
    c = sbi.self_blend(astronaut, np.random.default_rng(124), landmarks=ASTRONAUT_68)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_input_is_not_modified(astronaut: np.ndarray) -> None:
    before = astronaut.copy()
    sbi.self_blend(astronaut, np.random.default_rng(0), landmarks=ASTRONAUT_68)
    assert np.array_equal(astronaut, before)


def test_blend_ratio_and_transform_source() -> None:
    img, pts = _synthetic_face(1)
    _, mask = sbi.self_blend(img, np.random.default_rng(0), landmarks=pts, blend_ratio=0.5)
    assert mask.max() == pytest.approx(0.5)
    src = sbi.transform_source(img, np.random.default_rng(0))
    assert src.shape == img.shape and src.dtype == np.uint8 and not np.array_equal(src, img)


def test_bad_inputs() -> None:
    img, pts = _synthetic_face(0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        sbi.self_blend(img, rng)  # neither landmarks nor box
    with pytest.raises(ValueError):
        sbi.self_blend(img.astype(np.float32), rng, landmarks=pts)
    with pytest.raises(ValueError):
        sbi.self_blend(img[..., 0], rng, landmarks=pts)
    with pytest.raises(ValueError):
        sbi.self_blend(img, rng, landmarks=pts[:2])
    with pytest.raises(ValueError):
        sbi.self_blend(img, rng, landmarks=pts + 10_000)  # face off the image


def test_haar_detector_fallback(astronaut: np.ndarray) -> None:
    det = sbi.FaceShapeDetector("haar")
    face = det(astronaut)
    assert face is not None and face.landmarks is None
    x0, y0, x1, y1 = face.box
    assert x0 < 225 < x1 and y0 < 130 < y1  # the astronaut's nose
    out = sbi.self_blend_auto(astronaut, np.random.default_rng(0), det)
    assert out is not None
    _check_fake(astronaut, out.image, out.mask, _region(face.box, astronaut.shape, 0.3))
    blank = np.full((120, 160, 3), 128, np.uint8)
    assert det(blank) is None
    assert sbi.self_blend_auto(blank, np.random.default_rng(0), det) is None


@pytest.mark.skipif(
    not sbi.landmark_backend_available(), reason="pip install dlib-bin face-recognition-models"
)
def test_dlib68_landmarks(astronaut: np.ndarray) -> None:
    det = sbi.FaceShapeDetector("auto")
    assert det.backend == "dlib68"
    face = det(astronaut)
    assert face is not None and face.landmarks is not None and face.landmarks.shape == (68, 2)
    assert np.abs(face.landmarks - ASTRONAUT_68).max() < 6
