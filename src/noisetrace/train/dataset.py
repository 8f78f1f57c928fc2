"""Training data held in memory: augmented patches of images, and groups of crops (face
tracks as frame sequences, face/background pairs) augmented alike.

Prepared caches (``noisetrace prepare``) write ``manifest.tsv`` with per-crop columns
(``source_path, frame, track, kind``) that :func:`noisetrace.data.manifest.read_manifest`
does not keep; :func:`crop_meta` reads them so crops can be grouped again.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from noisetrace.data.augment import Augment, center_crop, resize
from noisetrace.data.manifest import Sample
from noisetrace.errors import InputError
from noisetrace.media.image import load_image

log = logging.getLogger(__name__)


def load_samples(
    samples: list[Sample], threads: int = 2
) -> tuple[list[Sample], list[np.ndarray], list[tuple[str, str]]]:
    """Decode every sample with the one image loader; failures are returned, not raised."""

    def one(s: Sample):
        try:
            return s, load_image(s.path), None
        except InputError as exc:
            return s, None, str(exc)

    kept, imgs, failed = [], [], []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for s, img, err in pool.map(one, samples):
            if img is None:
                failed.append((s.path, err))
                log.warning("skipping %s: %s", s.path, err)
            else:
                kept.append(s)
                imgs.append(img)
    return kept, imgs, failed


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1] (the loop applies model normalisation)."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255.0)


class PatchDataset(Dataset):
    """``crops_per_image`` augmented patches per image and epoch, reproducible by seed.

    Items are ((3, S, S) float tensor in [0, 1], label float).
    """

    def __init__(
        self,
        samples: list[Sample],
        images: list[np.ndarray],
        augment: Augment,
        crops_per_image: int = 4,
        seed: int = 0,
    ) -> None:
        self.samples, self.images, self.augment = samples, images, augment
        self.crops_per_image = crops_per_image
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.crops_per_image

    @property
    def labels(self) -> list[int]:
        """Label of every item index (for class-balanced sampling)."""
        return [self.samples[i % len(self.images)].label for i in range(len(self))]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = i % len(self.images)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        s = self.samples[k]
        return to_tensor(self.augment(self.images[k], s.lossless, rng)), torch.tensor(
            float(s.label)
        )


# -- groups of crops ---------------------------------------------------------------------------
def crop_meta(spec: str | Path) -> dict[str, dict[str, str]]:
    """Per-crop columns of a prepared manifest, keyed by the sample path as
    :func:`~noisetrace.data.manifest.read_manifest` builds it; {} for other data."""
    p = Path(spec)
    if p.is_dir():
        p = next((p / n for n in ("manifest.tsv", "MANIFEST.tsv") if (p / n).is_file()), p)
    if not p.is_file():
        return {}
    lines = p.read_text(encoding="utf-8").splitlines()
    if not lines or "\t" not in lines[0]:
        return {}
    rows = csv.DictReader(lines, delimiter="\t")
    if "kind" not in (rows.fieldnames or []):
        return {}
    out = {}
    for row in rows:
        f = Path(row["path"])
        out[str(f if f.is_absolute() else p.parent / f)] = {
            k: row.get(k) or "" for k in ("source_path", "frame", "track", "kind")
        }
    return out


@dataclass(frozen=True)
class Group:
    """Crops that form one model input: a face track window or a [face, background] pair."""

    members: tuple[Sample, ...]

    @property
    def label(self) -> int:
        return self.members[0].label

    @property
    def group(self) -> str:
        return self.members[0].group


def _source(s: Sample, m: dict[str, str]) -> str:
    return m.get("source_path") or s.video or s.group


def build_sequences(
    samples: list[Sample], meta: dict[str, dict[str, str]], length: int
) -> tuple[list[Group], int]:
    """Non-overlapping windows of ``length`` consecutive face crops of one track (the Xception
    LSTM paper scores every 5-frame sequence). Returns (groups, crops left over)."""
    tracks: dict[tuple[str, str], list[tuple[int, Sample]]] = defaultdict(list)
    for s in samples:
        m = meta.get(s.path, {})
        if m.get("kind", "face") == "background":
            continue
        tracks[(_source(s, m), m.get("track", ""))].append((int(m.get("frame") or 0), s))
    groups, dropped = [], 0
    for key in sorted(tracks):
        seq = [s for _, s in sorted(tracks[key], key=lambda t: t[0])]
        n = len(seq) // length
        groups += [Group(tuple(seq[i * length : (i + 1) * length])) for i in range(n)]
        dropped += len(seq) - n * length
    return groups, dropped


def build_pairs(samples: list[Sample], meta: dict[str, dict[str, str]]) -> tuple[list[Group], int]:
    """[face, background] crops of the same frame and track. Returns (pairs, unpaired)."""
    slots: dict[tuple[str, str, str], dict[str, Sample]] = defaultdict(dict)
    for s in samples:
        m = meta.get(s.path, {})
        slots[(_source(s, m), m.get("frame", ""), m.get("track", ""))][m.get("kind", "")] = s
    pairs, unpaired = [], 0
    for key in sorted(slots):
        d = slots[key]
        if "face" in d and "background" in d:
            pairs.append(Group((d["face"], d["background"])))
        else:
            unpaired += len(d)
    return pairs, unpaired


class GroupDataset(Dataset):
    """``copies`` augmented versions of every group per epoch; items are
    ((K, 3, S, S) float in [0, 1], label float), K = crops per group.

    All crops of a group get the same random operations (same D4, crop, JPEG quality): a face
    track must stay one video, and a face/background pair must keep one compression history.
    """

    def __init__(
        self,
        groups: list[Group],
        images: dict[str, np.ndarray],
        augment: Augment,
        copies: int = 1,
        seed: int = 0,
    ) -> None:
        self.groups, self.images, self.augment = groups, images, augment
        self.copies, self.seed, self.epoch = copies, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.groups) * self.copies

    @property
    def labels(self) -> list[int]:
        return [self.groups[i % len(self.groups)].label for i in range(len(self))]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.groups[i % len(self.groups)]
        crops = []
        for s in g.members:
            rng = np.random.default_rng((self.seed, self.epoch, i))  # same draws per member
            img = self.images[s.path]
            if img.shape[:2] != g_shape(self.images, g):
                img = resize(img, *g_shape(self.images, g))
            crops.append(to_tensor(self.augment(img, s.lossless, rng)))
        return torch.stack(crops), torch.tensor(float(g.label))


def g_shape(images: dict[str, np.ndarray], g: Group) -> tuple[int, int]:
    """(H, W) of a group's first crop; the other members are resized to it so random crop
    positions mean the same place in every frame."""
    return images[g.members[0].path].shape[:2]


def fit_input(img: np.ndarray, size: tuple[int, int] | None, fallback: int) -> np.ndarray:
    """Validation crop for a group member: resized to the model's input size (as
    :class:`~noisetrace.detector.Detector` does for images), else a centre crop."""
    if size:
        return resize(img, size[0], size[1]) if img.shape[:2] != tuple(size) else img
    return center_crop(img, fallback)
