"""Decide what a file is from its first bytes, never from its name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from noisetrace.errors import InputError

Kind = Literal["image", "video"]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"}
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def sniff_bytes(head: bytes) -> tuple[Kind, str] | None:
    """(kind, format) for a file that starts with ``head`` (>= 16 bytes), or None."""
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


def sniff(path: str | Path) -> tuple[Kind, str]:
    """Kind and format of the file at ``path`` from its content.

    Raises :class:`InputError` for unreadable, empty or unsupported files.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise InputError("file not found (it may have been moved or deleted)") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file") from None
    except PermissionError:
        raise InputError("permission denied: the file cannot be read") from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}") from None
    found = sniff_bytes(head)
    if found is None:
        raise InputError(f"not a supported image or video: {_describe_unknown(head)}")
    return found
