"""Training augmentations as pure functions on (H, W, 3) uint8 arrays with an explicit RNG.

:class:`Augment` composes them in the order of the DJIN recipe: optional prior JPEG for
lossless sources (so both classes carry a camera-like compression history), D4, one of four
crop/resize operations, then random-quality JPEG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from noisetrace.media.image import encode_jpeg


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
    prior: int = 95,
) -> np.ndarray:
    """The file as a platform republishes it, both classes alike: lossless files get a
    camera-like JPEG pass first, the longer side is scaled down to ``max_side`` (antialiased
    bicubic; smaller images keep their size), then JPEG at ``quality``. Downscaling erases
    most of a camera's noise and of a generator's pixel-level traces: the web photos that
    small noise models call fake look like this."""
    if lossless:
        img = jpeg(img, prior)
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
    return jpeg(img, quality)
