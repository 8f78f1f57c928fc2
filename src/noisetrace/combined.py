"""Whole image and faces in one scan: ``--model default+faces``.

A face swap changes a face and leaves the rest of the frame alone, so a whole-image model
sees a mostly real picture; a face model sees only faces and says nothing about a generated
landscape. :class:`WholeAndFaces` runs both on the same decoded frames: the whole-image
model on every frame, the face model on the faces it finds (frames without a face are not
given to it). The record keeps both judgements apart:

* ``score`` / ``threshold``: the whole-image model's, as in a plain scan;
* ``face_score`` / ``face_threshold``: the face model's (its most suspicious face per frame,
  aggregated over the frames that had faces as the face model aggregates a video), None
  when no face was found;
* ``temporal``: the face model's jitter index; where that model learned to combine it
  with its frame score, ``face_score`` is the combination, as in a scan by the face model
  alone (``temporal["frame_score"]`` keeps the frames' own);
* ``face_boxes``: every face judged, ``{"frame", "box": [x0, y0, x1, y1], "score"}``;
* ``verdict``: ``fake`` when either model calls the file fake at its own threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from noisetrace.detector import Detector, DetectorConfig, ScanResult
from noisetrace.errors import ModelError


class WholeAndFaces(Detector):
    """A whole-image detector and a face detector judging the same frames (module doc)."""

    def __init__(self, whole: Detector, faces: Detector) -> None:
        if whole.config.input == "face":
            raise ModelError(f"{whole.name!r} is a face model: put the whole-image model "
                             "first (e.g. default+faces)")  # fmt: skip
        if faces.config.input != "face":
            raise ModelError(f"{faces.name!r} scores whole images, not faces: the second "
                             "model of WHOLE+FACES must be a face model (e.g. default+faces)")
        self.whole, self.faces = whole, faces
        self.config = DetectorConfig(
            name=f"{whole.name}+{faces.name}", arch="whole+faces", threshold=whole.threshold,
            input="image", video_frames=whole.config.video_frames,
            video_aggregate=whole.config.video_aggregate,
        )  # fmt: skip
        self.device, self.model, self.cfg = whole.device, whole.model, whole.cfg
        self.runtime = whole.runtime

    @property
    def backend(self) -> str:
        return "+".join(sorted({self.whole.backend, self.faces.backend}))

    def set_threads(self, n: int) -> None:
        self.whole.set_threads(n)
        self.faces.set_threads(n)

    # Scoring an array (evaluate, explain) is the whole-image model's job; faces need a scan.
    def logit(self, img: np.ndarray) -> float:
        return self.whole.logit(img)

    def logits_batch(self, imgs: list[np.ndarray]) -> np.ndarray:
        return self.whole.logits_batch(imgs)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        return self.whole.calibrate(logits)

    def judge(self, frames: Iterable[np.ndarray], res: ScanResult) -> np.ndarray:
        # Both models read the same decoded frames: the face model as they come (so it
        # searches each while the video is read, as it does alone), the whole-image model
        # after it, from the frames kept.
        kept: list[np.ndarray] = []

        def keep() -> Iterable[np.ndarray]:
            for f in frames:
                kept.append(f)
                yield f

        per_frame, crops = self.faces.face_details(keep(), found_only=True)
        probs = self.whole.judge(kept, res)
        res.face_threshold = self.faces.threshold
        res.face_boxes = crops
        res.faces = len(crops)
        from noisetrace.metrics import aggregate_scores

        score = aggregate_scores(per_frame, self.faces.config.video_aggregate)
        res.face_score = score if np.isfinite(score) else None
        return probs

    def temporal_model(self) -> Detector | None:
        return self.faces.temporal_model()  # the face model's, as its face_score

    # The face model's combination goes into its own score, as when it scans alone.
    FACE_SCORE_FIELD = "face_score"

    def verdict_of(self, res: ScanResult) -> str:
        face_fake = res.face_score is not None and res.face_score >= self.faces.threshold
        return "fake" if super().verdict_of(res) == "fake" or face_fake else "real"


def load_combined(spec: str, **kw: Any) -> WholeAndFaces:
    """``"WHOLE+FACES"`` (bundled names or model directories) -> :class:`WholeAndFaces`."""
    from noisetrace.zoo import load_detector

    whole, _, faces = spec.partition("+")
    if not whole or not faces or "+" in faces:
        raise ModelError(f"{spec!r}: a combined model is WHOLE+FACES, e.g. default+faces")
    return WholeAndFaces(load_detector(whole, **kw), load_detector(faces, **kw))
