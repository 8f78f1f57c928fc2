"""Labelled samples from a manifest (TSV/CSV) or a ``real/``, ``fake/<generator>/`` folder."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from noisetrace.errors import NoisetraceError
from noisetrace.media.formats import IMAGE_EXTENSIONS, MEDIA_EXTENSIONS

REAL, FAKE = 0, 1
_LABELS = {"real": REAL, "0": REAL, "pristine": REAL, "fake": FAKE, "1": FAKE, "synthetic": FAKE}
LOSSLESS_FORMATS = {"png", "tiff", "tif", "bmp", "webp"}


@dataclass(frozen=True)
class Sample:
    """One labelled file. ``group`` keeps related files (same video, identity) in one split."""

    path: str
    label: int  # 0 real, 1 fake
    generator: str = ""
    group: str = ""
    dataset: str = ""
    # Optional provenance (dataset adapters, ``noisetrace prepare``): the official split
    # ("train"/"val"/"test" or ""), the identity shown, and the source video it came from.
    split: str = ""
    identity: str = ""
    video: str = ""

    @property
    def lossless(self) -> bool:
        """True for files that never went through a lossy codec (by their extension)."""
        return Path(self.path).suffix.lower().lstrip(".") in LOSSLESS_FORMATS


def parse_label(value: str) -> int:
    v = str(value).strip().lower()
    if v not in _LABELS:
        raise NoisetraceError(f"unknown label {value!r}: use real/fake (or 0/1)")
    return _LABELS[v]


def read_manifest(path: str | Path) -> list[Sample]:
    """Read ``path, label[, generator, group]`` rows (TSV or CSV with a header); optional
    ``dataset, split, identity, video`` columns are kept too.

    Relative paths are taken from the manifest's folder. The manifests in
    ``../shared/data/*/MANIFEST.tsv`` are of this form.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    delim = "\t" if "\t" in text.splitlines()[0] else ","
    rows = csv.DictReader(text.splitlines(), delimiter=delim)
    if not rows.fieldnames or "path" not in rows.fieldnames or "label" not in rows.fieldnames:
        raise NoisetraceError(f"{p}: a manifest needs a header with at least 'path' and 'label'")
    out = []
    for row in rows:
        f = Path(row["path"])
        f = f if f.is_absolute() else p.parent / f
        gen = (row.get("generator") or "").strip()
        out.append(
            Sample(
                path=str(f),
                label=parse_label(row["label"]),
                generator=gen,
                group=(row.get("group") or "").strip() or str(f),
                dataset=(row.get("dataset") or "").strip() or p.parent.name,
                split=(row.get("split") or "").strip(),
                identity=(row.get("identity") or "").strip(),
                video=(row.get("video") or "").strip(),
            )
        )
    return out


def read_folder(root: str | Path) -> list[Sample]:
    """``root/real/**`` are real; ``root/fake/<generator>/**`` fake (generator from the folder)."""
    r = Path(root)
    out = []
    for label_name, label in (("real", REAL), ("fake", FAKE)):
        base = r / label_name
        if not base.is_dir():
            continue
        for f in sorted(base.rglob("*")):
            if f.is_file() and f.suffix.lower() in MEDIA_EXTENSIONS:
                rel = f.relative_to(base)
                gen = rel.parts[0] if len(rel.parts) > 1 else label_name
                out.append(Sample(str(f), label, gen, str(f), r.name))
    return out


def discover(spec: str | Path, images_only: bool = True) -> list[Sample]:
    """Samples from a manifest file, a folder with MANIFEST.tsv, a ``real/fake`` folder,
    or a folder of such folders (like ``../shared/data``)."""
    p = Path(spec)
    if p.is_file():
        samples = read_manifest(p)
    elif (p / "MANIFEST.tsv").is_file():
        samples = read_manifest(p / "MANIFEST.tsv")
    elif (p / "real").is_dir() or (p / "fake").is_dir():
        samples = read_folder(p)
    elif p.is_dir():
        samples = []
        for child in sorted(c for c in p.iterdir() if c.is_dir()):
            try:
                samples += discover(child, images_only=False)
            except NoisetraceError:
                continue
        if not samples:
            raise NoisetraceError(f"{p}: no manifest and no real/ or fake/ folders found")
    else:
        raise NoisetraceError(f"{p}: no such manifest or folder")
    if images_only:
        samples = [s for s in samples if Path(s.path).suffix.lower() in IMAGE_EXTENSIONS]
    return samples


def split(
    samples: list[Sample], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Stratified (dataset, label, generator) split that never separates a ``group``.

    Generators with a single group (one camera model, one source video) are pooled per
    (dataset, label): a one-group stratum could only ever go to training, which would keep
    whole kinds of data (e.g. every camera JPEG) out of validation.
    """
    rng = random.Random(seed)
    by_gen: dict[tuple, set[str]] = defaultdict(set)
    for s in samples:
        by_gen[(s.dataset, s.label, s.generator)].add(s.group)
    strata: dict[tuple, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        gen = s.generator if len(by_gen[(s.dataset, s.label, s.generator)]) > 1 else "(single)"
        strata[(s.dataset, s.label, gen)][s.group].append(s)
    train, val = [], []
    for key in sorted(strata):
        groups = sorted(strata[key])
        rng.shuffle(groups)
        n_val = int(round(len(groups) * val_fraction))
        if len(groups) >= 2:
            n_val = max(1, min(n_val, len(groups) - 1))
        for i, g in enumerate(groups):
            (val if i < n_val else train).extend(strata[key][g])
    return train, val
