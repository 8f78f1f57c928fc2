"""Evaluation: protocols (a registry of plug-ins), reports, and the shared metrics.

The metrics live in :mod:`noisetrace.metrics` (training imports them too); they are
re-exported here lazily, so importing the protocol registry for ``evaluate --help`` stays
free of numpy and scikit-learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["binary_metrics", "bootstrap_ci", "eer", "fit_platt", "tpr_at_fpr"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from noisetrace import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
