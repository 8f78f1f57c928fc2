"""Face tracks: link the faces of successive frames by box overlap (IoU).

Temporal models need sequences of the *same* face; a greedy IoU tracker is enough for the
talking-head videos of deepfake datasets, where faces move little between sampled frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from noisetrace.media.faces import Face


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 when disjoint)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class TrackedFace:
    """A face in one frame: the frame's display index and time, and the detection."""

    frame: int
    time: float | None
    face: Face


@dataclass
class Track:
    """The same face over frames, in frame order. ``id`` counts from 0 per video."""

    id: int
    items: list[TrackedFace] = field(default_factory=list)

    @property
    def last(self) -> TrackedFace:
        return self.items[-1]

    @property
    def frames(self) -> list[int]:
        return [t.frame for t in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def boxes(self) -> np.ndarray:
        """(T, 4) float32 boxes in frame order."""
        return np.array([t.face.box for t in self.items], dtype=np.float32).reshape(-1, 4)

    def smoothed_boxes(self, window: int = 5) -> np.ndarray:
        """(T, 4) boxes averaged over a centred ``window`` (steadier crops for sequences)."""
        b = self.boxes()
        if window <= 1 or len(b) <= 1:
            return b
        half = window // 2
        return np.stack([b[max(0, i - half) : i + half + 1].mean(0) for i in range(len(b))])

    def windows(self, length: int, stride: int | None = None) -> list[list[TrackedFace]]:
        """Consecutive runs of ``length`` items (every ``stride``; default no overlap), the
        sequences a temporal model takes (e.g. 32 frames for the video transformers)."""
        stride = stride or length
        return [self.items[i : i + length] for i in range(0, len(self.items) - length + 1, stride)]


def track_faces(
    detections: Iterable[tuple[int, float | None, list[Face]]],
    iou_threshold: float = 0.3,
    max_gap: int | None = None,
    min_length: int = 1,
) -> list[Track]:
    """Link per-frame detections ``(frame_index, time, faces)`` (in frame order) into tracks.

    Each face joins the open track whose last box overlaps it most (IoU >= ``iou_threshold``),
    greedily by IoU; unmatched faces start new tracks. A track closes when it has not been
    matched for more than ``max_gap`` frame indices (None: never). Tracks shorter than
    ``min_length`` are dropped; the rest are returned longest first, ids renumbered 0, 1, ...
    """
    open_tracks: list[Track] = []
    closed: list[Track] = []
    next_id = 0
    for frame, time, faces in detections:
        if max_gap is not None:
            still = []
            for tr in open_tracks:
                (still if frame - tr.last.frame <= max_gap else closed).append(tr)
            open_tracks = still
        pairs = sorted(
            (
                (iou(tr.last.face.box, f.box), ti, fi)
                for ti, tr in enumerate(open_tracks)
                for fi, f in enumerate(faces)
            ),
            reverse=True,
        )
        used_t: set[int] = set()
        used_f: set[int] = set()
        for score, ti, fi in pairs:
            if score < iou_threshold:
                break
            if ti in used_t or fi in used_f:
                continue
            open_tracks[ti].items.append(TrackedFace(frame, time, faces[fi]))
            used_t.add(ti)
            used_f.add(fi)
        for fi, f in enumerate(faces):
            if fi not in used_f:
                open_tracks.append(Track(next_id, [TrackedFace(frame, time, f)]))
                next_id += 1
    tracks = [t for t in closed + open_tracks if len(t) >= min_length]
    tracks.sort(key=lambda t: (-len(t), t.items[0].frame, t.id))
    for i, t in enumerate(tracks):
        t.id = i
    return tracks
