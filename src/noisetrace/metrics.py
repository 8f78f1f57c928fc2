"""The one metrics module: every score table in noisetrace comes from here."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false positive and false negative rates cross."""
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # Interpolate between the two ROC points that bracket the crossing.
    if i + 1 < len(fpr) and (fnr[i] - fpr[i]) * (fnr[i + 1] - fpr[i + 1]) < 0:
        d0, d1 = fnr[i] - fpr[i], fnr[i + 1] - fpr[i + 1]
        t = d0 / (d0 - d1)
        return float(fpr[i] + t * (fpr[i + 1] - fpr[i]))
    return float((fpr[i] + fnr[i]) / 2)


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Highest true positive rate with false positive rate <= ``target``."""
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def threshold_at_fpr(real_scores: np.ndarray, kinds: np.ndarray, target: float,
                     min_n: int = 20, floor: float = 0.5) -> float:
    """The lowest threshold that calls at most ``target`` of every kind of real image
    (camera, web, film scan, ...) fake, over kinds with ``min_n`` or more images (fewer
    cannot measure a few percent); when no kind has that many, over all of them pooled (a
    small validation set of many kinds); never below ``floor``. ``real_scores``:
    probabilities of real images on data the model did not train on; ``kinds``: their
    source kinds."""
    real_scores, kinds = np.asarray(real_scores, float), np.asarray(kinds)
    thr, held = floor, False
    for kind in sorted(set(kinds.tolist())):
        sel = real_scores[kinds == kind]
        if len(sel) >= min_n:
            thr, held = max(thr, float(np.quantile(sel, 1 - target))), True
    if not held and len(real_scores) >= min_n:
        thr = max(thr, float(np.quantile(real_scores, 1 - target)))
    return thr


def binary_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """AUC, AP, accuracy, balanced accuracy, EER, TPR@1%/5% FPR, precision/recall/F1.

    ``labels``: 1 = fake; ``scores``: higher = more likely fake. Metrics that need both
    classes are NaN when one is missing.
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    pred = (s >= threshold).astype(int)
    out: dict[str, float] = {
        "n": int(len(y)),
        "n_fake": int(y.sum()),
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else float("nan"),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
    }
    both = len(np.unique(y)) == 2
    out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, pred)) if both else float("nan")
    out["auc"] = float(skm.roc_auc_score(y, s)) if both else float("nan")
    out["ap"] = float(skm.average_precision_score(y, s)) if both else float("nan")
    out["eer"] = eer(y, s) if both else float("nan")
    out["tpr@1%fpr"] = tpr_at_fpr(y, s, 0.01) if both else float("nan")
    out["tpr@5%fpr"] = tpr_at_fpr(y, s, 0.05) if both else float("nan")
    return out


def _auc_ranks(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half): equal to scikit-learn's
    ``roc_auc_score`` and ~100x cheaper, which matters inside the bootstrap loop."""
    from scipy.stats import rankdata

    r = rankdata(s)
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_ci(
    labels,
    scores,
    metric: str = "auc",
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float = 0.5,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of one metric of :func:`binary_metrics`."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    # The threshold-free ranking metrics are computed alone: the same values as
    # binary_metrics gives, without the cost of every other metric on each resample.
    fast = {"auc": _auc_ranks, "ap": skm.average_precision_score, "eer": eer}.get(metric)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        if fast is not None:
            vals.append(float(fast(y[idx], s[idx])))
        else:
            vals.append(binary_metrics(y[idx], s[idx], threshold)[metric])
    if not vals:
        return float("nan"), float("nan")
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def fit_platt(logits, labels) -> tuple[float, float]:
    """Platt scaling: (a, b) so that sigmoid(a * logit + b) is calibrated on this data."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(logits, dtype=float).reshape(-1, 1)
    y = np.asarray(labels, dtype=int)
    # Fitted on standardised logits, then mapped back: a network whose logits blew up
    # (1e7 after one epoch at a high rate) otherwise leaves the solver at a slope near 0,
    # and every calibrated score at 0.5.
    mu, sd = float(x.mean()), float(x.std())
    sd = sd if np.isfinite(sd) and sd > 0 else 1.0
    lr = LogisticRegression(C=1e4, max_iter=1000).fit((x - mu) / sd, y)
    a = float(lr.coef_[0, 0]) / sd
    b = float(lr.intercept_[0]) - a * mu
    if a <= 0:
        # A negative slope would turn the model's ranking upside down; calibration must only
        # rescale. Keep the slope at 1 and fit the offset alone (the base rate).
        from scipy.optimize import minimize_scalar

        z = x[:, 0]

        def nll(b0: float) -> float:
            return float(np.sum(np.logaddexp(0.0, -(2 * y - 1) * (z + b0))))

        a, b = 1.0, float(minimize_scalar(nll, bounds=(-50, 50), method="bounded").x)
    return a, b


def expected_calibration_error(labels, probs, bins: int = 10) -> float:
    """ECE: average |accuracy - confidence| over equal-width probability bins."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probs, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


#: How frame scores of one video become the video's score.
AGGREGATIONS = ("mean", "median", "max", "top25")


def aggregate_scores(frame_scores, how: str = "mean") -> float:
    """One video-level score from its (T,) frame scores: ``mean`` (default, robust to one odd
    frame), ``median``, ``max`` (flags a video with any manipulated stretch) or ``top25``
    (the mean of the highest quarter of the frames, at least one: a swap that fails only on
    some poses or expressions still shows, one odd frame does not decide). A model's
    ``video_aggregate`` says which :meth:`Detector.scan` uses. NaN frames are ignored; NaN
    when none is finite."""
    s = np.asarray(frame_scores, dtype=float).reshape(-1)
    s = s[np.isfinite(s)]
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}: use one of {', '.join(AGGREGATIONS)}")
    if not len(s):
        return float("nan")
    if how == "top25":
        return float(np.mean(np.sort(s)[-max(1, math.ceil(len(s) / 4)) :]))
    return float({"mean": np.mean, "median": np.median, "max": np.max}[how](s))


def aggregate_by_group(groups, scores, how: str = "mean") -> tuple[list, np.ndarray]:
    """Aggregate (N,) frame ``scores`` per value of (N,) ``groups`` (e.g. the video each frame
    came from). Returns the groups in first-seen order and their (G,) aggregated scores."""
    order: dict = {}
    for g, s in zip(groups, np.asarray(scores, dtype=float), strict=True):
        order.setdefault(g, []).append(s)
    keys = list(order)
    return keys, np.array([aggregate_scores(order[k], how) for k in keys])
