"""Face detection behind one small interface, with several optional backends.

``get_face_detector(backend)`` returns a :class:`FaceDetector` whose ``detect(img)`` takes an
(H, W, 3) uint8 RGB array and returns a list of :class:`Face` (pixel box, score, landmarks),
best first. An image without a face gives an empty list, never an exception; the caller
decides what to do (see :mod:`noisetrace.media.crops`).

Backends (nothing is downloaded at run time; a missing one says how to get it):

- ``mediapipe``: MediaPipe BlazeFace full-range, models bundled in ``mediapipe==0.10.14``.
  It pins ``protobuf<5``, which conflicts with ``onnx>=1.17`` (needs protobuf 6): install it
  in an environment without the ``onnx`` extra.
- ``opencv``: OpenCV's bundled Haar cascade (``opencv-python-headless``), or YuNet when
  ``model=`` names a ``face_detection_yunet_*.onnx`` file you downloaded yourself.
- ``mtcnn``: MTCNN from ``facenet-pytorch`` (weights ship inside the package).
- ``dlib``: dlib's HOG frontal face detector (built in; ``pip install dlib-bin``).
- ``skimage``: scikit-image's bundled LBP frontal-face cascade; slow but always there.
- ``auto`` (default): the first installed of mediapipe, opencv, skimage.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from noisetrace.errors import NoisetraceError

BACKENDS: tuple[str, ...] = ("mediapipe", "opencv", "mtcnn", "dlib", "skimage")
AUTO_ORDER: tuple[str, ...] = ("mediapipe", "opencv", "skimage")

_INSTALL = {
    "mediapipe": "pip install mediapipe==0.10.14  (or: pip install 'noisetrace[mediapipe]'; it "
    "needs protobuf<5, so use an environment without the onnx extra)",
    "opencv": "pip install 'opencv-python-headless<5'  (or: pip install 'noisetrace[faces]')",
    "mtcnn": "pip install facenet-pytorch --no-deps  (its MTCNN weights ship in the package; "
    "--no-deps keeps your torch)",
    "dlib": "pip install dlib-bin  (prebuilt dlib wheels)",
    "skimage": "pip install scikit-image",
}
_MODULE = {"mediapipe": "mediapipe", "opencv": "cv2", "mtcnn": "facenet_pytorch",
           "dlib": "dlib", "skimage": "skimage"}  # fmt: skip


class FaceBackendError(NoisetraceError):
    """A face detection backend is unknown, not installed or misconfigured."""


class NoFaceError(NoisetraceError):
    """No face was found where the caller required one (``no_face="error"``)."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box``: (x0, y0, x1, y1) in pixels of the image passed to ``detect`` (x1, y1 exclusive).
    ``score``: the backend's confidence (probability for mediapipe/mtcnn/yunet, a detector
    margin for Haar/HOG/LBP: compare within one backend only).
    ``landmarks``: (K, 2) float32 pixel (x, y) points, or None when the backend gives none.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"detect() expects an (H, W, 3) uint8 RGB array, got {getattr(img, 'shape', img)}"
        )
    if img.dtype != np.uint8:
        raise ValueError(f"detect() expects uint8 pixels, got {img.dtype}")
    return np.ascontiguousarray(img)


def _clip_box(box: tuple[float, float, float, float], w: int, h: int) -> tuple[float, ...]:
    x0, y0, x1, y1 = box
    return (
        max(0.0, float(x0)),
        max(0.0, float(y0)),
        min(float(w), float(x1)),
        min(float(h), float(y1)),
    )


class FaceDetector(ABC):
    """Finds faces in RGB images. Instances are not thread-safe: use one per thread."""

    name: str = ""

    def __init__(self, min_score: float = 0.0, min_size: int = 0, max_side: int | None = 640):
        self.min_score = float(min_score)
        self.min_size = int(min_size)
        # Detect on a downscaled copy of large frames (faces in 1080p video are big enough);
        # boxes are mapped back to the full image.
        self.max_side = max_side

    @abstractmethod
    def _detect(self, img: np.ndarray) -> list[Face]:
        """Faces in ``img`` ((H, W, 3) uint8 RGB, contiguous), in its pixel coordinates."""

    def detect(self, img: np.ndarray) -> list[Face]:
        """Faces in ``img`` ((H, W, 3) uint8 RGB), best score first; [] when there is none."""
        img = _check_image(img)
        h, w = img.shape[:2]
        scale = 1.0
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
        faces = self._detect(_resized(img, scale))
        return sorted(self._mapped(faces, scale, (0, 0), (w, h)), key=lambda f: -f.score)

    def _mapped(self, faces: list[Face], scale: float, offset: tuple[int, int],
                wh: tuple[int, int]) -> list[Face]:  # fmt: skip
        """Faces found on a copy scaled by ``scale`` whose origin is ``offset`` in the
        image, in the image's pixels, clipped to it; those below min_score/min_size dropped."""
        out = []
        ox, oy = offset
        for f in faces:
            b = f.box
            box = _clip_box((b[0] / scale + ox, b[1] / scale + oy, b[2] / scale + ox,
                             b[3] / scale + oy), *wh)  # fmt: skip
            lm = None
            if f.landmarks is not None:
                lm = (f.landmarks / scale + np.float32([ox, oy])).astype(np.float32)
            face = Face(box=box, score=float(f.score), landmarks=lm)  # type: ignore[arg-type]
            if face.width <= 1 or face.height <= 1:
                continue
            if face.score < self.min_score or min(face.width, face.height) < self.min_size:
                continue
            out.append(face)
        return out

    def detect_near(
        self, img: np.ndarray, boxes: list[tuple[float, float, float, float]], grow: float = 2.0
    ) -> list[Face]:
        """Faces in the squares around ``boxes`` (each ``grow`` times the box's longer side,
        about its centre): following faces from one video frame to the next. Each window is
        searched on a copy scaled so its face is about NEAR_SIDE px (a few hundred times less
        work than a full search of the frame). A face found there must be at least half the
        size of the box it continues, so a window cannot turn up a small false face; faces
        found twice (windows overlap) are kept once. Best score first; [] when none."""
        img = _check_image(img)
        h, w = img.shape[:2]
        out: list[Face] = []
        for x0, y0, x1, y1 in boxes:
            side = grow * max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            ax, ay = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
            bx, by = min(w, int(cx + side / 2) + 1), min(h, int(cy + side / 2) + 1)
            if bx - ax < 8 or by - ay < 8:
                continue
            scale = min(1.0, NEAR_SIDE / max(x1 - x0, y1 - y0))
            roi = _resized(np.ascontiguousarray(img[ay:by, ax:bx]), scale)
            least = 0.5 * min(x1 - x0, y1 - y0)
            for g in self._mapped(self._detect(roi), scale, (ax, ay), (w, h)):
                if min(g.width, g.height) >= least and all(iou(g.box, o.box) < 0.5 for o in out):
                    out.append(g)
        return sorted(out, key=lambda f: -f.score)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_score={self.min_score}, min_size={self.min_size})"


#: Side (px) a followed face is searched at (``detect_near``): twice the Haar/LBP template,
#: enough for every backend to find it again and to place its box within a few pixels.
NEAR_SIDE = 64


def _resized(img: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return img
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class MediaPipeDetector(FaceDetector):
    """MediaPipe BlazeFace; ``model_selection`` 1 (full range, faces up to ~5 m) or 0 (short)."""

    name = "mediapipe"

    def __init__(self, model_selection: int = 1, confidence: float = 0.5, **kw) -> None:
        super().__init__(**kw)
        import mediapipe as mp

        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=int(model_selection), min_detection_confidence=float(confidence)
        )

    def _detect(self, img: np.ndarray) -> list[Face]:
        h, w = img.shape[:2]
        res = self._fd.process(img)
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
            kp = d.location_data.relative_keypoints
            lm = np.array([[p.x * w, p.y * h] for p in kp], dtype=np.float32) if kp else None
            out.append(Face(box, float(d.score[0]) if d.score else 0.0, lm))
        return out


class OpenCVHaarDetector(FaceDetector):
    """OpenCV Haar cascade (the bundled ``haarcascade_frontalface_default.xml`` by default)."""

    name = "opencv"

    def __init__(
        self,
        cascade: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        **kw,
    ) -> None:
        super().__init__(**kw)
        cv2 = import_cv2()

        path = (
            Path(cascade)
            if cascade
            else Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        )
        if not path.is_file():
            raise FaceBackendError(
                f"Haar cascade {path} not found; pass cascade= a cascade XML file "
                "(opencv-python-headless<5 ships them in cv2.data.haarcascades)"
            )
        self._cv2 = cv2
        self._clf = cv2.CascadeClassifier(str(path))
        if self._clf.empty():
            raise FaceBackendError(f"OpenCV could not load the cascade {path}")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def _detect(self, img: np.ndarray) -> list[Face]:
        cv2 = self._cv2
        grey = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
        # Faces under 1/12 of the frame are too small to carry a usable noise residual.
        min_side = max(24, min(img.shape[:2]) // 12)
        rects, _, weights = self._clf.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side), outputRejectLevels=True,
        )  # fmt: skip
        return [
            Face((float(x), float(y), float(x + w), float(y + h)), float(s))
            for (x, y, w, h), s in zip(
                np.asarray(rects).reshape(-1, 4), np.ravel(weights), strict=True
            )
        ]


class OpenCVYuNetDetector(FaceDetector):
    """OpenCV YuNet (``cv2.FaceDetectorYN``) from a local ONNX model file; 5 landmarks."""

    name = "opencv-yunet"

    def __init__(self, model: str | Path, confidence: float = 0.6, **kw) -> None:
        super().__init__(**kw)
        cv2 = import_cv2()

        if not Path(model).is_file():
            raise FaceBackendError(
                f"YuNet model {model} not found. Download face_detection_yunet_2023mar.onnx "
                "from github.com/opencv/opencv_zoo (models/face_detection_yunet) and pass its path"
            )
        self._cv2 = cv2
        self._net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), float(confidence))

    def _detect(self, img: np.ndarray) -> list[Face]:
        h, w = img.shape[:2]
        self._net.setInputSize((w, h))
        _, dets = self._net.detect(self._cv2.cvtColor(img, self._cv2.COLOR_RGB2BGR))
        out = []
        for d in [] if dets is None else dets:
            x, y, bw, bh = (float(v) for v in d[:4])
            out.append(
                Face((x, y, x + bw, y + bh), float(d[14]), d[4:14].reshape(5, 2).astype(np.float32))
            )
        return out


class MTCNNDetector(FaceDetector):
    """MTCNN from facenet-pytorch (its weights ship inside the package); 5 landmarks."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu", **kw) -> None:
        super().__init__(**kw)
        from facenet_pytorch import MTCNN

        self._net = MTCNN(keep_all=True, device=device, post_process=False)

    def _detect(self, img: np.ndarray) -> list[Face]:
        boxes, probs, points = self._net.detect(img, landmarks=True)
        if boxes is None:
            return []
        return [
            Face(tuple(float(v) for v in b), float(p), np.asarray(lm, dtype=np.float32))
            for b, p, lm in zip(boxes, probs, points, strict=True)
        ]


class DlibHOGDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal face detector (built into dlib, no model file)."""

    name = "dlib"

    def __init__(self, upsample: int = 0, threshold: float = 0.0, **kw) -> None:
        super().__init__(**kw)
        import dlib

        self._det = dlib.get_frontal_face_detector()
        self.upsample, self.threshold = int(upsample), float(threshold)

    def _detect(self, img: np.ndarray) -> list[Face]:
        rects, scores, _ = self._det.run(img, self.upsample, self.threshold)
        return [
            Face(
                (float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)),
                float(s),
            )
            for r, s in zip(rects, scores, strict=True)
        ]


class SkimageLBPDetector(FaceDetector):
    """scikit-image's multi-block LBP cascade with its bundled frontal-face model."""

    name = "skimage"

    def __init__(self, scale_factor: float = 1.2, step_ratio: float = 1.0, **kw) -> None:
        kw.setdefault("max_side", 480)  # slow pure-cascade search: work on a small copy
        super().__init__(**kw)
        from skimage import data
        from skimage.feature import Cascade

        self._clf = Cascade(data.lbp_frontal_face_cascade_filename())
        self.scale_factor, self.step_ratio = scale_factor, step_ratio

    def _detect(self, img: np.ndarray) -> list[Face]:
        min_side = max(24, min(img.shape[:2]) // 15)
        dets = self._clf.detect_multi_scale(
            img=img, scale_factor=self.scale_factor, step_ratio=self.step_ratio,
            min_size=(min_side, min_side), max_size=img.shape[:2], min_neighbor_number=4,
        )  # fmt: skip
        # The cascade gives no confidence; the box size stands in (largest face first).
        area = float(img.shape[0] * img.shape[1])
        out = []
        for d in dets:
            x0, y0, bw, bh = float(d["c"]), float(d["r"]), float(d["width"]), float(d["height"])
            out.append(Face((x0, y0, x0 + bw, y0 + bh), bw * bh / area))
        return out


#: cv2's bootstrap swaps its own module in sys.modules while importing, which defeats the
#: per-module import lock: a second scan thread could see a half-imported cv2 (no cv2.data).
_IMPORT_LOCK = threading.Lock()


def import_cv2():  # noqa: ANN202 - the cv2 module
    with _IMPORT_LOCK:
        import cv2

        return cv2


def backend_available(backend: str) -> bool:
    """True when the Python package behind ``backend`` is installed (without importing it)."""
    mod = _MODULE.get(backend)
    if mod is None:
        return False
    with _IMPORT_LOCK:  # not while cv2 is half imported (its __spec__ is None then)
        if sys.modules.get(mod) is not None:
            return True
        try:
            return importlib.util.find_spec(mod) is not None
        except ValueError:  # in sys.modules without a spec: imported by other means
            return True


def available_backends() -> list[str]:
    """Installed backends, in :data:`BACKENDS` order."""
    return [b for b in BACKENDS if backend_available(b)]


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``auto`` stands for here (others are returned unchanged)."""
    if backend != "auto":
        return backend
    for b in AUTO_ORDER:
        if backend_available(b):
            return b
    raise FaceBackendError(
        "no face detection backend is installed. Install one of:\n  "
        + "\n  ".join(_INSTALL[b] for b in AUTO_ORDER)
    )


def get_face_detector(backend: str = "auto", **options) -> FaceDetector:
    """A face detector for ``backend`` (``auto``, mediapipe, opencv, mtcnn, dlib, skimage).

    ``options`` go to the backend (``min_score``, ``min_size``, ``max_side`` for all; e.g.
    ``model=`` a YuNet ONNX file for opencv, ``cascade=`` another Haar XML). Raises
    :class:`FaceBackendError` saying how to install a backend that is missing.
    """
    backend = resolve_backend(str(backend).lower())
    if backend not in BACKENDS:
        raise FaceBackendError(
            f"unknown face detection backend {backend!r}: use auto, {', '.join(BACKENDS)}"
        )
    if not backend_available(backend):
        raise FaceBackendError(
            f"face detection backend {backend!r} is not installed. Install it with:\n  "
            f"{_INSTALL[backend]}\nor pick another "
            f"(installed: {', '.join(available_backends()) or 'none'})"
        )
    try:
        if backend == "mediapipe":
            return MediaPipeDetector(**options)
        if backend == "opencv":
            if options.get("model"):
                return OpenCVYuNetDetector(**options)
            options.pop("model", None)
            return OpenCVHaarDetector(**options)
        if backend == "mtcnn":
            return MTCNNDetector(**options)
        if backend == "dlib":
            return DlibHOGDetector(**options)
        return SkimageLBPDetector(**options)
    except ImportError as exc:  # installed but broken (e.g. a binary built for another numpy)
        raise FaceBackendError(
            f"face detection backend {backend!r} is installed but cannot be imported ({exc}). "
            f"Reinstall it: {_INSTALL[backend]}"
        ) from None
    except TypeError as exc:
        raise FaceBackendError(f"bad option for face backend {backend!r}: {exc}") from None
