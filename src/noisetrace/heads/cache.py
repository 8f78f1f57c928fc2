"""Feature cache: what an extractor computed for one file under one transform, on disk.

Fitting a head or a fusion touches each training file under several transforms (matched
JPEG qualities); encoding is the slow part (about 0.15 s per view on 2 CPU cores for CLIP
ViT-B/16), fitting takes seconds. So features are computed once and kept, keyed by the
file's content hash, the transform and the extractor's identity (backbone file hash + view
policy), never by the file's name. Entries are written atomically (temporary name, rename)
so an interrupted run leaves only complete entries and simply continues next time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# The named views live with the other pure image transforms; fit and evaluate share them.
from noisetrace.data.augment import (  # noqa: F401 (re-exported)
    apply_transform,
    describe_transforms,
    transform_label,
)
from noisetrace.data.manifest import Sample
from noisetrace.errors import InputError
from noisetrace.io import atomic_path, sha256_file
from noisetrace.media.image import encode_jpeg, load_image

Extractor = Callable[[np.ndarray], dict[str, np.ndarray]]


def default_cache_dir() -> Path:
    base = os.environ.get("NOISETRACE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "noisetrace" / "features"


def content_hash(path: str | Path) -> str:
    return sha256_file(path)[:32]


class FeatureCache:
    """``get(sample, transform)`` -> dict of arrays, computed by ``extractor`` on a miss."""

    def __init__(self, root: str | Path, extractor_id: str, extractor: Extractor,
                 max_side: int | None = 2048, canonical: int | None = None) -> None:  # fmt: skip
        """``canonical``: JPEG quality every transformed view is encoded at before its
        features (what a detector's ``canonical`` does to every input at scoring time);
        entries are kept apart from those of the bare view."""
        self.dir = Path(root) / hashlib.sha256(extractor_id.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "extractor.txt").write_text(extractor_id + "\n")
        self.extractor, self.max_side, self.canonical = extractor, max_side, canonical

    def _file(self, digest: str, transform: str) -> Path:
        tag = f"{transform}+c{self.canonical}" if self.canonical else transform
        return self.dir / digest[:2] / f"{digest}.{tag}.npz"

    def get(self, sample: Sample, transform: str) -> dict[str, np.ndarray]:
        digest = content_hash(sample.path)
        f = self._file(digest, transform)
        if f.is_file():
            with np.load(f) as z:
                return {k: z[k] for k in z.files}
        img = load_image(sample.path)
        if self.max_side and max(img.shape[:2]) > self.max_side:
            # Bounded cost: the centre (no resampling) of very large photos.
            from noisetrace.evaluate.protocols import crop_at_most

            img = crop_at_most(img, self.max_side)
        view = apply_transform(img, transform, sample.lossless)
        if self.canonical:
            view = encode_jpeg(view, self.canonical)
        feats = self.extractor(view)
        f.parent.mkdir(exist_ok=True)
        with atomic_path(f) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **feats)  # a file object: numpy adds no second suffix
        return feats

    def stack(self, samples: Sequence[Sample], transform: str, key: str,
              progress: bool = False) -> tuple[np.ndarray, list[int]]:  # fmt: skip
        """Feature ``key`` (see :func:`~noisetrace.heads.extractors.select_feature`) of every
        sample, stacked: (N, V, D) for view features, plus the
        indices of the samples that could be read (bad files are reported, not dropped
        silently)."""
        from noisetrace.heads.extractors import select_feature

        rows, ok, t0 = [], [], time.perf_counter()
        for i, s in enumerate(samples):
            try:
                rows.append(select_feature(self.get(s, transform), key))
                ok.append(i)
            except InputError as exc:
                print(f"skipping {s.path}: {exc}", flush=True)
            if progress and (i + 1) % 50 == 0:
                dt = time.perf_counter() - t0
                print(f"  {transform}: {i + 1}/{len(samples)} ({dt:.0f} s)", flush=True)
        return np.stack(rows) if rows else np.zeros((0,)), ok
