"""Evaluation protocols: the test conditions of the seed papers, scored with one Detector.

A *condition* is one deterministic view of every sample (JPEG quality, test resolution,
matched formats). :func:`evaluate` decodes each sample once, scores it under every condition
the requested protocols need, and builds the tables with :mod:`noisetrace.metrics` only.
The result is a plain JSON-serialisable dict that :mod:`noisetrace.evaluate.report` renders.

Each protocol is a class registered by name (:mod:`noisetrace.evaluate.registry`; the
built-ins are in :mod:`noisetrace.evaluate.plugins`); this module holds the machinery and
the tables they share. The built-in scoring protocols:

* ``standard``: the data as stored.
* ``jpeg``: as stored, then JPEG QF 90, 65, 40 (DJIN Fig. 1 / Table 2).
* ``resolution``: views of 224, 512 and original size (DJIN Table 2). ``crop`` (default) takes
  the centre crop, which keeps the noise untouched; ``resize`` rescales to a square, which
  is what fixed-input detectors see and which smooths high frequencies away.
* ``generators``: DJIN Table 2's per-generator table: for each JPEG condition, how many
  samples of each generator are called real and fake, with accuracy at each resolution.
* ``confound``: every condition again with both classes re-encoded identically
  (:func:`noisetrace.data.augment.matched_format`), reported beside the raw one.
* ``republished``: matched JPEG 90 beside every file as a platform republishes it (longer
  side down to 1080 px, then JPEG at each quality; :func:`~noisetrace.data.augment.web_format`).
* ``online``: matched JPEG 90 beside the other ways files are found online: republished as
  WebP at each quality, and screenshots at 75% and 125% (:func:`~noisetrace.data.augment.
  screenshot`).

Protocols that need training take a ``train_fn`` so any training loop plugs in:
:func:`leave_one_out` and :func:`cross_dataset` (Xception paper Table 1) and
:func:`sequence_length_sweep` (its Table 2).

Order of operations for one view: centre crop to ``max_side`` (bounded cost, no resampling),
then JPEG (the file as it would be distributed), then the test resolution (what the
detector is shown).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm

from noisetrace.data.augment import (
    apply_transform,
    describe_transforms,
    jpeg,
    matched_format,
    parse_transform,
    resize,
    transform_label,
)
from noisetrace.data.manifest import FAKE, REAL, Sample, split
from noisetrace.detector import Detector
from noisetrace.errors import InputError, NoisetraceError
from noisetrace.evaluate.registry import (
    ConditionProtocol,
    get_protocol,
    get_protocols,
    protocol_names,
)
from noisetrace.media.formats import sniff
from noisetrace.media.image import load_image
from noisetrace.media.video import iter_frames
from noisetrace.metrics import (
    AGGREGATIONS,
    aggregate_scores,
    binary_metrics,
    bootstrap_ci,
    expected_calibration_error,
)

DEFAULT_QUALITIES = (90, 65, 40)
DEFAULT_SIZES: tuple[int | None, ...] = (224, 512, None)  # None = original size
#: Metric columns of the per-condition tables, in order.
METRIC_COLUMNS = ("auc", "ap", "accuracy", "balanced_accuracy", "eer", "tpr@1%fpr",
                  "tpr@5%fpr", "precision", "recall", "f1")  # fmt: skip


@dataclass(frozen=True)
class Condition:
    """One deterministic test view.

    ``quality``: JPEG quality applied to the stored pixels (None: as stored).
    ``size``: side of the square test view (None: original size).
    ``matched``: format-confound control, both classes re-encoded identically: lossless
    files get a camera-like JPEG pass (``prior_quality``) first, then every file is
    JPEG-encoded at ``quality``.
    ``online``: a named view of :func:`~noisetrace.data.augment.apply_transform` (``web80``,
    ``webp80``, ``shot75``): the file as it is found online, the very view `fit` trains and
    validates on under that name. Such a view carries one history for both classes.
    """

    quality: int | None = None
    size: int | None = None
    matched: bool = False
    online: str | None = None

    def __post_init__(self) -> None:
        if self.online is not None and parse_transform(self.online) is None:
            raise NoisetraceError(f"unknown online view {self.online!r}: webQ, webpQ or shotS "
                                  "(S: display scale in percent)")

    @property
    def size_label(self) -> str:
        return "original" if self.size is None else str(self.size)

    @property
    def quality_label(self) -> str:
        return "uncompressed" if self.quality is None else f"QF {self.quality}"

    @property
    def name(self) -> str:
        if self.online is not None:
            parts = [transform_label(self.online)]
        else:
            parts = (["matched"] if self.matched else []) + [self.quality_label]
        if self.size is not None:
            parts.append(f"@{self.size}")
        return " ".join(parts)

    def twin(self) -> Condition:
        """The same view with matched formats (JPEG QF 90 when this one is uncompressed); an
        online view already carries one history for both classes: itself."""
        if self.online is not None:
            return self
        return Condition(self.quality or 90, self.size, True)

    def apply(self, img: np.ndarray, lossless: bool, resize_mode: str = "crop",
              prior_quality: int = 95) -> np.ndarray:
        """(H, W, 3) uint8 -> the (h, w, 3) uint8 view this condition tests."""
        if self.online is not None:
            # One definition of each online view, shared with `fit`.
            img = apply_transform(img, self.online, lossless, prior=prior_quality)
        elif self.matched:
            img = matched_format(img, lossless, quality=self.quality or 90, prior=prior_quality)
        elif self.quality is not None:
            img = jpeg(img, self.quality)
        if self.size is not None:
            img = resize(img, self.size, self.size) if resize_mode == "resize" \
                else crop_at_most(img, self.size)
        return img

    def describe(self, resize_mode: str = "crop", prior_quality: int = 95) -> str:
        if self.online is not None:
            jp = f"{transform_label(self.online)} ({describe_transforms([self.online])})"
        elif self.matched:
            jp = (f"both classes re-encoded alike: lossless files JPEG QF {prior_quality} "
                  f"first, then every file JPEG QF {self.quality}")
        elif self.quality is None:
            jp = "pixels as stored"
        else:
            jp = f"JPEG QF {self.quality} applied to every file"
        if self.size is None:
            return jp + ", original size"
        how = "resized to" if resize_mode == "resize" else "centre crop of at most"
        return f"{jp}, {how} {self.size}x{self.size}"


def crop_at_most(img: np.ndarray, side: int) -> np.ndarray:
    """Centre crop each dimension to at most ``side`` (never pads, never resamples)."""
    h, w = img.shape[:2]
    ch, cw = min(h, side), min(w, side)
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[y : y + ch, x : x + cw])


@dataclass
class EvalOptions:
    """How samples become scores; recorded in every report."""

    # Base view: centre crop to this (None/0: full resolution, what `scan` scores).
    max_side: int | None = None
    resize_mode: str = "crop"  # "crop" | "resize" for the resolution conditions
    video_frames: int | None = None  # frames sampled evenly per video (None: the model's)
    # Video score from frame scores (metrics.AGGREGATIONS); None: the model's own, as `scan`.
    aggregate: str | None = None
    bootstrap: int = 1000  # resamples for the AUC confidence interval (0: none)
    group_by: str = "generator"  # columns of the per-generator table: generator | dataset
    prior_quality: int = 95  # camera-like JPEG pass of lossless files under matched formats
    qualities: tuple[int, ...] = DEFAULT_QUALITIES
    sizes: tuple[int | None, ...] = DEFAULT_SIZES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.aggregate is not None and self.aggregate not in AGGREGATIONS:
            raise NoisetraceError(f"aggregate must be one of {', '.join(AGGREGATIONS)}")
        if self.resize_mode not in ("crop", "resize"):
            raise NoisetraceError("resize mode must be 'crop' or 'resize'")
        if self.group_by not in ("generator", "dataset"):
            raise NoisetraceError("group_by must be 'generator' or 'dataset'")


# -- scoring ---------------------------------------------------------------------------------
@dataclass
class Scored:
    """Scores of ``samples`` (those that decoded) under each condition.

    ``frames[c][i]``: (T_i,) calibrated probabilities of sample i's frames (T_i = 1 for an
    image); ``probs[c]``: (N,) sample-level probabilities (videos aggregated).
    """

    samples: list[Sample]
    kinds: list[str]
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=int)

    def frame_level(self, cond: str) -> tuple[np.ndarray, np.ndarray]:
        """(F,) labels and (F,) probabilities of every scored frame (images count once)."""
        fr = self.frames[cond]
        y = np.concatenate([np.full(len(f), s.label) for s, f in zip(self.samples, fr,
                                                                        strict=True)])
        return y.astype(int), np.concatenate(fr) if fr else np.zeros(0)


@dataclass
class ScoredRun:
    """One pass over the data, from which every scoring protocol builds its tables."""

    scored: Scored
    threshold: float
    opts: EvalOptions
    #: "sample" (and "frame" when videos were scored) -> condition name -> metrics.
    levels: dict[str, dict[str, dict[str, Any]]]

    @property
    def has_video(self) -> bool:
        return "frame" in self.levels

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Sample-level metrics (videos aggregated) by condition name."""
        return self.levels["sample"]


def _views(s: Sample, opts: EvalOptions, det: Detector
           ) -> tuple[str, list[np.ndarray], dict[str, Any] | None, np.ndarray | None]:
    """Decode one sample: its kind, its frames (one image, or frames sampled as `scan`
    samples them) and, for a video judged by a face model that combines its jitter index
    into the video score (``Detector.temporal_score``), that index's evidence, read from the
    file as stored as ``scan`` reads it, and the frame probabilities judged on the way (the
    as-stored condition's, so that condition does not judge the frames again)."""
    kind, _fmt = sniff(s.path)
    evidence, judged = None, None
    if kind == "image":
        imgs = [load_image(s.path)]
    else:
        n = opts.video_frames or det.config.video_frames
        combines = det.temporal_model() is det and "combine" in (det.config.temporal or {})
        length = int(det.config.temporal.get("frames", 12)) if combines else 0
        frames = list(iter_frames(s.path, mode="even", n=n, context=length))
        imgs = [f.image for f in frames]
        if combines:  # measured as scan measures it: the runs cut around the faces the
            # model's own search finds while it judges the frames (Detector.with_runs)
            from noisetrace.detector import ScanResult

            rows: list[np.ndarray] = []
            failed: list[str] = []
            judged = np.asarray(det.judge(det.with_runs(iter(frames), rows, failed),
                                          ScanResult(path=s.path)))  # fmt: skip
            evidence = None if failed else det.jitter_evidence(rows)
    if opts.max_side:
        imgs = [crop_at_most(i, opts.max_side) for i in imgs]
        judged = None  # judged before the crop: not the views the conditions see
    return kind, imgs, evidence, judged


def score_conditions(
    det: Detector,
    samples: Sequence[Sample],
    conditions: Sequence[Condition],
    opts: EvalOptions | None = None,
    on_sample: Callable[[int, int], None] | None = None,
) -> Scored:
    """Score every sample under every condition; each file is decoded once.

    A condition transforms the decoded frames; the model then judges them exactly as a scan
    does (:meth:`Detector.judge`: whole frames, or the faces of a face model), so a file
    scores the same here as in ``noisetrace scan`` under the identity condition.
    Unreadable files are listed in ``failed`` (with the loader's message) and left out.
    ``on_sample(done, total)`` reports progress.
    """
    from noisetrace.detector import ScanResult

    opts = opts or EvalOptions()
    t0 = time.perf_counter()
    out = Scored(samples=[], kinds=[])
    probs: dict[str, list[np.ndarray]] = {c.name: [] for c in conditions}
    evidence: list[dict[str, Any] | None] = []
    for i, s in enumerate(samples):
        try:
            kind, imgs, ev, judged = _views(s, opts, det)
            per_cond = {}
            for c in conditions:
                if judged is not None and c == Condition():  # as stored: judged already
                    per_cond[c.name] = judged
                    continue
                views = [c.apply(im, s.lossless, opts.resize_mode, opts.prior_quality)
                         for im in imgs]
                per_cond[c.name] = np.asarray(det.judge(views, ScanResult(path=s.path)))
        except InputError as exc:
            out.failed.append({"path": s.path, "error": str(exc)})
        else:
            out.samples.append(s)
            out.kinds.append(kind)
            evidence.append(ev)
            for name, p in per_cond.items():
                probs[name].append(p)
        if on_sample:
            on_sample(i + 1, len(samples))
    own = opts.aggregate in (None, det.config.video_aggregate)
    for name, per_sample in probs.items():
        out.frames[name] = per_sample
        agg = [aggregate_scores(p, opts.aggregate or det.config.video_aggregate)
               for p in per_sample]  # fmt: skip
        # A face model's learned combination with the jitter index, as scan scores a video
        # (the index is read from the file as stored, under every condition).
        comb = [det.temporal_score(a, ev) if own and ev else None
                for a, ev in zip(agg, evidence, strict=True)]  # fmt: skip
        out.probs[name] = np.array([a if c is None else c for a, c in zip(agg, comb,
                                                                         strict=True)])
    out.seconds = time.perf_counter() - t0
    return out


# -- tables ----------------------------------------------------------------------------------
def condition_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float,
                      bootstrap: int = 1000, seed: int = 0) -> dict[str, float]:
    """:func:`binary_metrics` plus the AUC bootstrap interval and the calibration error."""
    m: dict[str, Any] = binary_metrics(labels, probs, threshold)
    lo, hi = (bootstrap_ci(labels, probs, "auc", n=bootstrap, seed=seed)
              if bootstrap and len(np.unique(labels)) == 2 else (math.nan, math.nan))
    m["auc_ci"] = [lo, hi]
    m["ece"] = expected_calibration_error(labels, probs) if len(labels) else math.nan
    return m


def roc_points(labels: np.ndarray, probs: np.ndarray, max_points: int = 300) -> dict[str, list]:
    """ROC curve for plotting: (fpr, tpr) lists, thinned to at most ``max_points``."""
    if len(np.unique(labels)) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = skm.roc_curve(labels, probs)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    return v


def metrics_table(title: str, metrics: dict[str, dict], conditions: Sequence[Condition],
                  first: str = "condition") -> dict[str, Any]:
    """Rows of per-condition metrics (AUC with its 95% interval) as a generic table."""
    cols = [first, "n", "n_fake", "auc", "auc_ci"] + [c for c in METRIC_COLUMNS if c != "auc"]
    rows = []
    for c in conditions:
        m = metrics[c.name]
        label = {"quality": c.quality_label, "size": c.size_label}.get(first, c.name)
        ci = m.get("auc_ci", [math.nan, math.nan])
        ci_s = "" if any(math.isnan(v) for v in ci) else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        rows.append([label, m["n"], m["n_fake"], _fmt(m["auc"]), ci_s]
                    + [_fmt(m[k]) for k in METRIC_COLUMNS if k != "auc"])
    return {"title": title, "columns": cols, "rows": rows}


def group_key(s: Sample, group_by: str = "generator", multi_dataset: bool = False) -> str:
    """Column of the per-generator table: fakes by generator (or dataset); reals as 'real'
    (per dataset when several datasets are mixed)."""
    if s.label == REAL:
        return f"real: {s.dataset}" if multi_dataset and s.dataset else "real"
    key = (s.generator if group_by == "generator" else s.dataset) or s.dataset or "fake"
    return key


def generator_table(scored: Scored, conditions: Sequence[Condition], threshold: float,
                    group_by: str = "generator") -> dict[str, Any]:
    """DJIN Table 2: per JPEG condition, how many samples of each generator are predicted
    Real and Fake (at the first resolution), and the accuracy at every resolution.

    Returns a generic table (two rows per condition, "Real" and "Fake") plus ``data`` with
    the same counts and per-generator accuracy in structured form.
    """
    multi = len({s.dataset for s in scored.samples if s.label == REAL}) > 1
    keys = [group_key(s, group_by, multi) for s in scored.samples]
    fake_cols = sorted({k for k, s in zip(keys, scored.samples, strict=True) if s.label == FAKE})
    real_cols = sorted({k for k, s in zip(keys, scored.samples, strict=True) if s.label == REAL})
    cols = fake_cols + real_cols
    keys_a = np.array(keys, dtype=object)
    y = scored.labels
    qualities = list(dict.fromkeys(c.quality for c in conditions))
    sizes = list(dict.fromkeys(c.size for c in conditions))
    size_names = "/".join(Condition(size=s).size_label for s in sizes)
    by = {(c.quality, c.size): c for c in conditions}
    rows, data = [], []
    for q in qualities:
        first = by.get((q, sizes[0]))
        if first is None:
            continue
        pred = scored.probs[first.name] >= threshold
        counts = {k: {"real": int((~pred[keys_a == k]).sum()), "fake": int(pred[keys_a == k].sum())}
                  for k in cols}
        accs = {}
        for s in sizes:
            c = by.get((q, s))
            if c is not None:
                accs[Condition(size=s).size_label] = float(
                    ((scored.probs[c.name] >= threshold).astype(int) == y).mean())
        acc_s = " / ".join(f"{100 * a:.2f}%" for a in accs.values())
        label = Condition(q).quality_label
        rows.append([label, "Real"] + [counts[k]["real"] for k in cols] + [acc_s])
        rows.append(["", "Fake"] + [counts[k]["fake"] for k in cols] + [""])
        per_col_acc = {k: (counts[k]["fake"] if k in fake_cols else counts[k]["real"])
                       / max(1, counts[k]["real"] + counts[k]["fake"]) for k in cols}
        data.append({"condition": label, "counts": counts, "accuracy": accs,
                     "accuracy_per_column": per_col_acc})
    return {"title": f"Per-generator predictions (counts at {Condition(size=sizes[0]).size_label}"
                     f"; accuracy at {size_names})",
            "columns": ["condition", "predicted"] + cols + [f"accuracy ({size_names})"],
            "rows": rows, "data": data}


def per_group_table(scored: Scored, cond: Condition, threshold: float,
                    group_by: str = "generator") -> dict[str, Any]:
    """Each generator's fakes against all reals: AUC and the share called fake."""
    y, p = scored.labels, scored.probs[cond.name]
    keys = np.array([group_key(s, group_by) for s in scored.samples], dtype=object)
    rows = []
    for k in sorted(set(keys[y == FAKE])):
        m = (keys == k) | (y == REAL)
        bm = binary_metrics(y[m], p[m], threshold)
        rows.append([k, int(((keys == k) & (y == FAKE)).sum()), _fmt(bm["auc"]),
                     _fmt(bm["recall"]), _fmt(bm["accuracy"])])
    return {"title": f"Each {group_by}'s fakes against all reals ({cond.name})",
            "columns": [group_by, "n_fake", "auc", "detected (recall)", "accuracy"],
            "rows": rows}


def confound_table(metrics: dict[str, dict], raw: Sequence[Condition]) -> dict[str, Any]:
    """Raw conditions beside their matched-format twins, with the change in AUC/accuracy."""
    rows = []
    for c in raw:
        a, b = metrics[c.name], metrics[c.twin().name]
        rows.append([c.name, c.twin().name, _fmt(a["auc"]), _fmt(b["auc"]),
                     _fmt(b["auc"] - a["auc"]), _fmt(a["accuracy"]), _fmt(b["accuracy"]),
                     _fmt(b["accuracy"] - a["accuracy"])])
    return {"title": "Format confound: raw vs both classes re-encoded identically",
            "columns": ["raw condition", "matched condition", "auc raw", "auc matched",
                        "auc change", "acc raw", "acc matched", "acc change"],
            "rows": rows}


# -- the protocols ---------------------------------------------------------------------------
def plan(protocols: Iterable[str], opts: EvalOptions) -> dict[str, list[Condition]]:
    """The conditions each scoring protocol reports on, by protocol name. Protocols that
    plan from the others' conditions (``after_others``: ``confound``) come last."""
    chosen = get_protocols(protocols)
    scoring = [p for p in chosen if isinstance(p, ConditionProtocol)]
    if len(scoring) < len(chosen):
        other = ", ".join(p.name for p in chosen if p not in scoring)
        raise NoisetraceError(f"{other} does not score one model under test conditions; run "
                              "it with `noisetrace evaluate --protocol` or its own function "
                              "(leave_one_out, cross_dataset, ...)")
    out: dict[str, list[Condition]] = {}
    for late in (False, True):
        for p in scoring:
            if p.after_others == late:
                others = list(dict.fromkeys(c for cs in out.values() for c in cs))
                out[p.name] = p.plan(opts, others if late else [])
    return out


def evaluate(det: Detector, samples: Sequence[Sample], protocols: Iterable[str],
             opts: EvalOptions | None = None,
             on_sample: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run image/video protocols; returns the report dict (see :mod:`.report`)."""
    opts = opts or EvalOptions()
    planned = plan(protocols, opts)
    chosen = {p.name: p for p in get_protocols(planned)}
    conds = list(dict.fromkeys(c for cs in planned.values() for c in cs))
    extra = [c for name, cs in planned.items() for c in chosen[name].extra_conditions(cs)]
    conds = list(dict.fromkeys(conds + extra))
    scored = score_conditions(det, samples, conds, opts, on_sample)
    if not scored.samples:
        raise NoisetraceError("no sample could be read; check the --data paths (errors: "
                              + "; ".join(f["error"] for f in scored.failed[:3]) + ")")
    thr, y = det.threshold, scored.labels
    has_video = any(k == "video" for k in scored.kinds)
    levels = {"sample": {}, "frame": {}} if has_video else {"sample": {}}
    for c in conds:
        levels["sample"][c.name] = condition_metrics(y, scored.probs[c.name], thr,
                                                     opts.bootstrap, opts.seed)
        if has_video:
            fy, fp = scored.frame_level(c.name)
            levels["frame"][c.name] = condition_metrics(fy, fp, thr, opts.bootstrap, opts.seed)
    run = ScoredRun(scored, thr, opts, levels)
    sections = [chosen[name].build(run, cs) for name, cs in planned.items()]
    n_img = sum(k == "image" for k in scored.kinds)
    report: dict[str, Any] = {
        "model": {"name": det.name, "arch": det.config.arch, "threshold": thr,
                  "calibration": dict(det.config.calibration)},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "counts": {"samples": len(scored.samples), "real": int((y == REAL).sum()),
                   "fake": int((y == FAKE).sum()), "images": n_img,
                   "videos": len(scored.kinds) - n_img, "unreadable": len(scored.failed),
                   "datasets": sorted({s.dataset for s in scored.samples if s.dataset})},
        "unreadable": scored.failed,
        "conditions": {c.name: {**asdict(c), "description":
                                c.describe(opts.resize_mode, opts.prior_quality)}
                       for c in conds},
        "metrics": levels,
        "roc": {c.name: roc_points(y, scored.probs[c.name]) for c in conds},
        "sections": sections,
        "seconds": round(scored.seconds, 1),
        "scores": [{"path": s.path, "label": s.label, "generator": s.generator,
                    "dataset": s.dataset, "kind": k,
                    **{c.name: float(scored.probs[c.name][i]) for c in conds}}
                   for i, (s, k) in enumerate(zip(scored.samples, scored.kinds, strict=True))],
    }
    report["summary"] = summarize(report)
    return report


def summarize(report: dict[str, Any]) -> list[str]:
    """A few plain sentences on what the tables say."""
    ms, cn = report["metrics"]["sample"], report["counts"]
    out = [f"{cn['samples']} samples ({cn['real']} real, {cn['fake']} fake; {cn['images']} "
           f"images, {cn['videos']} videos), model {report['model']['name']}, threshold "
           f"{report['model']['threshold']:.2f}."]
    if cn["unreadable"]:
        out.append(f"{cn['unreadable']} file(s) could not be read and were left out.")

    # Sections of protocols no longer registered (an old report) add no sentence.
    registered = set(protocol_names())
    names = [n for n in dict.fromkeys(sec["protocol"] for sec in report["sections"])
             if n in registered]
    known = {p.name: p for p in get_protocols(names)}
    for sec in report["sections"]:
        if sec["protocol"] in known:
            out += known[sec["protocol"]].summarize(sec, ms)
    return out


# -- protocols that train --------------------------------------------------------------------
TrainFn = Callable[[list[Sample]], Detector]


def _score_single(det: Detector, test: list[Sample], opts: EvalOptions) -> dict[str, Any]:
    sc = score_conditions(det, test, [Condition()], opts)
    return condition_metrics(sc.labels, sc.probs[Condition().name], det.threshold,
                             opts.bootstrap, opts.seed)


def _split_classes(samples: Sequence[Sample], test_fraction: float, seed: int,
                   ) -> tuple[list[Sample], list[Sample]]:
    train, test = split(list(samples), test_fraction, seed)
    return train, test


def _balance(test: list[Sample], seed: int) -> list[Sample]:
    """Equal numbers of real and fake (the Xception paper's 150 + 150), by subsampling."""
    rng = np.random.default_rng(seed)
    real = [s for s in test if s.label == REAL]
    fake = [s for s in test if s.label == FAKE]
    n = min(len(real), len(fake))
    pick = [real[i] for i in sorted(rng.choice(len(real), n, replace=False))] + \
           [fake[i] for i in sorted(rng.choice(len(fake), n, replace=False))]
    return pick


def leave_one_out(samples: Sequence[Sample], train_fn: TrainFn, *, key: str = "generator",
                  test_fraction: float = 0.3, balance: bool = False,
                  opts: EvalOptions | None = None) -> dict[str, Any]:
    """Leave-one-manipulation-out (Xception paper Table 1, first block).

    Row "all": train on every manipulation (train split), test on the held-back split.
    Then for each manipulation m: train on the reals' train split and the other
    manipulations, test on the reals' test split plus every sample of m (never seen).
    ``key``: the Sample field naming the manipulation (``generator`` or ``dataset``).
    """
    opts = opts or EvalOptions()
    reals = [s for s in samples if s.label == REAL]
    fakes = [s for s in samples if s.label == FAKE]
    manips = sorted({getattr(s, key) for s in fakes})
    if len(manips) < 2 or not reals:
        raise NoisetraceError("leave-one-manipulation-out needs real samples and at least two "
                              f"fake {key}s; found {len(manips)}")
    r_tr, r_te = _split_classes(reals, test_fraction, opts.seed)
    f_tr, f_te = _split_classes(fakes, test_fraction, opts.seed)
    runs = [("all", manips, r_tr + f_tr, r_te + f_te)]
    for m in manips:
        train = r_tr + [s for s in f_tr if getattr(s, key) != m]
        test = r_te + [s for s in fakes if getattr(s, key) == m]
        runs.append((m, [x for x in manips if x != m], train, test))
    rows, data = [], []
    for test_name, train_names, train, test in runs:
        if balance:
            test = _balance(test, opts.seed)
        det = train_fn(train)
        m = _score_single(det, test, opts)
        rows.append([", ".join(train_names), "seen (held-back split)" if test_name == "all"
                     else test_name, m["n"], _fmt(m["accuracy"]), _fmt(m["balanced_accuracy"]),
                     _fmt(m["auc"])])
        data.append({"train": train_names, "test": test_name, "n_train": len(train),
                     "metrics": m})
    table = {"title": f"Leave one {key} out", "columns": ["train", "test", "n", "accuracy",
                                                          "balanced_accuracy", "auc"],
             "rows": rows, "data": data}
    return get_protocol("loo").section([table])


def cross_dataset(domains: dict[str, list[Sample]], train_fn: TrainFn, *,
                  test_fraction: float = 0.3, opts: EvalOptions | None = None
                  ) -> dict[str, Any]:
    """Train on each domain, test on every domain's held-back split (Xception Table 1,
    Celeb-DF block). Rows: training domain; columns: test domain; cells: accuracy / AUC."""
    opts = opts or EvalOptions()
    splits = {}
    for name, ss in domains.items():
        if len({s.label for s in ss}) < 2:
            raise NoisetraceError(f"cross-dataset domain {name!r} has only one class; "
                                  "each domain needs real and fake samples")
        splits[name] = _split_classes(ss, test_fraction, opts.seed)
    names = list(domains)
    acc_rows, auc_rows, data = [], [], {}
    for a in names:
        det = train_fn(splits[a][0])
        acc_rows.append([a])
        auc_rows.append([a])
        for b in names:
            m = _score_single(det, splits[b][1], opts)
            data[f"{a} -> {b}"] = m
            acc_rows[-1].append(_fmt(m["accuracy"]))
            auc_rows[-1].append(_fmt(m["auc"]))
    cols = ["train \\ test"] + names
    return get_protocol("crossdataset").section([
        {"title": "Accuracy", "columns": cols, "rows": acc_rows, "data": data},
        {"title": "AUC", "columns": cols, "rows": auc_rows}])


def score_sequences(det: Detector, samples: Sequence[Sample], length: int,
                    max_frames: int = 120, opts: EvalOptions | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Clip-level scores: each video's first ``max_frames`` frames cut into non-overlapping
    clips of ``length`` successive frames (the Xception paper scores every clip, not whole
    videos). A sequence model (``pretrained_cfg["sequence_length"]``) sees the (1, L, 3, H, W)
    clip; a frame model's clip score aggregates its frame probabilities.
    Returns (C,) labels and (C,) probabilities. Images are skipped."""
    import torch

    opts = opts or EvalOptions()
    ys, ps = [], []
    seq = bool(det.cfg.get("sequence_length"))
    for s in samples:
        try:
            if sniff(s.path)[0] != "video":
                continue
            frames = [f.image for f in iter_frames(s.path, mode="first", n=max_frames)]
        except InputError:
            continue
        if opts.max_side:
            frames = [crop_at_most(f, opts.max_side) for f in frames]
        for k in range(len(frames) // length):
            clip = frames[k * length : (k + 1) * length]
            if seq:
                with torch.inference_mode():
                    x = det.to_tensor(np.stack([det.fit_size(f) for f in clip]))
                    lg = det.model(x.unsqueeze(0)).float().cpu().numpy().reshape(-1)
                p = float(det.calibrate(lg)[0])
            else:
                p = aggregate_scores(det.calibrate(det.logits_batch(clip)),
                                     opts.aggregate or det.config.video_aggregate)
            ys.append(s.label)
            ps.append(p)
    return np.array(ys, dtype=int), np.array(ps, dtype=float)


def sequence_length_sweep(samples: Sequence[Sample],
                          train_fn: Callable[[list[Sample], int], Detector], *,
                          lengths: Sequence[int] = (5, 10, 20, 40, 60), key: str = "generator",
                          max_frames: int = 120, test_fraction: float = 0.3,
                          opts: EvalOptions | None = None) -> dict[str, Any]:
    """Xception paper Table 2: one model per sequence length L (``train_fn(train, L)``),
    clip accuracy on each manipulation's test videos plus the test reals."""
    opts = opts or EvalOptions()
    train, test = _split_classes(samples, test_fraction, opts.seed)
    reals = [s for s in test if s.label == REAL]
    manips = sorted({getattr(s, key) for s in test if s.label == FAKE})
    if not reals or not manips:
        raise NoisetraceError("the sequence-length sweep needs real and fake test videos")
    acc = {m: [] for m in manips}
    data = {}
    for L in lengths:
        det = train_fn(list(train), L)
        for m in manips:
            sub = reals + [s for s in test if s.label == FAKE and getattr(s, key) == m]
            y, p = score_sequences(det, sub, L, max_frames, opts)
            mt = binary_metrics(y, p, det.threshold) if len(y) else {"accuracy": math.nan,
                                                                     "n": 0}
            acc[m].append(_fmt(mt["accuracy"]))
            data[f"{m} @ {L}"] = mt
    rows = [[m] + acc[m] for m in manips]
    return get_protocol("seqlen").section([
        {"title": "Clip accuracy", "columns": ["test"] + [str(L) for L in lengths],
         "rows": rows, "data": data}])
