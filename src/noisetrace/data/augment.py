"""Training augmentations as pure functions on (H, W, 3) uint8 arrays with an explicit RNG.

:class:`Augment` composes them in the order of the DJIN recipe: optional prior JPEG for
lossless sources (so both classes carry a camera-like compression history), D4, one of four
crop/resize operations, then random-quality JPEG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from noisetrace.media.image import encode_jpeg, encode_webp


def d4(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 symmetries of the square (rotations by 90 degrees, with or without flip)."""
    k = int(rng.integers(4))
    out = np.rot90(img, k)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an image smaller than ``size`` on either side."""
    h, w = img.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        mode = "reflect" if min(h, w) > 1 else "edge"
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)
        if img.shape[0] < size or img.shape[1] < size:  # reflect cannot exceed the image size
            img = np.pad(
                img,
                ((0, max(0, size - img.shape[0])), (0, max(0, size - img.shape[1])), (0, 0)),
                mode="edge",
            )
    return img


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    img = pad_to(img, size)
    h, w = img.shape[:2]
    y = int(rng.integers(h - size + 1))
    x = int(rng.integers(w - size + 1))
    return img[y : y + size, x : x + size]


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    img = pad_to(img, size)
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return img[y : y + size, x : x + size]


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def random_resized_crop(
    img: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """torchvision's RandomResizedCrop: a random area and aspect, resized to ``size``."""
    h, w = img.shape[:2]
    area = h * w
    for _ in range(10):
        a = area * rng.uniform(*scale)
        r = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        cw, ch = int(round(np.sqrt(a * r))), int(round(np.sqrt(a / r)))
        if 0 < cw <= w and 0 < ch <= h:
            y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            return resize(img[y : y + ch, x : x + cw], size, size)
    return resize(center_crop(img, min(h, w)), size, size)


def rescale_then_crop(
    img: np.ndarray, size: int, rng: np.random.Generator, factor: tuple[float, float] = (0.5, 2.0)
) -> np.ndarray:
    """Resize by a random factor, then a random crop (DJIN's fourth crop operation)."""
    f = rng.uniform(*factor)
    h, w = img.shape[:2]
    # Crop a region first so a huge image is never upscaled whole.
    need = int(np.ceil(size / f)) + 2
    img = random_crop(img, min(need, max(h, w)), rng) if max(h, w) > need else img
    h, w = img.shape[:2]
    img = resize(img, max(1, round(h * f)), max(1, round(w * f)))
    return random_crop(img, size, rng)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    return encode_jpeg(img, quality)


@dataclass
class Augment:
    """The DJIN recipe, with its probabilities as fields so configs can change them.

    ``crop_weights`` are the chances of RandomResizedCrop, RandomCrop, Resize and
    rescale-then-crop (25% each in the paper).
    """

    size: int = 224
    crop_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 100)
    prior_jpeg_p: float = 1.0  # for lossless sources only
    prior_jpeg_quality: tuple[int, int] = (85, 98)
    use_d4: bool = True

    def __call__(self, img: np.ndarray, lossless: bool, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        if lossless and rng.random() < self.prior_jpeg_p:
            # Compress a region around the future crop, not the whole (maybe huge) image.
            region = random_crop(img, min(max(img.shape[:2]), 2 * s + 16), rng)
            img = jpeg(
                region,
                int(rng.integers(self.prior_jpeg_quality[0], self.prior_jpeg_quality[1] + 1)),
            )
        if self.use_d4:
            img = d4(img, rng)
        w = np.asarray(self.crop_weights, dtype=np.float64)
        op = int(rng.choice(4, p=w / w.sum()))
        if op == 0:
            img = random_resized_crop(img, s, rng)
        elif op == 1:
            img = random_crop(img, s, rng)
        elif op == 2:
            img = resize(img, s, s)
        else:
            img = rescale_then_crop(img, s, rng)
        if rng.random() < self.jpeg_p:
            img = jpeg(img, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return np.ascontiguousarray(img)


def matched_format(
    img: np.ndarray, lossless: bool, quality: int = 90, prior: int = 95
) -> np.ndarray:
    """Validation view with both classes carrying the same history: lossless files get a
    camera-like JPEG pass first, then every image is JPEG-encoded at ``quality``."""
    if lossless:
        img = jpeg(img, prior)
    return jpeg(img, quality)


#: The longer side social platforms republish photos at (Instagram 1080; others 1080-2048).
WEB_SIDE = 1080


def web_format(
    img: np.ndarray, lossless: bool, quality: int = 80, max_side: int = WEB_SIDE,
    prior: int = 95, codec: str = "jpeg",
) -> np.ndarray:
    """The file as a platform republishes it, both classes alike: lossless files get a
    camera-like JPEG pass first, the longer side is scaled down to ``max_side`` (antialiased
    bicubic; smaller images keep their size), then ``codec`` ("jpeg" or "webp", as image CDNs
    serve) at ``quality``. Downscaling erases most of a camera's noise and of a generator's
    pixel-level traces: the web photos that small noise models call fake look like this."""
    if codec not in ("jpeg", "webp"):
        raise ValueError(f"codec must be 'jpeg' or 'webp', not {codec!r}")
    if lossless:
        img = jpeg(img, prior)
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
    return jpeg(img, quality) if codec == "jpeg" else encode_webp(img, quality)


#: JPEG quality a screenshot is shared at (``screenshot``): the quality `scan`'s canonical
#: state uses too, so the view is the screenshot itself, not a second lossy history.
SHOT_QUALITY = 90


def screenshot(img: np.ndarray, lossless: bool, scale: float, prior: int = 95) -> np.ndarray:
    """The file as someone screenshots it on a screen and shares the capture: the matched
    history (lossless files JPEG 95 first), resampled by ``scale`` the way a browser draws an
    image not shown at its own size (bilinear; 0.75 for a large image fitted to the window,
    1.25 or 1.5 on a high-density display), then JPEG ``SHOT_QUALITY``. A non-integer
    resampling moves every pixel-level trace off its grid, the camera's and the generator's."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if lossless:
        img = jpeg(img, prior)
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
    return jpeg(img, SHOT_QUALITY)


# -- named views: one deterministic transform per name, for `fit`'s cached features and
# `evaluate`'s conditions alike ---------------------------------------------------------------
#: Transform kinds that take a number suffix (``matched90``, ``shot75``), with card labels.
_KINDS = {"jpeg": "JPEG", "matched": "JPEG", "webp": "republished, WebP",
          "web": "republished, JPEG", "shot": "screenshot at"}  # fmt: skip


def parse_transform(name: str) -> tuple[str, int] | None:
    """``"matched90"`` -> ("matched", 90); None for a name without a known kind and number.
    ``webp`` is tried before ``web`` (a prefix of it)."""
    for kind in sorted(_KINDS, key=len, reverse=True):
        if name.startswith(kind) and name[len(kind):].isdigit():
            return kind, int(name[len(kind):])
    return None


def apply_transform(img: np.ndarray, name: str, lossless: bool, prior: int = 95) -> np.ndarray:
    """Named, deterministic views of a decoded image.

    ``stored``: as decoded. ``jpegQ``: JPEG at quality Q. ``matchedQ``: both classes with
    one history: lossless files get a camera-like JPEG ``prior`` pass first, then JPEG Q.
    ``webQ``: the same history, then the longer side scaled down to 1080 px (as platforms
    republish photos), then JPEG Q (:func:`web_format`); ``webpQ``: the same with WebP Q.
    ``shotS``: a screenshot of the image shown at S% of its size (:func:`screenshot`).
    """
    if name == "stored":
        return img
    parsed = parse_transform(name)
    if parsed is None:
        raise ValueError(f"unknown transform {name!r}: stored, jpegQ, matchedQ, webQ, webpQ "
                         "or shotS (S: display scale in percent)")
    kind, q = parsed
    if kind == "jpeg":
        return jpeg(img, q)
    if kind == "matched":
        return matched_format(img, lossless, quality=q, prior=prior)
    if kind == "shot":
        return screenshot(img, lossless, q / 100, prior=prior)
    codec = "webp" if kind == "webp" else "jpeg"
    return web_format(img, lossless, quality=q, prior=prior, codec=codec)


def transform_label(name: str) -> str:
    """Short human label of a transform: ``matched90`` -> "JPEG 90", ``web80`` ->
    "republished, JPEG 80", ``shot75`` -> "screenshot at 75%" (cards and reports)."""
    parsed = parse_transform(name)
    if parsed is None:
        return name
    return f"{_KINDS[parsed[0]]} {parsed[1]}" + ("%" if parsed[0] == "shot" else "")


def describe_transforms(names: Sequence[str]) -> str:
    """What the named transforms do, one clause per kind, for cards and reports."""
    kinds = {p[0] for p in map(parse_transform, names) if p}
    notes = []
    if kinds & {"matched", "web", "webp", "shot"}:
        notes.append("matchedQ: lossless files JPEG 95 first, then every file JPEG Q: both "
                     "classes carry one compression history")  # fmt: skip
    if kinds & {"web", "webp"}:
        notes.append(f"webQ / webpQ: the same history with the longer side scaled down to "
                     f"{WEB_SIDE} px before JPEG / WebP at Q, as platforms republish photos")
    if "shot" in kinds:
        notes.append(f"shotS: the same history, then a screenshot of the image shown at S% "
                     f"of its size (bilinear) shared as JPEG {SHOT_QUALITY}")
    return "; ".join(notes)
