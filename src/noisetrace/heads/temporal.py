"""The video stage of a face recipe: the jitter index calibrated on real videos and combined
with the frame model's video score, validated by leaving each video source out.

A face recipe (configs/faces.yaml) may carry a ``temporal`` block naming video manifests;
``noisetrace fit`` then, after the leave-one-family-out refits of the frame model, reads
every video as ``scan`` reads it (:func:`measure_videos`: sampled frames with their runs,
``Detector.with_runs``), sets each video's jitter index beside the video score of the frame
model *held out of that video's source* (:func:`held_out_video_scores`), validates a
logistic regression on the two by source (:func:`learned_combination`) and fits the shipped
one on every source (:func:`fit_combination`). The model's ``config.temporal`` gets the
calibration (every real video's index) and the combination (``Detector.temporal_score``).

Rows are plain dicts, one per video (per half of a side-by-side ``pairs`` clip): ``source``
(its manifest's folder), ``path``, ``video`` (the file's real path), ``label``, ``group``,
``family`` (the source's fake family in the face corpus, or None), ``jitter``, ``runs`` and
``score`` (the fitted model's own video score).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")

#: The video key of a row or a corpus crop: (real path of the file, "fake" or "real").
VideoKey = tuple[str, str]


@dataclass
class VideoSource:
    """One manifest of videos. ``family``: the face corpus's fake family of this source (its
    fakes are scored by the frame model held out of it, and its reals are that source's
    own: never used to fit the combination that scores its fakes); None for reals of no
    fake source. ``pairs``: side-by-side clips (real feed left, its swap right) labelled
    ``pair``, read as two videos."""

    manifest: str
    family: str | None = None
    pairs: bool = False


@dataclass
class TemporalRecipe:
    """The ``temporal`` block of a face recipe. ``frames``/``size``/``highpass``: the runs
    (``Detector.run_jitter``); ``samples``: frames sampled per video (None: the model's
    ``video_frames``, as ``scan``); ``transform``: the held-out frame scores the shipped
    combination is fitted on; ``folds``: folds of the real videos in its validation."""

    videos: list[VideoSource]
    frames: int = 12
    size: int = 128
    highpass: bool = True
    samples: int | None = None
    transform: str = "matched90"
    folds: int = 5
    seed: int = 0
    combine: bool = True

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TemporalRecipe:
        raw = dict(raw)
        videos = [VideoSource(**v) if isinstance(v, Mapping) else VideoSource(str(v))
                  for v in raw.pop("videos", [])]  # fmt: skip
        if not videos:
            raise ValueError("a temporal block needs `videos`: manifests of real and fake "
                             "face videos (see configs/faces.yaml)")  # fmt: skip
        return cls(videos=videos, **raw)

    def check(self) -> None:
        """Fail before hours of refits, not after: every manifest must be there, with the
        ``path`` and ``label`` columns the video stage reads."""
        from noisetrace.errors import NoisetraceError

        missing = [v.manifest for v in self.videos if not Path(v.manifest).is_file()]
        if missing:
            raise NoisetraceError(
                "the temporal block's video manifests are missing: " + ", ".join(missing)
                + " (docs/data.md says how to rebuild them; or drop the block)")
        for v in self.videos:
            with open(v.manifest, newline="") as fh:
                header = next(csv.reader(fh, delimiter="\t"), [])
            lacking = [c for c in ("path", "label") if c not in header]
            if lacking:
                raise NoisetraceError(
                    f"{v.manifest} has no {' or '.join(lacking)} column: a video manifest is "
                    "a tab-separated file with a header row holding path and label")

    def settings(self) -> dict[str, Any]:
        """What ``Detector.run_jitter`` reads from ``config.temporal``."""
        return {"frames": self.frames, "size": self.size, "highpass": self.highpass}


@dataclass
class Measured:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "file: why", one per unread video


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def measure_videos(det: Any, recipe: TemporalRecipe,
                   log: Callable[[str], None] = print) -> Measured:  # fmt: skip
    """Read every video of ``recipe`` as ``scan`` reads it with the face model ``det``: its
    sampled frames with their runs, the model's face search and scores, the runs' jitter
    (``Detector.with_runs``). A video that cannot be read, or has no face in any run, is
    reported in ``failed`` and left out; the others go on."""
    from noisetrace.media.video import iter_frames
    from noisetrace.metrics import aggregate_scores

    old = det.config.temporal
    det.config.temporal = {**(old or {}), **recipe.settings()}
    samples = recipe.samples or det.config.video_frames
    out = Measured()
    try:
        for src in recipe.videos:
            root = Path(src.manifest).parent
            with open(src.manifest, newline="") as fh:
                entries = list(csv.DictReader(fh, delimiter="\t"))
            for r in entries:
                if not (r.get("path") or "").strip():
                    out.failed.append(f"{src.manifest}: a row without a path: {r}"[:300])
                    log(f"{src.manifest}: a row without a path, left out")
                    continue
                p = root / r["path"]
                row_label = (r.get("label") or "").strip().lower()
                if src.pairs != (row_label == "pair") or p.suffix.lower() not in VIDEO_SUFFIXES:
                    continue
                try:
                    sampled = list(iter_frames(p, mode="even", n=samples, context=recipe.frames))
                    halves = {"real": 0, "fake": 1} if src.pairs else {row_label: None}
                    for label, k in halves.items():
                        rows: list[np.ndarray] = []
                        failed: list[str] = []
                        part = _half(sampled, k)
                        probs, _ = det.face_details(det.with_runs(part, rows, failed))
                        ev = {"error": failed[0]} if failed else det.jitter_evidence(rows)
                        if ev is None or "error" in ev:
                            why = "no face in any run" if ev is None else ev["error"]
                            out.failed.append(f"{p} ({label}): {why}")
                            log(f"{p.name} ({label}): {why}")
                            continue
                        out.rows.append({
                            "source": root.name, "path": r["path"], "video": _real(p),
                            "label": label, "group": r.get("group") or r["path"],
                            "family": src.family, "jitter": ev["jitter_index"],
                            "runs": ev["runs"],
                            "score": float(aggregate_scores(probs, det.config.video_aggregate)),
                        })  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - report this video, go on
                    out.failed.append(f"{p}: {type(exc).__name__}: {exc}"[:300])
                    log(f"{p.name}: {type(exc).__name__}: {exc}")
                    continue
                log(f"{root.name}: {r['path'][-60:]}")
    finally:
        det.config.temporal = old
    return out


def _half(sampled: list[Any], k: int | None) -> list[Any]:
    """The frames (and runs) of one half of side-by-side clips (k = 0 left, 1 right)."""
    if k is None:
        return sampled
    w2 = sampled[0].image.shape[1] // 2
    cols = slice(k * w2, (k + 1) * w2)
    return [replace(f, image=np.ascontiguousarray(f.image[:, cols]),
                    run=None if f.run is None else tuple(x[:, cols] for x in f.run))
            for f in sampled]  # fmt: skip


def crop_video_keys(samples: list[Any]) -> np.ndarray:
    """Per face-corpus crop, the real path of the video it was cut from ("" for stills)."""
    return np.array([_real(s.video) if getattr(s, "video", None) else "" for s in samples])


def held_out_video_scores(rows: list[dict[str, Any]], videos: np.ndarray, y: np.ndarray,
                          held: Mapping[str, np.ndarray], aggregate: str
                          ) -> dict[str, dict[VideoKey, float]]:  # fmt: skip
    """family -> {(video, label): the video score of the frame model held out of that
    family} for every row's video the corpus has crops of (the family's fakes, and reals
    out of fold), its crops aggregated as the model aggregates a video's frames.

    ``videos``/``y``: per crop, its video's real path ("" for stills) and label;
    ``held``: family -> (N,) held-out probabilities (NaN where that refit did not score).
    """
    from noisetrace.metrics import aggregate_by_group

    wanted = {(r["video"], r["label"]) for r in rows}
    out: dict[str, dict[VideoKey, float]] = {}
    for fam, s in held.items():
        ok = np.isfinite(s) & (videos != "")
        keys = [(v, "fake" if lab == 1 else "real") for v, lab in zip(videos[ok], y[ok],
                                                                     strict=True)]  # fmt: skip
        got, vs = aggregate_by_group(keys, s[ok], aggregate)
        out[fam] = {k: float(v) for k, v in zip(got, vs, strict=True) if k in wanted}
    return out


def _key(row: Mapping[str, Any]) -> VideoKey:
    return row["video"], row["label"]


def _logit(p: Any) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _design(x: np.ndarray) -> np.ndarray:
    """(N, 2) [frame probability, jitter] -> (N, 2) [frame logit, jitter]."""
    return np.column_stack([_logit(x[:, 0]), x[:, 1]])


def learned_combination(rows: list[dict[str, Any]], scores: Mapping[str, Mapping[VideoKey, float]],
                        folds: int = 5, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """A logistic regression on (frame-model logit, jitter index), validated by leaving each
    video source out: for held-out family F it is fitted on the other sources' fake videos
    (each scored by the frame model held out of its own source) and on the real videos of
    other sources than F, in ``folds`` folds of the reals, so no real video is scored by a
    combination fitted on it; F's fakes get the mean of the fold combinations. Both inputs
    are standardised on the fitting reals. One row per held-out family: video AUCs against
    every real video of the frame score, the index and the combination, the share caught
    at 5% of reals called fake, the mean weights."""
    from sklearn.linear_model import LogisticRegression

    from noisetrace.metrics import binary_metrics

    out = []
    rng = np.random.default_rng(seed)
    fake_fams = sorted({r["family"] for r in rows if r["label"] == "fake" and r["family"]})
    for fam in fake_fams:
        test = scores.get(fam)
        if not test:
            continue
        fakes = [r for r in rows if r["label"] == "fake" and r["family"] == fam and _key(r) in test]
        reals = [r for r in rows if r["label"] == "real" and _key(r) in test]
        train_f = [(scores[r["family"]][_key(r)], r["jitter"]) for r in rows
                   if r["label"] == "fake" and r["family"] not in (None, fam)
                   and _key(r) in scores.get(r["family"], {})]  # fmt: skip
        if not fakes or not reals or len(train_f) < 5:
            continue
        fold = rng.integers(0, folds, len(reals))
        x_real = np.array([(test[_key(r)], r["jitter"]) for r in reals])
        x_fake = np.array([(test[_key(r)], r["jitter"]) for r in fakes])
        fit_ok = np.array([r["family"] != fam for r in reals])
        out_real, out_fake, w_sum = np.zeros(len(reals)), np.zeros(len(fakes)), np.zeros(2)
        for f in range(folds):
            fit_r = x_real[(fold != f) & fit_ok]
            X = _design(np.vstack([np.array(train_f), fit_r]))
            mu, sd = X[len(train_f):].mean(0), X[len(train_f):].std(0) + 1e-9
            yy = np.r_[np.ones(len(train_f)), np.zeros(len(fit_r))]
            lr = LogisticRegression(C=1.0, class_weight="balanced").fit((X - mu) / sd, yy)
            w_sum += lr.coef_[0] / folds
            if (fold == f).any():  # a fold of a few reals can be empty
                out_real[fold == f] = lr.decision_function((_design(x_real[fold == f]) - mu) / sd)
            out_fake += lr.decision_function((_design(x_fake) - mu) / sd) / folds
        y = np.r_[np.ones(len(fakes)), np.zeros(len(reals))]
        cells = {"frame": np.r_[x_fake[:, 0], x_real[:, 0]],
                 "jitter": np.r_[x_fake[:, 1], x_real[:, 1]],
                 "learned": np.r_[out_fake, out_real]}  # fmt: skip
        row: dict[str, Any] = {"family": fam, "source": fakes[0]["source"],
                               "fakes": len(fakes), "reals": len(reals)}  # fmt: skip
        for n, v in cells.items():
            row[n] = round(binary_metrics(y, v)["auc"], 4)
            row[f"{n}_ci"] = _ci(y, v)
        row["caught"] = {n: round(float(np.mean(v[y == 1] > np.quantile(v[y == 0], 0.95))), 4)
                         for n, v in cells.items()}  # fmt: skip
        row["weights"] = w_sum.round(2).tolist()
        out.append(row)
    return out


def _ci(y: np.ndarray, s: np.ndarray) -> list[float]:
    from noisetrace.metrics import bootstrap_ci

    lo, hi = bootstrap_ci(y, s, "auc")
    return [round(lo, 2), round(hi, 2)]


def combination_markdown(table: list[dict[str, Any]]) -> str:
    """:func:`learned_combination`'s rows as a markdown table, with their mean."""
    md = ["| held-out source | fake / real videos | frame model (held out) | jitter index | "
          "learned combination | weights (frame, index) | caught at 5% of reals: frame / "
          "learned |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in table:
        cell = {n: f"{r[n]:.3f} ({r[f'{n}_ci'][0]:.2f}-{r[f'{n}_ci'][1]:.2f})"
                for n in ("frame", "jitter", "learned")}  # fmt: skip
        md.append(f"| {r['family']} | {r['fakes']} / {r['reals']} | {cell['frame']} | "
                  f"{cell['jitter']} | {cell['learned']} | {r['weights'][0]:.2f}, "
                  f"{r['weights'][1]:.2f} | {r['caught']['frame']:.2f} / "
                  f"{r['caught']['learned']:.2f} |")
    if table:
        mean = {n: np.mean([r[n] for r in table]) for n in ("frame", "jitter", "learned")}
        md.append(f"| **mean** | | **{mean['frame']:.3f}** | **{mean['jitter']:.3f}** | "
                  f"**{mean['learned']:.3f}** | | |")
    return "\n".join(md)


def fit_combination(rows: list[dict[str, Any]], scores: Mapping[str, Mapping[VideoKey, float]],
                    target_fpr: float, threshold: float, transform: str
                    ) -> dict[str, Any]:  # fmt: skip
    """The shipped combination (``Detector.temporal_score``): the logistic regression of
    :func:`learned_combination` fitted on every source's fake videos (each under the frame
    model held out of its source) and every real video (the median of its held-out scores
    over the refits), standardised on the reals; ``cut`` lets ``target_fpr`` of the real
    videos through and sits on ``threshold``, the model's own."""
    from sklearn.linear_model import LogisticRegression

    fakes = [(scores[r["family"]][_key(r)], r["jitter"]) for r in rows
             if r["label"] == "fake" and _key(r) in scores.get(r["family"] or "", {})]  # fmt: skip
    reals = [r for r in rows if r["label"] == "real"
             and any(_key(r) in s for s in scores.values())]  # fmt: skip
    if len(fakes) < 5 or len(reals) < 5:
        raise ValueError(f"the combination needs at least 5 fake and 5 real videos with "
                         f"held-out frame scores, got {len(fakes)} and {len(reals)}: check "
                         "that the temporal block's manifests hold videos the face corpus "
                         "has crops of, and that their fakes name the corpus family")  # fmt: skip
    x_real = [(float(np.median([s[_key(r)] for s in scores.values() if _key(r) in s])),
               r["jitter"]) for r in reals]  # fmt: skip
    X = _design(np.array(fakes + x_real))
    mu, sd = X[len(fakes):].mean(0), X[len(fakes):].std(0) + 1e-9
    y = np.r_[np.ones(len(fakes)), np.zeros(len(reals))]
    lr = LogisticRegression(C=1.0, class_weight="balanced").fit((X - mu) / sd, y)
    d_real = lr.decision_function((X[len(fakes):] - mu) / sd)
    cut = float(np.quantile(d_real, 1 - target_fpr))
    by_source: dict[str, list[bool]] = {}
    for r, d in zip(reals, d_real, strict=True):
        by_source.setdefault(r["source"], []).append(bool(d > cut))
    return {"coef": [round(float(w), 6) for w in lr.coef_[0]],
            "intercept": round(float(lr.intercept_[0]), 6),
            "mean": [round(float(v), 6) for v in mu], "scale": [round(float(v), 6) for v in sd],
            "cut": round(cut, 6), "target_fpr": target_fpr, "threshold": threshold,
            "inputs": ["frame logit", "jitter"],
            "fitted_on": {"fake_videos": len(fakes), "real_videos": len(reals),
                          "transform": transform},
            "real_videos_called_fake": {k: round(float(np.mean(v)), 3)
                                        for k, v in sorted(by_source.items())}}  # fmt: skip


def calibration(rows: list[dict[str, Any]], recipe: TemporalRecipe) -> dict[str, Any]:
    """The index's reference: every real video's index (sorted) and where they came from."""
    return {**recipe.settings(),
            "real": sorted(round(float(r["jitter"]), 4) for r in rows if r["label"] == "real"),
            "real_sources": sorted({r["source"] for r in rows if r["label"] == "real"})}


def fit_temporal(det: Any, recipe: TemporalRecipe, videos: np.ndarray, y: np.ndarray,
                 held: Mapping[str, Mapping[str, np.ndarray]], target_fpr: float,
                 log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """The video stage of ``noisetrace fit``: measure ``recipe``'s videos with the fitted
    face model ``det``, validate the combination by source under every transform ``held``
    has, fit the shipped one. ``held``: family -> transform -> (N,) held-out crop
    probabilities of the leave-one-family-out refits (``videos``/``y`` per crop, as
    :func:`held_out_video_scores`). Returns the model's ``config.temporal`` and the card's
    ``temporal`` section."""
    measured = measure_videos(det, recipe, log)
    rows = measured.rows
    temporal = calibration(rows, recipe)
    transforms = sorted({t for per in held.values() for t in per},
                        key=lambda t: (t != recipe.transform, t))  # fmt: skip
    tables, md = {}, []
    for t in transforms:
        sc = held_out_video_scores(rows, videos, y, {f: per[t] for f, per in held.items()
                                                      if t in per},
                                   det.config.video_aggregate)  # fmt: skip
        tables[t] = learned_combination(rows, sc, recipe.folds, recipe.seed)
        md += [f"Learned combination of the frame model's video score and the jitter index, "
               f"each video source left out in turn ({t}); video AUC against every real "
               "video (95% CI):", "", combination_markdown(tables[t]), ""]
        if t == recipe.transform and recipe.combine:
            temporal["combine"] = fit_combination(rows, sc, target_fpr, det.threshold, t)
    if recipe.combine and "combine" not in temporal:
        raise ValueError(f"the temporal block's transform {recipe.transform!r} is not among "
                         f"the held-out scores ({', '.join(transforms) or 'none'})")
    md = ["The index alone, no training:", "", index_markdown(rows), ""] + md
    card = {"markdown": "\n".join(md).strip(), "real_videos": len(temporal["real"]),
            "real_sources": temporal["real_sources"], "combined": "combine" in temporal,
            "learned": tables, "failed": measured.failed,
            "videos": {"fake": sum(r["label"] == "fake" for r in rows),
                       "real": sum(r["label"] == "real" for r in rows)}}  # fmt: skip
    return temporal, card


def auc_cell(y: np.ndarray, s: np.ndarray) -> str:
    """A table cell: AUC with its bootstrap 95% interval, or "-" with one class only."""
    from noisetrace.metrics import binary_metrics

    if y.all() or not y.any():
        return "-"
    lo, hi = _ci(y, s)
    return f"{binary_metrics(y, s)['auc']:.3f} ({lo:.2f}-{hi:.2f})"


def unusual(rows: list[dict[str, Any]], source: str) -> np.ndarray:
    """Per row of ``source``: called unusual against the reals of every other source (as a
    new real video meets the shipped calibration)."""
    from noisetrace.detector import UNUSUAL

    ref = np.array([r["jitter"] for r in rows if r["label"] == "real" and r["source"] != source])
    return np.array([np.mean(ref > r["jitter"]) < UNUSUAL
                     for r in rows if r["source"] == source])  # fmt: skip


def index_markdown(rows: list[dict[str, Any]]) -> str:
    """The index alone, no training, per source (markdown): AUC against the source's own
    reals and against all reals, the share of side-by-side pairs whose swapped half jitters
    more, medians, and the videos called unusual."""
    out = ["| source | fake / real videos | AUC vs own reals (95% CI) | AUC vs all reals | "
           "pairs: fake > real | median fake / real | unusual: fakes / reals (reference: the "
           "other sources' reals) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    y_all = np.array([r["label"] == "fake" for r in rows], int)
    s_all = np.array([r["jitter"] for r in rows], float)
    sources = sorted({r["source"] for r in rows})
    for source in sources:
        own = np.array([r["source"] == source for r in rows])
        y, s = y_all[own], s_all[own]
        vs_all = own | (y_all == 0)
        byp: dict[str, dict[str, float]] = {}
        for r in rows:
            if r["source"] == source:
                byp.setdefault(r["path"], {})[r["label"]] = r["jitter"]
        paired = [v["fake"] > v["real"] for v in byp.values() if {"fake", "real"} <= set(v)]
        share = f"{np.mean(paired):.2f} of {len(paired)}" if paired else "-"
        med = " / ".join(f"{np.median(s[y == c]):+.3f}" if (y == c).any() else "-"
                         for c in (1, 0))  # fmt: skip
        u = unusual(rows, source)
        flag = " / ".join(f"{u[y == c].mean():.2f}" if (y == c).any() else "-" for c in (1, 0))
        out.append(f"| {source} | {int(y.sum())} / {int((1 - y).sum())} | {auc_cell(y, s)} | "
                   f"{auc_cell(y_all[vs_all], s_all[vs_all])} | {share} | {med} | {flag} |")
    if rows:
        u_all = np.concatenate([unusual(rows, src) for src in sources])
        y_sorted = np.concatenate([y_all[[r["source"] == src for r in rows]] for src in sources])
        out.append(f"| **all** | {int(y_all.sum())} / {int((1 - y_all).sum())} | - | "
                   f"{auc_cell(y_all, s_all)} | | | "
                   + " / ".join(f"{u_all[y_sorted == c].mean():.2f}" if (y_sorted == c).any()
                                else "-" for c in (1, 0)) + " |")  # fmt: skip
    return "\n".join(out)
