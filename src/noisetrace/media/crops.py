"""Face crops: the face square with a margin, and the background square furthest from it.

Conventions (boxes are (x0, y0, x1, y1) pixels, x1/y1 exclusive):

- :func:`face_square` enlarges the face box by ``scale`` around its centre and makes it square
  (side = ``scale * max(w, h)``): 1.2 is the Xception/FaceForensics++ paper's 20% margin,
  1.3 DeepfakeBench's. The square is shifted to lie inside the image (shrunk to the image's
  shorter side if it must), so a crop never holds padding that would fake a noise pattern.
- :func:`background_square` is the same-size square, inside the image and not overlapping the
  face square, whose centre lies furthest from the face (Siamese DnCNN paper, Fig. 2): a
  reference of the camera noise of the same frame. In a close-up with no room for one,
  ``crop_faces`` takes the largest corner square clear of the face that is at least the crop
  size (never upsampled).
- ``no_face`` policy for frames without a face: ``skip`` (no crop), ``whole`` (the centred
  square of the whole frame) or ``error`` (raise :class:`~noisetrace.media.faces.NoFaceError`).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from noisetrace.media.faces import Face, NoFaceError

#: frames of a video searched (or followed) ahead of the one being scored: bounds the
#: decoded frames and crops held while the scorer catches up
AHEAD = 16

Box = tuple[int, int, int, int]
NoFacePolicy = Literal["skip", "whole", "error"]
NO_FACE_POLICIES: tuple[str, ...] = ("skip", "whole", "error")

#: Named margins: total enlargement of the face box's longer side.
MARGINS = {"xception": 1.2, "ffpp": 1.2, "deepfakebench": 1.3}


@dataclass(frozen=True)
class Crop:
    """A square crop: (S, S, 3) uint8 RGB ``image``, its ``box`` in the source frame, what it
    is (``face``, ``background`` or ``whole``) and the face it came from (None for whole)."""

    image: np.ndarray
    box: Box
    kind: str
    face: Face | None = None


def parse_margin(margin: float | str) -> float:
    """A margin as a scale factor: 1.3, ``"1.3x"``, ``"20%"`` (= 1.2) or a named preset."""
    if isinstance(margin, int | float):
        scale = float(margin)
    else:
        m = str(margin).strip().lower()
        if m in MARGINS:
            scale = MARGINS[m]
        elif m.endswith("%"):
            scale = 1.0 + float(m[:-1]) / 100.0
        else:
            scale = float(m.rstrip("x"))
    if not 1.0 <= scale <= 4.0:
        raise ValueError(f"face margin {margin!r} gives scale {scale}; use 1.0-4.0 (e.g. 1.3, 20%)")
    return scale


def face_square(
    box: tuple[float, float, float, float], image_hw: tuple[int, int], scale: float = 1.3
) -> Box:
    """Square of side ``scale * max(w, h)`` centred on ``box``, moved inside the image."""
    h, w = image_hw
    x0, y0, x1, y1 = box
    side = int(round(scale * max(x1 - x0, y1 - y0)))
    side = max(1, min(side, h, w))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left = int(round(cx - side / 2.0))
    top = int(round(cy - side / 2.0))
    left = min(max(left, 0), w - side)
    top = min(max(top, 0), h - side)
    return left, top, left + side, top + side


def whole_square(image_hw: tuple[int, int]) -> Box:
    """The centred square of the whole frame (side = the shorter side)."""
    h, w = image_hw
    side = min(h, w)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def background_square(
    face_box: Box, image_hw: tuple[int, int], min_side: int | None = None
) -> Box | None:
    """Same-size square inside the image, not overlapping ``face_box``, furthest from it.

    The distance between centres is convex in the square's position, so its maximum over the
    feasible positions lies at a corner of the image. When no corner square of the face's size
    is clear of it (a close-up: the face fills the frame), ``min_side`` allows a smaller one:
    the largest corner square clear of the face, if its side is at least ``min_side`` (the
    furthest such corner). None when nothing fits.
    """
    h, w = image_hw
    x0, y0, x1, y1 = face_box
    side = x1 - x0
    fcx, fcy = (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def furthest(s: int) -> Box | None:
        best, best_d = None, -1.0
        for left in (0, w - s):
            for top in (0, h - s):
                cand = (left, top, left + s, top + s)
                if _overlap(cand, face_box):
                    continue
                d = (left + s / 2.0 - fcx) ** 2 + (top + s / 2.0 - fcy) ** 2
                if d > best_d:
                    best, best_d = cand, d
        return best

    if side <= min(w, h):
        got = furthest(side)
        if got is not None or not min_side:
            return got
    if not min_side:
        return None
    # A corner square is clear of the face when it ends before the face starts on either axis.
    room = max(max(x0, y0), max(w - x1, y0), max(x0, h - y1), max(w - x1, h - y1))
    s = min(room, side, w, h)
    return furthest(s) if s >= min_side else None


def cut(img: np.ndarray, box: Box, size: int | None = None) -> np.ndarray:
    """``img[box]`` ((S, S, 3) uint8), resized to ``size`` x ``size`` (None keeps pixels:
    resizing smooths the very noise residuals the detectors look at)."""
    x0, y0, x1, y1 = box
    out = img[y0:y1, x0:x1]
    if size and (out.shape[0] != size or out.shape[1] != size):
        resample = Image.BICUBIC if out.shape[0] < size else Image.LANCZOS
        out = np.asarray(Image.fromarray(out).resize((size, size), resample))
    return np.ascontiguousarray(out)


def select_faces(
    faces: list[Face], max_faces: int | None = 1, min_score: float = 0.0, min_size: float = 0
) -> list[Face]:
    """The best ``max_faces`` faces (by score, then size) above ``min_score`` and ``min_size``."""
    keep = [f for f in faces if f.score >= min_score and min(f.width, f.height) >= min_size]
    keep.sort(key=lambda f: (-f.score, -f.width * f.height))
    return keep if max_faces is None else keep[:max_faces]


def crop_faces(
    img: np.ndarray,
    faces: list[Face],
    *,
    scale: float = 1.3,
    size: int | None = 256,
    background: bool = False,
    no_face: NoFacePolicy = "skip",
    max_faces: int | None = 1,
) -> list[Crop]:
    """Crops of ``img`` ((H, W, 3) uint8) for the detected ``faces``.

    One ``face`` crop per selected face, each followed by its ``background`` crop when
    ``background`` is set and one fits. Without faces, ``no_face`` decides: ``skip`` -> [],
    ``whole`` -> one centred square of the frame, ``error`` -> :class:`NoFaceError`.
    """
    if no_face not in NO_FACE_POLICIES:
        raise ValueError(f"no_face must be one of {', '.join(NO_FACE_POLICIES)}, got {no_face!r}")
    hw = img.shape[:2]
    chosen = select_faces(faces, max_faces)
    if not chosen:
        if no_face == "error":
            raise NoFaceError("no face found in the frame (use no_face='skip' or 'whole')")
        if no_face == "skip":
            return []
        box = whole_square(hw)
        return [Crop(cut(img, box, size), box, "whole")]
    out = []
    for f in chosen:
        box = face_square(f.box, hw, scale)
        out.append(Crop(cut(img, box, size), box, "face", f))
        if background:
            # A close-up leaves no face-sized square clear of the face: a smaller one, as
            # long as it is not upsampled to ``size`` (it would lose the noise it carries).
            bg = background_square(box, hw, min_side=size)
            if bg is not None:
                out.append(Crop(cut(img, bg, size), bg, "background", f))
    return out


class FaceCropper:
    """A face model's view policy: finds faces and cuts the crops the model was trained on.

    ``policy`` is the model's ``face`` config: ``backend`` and ``detect`` (detector options),
    ``scale`` (margin), ``size`` (crop side, 0 = native), ``no_face`` (``skip``, ``whole`` or
    ``error``), ``max_faces``, ``background`` (each face crop followed by its background
    square, for face + background models) and ``track``. Each thread keeps its own detector
    (they are not thread-safe); OpenCV and ONNX Runtime release the GIL, so on two cores
    detection runs beside decoding and scoring.

    ``track`` (default 5): the frames of one file are searched in full every ``track``-th
    frame; in between, only around the faces of the frame before (``detect_near``), with a
    full search when that loses them; a frame after a faceless one is taken as faceless
    until the next full search (a face that appears is found within ``track`` frames).
    Sampled video frames are close in time, so this finds the same faces for a fraction of
    the cost (tracking by detection); 0 searches every frame in full.
    """

    def __init__(self, policy: dict[str, Any], threads: int = 2) -> None:
        self.policy, self.threads = dict(policy), threads
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()

    def set_policy(self, policy: dict[str, Any]) -> None:
        """Follow a changed policy; detectors are remade only if their options changed."""
        key = ("backend", "detect")
        if any(policy.get(k) != self.policy.get(k) for k in key):
            self._local = threading.local()
        self.policy = dict(policy)

    def _detector(self) -> Any:
        from noisetrace.media.faces import get_face_detector

        det = getattr(self._local, "faces", None)
        if det is None:
            det = self._local.faces = get_face_detector(
                self.policy.get("backend", "auto"), **self.policy.get("detect", {})
            )
        return det

    def crops(self, img: np.ndarray, no_face: NoFacePolicy | None = None,
              near: list[tuple[float, float, float, float]] | None = None,
              search: bool = True) -> list[Crop]:  # fmt: skip
        """Crops of one (H, W, 3) uint8 frame; ``no_face`` overrides the policy's. ``near``:
        search around these boxes first (tracking), the whole frame if that finds none;
        ``search=False`` (and no ``near``): take the frame as faceless without searching."""
        p = self.policy
        det = self._detector()
        faces = det.detect_near(img, near) if near else []
        if not faces and search:
            faces = det.detect(img)
        out = crop_faces(img, faces, scale=float(p.get("scale", 1.3)),
                         size=int(p.get("size", 128)) or None,
                         background=bool(p.get("background", False)),
                         no_face=no_face or p.get("no_face", "whole"),
                         max_faces=p.get("max_faces", 4))  # fmt: skip
        self._local.last = (img, out)  # for largest_face on the same frame, in this thread
        return out

    def largest_face(self, img: np.ndarray) -> Box | None:
        """The square a crop of the largest face of ``img`` is cut with (this policy's
        search, selection and margin), or None when it has no face. The faces :meth:`crops`
        found in this very array, last in this thread (a scan following a video), are taken
        as they are: searched once, and the same faces the frame was scored on."""
        last = getattr(self._local, "last", None)
        if last is not None and last[0] is img:
            found = [c for c in last[1] if c.kind == "face" and c.face is not None]
            return max(found, key=lambda c: c.face.width * c.face.height).box if found else None
        p = self.policy
        faces = select_faces(self._detector().detect(img), p.get("max_faces", 4))
        if not faces:
            return None
        f = max(faces, key=lambda f: f.width * f.height)
        return face_square(f.box, img.shape[:2], float(p.get("scale", 1.3)))

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:  # several scan threads may share one model: one pool
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="faces")
            return self._pool

    def map(self, frames: Iterable[np.ndarray], no_face: NoFacePolicy | None = None
            ) -> Iterator[list[Crop]]:  # fmt: skip
        """Crops of every frame of one file, in order, as they are found: the caller scores
        a frame's crops while later frames are still being searched."""
        every = int(self.policy.get("track", 5))
        if every <= 0:  # independent frames: searched in parallel, a few ahead at most
            # (a window, not the whole file: each pending search holds a decoded frame)
            pending: deque[Future[list[Crop]]] = deque()
            for img in frames:
                pending.append(self._executor().submit(self.crops, img, no_face))
                if len(pending) > AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
            return
        # Tracking makes each frame depend on the one before: one thread follows the file
        # (and decodes it, pulling ``frames``), the caller scores what it has found so far.
        # Bounded, so a follower faster than the scorer cannot pile up crops without end.
        q: queue.Queue[Any] = queue.Queue(maxsize=AHEAD)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False  # the caller stopped: nobody will read it

        def follow() -> None:
            prev: list[tuple[float, float, float, float]] = []
            try:
                for i, img in enumerate(frames):
                    if stop.is_set():
                        break
                    periodic = i % every == 0
                    crops = self.crops(img, no_face, None if periodic else prev,
                                       search=periodic or bool(prev))  # fmt: skip
                    prev = [c.face.box for c in crops if c.face is not None and c.kind == "face"]
                    if not put(crops):
                        return
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                put(e)
            put(_END)

        self._executor().submit(follow)
        try:
            while (item := q.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # the caller stopped early: the follower ends after its frame


_END = object()
