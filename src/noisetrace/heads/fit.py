"""Fit heads and their late fusion on cached features; leave-one-family-out validation.

One recipe (:class:`HeadRecipe`, a YAML file in ``configs/``) says which branches to use
(a linear head on an extractor's features, or an existing model's logit as it is), which
transforms every training image appears under (matched JPEG qualities: both classes with
the same compression history), the folds and the target false-positive rate.

Fitting (:func:`fit_stack`): branch heads are fitted on K-1 folds and predict the K-th
(grouped: a real photo and its aligned fake never straddle two folds); a logistic
regression on those out-of-fold logits is the fusion (stacking), so its output is a
calibrated probability of data the branches did not train on; then the branch heads are
refitted on everything. The decision threshold is set on the out-of-fold scores of the
real images: the lowest threshold keeping the false-positive rate of every kind of real
image (camera, web, film scan, ...; 20 or more images) at ``target_fpr`` (never below 0.5).

Validation (:func:`leave_one_family_out`): for every fake family F and every fold k of the
reals, the whole recipe (heads, fusion, threshold) is refitted without F and without fold
k, then scores F's fakes of fold k and the reals of fold k under each test transform. Every
image is scored exactly once per transform by a model that never saw its family (fakes) or
itself (reals).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from noisetrace.data.augment import describe_transforms, transform_label
from noisetrace.data.families import family_of, load_corpus
from noisetrace.data.manifest import FAKE, REAL, Sample
from noisetrace.heads.cache import FeatureCache, default_cache_dir
from noisetrace.heads.extractors import from_spec
from noisetrace.heads.linear import LinearHead
from noisetrace.metrics import threshold_at_fpr

SMALL_FAMILY = 12  # fake families smaller than this are held out together as "small-*"


@dataclass
class HeadRecipe:
    """What ``noisetrace fit`` reads from ``configs/*.yaml`` (see configs/default_fusion.yaml).

    ``branches``: name -> {"extractor": spec, "feature": key, "C": float, "l2norm": bool,
    "not_trained_on": [families]} for a fitted linear head, or {"model": dir-or-bundled-name}
    for a fixed model whose raw logit is used as it is. ``not_trained_on`` keeps fake
    families out of that branch's head only (the fusion still sees them): aligned fakes
    teach a noise head decoder traces but teach a semantic head to call real content fake.
    """

    data: list[str]
    branches: dict[str, dict[str, Any]]
    transforms: list[str] = field(default_factory=lambda: ["matched90", "matched65"])
    test_transforms: list[str] = field(default_factory=lambda: ["matched90", "matched65"])
    folds: int = 5
    inner_folds: int = 3
    seed: int = 0
    target_fpr: float = 0.03
    name: str = "fusion"
    cache: str | None = None
    exclude: list[str] = field(default_factory=list)  # families left out of everything
    # Fake families that are only ever tested: held out in validation, never trained on.
    test_only: list[str] = field(default_factory=list)
    # Scoring JPEG-encodes every input at this quality first (None: as decoded), the
    # compression state the heads were fitted on (FeatureDetector.canonical).
    canonical_jpeg: int | None = 90
    # True: every transformed view also gets ``canonical_jpeg`` before its features are
    # computed, as `scan` prepares every input, so validation scores exactly what `scan`
    # scores. False (recipes fitted before 2026-12-03): features of the view itself; `scan`'s
    # extra JPEG pass then moves a semantic logit by about 0.9 on average.
    features_as_scanned: bool = False
    # "image": whole pictures (face material is left out of the corpus). "face": a face
    # model: the data are face crops (e.g. from `noisetrace prepare`), and the fitted model
    # finds and crops faces the same way (``face``: DetectorConfig.face) before scoring.
    input: str = "image"
    face: dict[str, Any] | None = None
    # How the fitted model turns a video's frame scores into its score (metrics.AGGREGATIONS;
    # DetectorConfig.video_aggregate); validation by video uses the same.
    video_aggregate: str = "mean"
    # A face model's video stage (heads/temporal.TemporalRecipe): video manifests whose
    # jitter index is calibrated on the real videos and combined with the frame model's
    # video score, validated by leaving each source out; None: frames only.
    temporal: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from noisetrace.metrics import AGGREGATIONS

        if self.video_aggregate not in AGGREGATIONS:
            raise ValueError(f"video_aggregate {self.video_aggregate!r}: use one of "
                             f"{', '.join(AGGREGATIONS)}")  # fmt: skip
        if self.temporal is not None:
            from noisetrace.heads.temporal import TemporalRecipe

            if self.input != "face":
                raise ValueError("a `temporal` block needs a face model (input: face): the "
                                 "jitter index is read on the largest face of each run")
            TemporalRecipe.from_dict(self.temporal)  # its errors now, not after the refits

    def corpus(self) -> list[Sample]:
        """The recipe's samples: whole images (face material left out), or for a face model
        everything its data lists (face crops)."""
        if self.input not in ("image", "face"):
            raise ValueError(f"input must be 'image' or 'face', got {self.input!r}")
        return load_corpus(self.data, whole_images=self.input == "image")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> HeadRecipe:
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)


def fold_of(group: str, k: int, seed: int) -> int:
    """Stable fold of a group (its hash): the same photo lands in the same fold everywhere."""
    h = hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()
    return int(h[:8], 16) % k


# -- features ------------------------------------------------------------------------------
class Features:
    """Every branch's features of every sample under every transform, from the cache."""

    def __init__(self, recipe: HeadRecipe, samples: list[Sample], verbose: bool = True):
        self.recipe = recipe
        root = Path(recipe.cache) if recipe.cache else default_cache_dir()
        self.x: dict[tuple[str, str], np.ndarray] = {}
        transforms = sorted(set(recipe.transforms) | set(recipe.test_transforms))
        keep = np.ones(len(samples), bool)
        raw: dict[tuple[str, str], tuple[np.ndarray, list[int]]] = {}
        for name, b in recipe.branches.items():
            if "model" in b:
                spec, key = {"kind": "detector", "model": b["model"]}, "logit"
            else:
                spec, key = b["extractor"], b.get("feature", "embeds")
            ext = from_spec(spec)
            canonical = recipe.canonical_jpeg if recipe.features_as_scanned else None
            cache = FeatureCache(root, ext.id, ext, max_side=None, canonical=canonical)
            for t in transforms:
                if verbose:
                    print(f"features: {name} ({ext.id[:40]}) under {t}", flush=True)
                X, ok = cache.stack(samples, t, key, progress=verbose)
                m = np.zeros(len(samples), bool)
                m[ok] = True
                keep &= m
                raw[(name, t)] = (X, ok)
        self.samples = [s for s, k in zip(samples, keep, strict=True) if k]
        for (name, t), (X, ok) in raw.items():
            pos = {j: i for i, j in enumerate(ok)}
            self.x[(name, t)] = X[[pos[j] for j in np.flatnonzero(keep)]]
        self.y = np.array([s.label for s in self.samples])
        self.family = np.array([family_of(s) for s in self.samples])
        fam_counts = {f: int((self.family == f).sum()) for f in set(self.family[self.y == FAKE])}
        for f, n in fam_counts.items():  # tiny families are only meaningful pooled
            if n < SMALL_FAMILY:
                self.family[(self.family == f) & (self.y == FAKE)] = "small-families"
        # Groups that are paths (an aligned fake names its real twin) are compared by real
        # path, however the manifests spelled them.
        self.groups = np.array([os.path.realpath(g) if os.path.exists(g) else g
                                for g in (s.group or s.path for s in self.samples)])


# -- fitting -------------------------------------------------------------------------------
@dataclass
class StackedModel:
    heads: dict[str, LinearHead | None]  # None: a fixed model's logit, used as it is
    coef: dict[str, float]
    intercept: float
    threshold: float
    oof_real: np.ndarray  # out-of-fold fused probabilities of the training reals

    def branch_logit(self, name: str, X: np.ndarray) -> np.ndarray:
        h = self.heads[name]
        return X[:, 0, 0].astype(np.float64) if h is None else h.decision_function(X)

    def proba(self, feats: Features, idx: np.ndarray, transform: str) -> np.ndarray:
        z = sum(self.coef[n] * self.branch_logit(n, feats.x[(n, transform)][idx])
                for n in self.coef) + self.intercept  # fmt: skip
        return 1.0 / (1.0 + np.exp(-z))


def _fit_heads(recipe: HeadRecipe, feats: Features, idx: np.ndarray
               ) -> dict[str, LinearHead | None]:  # fmt: skip
    heads: dict[str, LinearHead | None] = {}
    for name, b in recipe.branches.items():
        if "model" in b:
            heads[name] = None
            continue
        skip = b.get("not_trained_on") or []
        sel = idx[~((feats.y[idx] == FAKE) & np.isin(feats.family[idx], skip))]
        X = np.concatenate([feats.x[(name, t)][sel] for t in recipe.transforms])
        y = np.tile(feats.y[sel], len(recipe.transforms))
        heads[name] = LinearHead(C=float(b.get("C", 0.1)), l2norm=bool(b.get("l2norm", False))
                                 ).fit(X, y)  # fmt: skip
    return heads


def fit_stack(recipe: HeadRecipe, feats: Features, idx: np.ndarray) -> StackedModel:
    """Fit branch heads, the stacked fusion and the threshold on the samples ``idx``."""
    from sklearn.linear_model import LogisticRegression

    names = list(recipe.branches)
    k = recipe.inner_folds
    folds = np.array([fold_of(g, k, recipe.seed + 1) for g in feats.groups[idx]])
    Z = {t: np.zeros((len(idx), len(names))) for t in recipe.transforms}
    for f in range(k):
        tr, va = idx[folds != f], idx[folds == f]
        if len(np.unique(feats.y[tr])) < 2 or not len(va):
            continue
        heads = _fit_heads(recipe, feats, tr)
        m = StackedModel(heads, {}, 0.0, 0.5, np.zeros(0))
        for t in recipe.transforms:
            for j, n in enumerate(names):
                Z[t][folds == f, j] = m.branch_logit(n, feats.x[(n, t)][va])
    Zall = np.concatenate([Z[t] for t in recipe.transforms])
    yall = np.tile(feats.y[idx], len(recipe.transforms))
    w = np.where(yall == FAKE, 0.5 / max(yall.mean(), 1e-9), 0.5 / max(1 - yall.mean(), 1e-9))
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(Zall, yall, sample_weight=w)
    coef = {n: float(c) for n, c in zip(names, lr.coef_.ravel(), strict=True)}
    intercept = float(lr.intercept_[0])
    oof = 1.0 / (1.0 + np.exp(-(Zall @ lr.coef_.ravel() + intercept)))
    oof_real = oof[yall == REAL]
    # The threshold holds the target for every kind of real image with enough examples
    # (camera photos, web photos, film scans, ...), not just on average over them.
    kinds = np.tile(feats.family[idx], len(recipe.transforms))[yall == REAL]
    # Each image appears once per transform: a kind needs min_n distinct images, not copies.
    thr = threshold_at_fpr(oof_real, kinds, recipe.target_fpr,
                           min_n=20 * len(recipe.transforms))
    return StackedModel(_fit_heads(recipe, feats, idx), coef, intercept, thr, oof_real)


# -- validation ----------------------------------------------------------------------------
def _rate(x: np.ndarray) -> float | None:
    return round(float(np.mean(x)), 4) if len(x) else None


def held_out_scores(recipe: HeadRecipe, feats: Features) -> Iterator[
        tuple[str, np.ndarray, dict[str, np.ndarray], np.ndarray, list[float]]]:  # fmt: skip
    """The refits of leave-one-family-out, one fake family F at a time: for every fold k of
    the reals, the whole recipe is refitted without F (and test-only families) and without
    fold k, then scores F's fakes of fold k and the reals of fold k. Yields F, its fakes'
    indices, the held-out probabilities per test transform (NaN where not scored), the
    threshold that scored each sample (NaN likewise) and the thresholds of the K refits."""
    K = recipe.folds
    gfold = np.array([fold_of(g, K, recipe.seed) for g in feats.groups])
    real_idx = np.flatnonzero(feats.y == REAL)
    never = recipe.exclude + recipe.test_only
    for F in sorted(set(feats.family[feats.y == FAKE]) - set(recipe.exclude)):
        fake_F = np.flatnonzero((feats.family == F) & (feats.y == FAKE))
        scores = {t: np.full(len(feats.y), np.nan) for t in recipe.test_transforms}
        thr_of = np.full(len(feats.y), np.nan)
        thr_used: list[float] = []
        for k in range(K):
            train = np.flatnonzero((gfold != k) & (feats.family != F)
                                   & ~np.isin(feats.family, never))  # fmt: skip
            test = np.concatenate([fake_F[gfold[fake_F] == k], real_idx[gfold[real_idx] == k]])
            if not len(test):
                continue
            m = fit_stack(recipe, feats, train)
            thr_used.append(m.threshold)
            thr_of[test] = m.threshold
            for t in recipe.test_transforms:
                scores[t][test] = m.proba(feats, test, t)
        yield F, fake_F, scores, thr_of, thr_used


def leave_one_family_out(recipe: HeadRecipe, feats: Features, bootstrap: int = 1000,
                         verbose: bool = True,
                         keep: dict[str, dict[str, np.ndarray]] | None = None
                         ) -> dict[str, Any]:  # fmt: skip
    """Per held-out family and test transform: AUC (bootstrap CI), detection rate at the
    refitted threshold, and false-positive rates of the reals by source kind. ``keep``:
    filled with family -> transform -> (N,) held-out probabilities (NaN where not scored),
    for a later stage that needs them (the temporal combination of a face recipe)."""
    from noisetrace.metrics import binary_metrics, bootstrap_ci

    real_idx = np.flatnonzero(feats.y == REAL)
    kinds = feats.family  # reals carry their source kind
    rows: list[dict[str, Any]] = []
    real_scores = {t: {} for t in recipe.test_transforms}  # (family, sample) -> prob
    t0 = time.perf_counter()
    for F, fake_F, scores, _thr_of, thr_used in held_out_scores(recipe, feats):
        if keep is not None:
            keep[F] = scores
        thr = float(np.mean(thr_used))
        for t in recipe.test_transforms:
            sel = np.concatenate([fake_F, real_idx])
            y, s = feats.y[sel], scores[t][sel]
            met = binary_metrics(y, s, thr)
            lo, hi = bootstrap_ci(y, s, "auc", n=bootstrap, seed=recipe.seed)
            for i in real_idx:
                real_scores[t].setdefault(i, []).append(scores[t][i] >= thr)
            rows.append({"family": F, "transform": t, "n_fake": int(len(fake_F)),
                         "n_real": int(len(real_idx)), "auc": round(met["auc"], 4),
                         "auc_ci": [round(lo, 4), round(hi, 4)],
                         "detected": _rate(scores[t][fake_F] >= thr),
                         "real_fpr": _rate(scores[t][real_idx] >= thr),
                         "threshold": round(thr, 4)})  # fmt: skip
        if verbose:
            r = [x for x in rows if x["family"] == F]
            print(f"lofo {F:>16} n={len(fake_F):4d} " + "  ".join(
                f"{x['transform']}: auc {x['auc']:.3f} det {x['detected']:.2f}" for x in r)
                + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    # Real false positives by source kind: a real image counts as called fake under a
    # transform in the share of held-out-family models that called it fake.
    fpr_rows = []
    for t in recipe.test_transforms:
        per = {i: np.mean(v) for i, v in real_scores[t].items()}
        for kind in sorted(set(kinds[real_idx])):
            ids = [i for i in real_idx if kinds[i] == kind]
            fpr_rows.append({"kind": kind, "transform": t, "n": len(ids),
                             "fpr": round(float(np.mean([per[i] for i in ids])), 4)})
    summary = {}
    for t in recipe.test_transforms:
        r = [x for x in rows if x["transform"] == t]
        summary[t] = {"mean_auc": round(float(np.mean([x["auc"] for x in r])), 4),
                      "min_auc": round(float(np.min([x["auc"] for x in r])), 4),
                      "worst_family": min(r, key=lambda x: x["auc"])["family"],
                      "mean_detected": round(float(np.mean([x["detected"] for x in r])), 4)}
    return {"protocol": "lofo", "recipe": {**asdict(recipe), "cache": None}, "families": rows,
            "real_fpr": fpr_rows, "summary": summary, "n_samples": int(len(feats.y))}


# -- building the model directory ------------------------------------------------------------
def build_detector(recipe: HeadRecipe, feats: Features, model: StackedModel) -> Any:
    """The fitted stack as a :class:`FusedDetector` (or a lone branch's detector)."""
    from noisetrace.detector import DetectorConfig
    from noisetrace.heads.detector import FeatureDetector, FusedDetector
    from noisetrace.zoo import load_detector

    branches = {}
    for name, b in recipe.branches.items():
        if "model" in b:
            branches[name] = load_detector(b["model"])
        else:
            cfg = DetectorConfig(name=f"{recipe.name}-{name}", arch="feature-head",
                                 extra={"canonical_jpeg": recipe.canonical_jpeg})  # fmt: skip
            branches[name] = FeatureDetector(from_spec(b["extractor"]), model.heads[name],
                                             b.get("feature", "embeds"), cfg)  # fmt: skip
    config = DetectorConfig(name=recipe.name, arch="fusion", threshold=model.threshold,
                            input=recipe.input, video_aggregate=recipe.video_aggregate)
    if recipe.input == "face" and recipe.face:
        config.face = {**config.face, **recipe.face}
    return FusedDetector(branches, model.coef, model.intercept, config)


def fit_recipe(recipe: HeadRecipe, out: str | Path, lofo: bool = True,
               verbose: bool = True, config_path: str | None = None) -> dict[str, Any]:
    """Validate (leave-one-family-out), then fit on all the data and write the model
    directory ``out`` with ``card.json`` (recipe, validation tables, data counts)."""
    video = None
    if recipe.temporal is not None and not lofo:
        # The combination is fitted on the refits' held-out scores: none without them.
        print("fit: no leave-one-family-out refits, so no video stage (the recipe's "
              "`temporal` block is skipped; the model scores videos frame by frame)")
    elif recipe.temporal is not None:
        from noisetrace.heads.temporal import TemporalRecipe

        video = TemporalRecipe.from_dict(recipe.temporal)
        video.check()
    samples = recipe.corpus()
    feats = Features(recipe, samples, verbose=verbose)
    held: dict[str, dict[str, np.ndarray]] = {}
    report = leave_one_family_out(recipe, feats, verbose=verbose, keep=held) if lofo else {}
    idx = np.flatnonzero(~np.isin(feats.family, recipe.exclude + recipe.test_only))
    model = fit_stack(recipe, feats, idx)
    det = build_detector(recipe, feats, model)
    temporal_card = None
    if video is not None:
        from noisetrace.heads.temporal import crop_video_keys, fit_temporal

        det.config.temporal, temporal_card = fit_temporal(
            det, video, crop_video_keys(feats.samples),
            feats.y, held, recipe.target_fpr, log=print if verbose else lambda _m: None)
        temporal_card["command"] = (f"noisetrace fit --config {config_path or 'CONFIG'} "
                                    "--out OUT")  # fmt: skip
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    det.save(tmp, onnx=True)
    counts: dict[str, int] = {}
    for f, y in zip(feats.family[idx], feats.y[idx], strict=True):
        key = f"{'fake' if y == FAKE else 'real'}:{f}"
        counts[key] = counts.get(key, 0) + 1
    # The cache folder is this machine's business, not the model's.
    card = {"name": recipe.name, "recipe": {**asdict(recipe), "cache": None}, "lofo": report,
            "config_path": config_path,
            "fusion": {"coef": model.coef, "intercept": model.intercept,
                       "threshold": model.threshold},
            "training_counts": dict(sorted(counts.items())),
            "oof_real_fpr": round(float(np.mean(model.oof_real >= model.threshold)), 4)}
    if temporal_card is not None:
        card["temporal"] = temporal_card
    if report:  # the figures `noisetrace models` shows
        n = report["n_samples"]
        card["metrics"] = {}
        for t, v in report["summary"].items():
            card["metrics"][f"leave-one-family-out, {transform_label(t)}"] = {
                "mean over families": {"auc": v["mean_auc"], "n": n},
                f"worst ({v['worst_family']})": {"auc": v["min_auc"]}}
    write_card(tmp, card)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)
    return card


# -- tables --------------------------------------------------------------------------------
def lofo_section(rep: dict[str, Any]) -> dict[str, Any]:
    """The leave-one-family-out result as an evaluate-report section (tables of rows)."""
    fam_rows = [[r["family"], r["transform"], r["n_fake"], f"{r['auc']:.3f}",
                 f"{r['auc_ci'][0]:.3f}-{r['auc_ci'][1]:.3f}", f"{r['detected']:.2f}",
                 f"{r['real_fpr']:.3f}", f"{r['threshold']:.3f}"] for r in rep["families"]]
    fpr_rows = [[r["kind"], r["transform"], r["n"], f"{r['fpr']:.3f}"] for r in rep["real_fpr"]]
    sum_rows = [[t, f"{s['mean_auc']:.3f}", f"{s['min_auc']:.3f}", s["worst_family"],
                 f"{s['mean_detected']:.2f}"] for t, s in rep["summary"].items()]  # fmt: skip
    return {
        "protocol": "lofo", "title": "Leave one family out",
        "description": (
            "For each fake family and each of the reals' folds, the whole recipe (heads, "
            "stacked fusion, threshold) is refitted without that family and that fold, then "
            "scores them; both classes carry the same compression history ("
            + describe_transforms(list(rep["summary"]) or ["matched90"]) + "). Detection rate "
            "and real false-positive rate at the threshold each refit chose."),
        "tables": [
            {"title": "Summary", "columns": ["transform", "mean AUC", "min AUC",
                                             "worst family", "mean detection"], "rows": sum_rows},
            {"title": "Per held-out family", "columns": [
                "family", "transform", "fakes", "AUC", "95% CI", "detected", "real FPR",
                "threshold"], "rows": fam_rows},
            {"title": "Reals called fake, by source", "columns": [
                "source", "transform", "n", "false-positive rate"], "rows": fpr_rows},
        ], "roc": []}  # fmt: skip


def markdown_tables(section: dict[str, Any]) -> str:
    out = []
    for t in section["tables"]:
        out.append(f"**{t['title']}**\n")
        out.append("| " + " | ".join(t["columns"]) + " |")
        out.append("|" + "---|" * len(t["columns"]))
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in t["rows"]]
        out.append("")
    return "\n".join(out)


def write_card(directory: str | Path, card: dict[str, Any]) -> None:
    """A fitted model's ``card.json`` and the ``MODEL_CARD.md`` rendered from it."""
    d = Path(directory)
    (d / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (d / "MODEL_CARD.md").write_text(model_card(card))


def _per_name(rows: list[dict[str, Any]], name: str, value: str, flag: Callable[[float], bool],
              fmt: Callable[[float], str]) -> str:  # fmt: skip
    """The flagged rows, one clause per family or source: its one view, or its range over
    the views flagged ("aligned-taef2 (AUC 0.48-0.59 in 6 views)")."""
    hits: dict[str, list[tuple[float, str]]] = {}
    for x in rows:
        if flag(x[value]):
            hits.setdefault(str(x[name]), []).append((float(x[value]), str(x["transform"])))
    parts = []
    for n, vs in sorted(hits.items()):
        if len(vs) == 1:
            parts.append(f"{n} ({fmt(vs[0][0])}, {transform_label(vs[0][1])})")
        else:
            lo, hi = fmt(min(v for v, _ in vs)), fmt(max(v for v, _ in vs))
            span = lo if lo == hi else f"{lo} to {hi}"
            parts.append(f"{n} ({span} in {len(vs)} views)")
    return "; ".join(parts)


def model_card(card: dict[str, Any]) -> str:
    """MODEL_CARD.md of a fitted fusion: what it is, its data, recipe and validation tables."""
    from noisetrace.semantic.backbones import NATIVE_SIZE

    r = card["recipe"]
    fu = card["fusion"]
    config_path = card.get("config_path") or "configs/default_fusion.yaml"
    face = r.get("input") == "face"
    what_it_scores = ("that a face is swapped, re-enacted or generated, from crops of the faces "
                      "it finds in each image or video frame" if face else
                      "that a whole image is AI-generated")  # fmt: skip
    kinds = ("real source of faces" if face else
             "kind of real image (camera, web, film scan, ...)")  # fmt: skip
    n_lines = {2: "two", 3: "three", 4: "four", 5: "five"}.get(len(r["branches"]),
                                                               str(len(r["branches"])))
    pooling = {"mean": "the mean of its sampled frames' scores",
               "median": "the median of its sampled frames' scores",
               "max": "its most suspicious sampled frame's score",
               "top25": "the mean of its most suspicious quarter of sampled frames"}[
                   r.get("video_aggregate", "mean")]  # fmt: skip
    lines = [f"# Model card: {card['name']}", "",
             f"Scores the probability {what_it_scores}, from {n_lines} lines of evidence fused "
             "by a learned, calibrated late fusion.", "", "## Architecture", ""]
    for name, b in r["branches"].items():
        if "model" in b:
            lines.append(f"- **{name}**: the raw logit of model `{b['model']}`")
        else:
            e = b["extractor"]
            side = e.get("image_size") or NATIVE_SIZE
            what = (f"CLIP image encoder `{e.get('backbone')}` on the `{e.get('views')}` view "
                    f"of {side} px (feature `{b.get('feature')}`)" if e.get("kind") == "clip" else
                    f"SPAM residual statistics (686) of the centre {e.get('max_side')} px at "
                    "native resolution" if e.get("kind") == "spam" else str(e))  # fmt: skip
            lines.append(f"- **{name}**: logistic regression (C {b.get('C')}) on {what}")
    coef = ", ".join(f"{k} {v:.3f}" for k, v in fu["coef"].items())
    lines += ["", f"Fusion: p = sigmoid({coef}; intercept {fu['intercept']:.3f}) over the "
              "branch logits, fitted on out-of-fold logits (stacking), so it is calibrated on "
              "data the branches did not train on. Threshold "
              f"**{fu['threshold']:.3f}**: at most {r['target_fpr']:.0%} false positives on "
              f"out-of-fold images of each {kinds}; "
              f"over all reals {card.get('oof_real_fpr', float('nan')):.1%}.", "",
              "## Training data", "", "| class:family | images |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card["training_counts"].items()]
    lines += ["", "Sources: " + ", ".join(f"`{d}`" for d in r["data"]) + " (docs/data.md lists "
              "every repository and commit). Every image appears under each of "
              + ", ".join(r["transforms"]) + f" ({describe_transforms(r['transforms'])})."
              + (" Validated on, never trained on: " + ", ".join(r["test_only"]) + "."
                 if r.get("test_only") else "")
              + (f" Features are those `scan` computes from each view (JPEG "
                 f"{r.get('canonical_jpeg')} first, as every scanned input), so validation "
                 "measures what scanning gives." if r.get("features_as_scanned") else ""), "",
              "## Recipe", "", "```",
              f"noisetrace fit --config {config_path} --out runs/{card['name']}",
              "```", ""]
    if card.get("lofo"):
        rep = card["lofo"]
        n_fakes = [x["n_fake"] for x in rep["families"]]
        sizes = f"{min(n_fakes)}-{max(n_fakes)}" if n_fakes else "few"
        weak = _per_name(rep["families"], "family", "auc", lambda v: v < 0.85,
                         lambda v: f"AUC {v:.2f}")  # fmt: skip
        high = _per_name(rep["real_fpr"], "kind", "fpr", lambda v: v > 0.05,
                         lambda v: f"{v:.1%}")  # fmt: skip
        lines += ["## Where it is weak", "",
                  "- Held-out families below AUC 0.85: " + (weak or "none") + ".",
                  "- Real sources above 5% false positives: " + (high or "none") + ".",
                  "- Detection rates at the threshold are modest: the threshold is set for few "
                  "false alarms on real photos, so many fakes of unseen families score below "
                  "it; rank by score when triaging.",
                  f"- Validation families are small ({sizes} images each); intervals are wide.",
                  *(f"- {w}" for w in (card.get("video_lofo") or {}).get("weak", [])),
                  ("- Videos are scored frame by frame, their face's jitter index the only "
                   f"temporal evidence; the frames' score is {pooling} (each frame's most "
                   "suspicious face), combined with the index into the video's score by a "
                   "regression fitted on five video sources (two of them with 2-3 fake "
                   "videos): a real video that was processed frame by frame (re-aligned, "
                   "enhanced, re-encoded per frame) can read high (below)."
                   if (card.get("temporal") or {}).get("combined") else
                   "- Videos are scored frame by frame (no temporal model)"
                   + (f"; a video's score is {pooling} (each frame's most suspicious face)."
                      if face else "; faces are better served by the `faces` model.")
                   + (" The jitter index is reported beside the score, not in it (below)."
                      if card.get("temporal") else "")), ""]
        lines += ["## Validation: leave one family out", "",
                  f"Reproduce: `noisetrace evaluate --model {card['name']} --protocol lofo "
                  "--out reports/lofo` (refits this recipe without each family and fold).", "",
                  markdown_tables(lofo_section(card["lofo"]))]
    if card.get("video_lofo"):  # written by benchmarks/faces_lofo.py --card
        v = card["video_lofo"]
        lines += ["## Leave one source out, by video, beside a peer", "",
                  f"Reproduce: `{v['command']}`. A video's score is {pooling}, as when "
                  "scanning; the interval is a bootstrap over videos. \"vs all reals\" ranks "
                  "the held-out fakes among every real of the corpus, most of them of other "
                  "kinds than the fakes; \"vs own reals\" among the reals of the same source "
                  "(same capture and compression), where it has enough: read that one first.",
                  "", v["markdown"]]
    if card.get("temporal"):  # the recipe's video stage (heads/temporal.fit_temporal)
        t = card["temporal"]
        lines += ["## On video: the jitter index" + (", combined into the score"
                  if t.get("combined") else " beside the score"), "",
                  "A face swapped or animated frame by frame is rendered anew in every frame: "
                  "its change from one frame to the next comes and goes, where a filmed "
                  "face's keeps going. Scanning a video, this model also reads runs of "
                  "consecutive frames and reports the largest face's jitter index against "
                  "its ring (`temporal` in the record: the index, the share of the "
                  f"{t['real_videos']} real calibration videos ("
                  + ", ".join(t["real_sources"]) + ") whose index is higher, and `unusual` "
                  "when under 5% are). "
                  + ("The video score combines it with the frame model's own (a logistic "
                     "regression on the two, fitted with each video source left out: the "
                     "table's last part; `temporal.frame_score` keeps the frames' own "
                     "score). " if t.get("combined") else
                     "It is evidence beside the score, never in it. ")
                  + "Real videos that were processed (resized, re-aligned, enhanced) can "
                  "read high.", "",
                  f"Reproduce: `{t['command']}`. \"unusual\" for each source is read "
                  "against the reals of the other sources, as a new real video meets the "
                  "calibration.", "", t["markdown"], ""]
    return "\n".join(lines) + "\n"
