"""The one image loader: any supported file -> RGB uint8 array, EXIF orientation applied."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from noisetrace.errors import InputError

#: Default decoding budget: images declaring more pixels are refused before decoding (a
#: 632-byte JPEG can declare 15000x15000 and cost minutes and gigabytes). 100 million covers
#: every camera sensor but the largest medium-format backs; ``--max-pixels`` changes it.
MAX_PIXELS = 100_000_000
#: Video frames are held and scored several at a time, so their budget is smaller: 4096x4096
#: (4K and 5K video fit, 8K needs ``--max-pixels``).
MAX_FRAME_PIXELS = 4096 * 4096
#: Progressive JPEGs decode every scan over the whole image; real files have about 10.
MAX_JPEG_SCANS = 100
#: Rows converted at once from 16-bit/float to 8-bit, so no whole-image float copy is made.
_ROWS_PIXELS = 1 << 22

_budget = {"image": MAX_PIXELS, "frame": MAX_FRAME_PIXELS}
#: Pillow's own bomb check, a backstop for code that opens images without this loader; kept
#: far above the budget so the budget's message (with its --max-pixels hint) is the one seen.
_PIL_CEILING = 1 << 31
Image.MAX_IMAGE_PIXELS = _PIL_CEILING
# Pillow warns about corrupt EXIF it then skips: the pixels still decode, and the warning
# would print source lines amid a scan's output. Set once, for the process: a filter set
# inside catch_warnings() is undone by other threads leaving theirs (--workers, serve).
warnings.filterwarnings("ignore", message=r".*corrupt EXIF", category=UserWarning,
                        module=r"PIL\.")  # fmt: skip


def set_max_pixels(limit: int | None) -> None:
    """Set the decoding budget of images and video frames for this process (``--max-pixels``);
    None restores the defaults."""
    if limit is not None and limit < 1:
        raise ValueError("--max-pixels must be at least 1")
    _budget["image"] = MAX_PIXELS if limit is None else int(limit)
    _budget["frame"] = MAX_FRAME_PIXELS if limit is None else int(limit)
    Image.MAX_IMAGE_PIXELS = max(_PIL_CEILING, _budget["image"])


def pixel_budget(kind: str = "image") -> int:
    """Current budget, in pixels, of an ``image`` or a video ``frame``."""
    return _budget[kind]


def over_budget(w: int, h: int, limit: int, what: str = "image") -> InputError:
    """The error record's message for a file whose declared size exceeds the budget."""
    return InputError(
        f"{what} is too large: it declares {w}x{h} pixels, over the limit of {limit:,}; "
        "scan it with a higher --max-pixels if it is genuine"
    )


def _jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers in a JPEG (0xFFDA never occurs inside entropy-coded data)."""
    return data.count(b"\xff\xda")


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, the way a viewer would show it."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the full range down to 8 bits instead of clipping.
        a = np.asarray(im)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(_scaled_rows(a, 255.0 / hi), "L").convert("RGB")
    if im.mode == "F":
        a = np.asarray(im)
        finite = _all_finite(a)
        if finite is not True:
            # A cast would turn NaN/inf into arbitrary grey levels and score made-up pixels.
            raise InputError(
                f"image has {finite:,} NaN or infinite pixel value(s) (floating-point TIFF); "
                "they have no brightness to score: fix or mask them and save the image again"
            )
        return Image.fromarray(_scaled_rows(a, 255.0 if a.max() <= 1.0 else 1.0), "L").convert(
            "RGB"
        )
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


def _scaled_rows(a: np.ndarray, scale: float) -> np.ndarray:
    """``clip(a * scale + 0.5)`` as uint8, a block of rows at a time: a whole-image float64
    copy of a 16384x16384 16-bit PNG alone would take 2 GiB."""
    out = np.empty(a.shape, dtype=np.uint8)
    step = max(1, _ROWS_PIXELS // max(1, a.shape[1]))
    for y in range(0, a.shape[0], step):
        block = a[y : y + step].astype(np.float32) * np.float32(scale) + np.float32(0.5)
        out[y : y + step] = np.clip(block, 0, 255)
    return out


def _all_finite(a: np.ndarray) -> bool | int:
    """True, or the number of NaN/inf values (counted a block of rows at a time)."""
    step = max(1, _ROWS_PIXELS // max(1, a.shape[1]))
    bad = sum(int((~np.isfinite(a[y : y + step])).sum()) for y in range(0, a.shape[0], step))
    return True if bad == 0 else bad


def check_budget(data: bytes | str | Path, max_pixels: int | None = None) -> int:
    """Raise :class:`InputError` when an image declares more than the budget (read from its
    header only, nothing decoded); other problems are left to :func:`decode_image`. Returns
    the pixels it declares (0 when the header cannot be read). The service calls this before
    an upload takes a worker."""
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    limit = max_pixels or _budget["image"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise InputError("image is too large (possible decompression bomb)") from None
    except Exception:  # noqa: BLE001 - decoding reports these with its own words
        return 0
    if w * h > limit:
        raise over_budget(w, h, limit)
    return w * h


def decode_image(data: bytes | str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file (path or bytes) to an (H, W, 3) uint8 RGB array.

    The first frame is used for animated GIF/WebP. The size the file declares is checked
    against the decoding budget (``max_pixels``, default :func:`pixel_budget`) before anything
    is decoded, and so is the scan count of a progressive JPEG. Raises :class:`InputError`
    with a message a person understands for anything that is not a readable, sane image.
    """
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    limit = max_pixels or _budget["image"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
                if w * h > limit:
                    raise over_budget(w, h, limit)
                if w < 1 or h < 1:
                    raise InputError(f"image has no pixels ({w}x{h})")
                if im.format == "JPEG" and im.info.get("progressive"):
                    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
                    if (scans := _jpeg_scans(raw)) > MAX_JPEG_SCANS:
                        raise InputError(
                            f"progressive JPEG has {scans} scans, over the limit of "
                            f"{MAX_JPEG_SCANS} (real photos have about 10; each scan decodes "
                            "the whole image again)"
                        )
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im) or im
                rgb = to_rgb(im)
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


def load_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read the image at ``path`` as an (H, W, 3) uint8 RGB array (see :func:`decode_image`)."""
    return decode_image(Path(path), max_pixels=max_pixels)


def _round_trip(img: np.ndarray, fmt: str, **save: object) -> np.ndarray:
    """Encode an (H, W, 3) uint8 image in memory with Pillow and decode it again."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **save)
    buf.seek(0)
    with Image.open(buf) as im:
        im.load()  # an RGB image needs no convert (which would copy the whole image again)
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def encode_jpeg(img: np.ndarray, quality: int, subsampling: int | None = None) -> np.ndarray:
    """JPEG-compress an (H, W, 3) uint8 image in memory and decode it again."""
    kw = {} if subsampling is None else {"subsampling": subsampling}
    return _round_trip(img, "JPEG", quality=int(quality), **kw)


def encode_webp(img: np.ndarray, quality: int) -> np.ndarray:
    """Lossy-WebP-compress an (H, W, 3) uint8 image in memory and decode it again (libwebp
    through Pillow, its default method 4: what image CDNs serve)."""
    return _round_trip(img, "WEBP", quality=int(quality))
