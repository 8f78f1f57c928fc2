"""Self-Blended Images (SBI): face-swap-like fakes made from one real face.

Shiohara and Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022. A fake is a
real face blended with a slightly transformed copy of itself inside a face mask, so a detector
trained on it needs only real faces and learns what face swaps share: a blending boundary, and
colour, sharpness and noise that differ inside the face from outside.

Everything here is a pure function of an (H, W, 3) uint8 RGB array and an explicit
``numpy.random.Generator``: the same image, face and seed give the same fake, bit for bit.

- :func:`hull_mask` / :func:`box_mask`: the face region from landmarks (convex hull, with the
  paper's random hull variants for 68-point landmarks) or, without landmarks, an ellipse in a
  face box.
- :func:`deform_mask`: the paper's random mask deformation: elastic warp, random resize, blur,
  erode, blur again, and a random blend ratio.
- :func:`transform_source`: colour and frequency changes of the source copy (RGB shift,
  brightness/contrast, hue/saturation/value jitter, then sharpen or blur/downscale, then a
  light JPEG).
- :func:`random_affine`: the slight scale and translation of the source (and its mask).
- :func:`self_blend`: all of the above; returns the fake and its blend mask.
- :class:`FaceShapeDetector`: the offline face box + landmark detector; :func:`self_blend_auto`
  detects and then blends.

The target (the real image) is never transformed: pixels where the returned mask is 0 are the
input's pixels exactly, so the identity outside the face is unchanged. (The paper also applies
the colour transforms to the target half of the time; that would change pixels outside the
mask, so here only the source is changed.)

Landmark detector choice (issue 17), checked on this project's machines (Python 3.11, no
network at run time):

- **dlib 68-point shape predictor** (used when installed): ``pip install dlib-bin
  face-recognition-models``. ``dlib-bin`` is a prebuilt dlib wheel (numpy only); the predictor
  file ``shape_predictor_68_face_landmarks.dat`` (100 MB) ships *inside* the
  ``face-recognition-models`` package on PyPI, so nothing is downloaded at run time. It is the
  landmark model the SBI paper used (the paper's 81-point variant only adds forehead points; the
  ``extended`` hull variant below pushes the brows up instead). Faces are boxed by dlib's HOG
  detector (built in). The package is found with ``importlib`` and never imported (its
  ``__init__`` needs the removed ``pkg_resources``). Licence: the models are released by dlib's
  author as CC0/public domain, but the 68-point model was trained on iBUG 300-W, whose terms
  exclude commercial use: research use only.
- Rejected: ``mediapipe==0.10.14`` ships its face-mesh model in the wheel but pins
  ``protobuf<5``, which breaks ``onnx`` (protobuf 6+) used by this project; current mediapipe
  (1.2.x) ships no face model (its Tasks API needs a downloaded ``.task`` file) and requires
  ``opencv-contrib-python``, which clashes with ``opencv-python-headless``. OpenCV's LBF
  facemark needs ``opencv-contrib`` and an ``lbfmodel.yaml`` that no package ships.
  ``facenet-pytorch``'s MTCNN ships weights but gives 5 points, too few for a face hull.
- **Fallback** (no dlib): OpenCV's bundled Haar cascade, as in :mod:`noisetrace.media.faces`,
  and an ellipse in the face box (:func:`box_mask`). Neither package is a dependency of
  noisetrace yet: without them :class:`FaceShapeDetector` uses the Haar box.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

#: 68-point (iBUG 300-W / dlib) landmark index ranges.
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
INNER = slice(17, 68)

#: Hull variants for 68-point landmarks, drawn uniformly (SBI's ``random_get_hull`` draws
#: among a full hull, an extended hull, a lower face and the inner components).
HULL_VARIANTS: tuple[str, ...] = ("full", "extended", "lower", "inner")

#: Blend ratios of the paper (the mask's peak value); 1 is drawn half the time.
BLEND_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


class SelfBlended(NamedTuple):
    """One self-blended fake: ``image`` (H, W, 3) uint8 and ``mask`` (H, W) float32 in [0, 1]
    (the weight of the transformed source at each pixel; 0 where the image is the input's)."""

    image: np.ndarray
    mask: np.ndarray


def _cv2():  # noqa: ANN202 - the cv2 module
    from noisetrace.media.faces import import_cv2

    return import_cv2()


def check_image(img: np.ndarray) -> np.ndarray:
    """``img`` as a contiguous (H, W, 3) uint8 RGB array; ValueError naming what it is
    otherwise."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {getattr(img, 'shape', img)}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {img.dtype}")
    return np.ascontiguousarray(img)


def _odd(n: int) -> int:
    return int(n) | 1


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def _fill_hull(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    mask = np.zeros(shape, np.float32)
    hull = cv2.convexHull(np.round(points).astype(np.int32).reshape(-1, 1, 2))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


def hull_points(landmarks: np.ndarray, variant: str = "full") -> np.ndarray:
    """The points whose convex hull is the face mask, for one hull ``variant``.

    For 68-point landmarks: ``full`` (all points: brows to chin), ``extended`` (all points, the
    brows pushed up towards the forehead by a quarter of the brow-to-chin height), ``lower``
    (jaw line and nose: the face below the eyes) and ``inner`` (brows, eyes, nose, mouth).
    Any other number of points only has ``full``.
    """
    pts = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"a face hull needs at least 3 landmarks, got {len(pts)}")
    if variant not in HULL_VARIANTS:
        raise ValueError(f"unknown hull variant {variant!r}: use one of {HULL_VARIANTS}")
    if len(pts) != 68 or variant == "full":
        return pts
    if variant == "extended":
        up = pts[27] - pts[8]  # chin to nose bridge: the face's "up"
        brows = pts[BROWS] + 0.25 * up
        return np.concatenate([pts, brows])
    if variant == "lower":
        return np.concatenate([pts[JAW], pts[NOSE]])
    return pts[INNER]


def hull_mask(
    shape: tuple[int, ...],
    landmarks: np.ndarray,
    rng: np.random.Generator | None = None,
    variant: str | None = None,
) -> np.ndarray:
    """(H, W) float32 {0, 1} mask: the convex hull of ``landmarks`` ((K, 2) pixel x, y).

    ``variant`` as in :func:`hull_points`; None draws one with ``rng`` (68 points) or uses
    ``full``.
    """
    pts = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if variant is None:
        variant = "full"
        if len(pts) == 68 and rng is not None:
            variant = HULL_VARIANTS[int(rng.integers(len(HULL_VARIANTS)))]
    return _fill_hull((int(shape[0]), int(shape[1])), hull_points(pts, variant))


def box_mask(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> np.ndarray:
    """(H, W) float32 {0, 1} mask: an ellipse inside the face box ``(x0, y0, x1, y1)``.

    A detector's face box (Haar, HOG) spans about brows to chin and ear to ear; the ellipse
    keeps to the skin: 80% of the box width, 94% of its height, centred a little low.
    """
    cv2 = _cv2()
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"face box {box} is empty")
    w, h = x1 - x0, y1 - y0
    mask = np.zeros((int(shape[0]), int(shape[1])), np.float32)
    centre = (round((x0 + x1) / 2), round(y0 + 0.52 * h))
    axes = (max(1, round(0.40 * w)), max(1, round(0.47 * h)))
    cv2.ellipse(mask, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    return mask


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask > 0)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _elastic(small: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float):
    """Elastic deformation (Simard et al.; albumentations' ElasticTransform as used in SBI)."""
    cv2 = _cv2()
    h, w = small.shape
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma) * alpha
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma) * alpha
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        small, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def deform_mask(
    mask: np.ndarray, rng: np.random.Generator, blend_ratio: float | None = None
) -> np.ndarray:
    """SBI's random mask deformation; returns an (H, W) float32 mask in [0, blend_ratio].

    On a crop around the mask resized to a random 192-256 px side (the paper's working size,
    so the deformation is the same whatever the face size): an elastic warp, a Gaussian blur
    with a random odd kernel (5-25) thresholded at 1 (erodes the mask), a second blur (kernel
    5-25, sigma 5-45) that makes the soft boundary, normalised to peak 1, then scaled by the
    blend ratio (drawn from :data:`BLEND_RATIOS` when None). Outside the crop the mask is 0.
    """
    cv2 = _cv2()
    mask = np.asarray(mask, np.float32)
    h, w = mask.shape[:2]
    out = np.zeros((h, w), np.float32)
    b = _bounds(mask)
    if b is None:
        return out
    x0, y0, x1, y1 = b
    pad = int(round(0.2 * max(x1 - x0, y1 - y0))) + 2
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop = mask[cy0:cy1, cx0:cx1]
    ch, cw = crop.shape
    sh, sw = (int(v) for v in rng.integers(192, 257, size=2))
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_LINEAR)
    small = _elastic(small, rng, alpha=float(rng.uniform(20, 50)), sigma=7.0)
    small = (small > 0.5).astype(np.float32)
    k1 = _odd(rng.integers(5, 26))
    k2 = _odd(rng.integers(5, 26))
    s2 = float(rng.integers(5, 46))
    blurred = cv2.GaussianBlur(small, (k1, k1), 0)
    peak = float(blurred.max())
    if peak <= 0:
        return out
    blurred = blurred / peak
    blurred[blurred < 1.0 - 1e-4] = 0.0
    if not blurred.any():  # a sliver of a mask eroded away: keep the undeformed one
        blurred = small
    blurred = cv2.GaussianBlur(blurred, (k2, k2), s2)
    blurred = blurred / max(float(blurred.max()), 1e-6)
    back = cv2.resize(blurred, (cw, ch), interpolation=cv2.INTER_LINEAR)
    back[back < 1.0 / 512] = 0.0  # no invisible tails: below half a grey level is outside
    ratio = float(rng.choice(BLEND_RATIOS)) if blend_ratio is None else float(blend_ratio)
    out[cy0:cy1, cx0:cx1] = np.clip(back, 0.0, 1.0) * ratio
    return out


# --------------------------------------------------------------------------------------------
# Source transforms
# --------------------------------------------------------------------------------------------


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    cv2 = _cv2()
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB array
        return img
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _hsv_jitter(img: np.ndarray, dh: float, ds: float, dv: float) -> np.ndarray:
    cv2 = _cv2()
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + dh, 180.0)  # OpenCV's 8-bit hue is 0-179
    hsv[..., 1] = hsv[..., 1] * (1.0 + ds)
    hsv[..., 2] = hsv[..., 2] * (1.0 + dv)
    hsv = np.clip(np.rint(hsv), 0, 255).astype(np.uint8)
    hsv[..., 0] = np.minimum(hsv[..., 0], 179)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def transform_source(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source copy's colour and frequency changes (SBI's source-target generator).

    Colour: per-channel RGB shift (up to 20 levels, p=0.3), brightness and contrast (always, at
    least 2% and at most 10% each, so the source always differs), hue/saturation/value jitter
    (p=0.3). Frequency: one of sharpen (unsharp mask, amount 0.2-0.5) or blur (Gaussian or a
    1/1.5-1/3 downscale and back; the paper's 1/2-1/4 was on 380 px face crops). Then JPEG
    at quality 70-95 (p=0.5).
    """
    cv2 = _cv2()
    img = check_image(img)
    x = img.astype(np.float32)
    if rng.random() < 0.3:
        x = x + rng.uniform(-20, 20, size=3).astype(np.float32)
    signs = rng.choice(np.array([-1.0, 1.0]), size=2)
    brightness = float(signs[0] * rng.uniform(0.02, 0.10))
    contrast = float(signs[1] * rng.uniform(0.02, 0.10))
    mean = float(x.mean())
    x = (x - mean) * (1.0 + contrast) + mean + 255.0 * brightness
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = _hsv_jitter(
            out, float(rng.uniform(-5, 5)), float(rng.uniform(-0.1, 0.1)),
            float(rng.uniform(-0.1, 0.1)),
        )  # fmt: skip
    h, w = out.shape[:2]
    kind = int(rng.integers(3))
    if kind == 0:  # sharpen
        amount = float(rng.uniform(0.2, 0.5))
        soft = cv2.GaussianBlur(out.astype(np.float32), (0, 0), float(rng.uniform(0.8, 1.5)))
        out = np.clip(np.rint(out + amount * (out - soft)), 0, 255).astype(np.uint8)
    elif kind == 1:  # Gaussian blur
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.2)))
    else:  # downscale and back (SBI's RandomDownScale)
        f = float(rng.uniform(1.5, 3.0))
        small = cv2.resize(
            out, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA
        )
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = _jpeg(out, int(rng.integers(70, 96)))
    return np.ascontiguousarray(out)


def random_affine(
    img: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    face_box: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale (0.95-1/0.95) about the face centre and translate (x up to 3%, y up to 1.5% of
    the face size, as SBI's crop-relative shifts) both the source image and its mask."""
    cv2 = _cv2()
    h, w = img.shape[:2]
    if face_box is None:
        face_box = _bounds(mask) or (0, 0, w, h)
    x0, y0, x1, y1 = (float(v) for v in face_box)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    size = max(x1 - x0, y1 - y0)
    s = float(rng.uniform(0.95, 1.0 / 0.95))
    tx = float(rng.uniform(-0.03, 0.03)) * size
    ty = float(rng.uniform(-0.015, 0.015)) * size
    m = np.array([[s, 0.0, (1 - s) * cx + tx], [0.0, s, (1 - s) * cy + ty]], np.float32)
    src = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    msk = cv2.warpAffine(
        mask.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return src, msk


# --------------------------------------------------------------------------------------------
# Blending
# --------------------------------------------------------------------------------------------


def blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask * source + (1 - mask) * target``, rounded to uint8; exactly ``target`` where
    ``mask`` is 0."""
    m = np.asarray(mask, np.float32)[..., None]
    mixed = m * source.astype(np.float32) + (1.0 - m) * target.astype(np.float32)
    mixed = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return np.where(m > 0, mixed, target)


def self_blend(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    landmarks: np.ndarray | None = None,
    box: tuple[float, float, float, float] | None = None,
    hull_variant: str | None = None,
    blend_ratio: float | None = None,
) -> SelfBlended:
    """A self-blended fake of the real face ``img`` ((H, W, 3) uint8 RGB).

    Give the face's ``landmarks`` ((K, 2) pixel x, y; 68 dlib points get the random hull
    variants) or, without landmarks, its ``box`` (x0, y0, x1, y1; an ellipse mask). The source
    copy gets :func:`transform_source` and :func:`random_affine` (with the mask), the mask
    :func:`deform_mask`, and the source is blended into the untouched image inside the mask.
    Returns ``(image, mask)``: same size and dtype as ``img``, and the float32 blend mask;
    where the mask is 0 the output equals ``img`` exactly.
    """
    img = check_image(img)
    if landmarks is None and box is None:
        raise ValueError("self_blend needs the face's landmarks or its box")
    shape = img.shape[:2]
    if landmarks is not None:
        pts = np.asarray(landmarks, np.float32).reshape(-1, 2)
        base = hull_mask(shape, pts, rng, hull_variant)
        lx0, ly0 = pts.min(axis=0)
        lx1, ly1 = pts.max(axis=0)
        face_box = (float(lx0), float(ly0), float(lx1), float(ly1))
    else:
        base = box_mask(shape, box)  # type: ignore[arg-type]
        face_box = tuple(float(v) for v in box)  # type: ignore[union-attr]
    if not base.any():
        raise ValueError("the face mask is empty (landmarks or box outside the image?)")
    source = transform_source(img, rng)
    source, base = random_affine(source, base, rng, face_box)  # type: ignore[arg-type]
    mask = deform_mask(base, rng, blend_ratio)
    return SelfBlended(blend(img, source, mask), mask)


# --------------------------------------------------------------------------------------------
# Offline face box + landmark detection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceShape:
    """A face for :func:`self_blend`: ``box`` (x0, y0, x1, y1) pixels and ``landmarks``
    ((68, 2) float32 x, y) or None (box only)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None


def dlib_predictor_path() -> str | None:
    """The 68-point predictor inside the installed ``face-recognition-models`` package, found
    without importing the package (its ``__init__`` needs ``pkg_resources``), or None."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "models", "shape_predictor_68_face_landmarks.dat")
        if os.path.isfile(path):
            return path
    return None


def landmark_backend_available() -> bool:
    """True when dlib and the 68-point predictor file are installed (nothing is imported)."""
    try:
        has_dlib = importlib.util.find_spec("dlib") is not None
    except (ImportError, ValueError):
        has_dlib = False
    return has_dlib and dlib_predictor_path() is not None


class FaceShapeDetector:
    """Finds the largest face in an RGB image and its landmarks, offline.

    ``backend``: ``dlib68`` (dlib HOG face box + 68-point shape predictor; see the module
    docstring), ``haar`` (OpenCV Haar box, no landmarks) or ``auto`` (``dlib68`` when
    installed, else ``haar``). Not thread-safe: use one per thread or process.
    """

    def __init__(self, backend: str = "auto", max_side: int | None = 640) -> None:
        from noisetrace.media.faces import FaceBackendError, get_face_detector

        backend = str(backend).lower()
        if backend == "auto":
            backend = "dlib68" if landmark_backend_available() else "haar"
        if backend == "dlib68":
            path = dlib_predictor_path()
            if path is None or not landmark_backend_available():
                raise FaceBackendError(
                    "the dlib68 landmark backend is not installed: "
                    "pip install dlib-bin face-recognition-models"
                )
            import dlib

            self._boxes = get_face_detector("dlib", max_side=max_side, upsample=1)
            self._predictor = dlib.shape_predictor(path)
            self._dlib = dlib
        elif backend == "haar":
            self._boxes = get_face_detector("opencv", max_side=max_side)
            self._predictor = None
        else:
            raise FaceBackendError(f"unknown landmark backend {backend!r}: use auto, dlib68, haar")
        self.backend = backend

    def __call__(self, img: np.ndarray) -> FaceShape | None:
        """The largest face in ``img``, or None when there is none."""
        img = check_image(img)
        faces = self._boxes.detect(img)
        if not faces:
            return None
        face = max(faces, key=lambda f: f.width * f.height)
        if self._predictor is None:
            return FaceShape(face.box, None)
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        shape = self._predictor(img, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return FaceShape(face.box, pts)

    def __repr__(self) -> str:
        return f"FaceShapeDetector(backend={self.backend!r})"


def self_blend_auto(
    img: np.ndarray,
    rng: np.random.Generator,
    detector: FaceShapeDetector | None = None,
    **options,
) -> SelfBlended | None:
    """Detect the largest face with ``detector`` (a new ``auto`` one when None) and
    :func:`self_blend` it; None when no face is found. ``options`` go to :func:`self_blend`."""
    det = detector if detector is not None else FaceShapeDetector()
    face = det(img)
    if face is None:
        return None
    if face.landmarks is not None:
        return self_blend(img, rng, landmarks=face.landmarks, **options)
    return self_blend(img, rng, box=face.box, **options)
