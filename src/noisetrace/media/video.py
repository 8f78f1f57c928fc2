"""Video decoding with PyAV: frames sampled by index, with their timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from noisetrace.errors import InputError

SampleMode = Literal["even", "all", "every", "first", "keyframes"]


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in decode order, time in seconds, (H, W, 3) uint8 RGB."""

    index: int
    time: float | None
    image: np.ndarray


def _open(path: str | Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except FileNotFoundError:
        raise InputError("file not found (it may have been moved or deleted)") from None
    except PermissionError:
        raise InputError("permission denied: the file cannot be read") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"video cannot be opened; it is corrupt or truncated ({exc})") from None


def count_frames(path: str | Path) -> int:
    """Number of video frames, from the header or else by counting packets (no decoding)."""
    with _open(path) as container:
        if not container.streams.video:
            raise InputError("file has no video stream")
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
        except av.error.FFmpegError:
            pass  # a truncated tail: count what is there
        return n


def _indices(mode: SampleMode, n: int, total: int) -> set[int] | None:
    """Frame indices to keep, or None for 'keep every decoded frame'."""
    if mode == "all" or mode == "keyframes":
        return None
    if mode == "first":
        return set(range(min(n, total) if total else n))
    if mode == "every":
        return set(range(0, total, max(1, n)))
    if mode == "even":
        if total <= 0:
            return None
        k = min(n, total)
        return {int(round(i)) for i in np.linspace(0, total - 1, k)}
    raise ValueError(f"unknown sampling mode {mode!r}")


def iter_frames(
    path: str | Path, mode: SampleMode = "even", n: int = 16, max_side: int | None = None
) -> Iterator[Frame]:
    """Yield sampled frames of the video at ``path``.

    ``mode``: ``even`` (n frames evenly spaced), ``all``, ``every`` (every n-th), ``first``
    (the first n, as the Xception paper's 120) or ``keyframes`` (I-frames only, decoded alone).
    ``max_side`` downscales frames whose longer side exceeds it (None keeps full size).
    Raises :class:`InputError` when the file is not a decodable video or has no frames.
    """
    total = count_frames(path) if mode in ("even", "every", "first") else 0
    wanted = _indices(mode, n, total)
    last = max(wanted) if wanted else None
    yielded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if mode == "keyframes":
            stream.codec_context.skip_frame = "NONKEY"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if wanted is not None and index not in wanted:
                    if last is not None and index > last:
                        break
                    continue
                img = frame.to_ndarray(format="rgb24")
                if max_side and max(img.shape[:2]) > max_side:
                    scale = max_side / max(img.shape[:2])
                    w = max(1, round(frame.width * scale))
                    h = max(1, round(frame.height * scale))
                    img = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
                t = float(frame.time) if frame.time is not None else None
                yielded += 1
                yield Frame(index=index, time=t, image=np.ascontiguousarray(img))
        except av.error.FFmpegError as exc:
            if yielded == 0:
                raise InputError(f"video is corrupt and no frame could be decoded ({exc})") from None
            # A damaged tail after good frames: keep what decoded (the record says how many).
    if yielded == 0:
        raise InputError("video has no decodable frames")


def read_frames(
    path: str | Path, mode: SampleMode = "even", n: int = 16, max_side: int | None = None
) -> list[Frame]:
    """List form of :func:`iter_frames`."""
    return list(iter_frames(path, mode=mode, n=n, max_side=max_side))


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4") -> None:
    """Encode (H, W, 3) uint8 frames to a video file (used for demos and tests)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        for img in frames:
            vf = av.VideoFrame.from_ndarray(img[: stream.height, : stream.width], format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
