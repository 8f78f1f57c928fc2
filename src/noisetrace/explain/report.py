"""One explanation per file: an overlay PNG and a JSON summary (score, verdict, top regions).

``explain_array`` works in memory (the web service can PNG-encode ``overlay`` itself or call
``overlay_png()`` for the framed figure); ``explain_file`` loads an image or a video, explains
it (a video through its most suspicious sampled frame) and writes ``<name>.overlay.png`` (the
overlay with a title and a legend, see :mod:`noisetrace.explain.render`) and
``<name>.explain.json``. Both ``noisetrace explain`` and ``noisetrace scan --explain DIR`` call
``explain_file``.

Methods:

* ``heatmap``: local fake probability per window (:mod:`noisetrace.explain.heatmap`);
  cheap, and what a region "would score on its own". Needs a fully convolutional model;
  others fall back to ``ig``.
* ``ig``: Integrated Gradients influence per pixel (:mod:`noisetrace.explain.ig`), slightly
  smoothed for the overlay; exact attribution but ``steps`` forward/backward passes.
* ``occlusion``: how far blurring each cell of a grid lowers the fake score
  (:mod:`noisetrace.explain.occlusion`); works for every model, and is what models fitted on
  frozen features (``default``, ``faces``) are explained with, whichever method was asked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from noisetrace.detector import Detector, ScanResult
from noisetrace.errors import InputError
from noisetrace.explain.numbers import round_floats
from noisetrace.explain.render import MAX_SIZE, Figure, caption, render_figure

Method = Literal["heatmap", "ig", "occlusion"]
METHODS: tuple[str, ...] = ("heatmap", "ig", "occlusion")


@dataclass
class Explanation:
    """An explained image. ``map`` is (H, W) float32 in [0, 1] aligned with ``image``:
    local fake probability (heatmap) or normalised influence (ig)."""

    image: np.ndarray  # (H, W, 3) uint8
    map: np.ndarray
    overlay: np.ndarray  # (H, W, 3) uint8
    method: str
    score: float  # calibrated fake probability of the whole image
    logit: float
    verdict: str
    threshold: float
    model: str
    regions: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (no arrays; floats to 6 significant digits)."""
        h, w = self.image.shape[:2]
        return round_floats({
            "model": self.model, "method": self.method, "score": self.score,
            "logit": self.logit, "verdict": self.verdict,
            "threshold": self.threshold, "width": w, "height": h,
            "map": _MAP_MEANING[self.method], "regions": self.regions, **self.details,
        })  # fmt: skip

    def figure(
        self, *, name: str = "", score: float | None = None, verdict: str | None = None,
        note: str = "", max_size: int = MAX_SIZE,
    ) -> Figure:  # fmt: skip
        """The overlay framed for a person: title (``name``, verdict, score, threshold, model,
        method, ``note``) and legend, at most ``max_size`` px a side (0: full resolution).
        ``score``/``verdict`` default to this image's; a file's scan may differ (face crops,
        videos), and the title should show the file's."""
        return render_figure(
            self.overlay, self.method,
            caption(name or "image", self.model, self.method,
                    self.score if score is None else score, verdict or self.verdict,
                    self.threshold, note),
            max_size,
        )  # fmt: skip

    def overlay_png(self, max_size: int = MAX_SIZE, **title: Any) -> bytes:
        """The framed overlay (:meth:`figure`, which takes ``title``'s keywords) as PNG."""
        return self.figure(max_size=max_size, **title).png()


_MAP_MEANING = {
    "heatmap": "local fake probability of each window",
    "ig": "Integrated Gradients influence |sum over colours|, scaled by its 99th percentile",
    "occlusion": "fall of the fake logit when the cell is blurred, over the largest fall",
}


# -- regions ---------------------------------------------------------------------------------
def _box_mean(m: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``m`` (H, W) over every k x k window: (H-k+1, W-k+1), by integral image."""
    c = np.pad(m.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def top_regions(m: np.ndarray, window: int = 64, k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` non-overlapping ``window``-sized squares with the highest mean of ``m``.

    ``m`` is (H, W), non-negative. Each region: x, y, w, h (pixels), ``mean`` (the map's mean
    inside) and ``share`` (its fraction of the whole map's mass). Greedy: take the best
    window, suppress every window overlapping it, repeat.
    """
    h, w = m.shape
    win = max(1, min(window, h, w))
    means = _box_mean(m, win)
    total = float(m.sum()) or 1.0
    out: list[dict[str, Any]] = []
    free = np.ones_like(means, dtype=bool)
    for _ in range(k):
        cand = np.where(free, means, -np.inf)
        idx = int(np.argmax(cand))
        if not np.isfinite(cand.flat[idx]):
            break
        y, x = divmod(idx, means.shape[1])
        out.append({
            "x": int(x), "y": int(y), "w": win, "h": win,
            "mean": round(float(means[y, x]), 6),
            "share": round(float(means[y, x]) * win * win / total, 6),
        })  # fmt: skip
        # Windows whose top-left lies within win-1 of this one overlap it.
        free[max(0, y - win + 1) : y + win, max(0, x - win + 1) : x + win] = False
    return out


# -- explaining ------------------------------------------------------------------------------
def resolve_method(det: Detector, method: str, details: dict[str, Any] | None = None) -> str:
    """The method ``det`` can draw for the one asked: models fitted on frozen features have
    no network (occlusion), networks without spatial features no heatmap (IG). ``details``
    gets a note when the method changes."""
    from noisetrace.heads.detector import has_network

    note = None
    if method != "occlusion" and not has_network(det):
        note = f"{det.name} is fitted on frozen features; explained by occlusion"
        method = "occlusion"
    elif method == "heatmap" and not hasattr(det.model, "forward_features"):
        note, method = f"{det.config.arch} has no spatial features; explained with ig", "ig"
    if note and details is not None:
        details["note"] = note
    return method


def region_map(det: Detector, img: np.ndarray, method: str, *, window: int = 64,
               details: dict[str, Any] | None = None,
               progress: Callable[[int, int], None] | None = None,
               ) -> tuple[np.ndarray, float | None]:  # fmt: skip
    """(H, W, 3) uint8 -> ((H, W) map in [0, 1], the image's fake logit or None) for the
    region methods (``heatmap``: sliding-window probabilities; ``occlusion``: the fall of
    the logit when each cell is blurred). The one dispatch the CLI, reports and the API
    share; the logit is None where the method does not compute it (the API does not need it)."""
    from noisetrace.explain.heatmap import probability_map

    details = {} if details is None else details
    if method == "occlusion":
        from noisetrace.explain.occlusion import occlusion_map

        m, logit, details["occlusion"] = occlusion_map(det, img, progress=progress)
        return m, logit
    if method != "heatmap":
        raise InputError(f"{method!r} is not a region method; use heatmap or occlusion")
    details["window"] = window
    return probability_map(det, img, window=window), None


def explain_array(
    det: Detector,
    img: np.ndarray,
    method: Method = "heatmap",
    *,
    window: int = 64,
    regions: int = 5,
    baseline: str = "black",
    steps: int = 32,
    internal_batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> Explanation:
    """Explain an (H, W, 3) uint8 RGB image with ``det``. ``progress(done, total)`` is
    called as Integrated Gradients advances (the long part; the heatmap is one pass)."""
    from noisetrace.explain.heatmap import colormap, overlay

    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise InputError("expected an (H, W, 3) uint8 RGB array")
    if method not in METHODS:
        raise InputError(f"unknown explanation method {method!r}; use {' or '.join(METHODS)}")
    details: dict[str, Any] = {}
    method = resolve_method(det, method, details)
    if method in ("heatmap", "occlusion"):
        m, region_logit = region_map(det, img, method, window=window, details=details,
                                     progress=progress)  # fmt: skip
        logit = det.logit(img) if region_logit is None else region_logit
        ov = overlay(img, m)
    else:
        from noisetrace.explain.ig import gaussian_blur, integrated_gradients, normalize_map

        r = integrated_gradients(
            det, img, baseline=baseline, steps=steps,  # type: ignore[arg-type]
            internal_batch_size=internal_batch_size, progress=progress,
        )  # fmt: skip
        img, logit = r.image, r.logit
        m = r.normalized_influence()
        # Pixel-level IG is speckle; a light blur makes the overlay readable (the JSON regions
        # and the map itself stay unblurred).
        soft = normalize_map(gaussian_blur(np.repeat(m[..., None], 3, 2), 2.0)[..., 0])
        alpha = (0.8 * soft)[..., None]
        ov = (img * (1 - alpha) + colormap(0.5 + soft / 2) * alpha).clip(0, 255)
        ov = ov.astype(np.uint8)
        details["ig"] = {
            "baseline": baseline, "steps": steps, "logit": r.logit,
            "baseline_logit": r.baseline_logit, "delta": r.delta, "tiled": r.tiled,
        }  # fmt: skip
    score = float(det.calibrate(np.array([logit]))[0])
    return Explanation(
        image=img, map=m.astype(np.float32), overlay=ov, method=method, score=score,
        logit=float(logit), verdict="fake" if score >= det.threshold else "real",
        threshold=det.threshold, model=det.name, regions=top_regions(m, window, regions),
        details=details,
    )  # fmt: skip


def _out_name(path: str | Path, out_dir: Path) -> str:
    """``<file name>``, or ``<file name>-<hash>`` when another file of that name was already
    explained into ``out_dir`` (rerunning on the same file overwrites its own outputs)."""
    real = os.path.realpath(path)
    name = Path(path).name
    prior = out_dir / f"{name}.explain.json"
    if prior.exists():
        try:
            same = json.loads(prior.read_text()).get("path") == real
        except (OSError, json.JSONDecodeError):
            same = True
        if not same:
            name = f"{name}-{hashlib.sha1(real.encode()).hexdigest()[:8]}"
    return name


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def explained_frame(det: Detector, path: str | Path, result: ScanResult | None = None
                    ) -> tuple[np.ndarray, dict[str, Any], Any]:  # fmt: skip
    """The frame of a video an explanation shows, the same in the CLI, the API and the page:
    the video is scanned (or ``result``, a scan of it, is reused) and its sampled frame with
    the highest fake score is chosen. Returns the frame, what it is (index, time, frame and
    video scores, verdict) and the sampling report."""
    from noisetrace.media.video import SampleReport, iter_frames

    res = result if result is not None and result.frame_scores else det.scan(path)
    if res.error or not res.frame_scores:
        raise InputError(res.error or f"{path}: no frames could be scored")
    sampled = SampleReport()
    n = res.frames or len(res.frame_scores)
    frames = list(iter_frames(path, mode="even", n=n, report=sampled))
    # A frame a pair model found no pair in has no score (None): never the one explained.
    scored = [-np.inf if v is None else v for v in res.frame_scores[: len(frames)]]
    best = int(np.argmax(scored))
    fr = frames[best]
    info = {
        "index": fr.index, "time": None if fr.time is None else round(float(fr.time), 4),
        "frame_score": res.frame_scores[best], "video_score": res.score,
        "video_verdict": res.verdict,
    }  # fmt: skip
    return fr.image, info, sampled


def explain_file(
    det: Detector,
    path: str | Path,
    out_dir: str | Path,
    method: Method = "heatmap",
    *,
    result: ScanResult | None = None,
    traces: bool = False,
    face: tuple[int, int, int, int] | None = None,
    siamese: Any = None,
    face_backend: str | None = "auto",
    max_size: int = MAX_SIZE,
    **kwargs: Any,
) -> dict[str, Any]:
    """Explain one image or video file into ``out_dir``; returns the JSON summary written.

    Videos are scanned (or ``result``, a scan of this file, is reused), and the sampled
    frame with the highest fake score is explained; the summary keeps the whole video's
    score and verdict and names the frame. ``traces=True`` also writes the noise-trace
    figure (``<name>.traces.png``) for ``face`` (x0, y0, x1, y1; None: detected with
    ``face_backend``, else the centre) with the optional ``siamese`` extractor (see
    :mod:`noisetrace.explain.traces`). The overlay figure is at most ``max_size`` px on its
    longer side (0: the image at full resolution); ``figure`` in the summary gives its size,
    the scale and where the image sits in it. ``kwargs`` go to :func:`explain_array`.
    Raises :class:`InputError` for unreadable files.
    """
    from noisetrace.media.formats import sniff
    from noisetrace.media.image import load_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind, _fmt = sniff(path)
    frame_info: dict[str, Any] | None = None
    if kind == "image":
        img = load_image(path)
        # The file's score is the scan's (a face model judges its face crops, not the
        # whole picture the map covers): the same number as `noisetrace scan` gives.
        res = result if result is not None and result.score is not None else det.scan(path)
        if res.error:
            raise InputError(res.error)
    else:
        img, frame_info, sampled = explained_frame(det, path, result)
    name = _out_name(path, out)
    if det.pairs:
        return _explain_pair(det, path, img, out, name, kind, frame_info,
                             None if frame_info else res)  # fmt: skip
    ex = explain_array(det, img, method, **kwargs)
    summary = {"path": os.path.realpath(path), "kind": kind, **ex.summary()}
    note = ""
    if frame_info:
        summary["frame"] = frame_info
        # The file's verdict is the video's, not the one frame's.
        summary["score"] = frame_info["video_score"]
        summary["verdict"] = frame_info["video_verdict"]
        note = _frame_note(frame_info, sampled.available, sampled.decoded)
    else:
        summary["score"], summary["verdict"] = float(res.score), res.verdict
    fig = ex.figure(name=Path(path).name, score=summary["score"], verdict=summary["verdict"],
                    note=note, max_size=max_size)  # fmt: skip
    summary["figure"] = fig.info()
    files = {"overlay": f"{name}.overlay.png"}
    _write_atomic(out / files["overlay"], fig.png())
    if traces:
        from noisetrace.explain.traces import noise_traces, plot_traces

        tr = noise_traces(img, face, siamese, detect=face_backend)
        files["traces"] = f"{name}.traces.png"
        tmp = out / f".{files['traces']}.tmp.png"
        plot_traces(img, tr, tmp, title=f"{Path(path).name}: noise traces")
        tmp.replace(out / files["traces"])
        summary["traces"] = tr.stats()
    summary["files"] = files
    summary = round_floats(summary)
    _write_atomic(out / f"{name}.explain.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def pair_traces(det: Detector, img: np.ndarray, title: str) -> tuple[bytes, dict[str, Any],
                                                                     dict[str, Any]]:  # fmt: skip
    """A face + background model's evidence is the pair it compared: the Siamese DnCNN
    paper's noise-trace figure (Fig. 6) of the frame's most suspicious face square and its
    background square, with the model's own DnCNN noise. Returns the PNG, the view (boxes
    and the pair's score) and the traces' statistics."""
    import tempfile

    from noisetrace.explain.traces import noise_traces, plot_traces

    _probs, crops = det.face_details([img])
    i = max((i for i, c in enumerate(crops) if c["kind"] == "face"),
            key=lambda i: crops[i]["score"])  # fmt: skip
    # The pair's background crop follows its face: draw the squares that were scored.
    bg = crops[i + 1] if i + 1 < len(crops) and crops[i + 1]["kind"] == "background" else None
    tr = noise_traces(img, tuple(crops[i]["box"]), det.model, detect=None, scale=1.0,
                      background=None if bg is None else tuple(bg["box"]))  # fmt: skip
    face = crops[i]
    with tempfile.TemporaryDirectory() as d:
        png = plot_traces(img, tr, Path(d) / "traces.png", title=title).read_bytes()
    view = {"face": list(tr.face_box), "background": list(tr.background_box),
            "score": face["score"]}  # fmt: skip
    return png, view, tr.stats()


def _explain_pair(det: Detector, path: str | Path, img: np.ndarray, out: Path, name: str,
                  kind: str, frame_info: dict[str, Any] | None, res: ScanResult | None
                  ) -> dict[str, Any]:  # fmt: skip
    """explain_file for a face + background model: the traces figure (``pair_traces``)."""
    png, view, stats = pair_traces(det, img, f"{Path(path).name}: face vs background noise")
    files = {"traces": f"{name}.traces.png"}
    _write_atomic(out / files["traces"], png)
    summary: dict[str, Any] = {"path": os.path.realpath(path), "kind": kind,
                               "method": "noise-traces", "view": view, "traces": stats,
                               "files": files}  # fmt: skip
    if frame_info:
        summary["frame"] = frame_info
        summary["score"] = frame_info["video_score"]
        summary["verdict"] = frame_info["video_verdict"]
    else:
        assert res is not None
        summary["score"], summary["verdict"] = float(res.score), res.verdict
    summary = round_floats(summary)
    _write_atomic(out / f"{name}.explain.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _frame_note(frame: dict[str, Any], available: int | None, sampled: int) -> str:
    """Which video frame the figure shows, counted from 1 for people (the JSON ``index``
    counts from 0)."""
    of = f" of {available}" if available else ""
    at = "" if frame["time"] is None else f", t={frame['time']:.1f} s"
    return (f"frame {frame['index'] + 1}{of}{at}: the most suspicious of {sampled} sampled "
            f"(frame score {frame['frame_score']:.3f})")  # fmt: skip
