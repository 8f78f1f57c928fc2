"""A trained detector: weights + config, scoring arrays and files with calibrated probabilities."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisetrace.checkpoint import (  # re-exported: the config travels with the detector
    DetectorConfig,
    load_weights,
    onnx_cache_dir,
    onnx_complete,
    read_config,
    save_checkpoint,
    state_sha256,
)
from noisetrace.errors import InputError, ModelError
from noisetrace.io import sha256_file
from noisetrace.media.crops import FaceCropper
from noisetrace.media.formats import sniff
from noisetrace.media.image import load_image
from noisetrace.media.video import Frame, SampleReport, iter_frames
from noisetrace.runtime import OnnxRuntime, Preprocess, TorchRuntime, export_onnx, onnx_available

__all__ = ["Detector", "DetectorConfig", "ScanResult", "read_config", "select_device",
           "state_sha256"]  # fmt: skip

#: a video whose jitter index fewer than this share of the calibration's real videos reach
#: is ``unusual`` (Detector.jitter_evidence)
UNUSUAL = 0.05
MIN_SIDE = 16  # smaller images are edge-padded to this before scoring
FACE_THREADS = 2  # face detection threads per model (the CPU this is built for has two)
FACE_CHUNK = 8  # face crops scored per call while later frames are searched
FRAME_BATCH = 8  # video frames scored per forward pass (and held in memory at once)
_POOL_LOCK = threading.Lock()


def select_device(device: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class ScanResult:
    """One record per scanned input; the same fields in the CLI, the API and the service."""

    path: str
    kind: str | None = None  # "image" | "video" | None when the file could not be identified
    score: float | None = None  # calibrated probability that the input is fake, 0..1
    verdict: str = "error"  # "fake" | "real" | "error"
    threshold: float = 0.5
    model: str = ""
    frames: int | None = None  # frames scored, videos only
    # Videos: why fewer frames than asked were scored (the file holds fewer than its header
    # claims, some would not decode), None when all were (media.video.SampleReport.note).
    frames_note: str | None = None
    seconds: float = 0.0
    error: str | None = None
    width: int | None = None
    height: int | None = None
    faces: int | None = None  # faces scored, face models only
    frame_scores: list[float | None] | None = field(default=None, repr=False)
    # What the file's metadata claims (C2PA, generator text, EXIF, XMP), images only; see
    # noisetrace.media.provenance. A separate line of evidence: never read by the score.
    provenance: dict[str, Any] | None = field(default=None, repr=False)
    # Whole image + faces (noisetrace.combined): the face model's judgement beside the
    # whole-image one, and every face it judged ({"frame", "box", "kind", "score"}).
    face_score: float | None = None
    face_threshold: float | None = None
    face_boxes: list[dict[str, Any]] | None = field(default=None, repr=False)
    # Videos scanned with a face model that measures it: how the face's change from frame to
    # frame comes and goes against its surroundings' (Detector.jitter_evidence); in the
    # video's score only where the model learned to combine them (Detector.temporal_score).
    temporal: dict[str, Any] | None = field(default=None, repr=False)

    FIELDS = (
        "path", "kind", "score", "verdict", "threshold", "model", "frames", "frames_note",
        "seconds", "error",
        "width", "height", "faces", "face_score", "face_threshold", "provenance", "face_boxes",
        "temporal",
    )  # fmt: skip
    #: Fields that are nested objects, not columns (CSV writes a one-line summary).
    NESTED = ("provenance", "face_boxes", "temporal")

    def to_record(self, frame_scores: bool = False) -> dict[str, Any]:
        rec = {k: getattr(self, k) for k in self.FIELDS}
        if frame_scores:
            rec["frame_scores"] = self.frame_scores
        return rec


class Detector:
    """Scores images (arrays or files) and videos with one model.

    ``score(img)`` returns the calibrated probability of *fake* for an (H, W, 3) uint8 RGB
    array; ``scan(path)`` returns a :class:`ScanResult` and never raises for a bad file.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: DetectorConfig,
        device: str | None = "auto",
        backend: str = "torch",
        onnx_dir: str | Path | None = None,
    ) -> None:
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.cfg = model.pretrained_cfg
        self._pre = Preprocess(self.cfg.get("normalize", "unit")).to(self.device)
        self.runtime: TorchRuntime | OnnxRuntime = TorchRuntime(self.model, self.device)
        self.onnx_dir: Path | None = None  # where the ONNX graphs in use live
        if backend == "onnx" or (backend == "auto" and self.device.type == "cpu"):
            self._use_onnx(onnx_dir, required=backend == "onnx")

    def _use_onnx(self, onnx_dir: str | Path | None, required: bool) -> None:
        """Switch to ONNX Runtime: graphs from ``onnx_dir`` or exported once to a cache."""
        if not onnx_available():
            if required:
                raise ModelError("backend 'onnx' needs onnxruntime: pip install 'noisetrace[onnx]'")
            return
        try:
            if onnx_dir is None:
                # Keyed on the weights' content: two unsaved models never share a graph.
                onnx_dir = onnx_cache_dir(self.model, self.config)
                if not onnx_complete(onnx_dir):
                    export_onnx(self.model, onnx_dir)
                    self.model.to(self.device)
            self.runtime = OnnxRuntime(onnx_dir)
            self.onnx_dir = Path(onnx_dir)
        except Exception as exc:  # noqa: BLE001 - any exporter failure falls back to torch
            if required:
                raise ModelError(f"cannot run this model with ONNX Runtime: {exc}") from exc

    @property
    def backend(self) -> str:
        return self.runtime.kind

    def set_threads(self, n: int) -> None:
        """Keep this detector's runtime to ``n`` CPU threads (one Ray actor per core: no
        oversubscription); the ONNX graphs in use are reopened with that many threads."""
        torch.set_num_threads(max(1, n))
        if self.backend == "onnx" and getattr(self, "onnx_dir", None) is not None:
            self.runtime = OnnxRuntime(self.onnx_dir, threads=max(1, n))

    # -- persistence -------------------------------------------------------------------
    @classmethod
    def load(
        cls, directory: str | Path, device: str | None = "auto", backend: str = "auto"
    ) -> Detector:
        """Load ``config.json`` + ``model.safetensors`` from ``directory``, checking hashes.

        ``backend``: ``torch``, ``onnx`` or ``auto`` (ONNX Runtime on CPU when installed:
        several times faster there, same outputs; PyTorch on CUDA).
        """
        d = Path(directory)
        config = read_config(d)
        from noisetrace.heads.detector import HEAD_ARCHS, load_head_model

        if config.arch in HEAD_ARCHS:  # heads on frozen features, late fusion of branches
            return load_head_model(d, config, device=device, backend=backend)
        model = load_weights(d, config)
        onnx_dir = None
        recorded = config.extra.get("onnx_sha256", {})
        if recorded and all(
            (d / f).is_file() and sha256_file(d / f) == h for f, h in recorded.items()
        ):
            onnx_dir = d  # shipped graphs, verified like the weights
        return cls(model, config, device=device, backend=backend, onnx_dir=onnx_dir)

    def save(self, directory: str | Path, onnx: bool = False) -> Path:
        """Write weights and config atomically (temporary names, then rename).

        ``onnx=True`` also exports the ONNX graphs and records their hashes; otherwise stale
        graphs from an earlier save are removed so they can never disagree with the weights.
        """
        return save_checkpoint(self.model, self.config, directory, onnx=onnx, device=self.device)

    # -- scoring -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def set_threshold(self, value: float) -> None:
        """The one place a decision threshold is changed (CLI, evaluate, engines, service):
        a probability in [0, 1], else an InputError saying so."""
        v = float(value)
        if not 0.0 <= v <= 1.0:  # also refuses NaN
            raise InputError(f"a threshold is a probability between 0 and 1, got {value!r}")
        self.config.threshold = v

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        a, b = self.config.calibration["a"], self.config.calibration["b"]
        z = a * np.asarray(logits, dtype=np.float64) + b
        return 1.0 / (1.0 + np.exp(-z))

    def to_tensor(self, imgs: np.ndarray) -> torch.Tensor:
        """(H, W, 3) or (B, H, W, 3) uint8 -> normalised (B, 3, H, W) float on the device."""
        if imgs.ndim == 3:
            imgs = imgs[None]
        return self._pre(torch.from_numpy(np.require(imgs, np.uint8, ["C", "W"])).to(self.device))

    def fit_size(self, img: np.ndarray) -> np.ndarray:
        """Resize to the model's fixed input size, or pad tiny images to a workable size."""
        size = self.cfg.get("input_size")
        if size:
            from PIL import Image

            return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
        h, w = img.shape[:2]
        if min(h, w) < MIN_SIDE:
            # 1x1 or very thin images: edge-pad so convolutions and pooling have room.
            img = np.pad(
                img, ((0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w)), (0, 0)), "edge"
            )
        return img

    def logit(self, img: np.ndarray) -> float:
        """Raw fake logit of one (H, W, 3) uint8 image at full resolution."""
        img = self.fit_size(img)
        h, w = img.shape[:2]
        t = self.config.tile
        rt = self.runtime
        if not rt.fully_conv or (h <= t and w <= t):
            return float(rt.forward(img[None])[0])
        # Large image: average the pooled features tile by tile, weighted by tile area, then
        # the head. Memory stays bounded by one tile; the result equals one global-average
        # pass up to the few pixels at tile seams.
        total, area = None, 0
        for y in range(0, h, t):
            for x in range(0, w, t):
                tile = img[y : y + t, x : x + t]
                if min(tile.shape[:2]) < 8:
                    continue  # a sliver: too thin to carry features; its area is negligible
                a = tile.shape[0] * tile.shape[1]
                f = rt.features(tile[None]) * a
                total = f if total is None else total + f
                area += a
        return float(rt.head((total / area).astype(np.float32))[0])

    def logits_batch(self, imgs: list[np.ndarray]) -> np.ndarray:
        """Logits of same-sized images in one batch (video frames); else one by one.
        (2, S, S, 3) [face, background] pairs go to a pair model as they are, in one batch."""
        if imgs and imgs[0].ndim == 4:
            return self.runtime.forward(np.stack(imgs)).astype(np.float64)
        imgs = [self.fit_size(i) for i in imgs]
        t = self.config.tile
        if len({i.shape for i in imgs}) == 1 and max(imgs[0].shape[:2]) <= t:
            return self.runtime.forward(np.stack(imgs)).astype(np.float64)
        return np.array([self.logit(i) for i in imgs])

    def score(self, img: np.ndarray) -> float:
        """Calibrated probability that the (H, W, 3) uint8 RGB image is fake."""
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
            raise InputError("expected an (H, W, 3) uint8 RGB array")
        if img.dtype != np.uint8:
            raise InputError(f"expected uint8 pixels, got {img.dtype}")
        return float(self.calibrate(np.array([self.logit(img)]))[0])

    # -- faces -------------------------------------------------------------------------
    @property
    def face_cropper(self) -> FaceCropper:
        """The face/view policy of a face model (``config.face``), made on first use and
        following later changes of ``config.face``."""
        policy = dict(self.config.face)
        if self.pairs:  # its views are [face, background] pairs: cut both squares, at the
            policy["background"] = True  # network's input size (a pair is not resized)
            if self.cfg.get("input_size"):
                policy["size"] = int(self.cfg["input_size"][0])
        with _POOL_LOCK:  # scan_paths may call from several threads at once: one cropper
            if getattr(self, "_faces", None) is None:
                self._faces = FaceCropper(policy, threads=FACE_THREADS)
            elif self._faces.policy != policy:
                self._faces.set_policy(policy)
        return self._faces

    @property
    def pairs(self) -> bool:
        """True for a face + background model (Siamese DnCNN): it scores (2, S, S, 3)
        [face, background] pairs of one frame, not single crops."""
        return self.config.input == "face_background"

    def _views(self, crops: list[Any]) -> tuple[list[np.ndarray], list[list[Any]]]:
        """A frame's crops -> the views this model scores and the crops behind each: a crop
        each, or for a pair model each face with the background square cut after it (a
        face without one, or a frame without a face, gives no pair)."""
        if not self.pairs:
            return [c.image for c in crops], [[c] for c in crops]
        views, behind = [], []
        for a, b in zip(crops, crops[1:], strict=False):
            if a.kind == "face" and b.kind == "background" and b.face is a.face:
                views.append(np.stack([a.image, b.image]))
                behind.append([a, b])
        return views, behind

    def face_details(self, frames: Iterable[np.ndarray], found_only: bool = False
                     ) -> tuple[np.ndarray, list[dict[str, Any]]]:  # fmt: skip
        """Per-frame probabilities of a face model and every crop it judged.

        Faces are found with the configured backend (``face["detect"]`` holds its options,
        e.g. ``max_side``) and cropped square with a margin, the crops the model was trained
        on; a frame's score is its most suspicious face. The face thread decodes and searches
        the frames (following faces from frame to frame, ``face["track"]``) while the crops
        found so far are scored, FACE_CHUNK at a time (a crop's score does not depend on
        its batch). A frame without a face follows
        ``face["no_face"]`` (``whole``: a centred square of the frame; ``error``: an
        InputError), or gets no crop and a NaN score with ``found_only``. A face + background
        model scores each face paired with its frame's background square; a frame without
        such a pair gets NaN, a file without any is an InputError.
        Crops: ``{"frame", "box": [x0, y0, x1, y1], "kind": "face"|"background"|"whole",
        "score"}`` (a pair's two crops carry the pair's score).
        """
        from noisetrace.media.faces import NoFaceError

        per_frame: list[list[list[Any]]] = []  # per frame, the crops behind each view
        parts: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        try:
            for crops in self.face_cropper.map(frames, "skip" if found_only or self.pairs
                                               else None):  # fmt: skip
                views, behind = self._views(crops)
                per_frame.append(behind)
                pending += views
                if len(pending) >= FACE_CHUNK:
                    parts.append(self.logits_batch(pending))
                    pending = []
        except NoFaceError:
            raise InputError("no face found (this model scores faces)") from None
        if pending:
            parts.append(self.logits_batch(pending))
        logits = np.concatenate(parts) if parts else np.zeros(0)
        if self.pairs and not len(logits):
            raise InputError("no face with a background square beside it found (this model "
                             "compares a face's noise with its frame's background)")  # fmt: skip
        probs, out, crops_out, at = self.calibrate(logits), [], [], 0
        for i, behind in enumerate(per_frame):
            p = probs[at : at + len(behind)]
            out.append(float(p.max()) if len(p) else float("nan"))
            crops_out += [{"frame": i, "box": [int(v) for v in c.box], "kind": c.kind,
                           "score": round(float(q), 6)}
                          for cs, q in zip(behind, p, strict=True) for c in cs]  # fmt: skip
            at += len(behind)
        return np.array(out), crops_out

    def face_scores(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
        """Per-frame probabilities of a face model and the number of faces scored (see
        :meth:`face_details`)."""
        probs, crops = self.face_details(frames)
        return probs, sum(c["kind"] == "face" for c in crops)

    def temporal_model(self) -> Detector | None:
        """The face model whose jitter index a video scan reports beside the score (a face
        model with a ``temporal`` calibration), or None."""
        return self if self.config.input == "face" and self.config.temporal else None

    def run_jitter(self, run: Sequence[np.ndarray], anchor: np.ndarray) -> np.ndarray | None:
        """:func:`~noisetrace.residuals.temporal.frame_jitter` of one run of consecutive
        frames ((H, W) luma or (H, W, 3) RGB, uint8): the square of the largest face of
        ``anchor`` (the run's sampled frame, RGB; this model's face search and margin,
        ``FaceCropper.largest_face``) cut from every frame at ``temporal["size"]`` px.
        (T - 2, 2) float32, or None when ``anchor`` has no face."""
        from noisetrace.media.crops import cut
        from noisetrace.residuals.temporal import frame_jitter

        t = self.config.temporal or {}
        box = self.face_cropper.largest_face(np.ascontiguousarray(anchor))
        if box is None:
            return None
        size = int(t.get("size", 128))
        window = np.stack([cut(np.ascontiguousarray(f), box, size) for f in run])
        return frame_jitter(window, scale=float(self.config.face.get("scale", 1.3)),
                            highpass=bool(t.get("highpass", True)))  # fmt: skip

    def with_runs(self, frames: Iterable[Frame], rows: list[np.ndarray], failed: list[str]
                  ) -> Iterator[np.ndarray]:  # fmt: skip
        """The images of ``frames`` (sampled with their runs, ``iter_frames(context=...)``),
        as :meth:`judge` takes them; once each is taken, and so its faces searched, its run's
        :meth:`run_jitter` rows go to ``rows`` (the face search is not repeated). The first
        failure goes to ``failed`` and ends the measuring, never the scan."""
        for f in frames:
            yield f.image
            if f.run is not None and not failed:
                try:
                    r = self.run_jitter(f.run, f.image)
                except Exception as exc:  # noqa: BLE001 - the score stands without it
                    failed.append(f"{type(exc).__name__}: {exc}"[:200])
                else:
                    if r is not None:
                        rows.append(r)

    def jitter_evidence(self, rows: list[np.ndarray]) -> dict[str, Any] | None:
        """The temporal evidence of one video from its runs' :meth:`run_jitter` rows (None
        when no run had a face): ``{"jitter_index", "runs" (runs with a face), "real_above"
        (the share of the real videos it was calibrated on whose index is higher: small is
        unusual for a real video), "unusual" (``real_above`` under 5%), "calibrated_on"}``.
        """
        from noisetrace.residuals.temporal import jitter_index

        if not rows:
            return None
        index = jitter_index(np.concatenate(rows))
        real = np.asarray((self.config.temporal or {}).get("real") or [], np.float64)
        above = float(np.mean(real > index)) if len(real) else None
        return {"jitter_index": round(index, 4), "runs": len(rows),
                "real_above": None if above is None else round(above, 4),
                "unusual": None if above is None else above < UNUSUAL,
                "calibrated_on": len(real)}  # fmt: skip

    def temporal_score(self, frame_score: float | None, evidence: dict[str, Any] | None
                       ) -> float | None:  # fmt: skip
        """A video's score with its jitter index combined in, or None where this model has
        no learned combination (``temporal["combine"]``) or the video no index.

        The combination is a logistic regression on (logit of the frame model's video score,
        jitter index), each standardised on real videos (``mean``, ``scale``), validated
        with every video source left out in turn and fitted by ``noisetrace fit`` on a face
        recipe's ``temporal`` block (:func:`noisetrace.heads.temporal.fit_temporal`):
        d = intercept + coef . z. ``cut`` is the d that ``target_fpr`` of the
        real videos exceed; the score is sigmoid(logit(threshold) + d - cut), with the
        threshold the model had when the combination was fitted (``combine["threshold"]``),
        so that threshold still decides, the score rises with d, and a threshold the user
        sets later (:meth:`set_threshold`) moves the verdict, not the score."""
        c = (self.config.temporal or {}).get("combine")
        if not c or not evidence or evidence.get("jitter_index") is None:
            return None
        if frame_score is None or not math.isfinite(frame_score):
            return None
        p = min(max(float(frame_score), 1e-6), 1 - 1e-6)
        z = (np.array([math.log(p / (1 - p)), float(evidence["jitter_index"])])
             - np.asarray(c["mean"], float)) / np.asarray(c["scale"], float)  # fmt: skip
        d = float(c["intercept"]) + float(np.dot(np.asarray(c["coef"], float), z))
        t = min(max(float(c.get("threshold", self.threshold)), 1e-6), 1 - 1e-6)
        x = math.log(t / (1 - t)) + d - float(c["cut"])
        return 1.0 / (1.0 + math.exp(-min(max(x, -60.0), 60.0)))

    #: the record field that holds the face model's video score (WHOLE+FACES: face_score)
    FACE_SCORE_FIELD = "score"

    def combine_temporal(self, res: ScanResult) -> None:
        """Put the jitter index into the face model's video score where it learned how
        (:meth:`temporal_score`); the frames' own score stays in
        ``res.temporal["frame_score"]``."""
        tm = self.temporal_model()
        own = getattr(res, self.FACE_SCORE_FIELD)
        combined = None if tm is None else tm.temporal_score(own, res.temporal)
        if combined is not None and res.temporal is not None:
            res.temporal = {**res.temporal, "frame_score": own, "combined": True}
            setattr(res, self.FACE_SCORE_FIELD, combined)

    def judge(self, frames: Iterable[np.ndarray], res: ScanResult) -> np.ndarray:
        """Per-frame probabilities of fake for the frames of one file (one for an image),
        as this model sees them: the whole frame, or its faces for a face model (which
        also sets ``res.faces``). The one step from decoded frames to scores of a scan."""
        if self.config.input in ("face", "face_background"):
            probs, res.faces = self.face_scores(frames)
            return probs
        # Streamed: at most FRAME_BATCH decoded frames are held at once, however many the
        # video gives.
        out, batch = [], []
        for f in frames:
            batch.append(f)
            if len(batch) == FRAME_BATCH:
                out.append(self.calibrate(self.logits_batch(batch)))
                batch = []
        if batch:
            out.append(self.calibrate(self.logits_batch(batch)))
        if not out:
            raise InputError("no frames to score")
        return np.concatenate(out)

    def verdict_of(self, res: ScanResult) -> str:
        return "fake" if res.score is not None and res.score >= self.threshold else "real"

    def scan(self, path: str | Path, *, video_frames: int | None = None) -> ScanResult:
        """Scan one file; failures become an error record, never an exception."""
        t0 = time.perf_counter()
        res = ScanResult(path=str(path), threshold=self.threshold, model=self.name)
        try:
            kind, _fmt = sniff(path)
            res.kind = kind
            if kind == "image":
                img = load_image(path)
                res.height, res.width = img.shape[:2]
                res.score = float(self.judge([img], res)[0])
            else:
                self._scan_video(path, res, video_frames or self.config.video_frames)
            res.verdict = self.verdict_of(res)
        except InputError as exc:
            res.error, res.score, res.verdict = str(exc), None, "error"
        except MemoryError:
            res.error, res.score, res.verdict = "not enough memory for this file", None, "error"
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop a batch
            res.error = f"internal error while scanning this file ({type(exc).__name__}: {exc})"
            res.score, res.verdict = None, "error"
        if res.kind == "image":  # metadata only, after the score: it never changes it
            try:
                from noisetrace.media.provenance import read_provenance

                res.provenance = read_provenance(path)
            except Exception as exc:  # noqa: BLE001 - never turns a good scan into an error
                res.provenance = {"claims": [], "ai_claimed": None, "error": str(exc)[:200]}
        res.seconds = round(time.perf_counter() - t0, 4)
        return res

    def _scan_video(self, path: str | Path, res: ScanResult, n: int) -> None:
        shape: list[tuple[int, ...]] = []

        report = SampleReport()
        # A face model with a temporal calibration reads each sampled frame with the run of
        # frames after it, in the same pass, and measures the run while the frame is scored.
        tm = self.temporal_model()
        length = int(tm.config.temporal.get("frames", 12)) if tm is not None else 0
        rows: list[np.ndarray] = []
        failed: list[str] = []

        def frames() -> Iterator[Frame]:
            for f in iter_frames(path, mode="even", n=n, report=report, context=length):
                shape.append(f.image.shape)
                yield f

        images = (f.image for f in frames()) if tm is None else tm.with_runs(frames(), rows,
                                                                             failed)  # fmt: skip
        probs = self.judge(images, res)
        if tm is not None:
            res.temporal = {"error": failed[0]} if failed else tm.jitter_evidence(rows)
        res.frames_note = report.note
        res.height, res.width = shape[0][:2]
        res.frames = len(shape)
        # A frame a pair model found no face + background pair in has no score (None).
        res.frame_scores = [round(float(p), 6) if math.isfinite(p) else None for p in probs]
        from noisetrace.metrics import aggregate_scores

        # The model's own aggregation (mean unless its config says otherwise).
        res.score = aggregate_scores(probs, self.config.video_aggregate)
        if not math.isfinite(res.score):
            raise InputError("model produced no finite score for this video")
        self.combine_temporal(res)
