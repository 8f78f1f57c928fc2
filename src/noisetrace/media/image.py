"""The one image loader: any supported file -> RGB uint8 array, EXIF orientation applied."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from noisetrace.errors import InputError

#: Refuse images above this many pixels (decompression bombs); 16k x 16k fits.
MAX_PIXELS = 268_435_456
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, the way a viewer would show it."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the full range down to 8 bits instead of clipping.
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            # A cast would turn NaN/inf into arbitrary grey levels and score made-up pixels.
            bad = int(a.size - np.isfinite(a).sum())
            raise InputError(
                f"image has {bad:,} NaN or infinite pixel value(s) (floating-point TIFF); "
                "they have no brightness to score: fix or mask them and save the image again"
            )
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite on white: transparent areas are what a viewer shows as background.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def decode_image(data: bytes | str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file (path or bytes) to an (H, W, 3) uint8 RGB array.

    The first frame is used for animated GIF/WebP. Raises :class:`InputError` with a message
    a person understands for anything that is not a readable, sane image.
    """
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(
                        f"image is too large: {w}x{h} pixels (limit {max_pixels:,} pixels)"
                    )
                if w < 1 or h < 1:
                    raise InputError(f"image has no pixels ({w}x{h})")
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im) or im
                rgb = _to_rgb(im)
                arr = np.asarray(rgb, dtype=np.uint8)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"image is too large (possible decompression bomb): {exc}") from None
    except FileNotFoundError:
        raise InputError("file not found (it may have been moved or deleted)") from None
    except PermissionError:
        raise InputError("permission denied: the file cannot be read") from None
    except Image.UnidentifiedImageError:
        raise InputError("not a readable image: the content is not a known image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg or "image file is truncated" in msg or isinstance(exc, EOFError):
            raise InputError(
                "image file is truncated or corrupt (cannot decode all of it)"
            ) from None
        raise InputError(f"image file is corrupt and cannot be decoded ({msg})") from None
    except MemoryError:
        raise InputError("not enough memory to decode this image") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"unexpected decoded image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read the image at ``path`` as an (H, W, 3) uint8 RGB array (see :func:`decode_image`)."""
    return decode_image(Path(path), max_pixels=max_pixels)


def encode_jpeg(img: np.ndarray, quality: int, subsampling: int | None = None) -> np.ndarray:
    """JPEG-compress an (H, W, 3) uint8 image in memory and decode it again."""
    buf = io.BytesIO()
    kw = {} if subsampling is None else {"subsampling": subsampling}
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), **kw)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
