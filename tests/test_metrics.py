"""Metrics against scikit-learn on generated scores, and hand-checked EER / TPR@FPR cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from noisetrace.metrics import (
    aggregate_by_group,
    aggregate_scores,
    binary_metrics,
    bootstrap_ci,
    eer,
    tpr_at_fpr,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    m = binary_metrics(y, s, threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["n"] == 300 and m["n_fake"] == int(y.sum())
    # EER from the ROC curve: where FPR and FNR cross, within one ROC step.
    fpr, tpr, _ = skm.roc_curve(y, s)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    assert abs(m["eer"] - (fpr[i] + 1 - tpr[i]) / 2) < 0.02


def test_eer_hand_checked():
    # Sorted scores: .95F .9F .8F .7R .6F .3R .2R .1R. At threshold .7: FPR = 1/4 (one real
    # called fake) and FNR = 1/4 (the fake at .6 missed): EER = 0.25.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9, 0.95])
    assert eer(y, s) == pytest.approx(0.25)
    # Perfect separation: 0; perfectly inverted: 1.
    assert eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(0.0)
    assert eer(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(1.0)
    # Alternating 0.9F .6R .3F .2R: at .6, FPR = FNR = 0.5.
    assert eer(np.array([0, 1, 0, 1]), np.array([0.2, 0.3, 0.6, 0.9])) == pytest.approx(0.5)


def test_tpr_at_fpr_hand_checked():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9, 0.95])
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(0.75)  # threshold .8: three fakes, no real
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(0.75)
    assert tpr_at_fpr(y, s, 0.25) == pytest.approx(1.0)  # threshold .6 costs one real of four
    # 100 reals scored 0..0.99 and 10 fakes at 0.985 + tiny offsets above one real: at 1% FPR
    # (one real allowed) every fake is caught, at 0% none of those under 0.99 is.
    y2 = np.r_[np.zeros(100), np.ones(10)].astype(int)
    s2 = np.r_[np.arange(100) / 100, 0.985 + np.arange(10) * 1e-4]
    assert tpr_at_fpr(y2, s2, 0.01) == pytest.approx(1.0)
    assert tpr_at_fpr(y2, s2, 0.0) == pytest.approx(0.0)
    m = binary_metrics(y2, s2)
    assert m["tpr@1%fpr"] == pytest.approx(1.0)
    assert m["tpr@5%fpr"] == pytest.approx(1.0)


def test_rank_auc_equals_sklearn_with_ties():
    from noisetrace.metrics import _auc_ranks

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(y * 0.5, 1.0), 1)  # rounded: many ties
    assert _auc_ranks(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_one_class_gives_nan_not_error():
    m = binary_metrics(np.ones(5, int), np.full(5, 0.9))
    assert math.isnan(m["auc"]) and math.isnan(m["eer"])
    assert m["accuracy"] == 1.0


def test_bootstrap_fast_path_equals_full_metrics():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    s = rng.normal(y * 0.8, 1.0)
    for metric in ("auc", "ap", "eer"):
        fast = bootstrap_ci(y, s, metric, n=60, seed=5)
        # The same resamples, every metric computed, this one picked.
        r = np.random.default_rng(5)
        vals = []
        for _ in range(60):
            idx = r.integers(0, len(y), len(y))
            if len(np.unique(y[idx])) == 2:
                vals.append(binary_metrics(y[idx], s[idx])[metric])
        assert fast == pytest.approx((np.quantile(vals, 0.025), np.quantile(vals, 0.975)))
    lo, hi = bootstrap_ci(y, s, "auc", n=200)
    assert lo < skm.roc_auc_score(y, s) < hi
    assert bootstrap_ci(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), n=50) == (1, 1)
    # Threshold metrics still go through binary_metrics.
    lo, hi = bootstrap_ci(y, s, "accuracy", n=50, threshold=0.4)
    assert 0 <= lo <= hi <= 1


def test_video_aggregation():
    f = [0.1, 0.2, 0.9, float("nan")]
    assert aggregate_scores(f) == pytest.approx(0.4)
    assert aggregate_scores(f, "median") == pytest.approx(0.2)
    assert aggregate_scores(f, "max") == pytest.approx(0.9)
    assert math.isnan(aggregate_scores([float("nan")]))
    # top25: the mean of the highest quarter (rounded up, at least one frame), NaN ignored.
    assert aggregate_scores(f, "top25") == pytest.approx(0.9)
    assert aggregate_scores([0.5, 0.1, 0.9, 0.3, 0.7], "top25") == pytest.approx(0.8)
    assert aggregate_scores([0.2] * 7 + [0.6], "top25") == pytest.approx(0.4)
    assert math.isnan(aggregate_scores([float("nan")], "top25"))
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_scores(f, "mode")
    keys, agg = aggregate_by_group(["a", "b", "a", "b"], [0.2, 0.5, 0.4, 0.9], "max")
    assert keys == ["a", "b"] and agg.tolist() == [0.4, 0.9]


def test_platt_never_inverts_the_ranking():
    from noisetrace.metrics import fit_platt

    rng = np.random.default_rng(0)
    logits = rng.normal(size=200)
    labels = (logits < 0).astype(int)  # an inverted model
    a, b = fit_platt(logits, labels)
    assert a > 0


def test_platt_scaling_does_not_depend_on_the_logits_scale():
    """Logits of a network that blew up (1e7 scale) calibrate as their rescaled twins do
    (the solver on raw huge logits stopped at about half the slope)."""
    from noisetrace.metrics import fit_platt

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    z = rng.normal(size=400) + 2.0 * y
    a1, b1 = fit_platt(z, y)
    for scale in (1e3, 7e7):
        a, b = fit_platt(z * scale, y)
        assert a * scale == pytest.approx(a1, rel=0.02) and b == pytest.approx(b1, abs=0.02)


def test_threshold_at_fpr_holds_every_kind_with_enough_images():
    from noisetrace.metrics import threshold_at_fpr

    rng = np.random.default_rng(0)
    camera, web, few = rng.uniform(0, 0.8, 100), rng.uniform(0, 0.99, 200), np.full(5, 0.999)
    scores = np.concatenate([camera, web, few])
    kinds = np.array(["camera"] * 100 + ["web"] * 200 + ["scan"] * 5)
    thr = threshold_at_fpr(scores, kinds, 0.03)
    assert np.mean(web >= thr) <= 0.03 + 1 / 200 and np.mean(camera >= thr) <= 0.03
    assert thr < 0.999  # 5 scans cannot measure 3%: they do not set it
    assert threshold_at_fpr(rng.uniform(0, 0.2, 50), np.array(["web"] * 50), 0.03) == 0.5
    # No kind with 20 images: the pooled reals set it (a small validation set of many kinds).
    few = rng.uniform(0.4, 0.9, 40)
    pooled = threshold_at_fpr(few, np.array(["a", "b", "c", "d"] * 10), 0.03)
    assert pooled == float(np.quantile(few, 0.97)) and np.mean(few >= pooled) <= 0.03 + 1 / 40
    assert threshold_at_fpr(few[:10], np.array(["a"] * 10), 0.03) == 0.5  # too few at all
