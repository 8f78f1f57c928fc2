"""Evaluation: metrics (and, later, protocols and reports)."""

from noisetrace.evaluate.metrics import binary_metrics, bootstrap_ci, eer, fit_platt, tpr_at_fpr

__all__ = ["binary_metrics", "bootstrap_ci", "eer", "fit_platt", "tpr_at_fpr"]
