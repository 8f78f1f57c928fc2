"""Cross-blended faces (Face X-ray's "blended images"): another person's face blended into a
real frame.

Li et al., "Face X-ray for More General Face Forgery Detection", CVPR 2020: a fake is a real
target frame with the face of a *donor* (a different real person whose landmarks are nearest
the target's) aligned onto it, colour-corrected and blended in inside a deformed face mask.
Where a self-blended fake (:mod:`noisetrace.data.sbi`) blends the target with a transformed
copy of itself, the donor here is another capture: its own camera, compression, resolution
and skin, rendered into a frame that was not, as a face swap's face is. Both need only real
faces.

Everything is a pure function of (H, W, 3) uint8 RGB arrays, (K, 2) landmarks and an explicit
``numpy.random.Generator``: the same inputs and seed give the same fake, bit for bit.

- :func:`similarity`: the least-squares similarity transform between two landmark sets
  (Umeyama 1991), written out so that it is deterministic (OpenCV's estimators sample).
- :func:`landmark_distance` / :func:`nearest_donor`: Face X-ray's donor search (the nearest
  landmarks after alignment, among a random subset of candidates).
- :func:`colour_transfer`: Reinhard et al.'s mean and spread matching in CIELAB, measured
  inside the face only.
- :func:`cross_blend`: all of the above; returns the fake and its blend mask. Where the mask
  is 0 the output is the target's pixels exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from noisetrace.data.sbi import (
    SelfBlended,
    blend,
    check_image,
    deform_mask,
    hull_mask,
    transform_source,
)
from noisetrace.media.faces import import_cv2 as _cv2


def _points(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"need at least 3 landmarks, got {len(pts)}")
    return pts


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) float64 matrix of the rotation, uniform scale and translation that maps the
    points ``src`` (K, 2) onto ``dst`` (K, 2) with the least squared error (Umeyama 1991;
    no reflection)."""
    s, d = _points(src), _points(dst)
    if s.shape != d.shape:
        raise ValueError(f"landmark sets differ in shape: {s.shape} vs {d.shape}")
    ms, md = s.mean(0), d.mean(0)
    s0, d0 = s - ms, d - md
    var = float((s0**2).sum() / len(s))
    if var <= 0:
        raise ValueError("the source landmarks are all one point")
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(s))
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ e @ vt
    scale = float(np.trace(np.diag(sig) @ e)) / var
    m = np.empty((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = md - scale * r @ ms
    return m


def landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance of landmarks ``a`` aligned onto ``b`` (:func:`similarity`), over the size
    of ``b``'s bounding box (its diagonal): 0 for the same shape, pose and expression at any
    position and scale."""
    pa, pb = _points(a), _points(b)
    m = similarity(pa, pb)
    moved = pa @ m[:, :2].T + m[:, 2]
    size = float(np.hypot(*(pb.max(0) - pb.min(0))))
    return float(np.sqrt(((moved - pb) ** 2).sum(1).mean())) / max(size, 1e-6)


def nearest_donor(
    target: np.ndarray,
    pool: Sequence[np.ndarray | None],
    rng: np.random.Generator,
    candidates: int = 100,
    allowed: Sequence[bool] | None = None,
) -> int | None:
    """Index in ``pool`` (landmark sets; None: no face) of the donor nearest ``target`` by
    :func:`landmark_distance`, among ``candidates`` drawn at random from the ``allowed``
    entries (Face X-ray searched a random subset, so donors vary); None when none is allowed."""
    ok = [i for i, p in enumerate(pool) if p is not None and (allowed is None or allowed[i])]
    if not ok:
        return None
    if len(ok) > candidates:
        ok = sorted(int(i) for i in rng.choice(ok, candidates, replace=False))
    dist = [landmark_distance(pool[i], target) for i in ok]  # type: ignore[arg-type]
    return ok[int(np.argmin(dist))]


def colour_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``source`` (H, W, 3) uint8 recoloured so that, inside ``mask`` (H, W; > 0.5 counts), its
    CIELAB mean and standard deviation per channel are the ``target``'s there (Reinhard et
    al. 2001). Both images are in the same frame (the donor already aligned)."""
    cv2 = _cv2()
    inside = np.asarray(mask) > 0.5
    if inside.sum() < 16:
        return source
    s = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    ms, ss = s[inside].mean(0), s[inside].std(0)
    mt, st = t[inside].mean(0), t[inside].std(0)
    out = (s - ms) * (st / np.maximum(ss, 1.0)) + mt
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(out, cv2.COLOR_LAB2RGB))


def align_donor(
    donor: np.ndarray, donor_landmarks: np.ndarray, target_landmarks: np.ndarray,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The donor warped into the target's frame (``shape`` (H, W)) so that its landmarks lie on
    the target's: ``(image, valid)``, ``valid`` (H, W) float32 1 where the warp had donor
    pixels. A donor shrunk by more than half is first scaled down with area averaging, as a
    renderer's output would be, rather than point-sampled by the warp."""
    cv2 = _cv2()
    dp = _points(donor_landmarks)
    m = similarity(dp, target_landmarks)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        h, w = donor.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        donor = cv2.resize(donor, (nw, nh), interpolation=cv2.INTER_AREA)
        dp = dp * np.array([nw / w, nh / h])
        m = similarity(dp, target_landmarks)
    h, w = int(shape[0]), int(shape[1])
    m32 = m.astype(np.float32)
    warped = cv2.warpAffine(donor, m32, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    ones = np.ones(donor.shape[:2], np.float32)
    valid = cv2.warpAffine(ones, m32, (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    return np.ascontiguousarray(warped), valid


def cross_blend(
    target: np.ndarray,
    target_landmarks: np.ndarray,
    donor: np.ndarray,
    donor_landmarks: np.ndarray,
    rng: np.random.Generator,
    *,
    hull_variant: str | None = None,
    blend_ratio: float | None = None,
    transform_p: float = 0.5,
) -> SelfBlended:
    """A cross-blended fake: the ``donor``'s face blended into the real ``target`` frame.

    The donor ((H', W', 3) uint8) is aligned by its landmarks onto the target's
    (:func:`align_donor`), recoloured to the target's face (:func:`colour_transfer`), with
    probability ``transform_p`` given SBI's source transforms (colour, sharpness, JPEG:
    :func:`noisetrace.data.sbi.transform_source`), and blended in inside the target's hull
    mask (:func:`noisetrace.data.sbi.hull_mask`, random variant for 68 points) after SBI's
    deformation (:func:`noisetrace.data.sbi.deform_mask`), kept where the donor has pixels.
    Returns ``(image, mask)``: the target's size and dtype, the float32 blend mask; where the
    mask is 0 the output equals ``target`` exactly.
    """
    target = check_image(target)
    donor = check_image(donor)
    tp = _points(target_landmarks)
    shape = target.shape[:2]
    warped, valid = align_donor(donor, donor_landmarks, tp, shape)
    base = hull_mask(shape, tp.astype(np.float32), rng, hull_variant) * valid
    if not base.any():
        raise ValueError("the face mask is empty (landmarks outside the image, or no donor there)")
    warped = colour_transfer(warped, target, base)
    if rng.random() < transform_p:
        warped = transform_source(warped, rng)
    mask = deform_mask(base, rng, blend_ratio) * valid
    return SelfBlended(blend(target, warped, mask), mask.astype(np.float32))
