"""Splits that never leak: connected groups of samples stay on one side.

Two samples are connected when they share a non-empty ``group``, ``identity`` or source
``video`` (keys are namespaced by the adapters, e.g. ``ffpp:003``). For FaceForensics++ the
fake ``000_003`` connects real videos 000 and 003, so the real videos and every manipulation
of the same people fall on one side, as the official split has it. Components are then placed
by the official split (when every sample has one) or by ratios (the papers' 75/10/15).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from noisetrace.data.manifest import FAKE, REAL, Sample

SPLIT_NAMES = ("train", "val", "test")
PAPER_RATIOS = (0.75, 0.10, 0.15)


def _keys(s: Sample) -> list[str]:
    keys = [f"g:{s.group or s.path}"]
    if s.identity:
        keys.append(f"i:{s.identity}")
    if s.video:
        keys.append(f"v:{s.dataset}:{s.video}")
    return keys


def components(samples: list[Sample]) -> list[int]:
    """Component id per sample (union-find over shared group / identity / video keys)."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for s in samples:
        ks = _keys(s)
        for k in ks[1:]:
            a, b = find(ks[0]), find(k)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots: dict[str, int] = {}
    return [roots.setdefault(find(_keys(s)[0]), len(roots)) for s in samples]


def has_official_split(samples: list[Sample]) -> bool:
    """True when every sample names a train/val/test split."""
    return bool(samples) and all(s.split in SPLIT_NAMES for s in samples)


def split_samples(
    samples: list[Sample],
    ratios: tuple[float, float, float] = PAPER_RATIOS,
    seed: int = 0,
    official: bool | None = None,
) -> dict[str, list[Sample]]:
    """``{"train", "val", "test"}`` lists; connected samples always share a split.

    ``official``: True uses the samples' ``split`` field (an error if some lack one), False
    ignores it, None uses it when every sample has one. With ratios, components are shuffled
    by ``seed`` and each goes to the split furthest below its target number of samples,
    balancing fakes and reals separately so every split gets both.
    """
    use_official = has_official_split(samples) if official is None else official
    out: dict[str, list[Sample]] = {k: [] for k in SPLIT_NAMES}
    if use_official:
        missing = [s.path for s in samples if s.split not in SPLIT_NAMES]
        if missing:
            raise ValueError(
                f"{len(missing)} sample(s) have no official split (e.g. {missing[0]}); "
                "use ratios instead (official=False)"
            )
        for s in samples:
            out[s.split].append(s)
        return out
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(
            f"ratios must be three non-negative numbers (train, val, test), got {ratios}"
        )
    total = float(sum(ratios))
    frac = [r / total for r in ratios]
    comp = components(samples)
    members: dict[int, list[Sample]] = defaultdict(list)
    for c, s in zip(comp, samples, strict=True):
        members[c].append(s)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    # Largest components first so they cannot overshoot a small split at the end.
    order.sort(key=lambda c: -len(members[c]))
    n_label = {lab: sum(s.label == lab for s in samples) for lab in (REAL, FAKE)}
    filled = {(k, lab): 0 for k in SPLIT_NAMES for lab in (REAL, FAKE)}
    for c in order:
        ms = members[c]
        counts = {lab: sum(s.label == lab for s in ms) for lab in (REAL, FAKE)}

        def deficit(i: int, ms_counts: dict[int, int] = counts) -> float:
            k = SPLIT_NAMES[i]
            return sum(
                frac[i] * n_label[lab] - filled[(k, lab)] for lab in (REAL, FAKE) if ms_counts[lab]
            )

        best = max((i for i in range(3) if frac[i] > 0), key=lambda i: (deficit(i), -i))
        k = SPLIT_NAMES[best]
        out[k].extend(ms)
        for lab in (REAL, FAKE):
            filled[(k, lab)] += counts[lab]
    return out


def leakage(splits: dict[str, list[Sample]]) -> dict[str, list[str]]:
    """Keys (group / identity / video) found in more than one split, per key kind; empty
    lists mean a clean split."""
    where: dict[str, set[str]] = defaultdict(set)
    for name, ss in splits.items():
        for s in ss:
            for k in _keys(s):
                where[k].add(name)
    out: dict[str, list[str]] = {"group": [], "identity": [], "video": []}
    kinds = {"g": "group", "i": "identity", "v": "video"}
    for k, names in sorted(where.items()):
        if len(names) > 1:
            out[kinds[k[0]]].append(k[2:])
    return out


@dataclass(frozen=True)
class Fold:
    """One leave-one-manipulation-out fold: train/val without ``held_out`` fakes; test holds
    the test reals and only the ``held_out`` fakes."""

    held_out: str
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]


def leave_one_out(splits: dict[str, list[Sample]], key: str = "generator") -> list[Fold]:
    """Leave-one-manipulation-out folds (the Xception paper's protocol) on top of a
    leakage-free split: for each fake generator, train on the others and test on it."""
    gens = sorted({getattr(s, key) for ss in splits.values() for s in ss if s.label == FAKE})
    folds = []
    for g in gens:

        def keep_train(s: Sample, g: str = g) -> bool:
            return s.label == REAL or getattr(s, key) != g

        def keep_test(s: Sample, g: str = g) -> bool:
            return s.label == REAL or getattr(s, key) == g

        folds.append(
            Fold(
                held_out=g,
                train=[s for s in splits.get("train", []) if keep_train(s)],
                val=[s for s in splits.get("val", []) if keep_train(s)],
                test=[s for s in splits.get("test", []) if keep_test(s)],
            )
        )
    return folds
