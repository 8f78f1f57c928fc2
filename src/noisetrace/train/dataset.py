"""Images held in memory, served as augmented random patches."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from noisetrace.data.augment import Augment
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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = i % len(self.images)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        s = self.samples[k]
        patch = self.augment(self.images[k], s.lossless, rng)
        x = torch.from_numpy(np.array(patch)).permute(2, 0, 1).float().div_(255.0)
        return x, torch.tensor(float(s.label))
