"""Video decoding: frames sampled by index, with their timestamps.

Containers (mp4, mkv, avi, webm, mov) are decoded with PyAV; animated GIF and WebP are videos
too and are decoded with Pillow, frame by frame, with times from their frame durations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image, ImageSequence

from noisetrace.errors import InputError
from noisetrace.media.formats import sniff

SampleMode = Literal["even", "all", "every", "first", "keyframes"]
SAMPLE_MODES: tuple[str, ...] = ("even", "all", "every", "first", "keyframes")


@dataclass
class SampleReport:
    """What sampling found, filled in by :func:`iter_frames` when passed as ``report``: how
    many frames were asked for, what the header claims, how many the file really holds and
    were decoded, and in ``note`` why fewer than asked were scored (None when all were)."""

    requested: int = 0
    claimed: int | None = None  # the container header's frame count: a claim, never trusted
    available: int | None = None  # frames found in the file (packets, counted without decoding)
    decoded: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in display order, time in seconds, (H, W, 3) uint8 RGB.

    ``key`` is True for intra-coded frames (I-frames; every frame of a GIF/WebP).
    """

    index: int
    time: float | None
    image: np.ndarray
    key: bool = False
    # ``context`` sampling: the luma (H, W) uint8 of the run of consecutive frames this one
    # was read with (see :func:`iter_frames`); None otherwise or when a frame of it would not
    # decode.
    run: tuple[np.ndarray, ...] | None = None
    # Internal to context sampling: the frame's luma, when it is also wanted in colour.
    luma: np.ndarray | None = field(default=None, repr=False)


# PyAV < 19 decodes container metadata strictly unless told otherwise (a badly encoded tag
# fails the open); 19 dropped the option and always decodes with surrogateescape.
_OPEN_OPTIONS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}


def _open(path: str | Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", **_OPEN_OPTIONS)
    except FileNotFoundError:
        raise InputError("file not found (it may have been moved or deleted)") from None
    except PermissionError:
        raise InputError("permission denied: the file cannot be read") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        # FFmpeg's message repeats the path; the record already has it.
        why = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"video cannot be opened; it is corrupt or truncated ({why})") from None


def is_animated_image(path: str | Path) -> bool:
    """True for a GIF or WebP file (by content) with more than one frame."""
    try:
        kind, fmt = sniff(path)
    except InputError:
        return False
    if kind != "image" or fmt not in ("gif", "webp"):
        return False
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1)) > 1
    except (OSError, ValueError, SyntaxError):
        return False


def _is_pil_sequence(path: str | Path) -> bool:
    """GIF/WebP files (animated or not) go through Pillow, everything else through PyAV."""
    try:
        kind, fmt = sniff(path)
    except InputError:
        return False
    return kind == "image" and fmt in ("gif", "webp")


def count_frames(path: str | Path) -> int:
    """Number of video frames the file really holds (see :func:`_probe`)."""
    return _probe(path)[1]


def _probe(path: str | Path) -> tuple[int | None, int]:
    """(frames the header claims, frames in the file).

    The header's count is only a claim: an 8-frame AVI can say 2**31 - 1, and sampling
    evenly over that would score frame 0 alone. So frames are counted from the packets
    themselves (demuxing reads the file once without decoding, far cheaper than the decoding
    that follows). Animated GIF/WebP are counted by Pillow, which walks every frame.
    """
    if _is_pil_sequence(path):
        try:
            with Image.open(path) as im:
                n = int(getattr(im, "n_frames", 1))
                return n, n
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"animated image is corrupt ({exc})") from None
    with _open(path) as container:
        if not container.streams.video:
            raise InputError("file has no video stream (audio only, or not a video)")
        stream = container.streams.video[0]
        claimed = int(stream.frames) if stream.frames and stream.frames > 0 else None
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
        except av.error.FFmpegError:
            pass  # a truncated tail: count what is there
        return claimed, n


def _fewer_note(report: SampleReport, wanted: int) -> str | None:
    """Why fewer frames than asked were scored, for ``report.note``."""
    parts = []
    if report.available is not None and report.available < report.requested:
        parts.append(f"the video holds only {report.available} frame(s)")
    if report.decoded < wanted:
        parts.append(f"{wanted - report.decoded} sampled frame(s) could not be decoded")
    if parts and report.claimed is not None and report.claimed != report.available:
        parts.append(f"its header claims {report.claimed} frames")
    return "; ".join(parts) or None


def _indices(mode: SampleMode, n: int, total: int) -> set[int] | None:
    """Frame indices to keep when the total is needed (``even``), or None for 'decide per
    frame' (``all``, ``keyframes``, ``every``, ``first``: see :func:`_keep`)."""
    if mode not in SAMPLE_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}: use one of {', '.join(SAMPLE_MODES)}")
    if mode != "even" or total <= 0:
        return None
    k = min(max(1, n), total)
    return {int(round(i)) for i in np.linspace(0, total - 1, k)}


def _keep(mode: SampleMode, n: int, index: int, wanted: set[int] | None) -> bool:
    if wanted is not None:
        return index in wanted
    if mode == "every":
        return index % max(1, n) == 0
    if mode == "first":
        return index < n
    return True  # all, keyframes (the decoder already skips non-key frames), even w/o total


def _resize(img: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side or max(img.shape[:2]) <= max_side:
        return img
    scale = max_side / max(img.shape[:2])
    w = max(1, round(img.shape[1] * scale))
    h = max(1, round(img.shape[0] * scale))
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def _iter_pil(
    path: str | Path, mode: SampleMode, n: int, max_side: int | None, report: SampleReport,
    indices: dict[int, str] | None = None,
) -> Iterator[Frame]:
    """Frames of an animated GIF/WebP; composited frames (what a viewer shows), RGB (or luma,
    ``indices`` as for :func:`_iter_av`)."""
    from noisetrace.media.image import to_rgb

    try:
        with Image.open(path) as im:  # the canvas every frame is composited on, before any
            _check_frame_size(*im.size)  # frame is walked (counting them decodes them)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"animated image is corrupt ({exc})") from None
    report.claimed, total = _probe(path)
    report.available = total
    wanted = set(indices) if indices is not None else _indices(mode, n, total)
    last = max(wanted) if wanted else None
    yielded = 0
    t_ms = 0.0
    try:
        with Image.open(path) as im:
            for index, fr in enumerate(ImageSequence.Iterator(im)):
                fr.load()  # WebP fills info["duration"/"timestamp"] only once a frame is loaded
                duration = float(fr.info.get("duration", 0) or 0)
                if "timestamp" in fr.info:
                    t_ms = float(fr.info["timestamp"])
                if _keep(mode, n, index, wanted):
                    img = _resize(np.asarray(to_rgb(fr.convert("RGBA")), np.uint8), max_side)
                    how = indices.get(index, "rgb") if indices is not None else "rgb"
                    luma = (np.asarray(Image.fromarray(img).convert("L"))
                            if how in ("luma", "both") else None)  # fmt: skip
                    yielded += 1
                    yield Frame(index, t_ms / 1000.0, luma if how == "luma" else img, key=True,
                                luma=luma if how == "both" else None)  # fmt: skip
                elif (mode == "first" and index >= n) or (last is not None and index > last):
                    break
                t_ms += duration
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        if yielded == 0:
            raise InputError(f"animated image is corrupt and no frame decoded ({exc})") from None
    if yielded == 0:
        raise InputError("animated image has no decodable frames")


def _check_frame_size(w: int, h: int) -> None:
    """Refuse, before decoding, frames whose declared size is over the budget."""
    from noisetrace.media.image import over_budget, pixel_budget

    limit = pixel_budget("frame")
    if w * h > limit:
        raise over_budget(w, h, limit, what="video frame")


def _frame_index(frame: av.VideoFrame, stream: av.video.stream.VideoStream, fallback: int) -> int:
    """Display index of a frame from its timestamp (decoding skipped frames in keyframe mode,
    so counting decoded frames would be wrong)."""
    rate = stream.average_rate or stream.guessed_rate
    if frame.pts is None or not rate or stream.time_base is None:
        return fallback
    start = stream.start_time or 0
    t = Fraction(frame.pts - start) * stream.time_base
    return max(0, int(round(float(t * Fraction(rate)))))


def iter_frames(
    path: str | Path,
    mode: SampleMode = "even",
    n: int = 16,
    max_side: int | None = None,
    report: SampleReport | None = None,
    context: int = 0,
) -> Iterator[Frame]:
    """Yield sampled frames of the video at ``path``.

    ``mode``: ``even`` (n frames evenly spaced), ``all``, ``every`` (every n-th), ``first``
    (the first n, as the Xception paper's 120) or ``keyframes`` (I-frames only, decoded alone,
    as the Siamese DnCNN paper extracts them). Animated GIF/WebP are decoded with Pillow.
    ``max_side`` downscales frames whose longer side exceeds it (None keeps full size).
    Each frame keeps its display index and time. Raises :class:`InputError` when the file is
    not a decodable video or has no frames. ``even`` samples from the frames the file really
    holds, whatever its header claims; ``report`` (a :class:`SampleReport`) receives how many
    frames were asked for, found and decoded, and why fewer were scored.

    ``context`` (``even`` only): each sampled frame also carries ``run``, the luma of the
    ``context`` consecutive frames starting at it (ending at the last frame near the end of
    the video; none when the video is shorter), decoded in the same pass, for what compares
    frames with their neighbours (:mod:`noisetrace.residuals.temporal`). Luma, the decoder's
    own plane (Y of YUV, BT.601 weights for GIF/WebP), costs a copy where colour costs a
    conversion. The sampled frames are the same with or without it.
    """
    if mode not in SAMPLE_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}: use one of {', '.join(SAMPLE_MODES)}")
    if context > 1 and mode != "even":
        raise ValueError(f"context needs even sampling, not {mode!r}")
    report = report if report is not None else SampleReport()
    report.requested, report.decoded = n, 0
    inner_fn = _iter_pil if _is_pil_sequence(path) else _iter_av
    if context > 1:
        inner = _with_runs(path, inner_fn, n, max_side, report, context)
    else:
        inner = inner_fn(path, mode, n, max_side, report)
    for frame in inner:
        report.decoded += 1
        yield frame
    if mode == "even" and report.available is not None:
        report.note = _fewer_note(report, min(n, report.available))


def _with_runs(
    path: str | Path, inner_fn: Callable[..., Iterator[Frame]], n: int, max_side: int | None,
    report: SampleReport, length: int,
) -> Iterator[Frame]:
    """Even sampling where each sampled frame carries its run of ``length`` frames (see
    :func:`iter_frames`); at most the frames of the runs not yet complete are held."""
    report.claimed, total = _probe(path)
    report.available = total
    sampled = sorted(_indices("even", n, total) or ())
    runs = {} if total < length else {
        i: range(min(i, total - length), min(i, total - length) + length) for i in sampled
    }  # fmt: skip
    in_runs = set().union(*runs.values())
    need = {i: "rgb" for i in sampled} | {i: "luma" for i in in_runs - set(sampled)}
    need |= {i: "both" for i in in_runs & set(sampled)}
    held: dict[int, Frame] = {}
    todo = deque(sampled)

    def ready(upto: int | None) -> Iterator[Frame]:
        while todo and (upto is None or runs.get(todo[0], range(todo[0], todo[0] + 1))[-1] <= upto):
            i = todo.popleft()
            if i in held and held[i].image.ndim == 3:  # else it would not decode
                r = runs.get(i)
                run = (tuple(_luma_of(held[k]) for k in r)
                       if r and all(k in held for k in r) else None)  # fmt: skip
                yield replace(held[i], run=run, luma=None)
            keep = set(todo).union(*(runs.get(q, ()) for q in todo))
            for k in [k for k in held if k not in keep]:
                del held[k]

    for frame in inner_fn(path, "even", n, max_side, report, indices=need):
        held[frame.index] = frame
        yield from ready(frame.index)
    yield from ready(None)


#: pixel formats whose first plane is the luma, one byte a pixel
_Y_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p",
            "yuv440p", "nv12", "nv21", "gray")  # fmt: skip


def _av_luma(frame: av.VideoFrame, size: dict[str, int]) -> np.ndarray:
    """(H, W) uint8 luma of a decoded frame: its own Y plane, copied (a conversion costs
    several times the decoding), or converted when it has none or must be resized. The Y
    plane keeps the file's range (16-235 for most video): the temporal residuals compare
    ratios of changes, which a range does not move."""
    if not size and frame.format.name in _Y_FIRST:
        pl = frame.planes[0]
        rows = np.frombuffer(pl, np.uint8).reshape(pl.height, pl.line_size)
        return rows[:, : pl.width].copy()
    return frame.reformat(format="gray", **size).to_ndarray()


def _luma_of(frame: Frame) -> np.ndarray:
    """A decoded frame's luma: its image when only luma was decoded, else its luma field."""
    return frame.image if frame.image.ndim == 2 else frame.luma


def _iter_av(
    path: str | Path, mode: SampleMode, n: int, max_side: int | None, report: SampleReport,
    indices: dict[int, str] | None = None,
) -> Iterator[Frame]:
    """Frames of a container (mp4, mkv, avi, webm, mov) decoded with PyAV. ``indices``: just
    these display indices, each as ``rgb``, ``luma`` (the image is the (H, W) luma plane) or
    ``both`` (RGB, and the luma in ``Frame.luma``); the frames between are decoded, never
    converted."""
    total = 0
    if mode == "even" and indices is None:
        report.claimed, total = _probe(path)
        report.available = total
    wanted = set(indices) if indices is not None else _indices(mode, n, total)
    last = max(wanted) if wanted else (n - 1 if mode == "first" else None)
    yielded = 0
    with _open(path) as container:
        if not container.streams.video:
            raise InputError("file has no video stream (audio only, or not a video)")
        stream = container.streams.video[0]
        ctx = stream.codec_context  # None when no decoder fits: decoding reports that
        _check_frame_size(getattr(ctx, "width", 0) or 0, getattr(ctx, "height", 0) or 0)
        stream.thread_type = "AUTO"
        if mode == "keyframes" and ctx is not None:
            ctx.skip_frame = "NONKEY"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                idx = _frame_index(frame, stream, index) if mode == "keyframes" else index
                if not _keep(mode, n, idx, wanted):
                    if last is not None and idx > last:
                        break
                    continue
                _check_frame_size(frame.width, frame.height)  # the size may change mid-stream
                how = indices.get(idx, "rgb") if indices is not None else "rgb"
                size: dict[str, int] = {}
                if max_side and max(frame.width, frame.height) > max_side:
                    scale = max_side / max(frame.width, frame.height)
                    size = {"width": max(1, round(frame.width * scale)),
                            "height": max(1, round(frame.height * scale))}  # fmt: skip
                luma = _av_luma(frame, size) if how in ("luma", "both") else None
                img = luma if how == "luma" else (
                    frame.reformat(format="rgb24", **size).to_ndarray() if size
                    else frame.to_ndarray(format="rgb24"))  # fmt: skip
                t = float(frame.time) if frame.time is not None else None
                yielded += 1
                key = bool(frame.key_frame) or frame.pict_type == av.video.frame.PictureType.I
                yield Frame(index=idx, time=t, image=np.ascontiguousarray(img), key=key,
                            luma=None if how != "both" else np.ascontiguousarray(luma))
                if last is not None and idx >= last:
                    break
        except av.error.FFmpegError as exc:
            if yielded == 0:
                raise InputError(
                    "video is corrupt and no frame could be decoded "
                    f"({getattr(exc, 'strerror', None) or exc})"
                ) from None
            # A damaged tail after good frames: keep what decoded (the record says how many).
    if yielded == 0:
        raise InputError("video has no decodable frames (zero frames, or all corrupt)")


def read_frames(
    path: str | Path,
    mode: SampleMode = "even",
    n: int = 16,
    max_side: int | None = None,
    report: SampleReport | None = None,
) -> list[Frame]:
    """List form of :func:`iter_frames`."""
    return list(iter_frames(path, mode=mode, n=n, max_side=max_side, report=report))


def write_video(
    path: str | Path,
    frames: list[np.ndarray],
    fps: int = 10,
    codec: str = "mpeg4",
    gop: int | None = None,
    bit_rate: int | None = None,
) -> None:
    """Encode (H, W, 3) uint8 frames to a video file (used for demos and tests).

    ``gop`` sets the keyframe interval (one I-frame every ``gop`` frames) when given;
    ``bit_rate`` (bits/s) the encoder's target, e.g. high to keep the camera noise.
    """
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = int(gop)
        if bit_rate is not None:
            stream.bit_rate = int(bit_rate)
        for img in frames:
            vf = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(img[: stream.height, : stream.width]), format="rgb24"
            )
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
