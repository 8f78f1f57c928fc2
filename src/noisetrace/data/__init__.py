"""Datasets: manifests and folders, leakage-free splits, augmentation."""

from noisetrace.data.augment import Augment, matched_format
from noisetrace.data.manifest import FAKE, REAL, Sample, discover, read_folder, read_manifest, split

__all__ = [
    "FAKE", "REAL", "Augment", "Sample", "discover", "matched_format", "read_folder",
    "read_manifest", "split",
]  # fmt: skip
