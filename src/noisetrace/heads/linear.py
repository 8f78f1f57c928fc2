"""Linear heads on frozen features: standardise, then logistic regression.

scikit-learn style: ``LinearHead().fit(X, y)``, ``decision_function``, ``predict_proba``.
Fitting uses scikit-learn; scoring is plain NumPy, so a shipped head needs no sklearn at run
time. Features come as (N, V, D): V views of one image (V = 1 for whole-image features);
each view is a training row, and an image's logit is the mean of its views' logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    return X[:, None, :] if X.ndim == 2 else X


@dataclass
class LinearHead:
    """``C``: inverse L2 strength of the logistic regression on standardised features;
    ``l2norm``: scale each feature vector to unit length first (CLIP embeddings live on a
    sphere; their length carries little)."""

    C: float = 0.1
    l2norm: bool = False
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0

    def _prep(self, X: np.ndarray) -> np.ndarray:
        X = _rows(X)
        if self.l2norm:
            X = X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)
        return X

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
            ) -> LinearHead:  # fmt: skip
        """X (N, V, D) or (N, D); y (N,) 0 real / 1 fake. Classes are weighted to balance."""
        from sklearn.linear_model import LogisticRegression

        X = self._prep(X)
        n, v, d = X.shape
        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            raise ValueError("a head needs both real and fake samples to fit")
        rows = X.reshape(n * v, d)
        self.mean = rows.mean(axis=0)
        self.scale = rows.std(axis=0) + 1e-6
        yy = np.repeat(y, v)
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
        w = np.repeat(w, v)
        for c in (0, 1):  # balanced classes, after any per-sample weights
            w[yy == c] *= len(yy) / (2.0 * max(w[yy == c].sum(), 1e-12))
        lr = LogisticRegression(C=self.C, max_iter=5000)
        lr.fit((rows - self.mean) / self.scale, yy, sample_weight=w)
        self.coef, self.intercept = lr.coef_.ravel().astype(np.float64), float(lr.intercept_[0])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(N, V, D) -> (N,) fake logits (mean over views)."""
        X = self._prep(X)
        z = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return z.mean(axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, V, D) -> (N, 2) [P(real), P(fake)], sklearn's column order."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)

    # -- persistence ---------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
            "coef": self.coef.astype(np.float32),
            "intercept": np.array([self.intercept], np.float32),
            "C": np.array([self.C], np.float32), "l2norm": np.array([float(self.l2norm)]),
        }  # fmt: skip

    @classmethod
    def from_state(cls, st: dict[str, np.ndarray]) -> LinearHead:
        return cls(C=float(st["C"][0]), l2norm=bool(st["l2norm"][0]),
                   mean=st["mean"].astype(np.float64), scale=st["scale"].astype(np.float64),
                   coef=st["coef"].astype(np.float64), intercept=float(st["intercept"][0]))

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        from noisetrace.io import atomic_path

        with atomic_path(path) as tmp:
            save_file(self.state(), str(tmp))
            tmp.chmod(0o644)  # a model file others read (the writer makes it private)

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        from safetensors.numpy import load_file

        return cls.from_state(load_file(str(path)))
