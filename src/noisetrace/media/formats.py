"""Decide what a file is from its first bytes, never from its name."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Literal

from noisetrace.errors import InputError

Kind = Literal["image", "video"]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif"}
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"}
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


#: ISO-BMFF brands (the ``ftyp`` box) of still images, which share the container with MP4.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
#: Formats recognised by content but not decodable here: the reason goes into the record.
UNSUPPORTED = {
    "heif": "unsupported format: HEIC/HEIF (no HEIF decoder is installed); convert it to JPEG "
    "or PNG first, e.g. with heif-convert or an image viewer's export",
}


def _ftyp_brands(head: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF ``ftyp`` box (as far as ``head`` reaches)."""
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if size >= 16 else len(head))
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def sniff_bytes(head: bytes) -> tuple[Kind, str] | None:
    """(kind, format) for a file that starts with ``head`` (>= 16 bytes, 64 to see every
    ISO-BMFF brand), or None. AVIF and HEIC share MP4's container and are told apart by
    their brands: they are still images, never videos."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "tiff"
    if head[:2] == b"BM":
        return "image", "bmp"
    if head[4:8] == b"ftyp":
        brands = _ftyp_brands(head)
        if brands & _AVIF_BRANDS:
            return "image", "avif"
        if brands & _HEIF_BRANDS:
            return "image", "heif"
        return "video", "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video", "matroska"
    return None


def _describe_unknown(head: bytes) -> str:
    stripped = head.lstrip().lower()
    if not head:
        return "the file is empty"
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page, not an image or video"
    if stripped.startswith(b"<"):
        return "it is a text/XML file, not an image or video"
    try:
        head.decode("utf-8")
        return "it is a text file, not an image or video"
    except UnicodeDecodeError:
        return "its content is not a supported image or video format"


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is refused (FIFOs, sockets, devices), or None for a
    regular file. Such files are never opened: a FIFO blocks, a device reads forever."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    what = (
        "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a character device" if stat.S_ISCHR(mode)
        else "a block device" if stat.S_ISBLK(mode)
        else "not a plain file"
    )  # fmt: skip
    return f"not a regular file: it is {what}, so it was not opened; scan regular files only"


def read_head(path: str | Path, n: int = 64) -> bytes:
    """The first ``n`` bytes of a regular file.

    The file is checked with ``stat`` before it is opened and opened non-blocking, then checked
    again on the open descriptor, so a FIFO, socket or device (even one swapped in between)
    is never read. Raises :class:`InputError` with the reason otherwise.
    """
    try:
        why = not_regular_reason(os.stat(path).st_mode)
        if why:
            raise InputError(why)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            why = not_regular_reason(os.fstat(fd).st_mode)
            if why:
                raise InputError(why)
            return os.read(fd, n)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise InputError("file not found (it may have been moved or deleted)") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file") from None
    except PermissionError:
        raise InputError("permission denied: the file cannot be read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("cannot read the file: a symbolic link loop") from None
        raise InputError(f"cannot read the file: {exc.strerror or exc}") from None


def sniff(path: str | Path) -> tuple[Kind, str]:
    """Kind and format of the file at ``path`` from its content.

    Raises :class:`InputError` for unreadable, empty, unsupported or non-regular files.
    """
    head = read_head(path)
    found = sniff_bytes(head)
    if found is None:
        raise InputError(f"not a supported image or video: {_describe_unknown(head)}")
    if found[1] in UNSUPPORTED:
        raise InputError(UNSUPPORTED[found[1]])
    return found
