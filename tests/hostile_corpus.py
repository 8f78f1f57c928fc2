"""A generated corpus of hostile and broken inputs (issue 18), shared by the tests and
``benchmarks/hostile.py``: :func:`build` writes one input per kind into a folder and returns
``(kind, path)`` pairs, where ``path`` is the path the scan's record for it carries.

Everything is generated here, from a few bytes to about a megabyte each: headers that declare
huge images or frames, decompression bombs, progressive JPEGs with thousands of scans,
forged video headers, NaN pixels, files that must never be opened (FIFOs, sockets, devices),
folders that cannot be listed, names that are not UTF-8 or drive the terminal, symlink loops.
:data:`EXPECTED` says what each kind's record must be: ``"score"`` or a phrase of its error.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from noisetrace.media.video import write_video


# -- small generators (also used by test_bad_inputs.py and test_hostile.py) --------------------
def save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 100,000 x 100,000 pixels (its data is 64 bytes)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + idat + png_chunk(b"IEND", b"")


def _zlib_zeros(row: int, rows: int) -> bytes:
    """A zlib stream of ``row * rows`` zero bytes, built from one compressed block repeated:
    after a full flush deflate forgets its window, so equal input gives equal output, and a
    half-gigabyte bomb takes milliseconds instead of seconds to make."""
    per = max(d for d in range(1, min(rows, max(1, (1 << 23) // row)) + 1) if rows % d == 0)
    raw = bytes(row * per)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(raw) + co.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(rows // per):
        adler = zlib.adler32(raw, adler)
    return b"\x78\xda" + block * (rows // per) + co.flush() + struct.pack(">I", adler)


def zero_png(w: int, h: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    """A real (decodable) all-black PNG of ``w`` x ``h``: a decompression bomb, since its
    zlib data shrinks ~1000:1. ``colour`` is the PNG colour type (0 grey, 2 RGB, 3 palette)."""
    channels = {0: 1, 2: 3, 3: 1}[colour]
    row = 1 + (w * channels * bit_depth + 7) // 8  # a filter byte per row
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour, 0, 0, 0)
    plte = png_chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff") if colour == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + plte
            + png_chunk(b"IDAT", _zlib_zeros(row, h)) + png_chunk(b"IEND", b""))  # fmt: skip


def jpeg_declaring(w: int, h: int) -> bytes:
    """A tiny JPEG whose frame header (SOF0) declares ``w`` x ``h`` pixels."""
    data = bytearray(save(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def gif_screen(w: int, h: int) -> bytes:
    """35 bytes: a GIF whose logical screen is ``w`` x ``h`` around a 1-pixel frame."""
    head = b"GIF89a" + struct.pack("<HH", w, h) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


def bmp_declaring(w: int, h: int) -> bytes:
    """A small BMP whose info header declares ``w`` x ``h`` pixels."""
    data = bytearray(save(Image.new("RGB", (8, 8)), "BMP"))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def progressive_jpeg(scans: int, photo: np.ndarray) -> bytes:
    """A progressive JPEG with about ``scans`` scans: its last scan repeated. Every scan is
    decoded over the whole image, so thousands cost minutes unless refused first."""
    data = save(Image.fromarray(photo[:64, :64]), "JPEG", progressive=True)
    last, eoi = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    have = data.count(b"\xff\xda")
    return data[:eoi] + data[last:eoi] * max(0, scans - have) + data[eoi:]


def float_tiff(bad: float) -> bytes:
    """A 32-bit float TIFF with one NaN or infinite pixel."""
    a = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    a[3, 4] = bad
    return save(Image.fromarray(a, "F"), "TIFF")


def heic_header() -> bytes:
    """The start of a HEIC file (ftyp box, brand heic): sniffed as HEIC, not decodable."""
    return struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


def forged_avi(folder: Path, frames: int = 8, claim: int = 2**31 - 1) -> Path:
    """``folder/forged.avi``: an AVI whose headers (avih total frames, strh length) claim
    ``claim`` frames while it holds ``frames``."""
    real = folder / ".real.avi"
    write_video(real, [np.full((32, 32, 3), i * 25, np.uint8) for i in range(frames)], fps=5)
    data = bytearray(real.read_bytes())
    real.unlink()
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24 : avih + 28] = struct.pack("<I", claim)  # dwTotalFrames
    data[strh + 40 : strh + 44] = struct.pack("<I", claim)  # dwLength
    out = folder / "forged.avi"
    out.write_bytes(bytes(data))
    return out


def big_frame_video(path: Path, side: int = 8000) -> None:
    """One black ``side`` x ``side`` MJPEG frame in an AVI (about 1 MB)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg", rate=1)
        s.width = s.height = side
        s.pix_fmt = "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint8), format="rgb24")
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)


def zero_frame_mkv(folder: Path, frames: list[np.ndarray]) -> bytes:
    """A Matroska header with a video track and not one frame after it."""
    tmp = folder / ".tmp.mkv"
    write_video(tmp, frames, fps=5)
    mkv = tmp.read_bytes()
    tmp.unlink()
    return mkv[: mkv.find(b"\x1f\x43\xb6\x75")]  # the first Cluster: frames start here


def unix_socket(path: Path) -> None:
    """A socket file at ``path``; bound from inside its folder, since socket addresses are
    limited to ~100 bytes and test folders can be longer."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(path.name)
        s.close()  # the file stays: listing sees a socket, which must never be opened
    finally:
        os.chdir(here)


def synthetic_photo(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour field plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 90 * np.sin(xx / (31 + 7 * c) + yy / (47 + 5 * c) + c)
                     for c in range(3)], axis=-1)  # fmt: skip
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a blocked call (open() of a FIFO) is interrupted by SIGALRM
    (main thread only)."""

    def boom(*_):
        raise TimeoutError(f"still running after {seconds} s (blocked on a FIFO?)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- the corpus --------------------------------------------------------------------------------
#: kind -> the record it must get: "score" (scored, no error) or a phrase its error contains
#: (case-insensitive); None where either is right (it depends on the codecs or on being root).
EXPECTED: dict[str, str | None] = {
    # refused by the decoding budget before anything is decoded
    "jpeg declaring 15000x15000": "declares 15000x15000 pixels",
    "gif 16000x16000 screen, 1-px frame": "declares 16000x16000 pixels",
    "16-bit grey png 16384x16384": "declares 16384x16384 pixels",
    "png bomb (header 100000x100000)": "too large",
    "png bomb (zlib 1000:1, 20000x20000)": "declares 20000x20000 pixels",
    "bmp declaring 50000x50000": "too large",
    "progressive jpeg, 5000 scans": "scans, over the limit",
    "video with an 8000x8000 frame": "video frame is too large",
    # forged, broken, or not media at all
    "avi forging 2^31-1 frames": "score",
    "mkv with no frames": "video",
    "truncated jpeg": "truncated",
    "truncated png": "truncated",
    "truncated mp4": "video",
    "jpeg markers only": None,
    "zero bytes": "empty",
    "text named .jpg": "text file",
    "html named .jpg": "html",
    "svg named .png": None,
    "random bytes named .jpg": "not a supported",
    "float tiff with NaN": "nan or infinite",
    "float tiff with inf": "nan or infinite",
    "heic": "unsupported format: heic",
    "avif": None,  # scored where Pillow has the codec
    "broken exif": None,
    # odd but valid: scored
    "png named .mp4": "score",
    "jpeg named .png": "score",
    "mp4 named .jpg": "score",
    "jpeg with 1 MB trailing garbage": "score",
    "png with 20000 text chunks": "score",
    "one pixel": "score",
    "3000x2 strip": "score",
    "16-bit png": "score",
    "cmyk jpeg": "score",
    "rgba png": "score",
    "palette png": "score",
    "exif-rotated jpeg": "score",
    "animated gif, 300 frames": "score",
    "animated webp": "score",
    # names
    "non-UTF-8 name": "score",
    "non-UTF-8 name, bad content": "text file",
    "terminal escapes in the name": "score",
    # never opened, or not files
    "fifo named .jpg": "not a regular file",
    "fifo without extension": "not a regular file",
    "unix socket": "not a regular file",
    "device /dev/null via link": "not a regular file",
    "device /dev/zero via link": "not a regular file",
    "dangling symlink": "not found",
    "symlink loop": "symlink loop",
    "unreadable folder": None,  # an error record; root reads it, so then its file's record
}

#: Kinds that are not regular files: scanned from a folder, never uploaded.
NOT_UPLOADABLE = {
    "fifo named .jpg", "fifo without extension", "unix socket", "device /dev/null via link",
    "device /dev/zero via link", "dangling symlink", "symlink loop", "unreadable folder",
}  # fmt: skip


def build(folder: str | Path, photo: np.ndarray | None = None) -> list[tuple[str, Path]]:
    """Write the corpus into ``folder`` (created): one input per kind of :data:`EXPECTED`.

    Returns ``(kind, path)`` in :data:`EXPECTED` order, ``path`` being what a scan of
    ``folder`` records for that kind. Needs a POSIX system (FIFOs, sockets, byte names).
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    photo = synthetic_photo() if photo is None else photo
    im = Image.fromarray(photo[:96, :128])
    jpg, png = save(im, "JPEG", quality=90), save(im, "PNG")
    frames = [np.ascontiguousarray(photo[i : i + 64, i : i + 64]) for i in range(0, 40, 4)]
    write_video(d / ".clip.mp4", frames, fps=5)
    mp4 = (d / ".clip.mp4").read_bytes()
    (d / ".clip.mp4").unlink()
    exif = Image.Exif()
    exif[0x0112] = 6
    g16 = np.linspace(0, 65535, 32 * 48, dtype=np.uint16).reshape(32, 48)
    anim = [Image.fromarray(photo[i : i + 40, :40]) for i in range(0, 30, 10)]
    gif_frames = [Image.new("RGB", (8, 8), (i % 256, 0, 0)) for i in range(300)]
    texts = b"".join(png_chunk(b"tEXt", b"k\x00" + b"v" * 40) for _ in range(20000))
    try:
        avif = save(im, "AVIF")
    except (KeyError, OSError, ValueError):  # no AVIF codec in this Pillow: its header only
        avif = struct.pack(">I", 24) + b"ftypavif\x00\x00\x00\x00mif1avif" + bytes(64)

    data: dict[str, tuple[str, bytes]] = {  # kind -> (file name, bytes)
        "jpeg declaring 15000x15000": ("huge_declared.jpg", jpeg_declaring(15000, 15000)),
        "gif 16000x16000 screen, 1-px frame": ("screen.gif", gif_screen(16000, 16000)),
        "16-bit grey png 16384x16384": ("grey16_16384.png", zero_png(16384, 16384, 16, 0)),
        "png bomb (header 100000x100000)": ("bomb_header.png", bomb_png()),
        "png bomb (zlib 1000:1, 20000x20000)": ("bomb_zlib.png", zero_png(20000, 20000, 1, 3)),
        "bmp declaring 50000x50000": ("huge.bmp", bmp_declaring(50000, 50000)),
        "progressive jpeg, 5000 scans": ("scans.jpg", progressive_jpeg(5000, photo)),
        "mkv with no frames": ("zero_frames.mkv", zero_frame_mkv(d, frames)),
        "truncated jpeg": ("truncated.jpg", jpg[: len(jpg) // 2]),
        "truncated png": ("truncated.png", png[: len(png) // 2]),
        "truncated mp4": ("truncated.mp4", mp4[: len(mp4) // 2]),
        "jpeg markers only": ("markers.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\xff" * 8),
        "zero bytes": ("empty.jpg", b""),
        "text named .jpg": ("text.jpg", b"just some words\n"),
        "html named .jpg": ("page.jpg", b"<!DOCTYPE html><html><body>hi</body></html>"),
        "svg named .png": ("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
        "random bytes named .jpg": ("noise.jpg", np.random.default_rng(0).bytes(4096)),
        "float tiff with NaN": ("nan.tif", float_tiff(np.nan)),
        "float tiff with inf": ("inf.tif", float_tiff(np.inf)),
        "heic": ("photo.heic", heic_header()),
        "avif": ("photo.avif", avif),
        "broken exif": ("exif.jpg", jpg[:2] + b"\xff\xe1\x00\x20Exif\x00\x00MM\x00\x2a\xff\xff"
                        + bytes(20) + jpg[2:]),  # fmt: skip
        "png named .mp4": ("png_named.mp4", png),
        "jpeg named .png": ("jpeg_named.png", jpg),
        "mp4 named .jpg": ("mp4_named.jpg", mp4),
        "jpeg with 1 MB trailing garbage": ("trailing.jpg", jpg + os.urandom(1 << 20)),
        "png with 20000 text chunks": ("texts.png", png[:33] + texts + png[33:]),
        "one pixel": ("one_pixel.png", save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")),
        "3000x2 strip": ("thin.png", save(Image.new("RGB", (3000, 2), (100, 50, 0)), "PNG")),
        "16-bit png": ("sixteen.png", save(Image.frombytes("I;16", (48, 32),
                                                          g16.astype("<u2").tobytes()), "PNG")),
        "cmyk jpeg": ("cmyk.jpg", save(im.convert("CMYK"), "JPEG")),
        "rgba png": ("rgba.png", save(im.convert("RGBA"), "PNG")),
        "palette png": ("palette.png", save(im.quantize(16), "PNG")),
        "exif-rotated jpeg": ("rotated.jpg", save(im, "JPEG", exif=exif.tobytes())),
        "animated gif, 300 frames": ("anim.gif", save(gif_frames[0], "GIF", save_all=True,
                                                      append_images=gif_frames[1:])),
        "animated webp": ("anim.webp", save(anim[0], "WEBP", save_all=True,
                                            append_images=anim[1:])),
        "non-UTF-8 name": (os.fsdecode(b"caf\xe9.png"), png),
        "non-UTF-8 name, bad content": (os.fsdecode(b"bad\xff.jpg"), b"not an image\n"),
        "terminal escapes in the name": ("\x1b[2J\x1b]0;owned\x07evil.png", png),
    }  # fmt: skip
    paths: dict[str, Path] = {}
    for kind, (name, content) in data.items():
        (d / name).write_bytes(content)
        paths[kind] = d / name
    paths["avi forging 2^31-1 frames"] = forged_avi(d)
    big_frame_video(d / "big_frame.avi")
    paths["video with an 8000x8000 frame"] = d / "big_frame.avi"

    paths["fifo named .jpg"] = d / "pipe.jpg"  # listed by its name: must not be opened
    paths["fifo without extension"] = d / "pipe"  # content sniffing must not open it either
    for fifo in ("pipe.jpg", "pipe"):
        os.mkfifo(d / fifo)
    paths["unix socket"] = d / "sock.png"
    unix_socket(d / "sock.png")
    for kind, name, target in (("device /dev/null via link", "null.jpg", "/dev/null"),
                               ("device /dev/zero via link", "zero.bin", "/dev/zero"),
                               ("dangling symlink", "gone.jpg", str(d / "no-such-file.jpg"))):
        (d / name).symlink_to(target)  # fmt: skip
        paths[kind] = d / name
    (d / "loop").symlink_to(d.resolve(), target_is_directory=True)
    paths["symlink loop"] = d / "loop"
    locked = d / "locked"
    locked.mkdir()
    (locked / "inside.png").write_bytes(png)
    locked.chmod(0)
    # Root lists any folder whatever its mode: then the record is the file inside.
    paths["unreadable folder"] = locked / "inside.png" if os.access(locked, os.R_OK) else locked
    return [(kind, paths[kind]) for kind in EXPECTED]


def unlock(folder: str | Path) -> None:
    """Give the unreadable folder its permissions back, so the corpus can be deleted."""
    locked = Path(folder) / "locked"
    if locked.exists():
        locked.chmod(0o755)
