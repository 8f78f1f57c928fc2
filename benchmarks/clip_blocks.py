"""Which CLIP blocks carry the evidence: one linear head per feature choice, leave one
family out, in one run: `python benchmarks/clip_blocks.py [--cache DIR]`.

A quick screen, lighter than the full recipe (`benchmarks/compare_lofo.py`): the semantic
head alone (no noise branch, no stacking), for each fake family refitted on five group folds
without that family, then AUC of its fakes against the held-out reals, at JPEG 90 and 65
with both classes carrying one compression history (the data and transforms of
configs/default_fusion.yaml). Features: the final projected embedding, the class token after
single blocks (``block_cls@i``), the mean patch token (``block_tokens@i``) and block sets;
a ``:S`` suffix encodes views of S px (``block_cls@4,5,6,7:160``; position embeddings resized).
All come from one encoder pass per image (``taps: blocks``); the first run fills the feature
cache (about 0.2 s per image and transform on 2 cores). Prints mean AUC over families, the
mean without the two families no variant detects (TAEF2-aligned fakes, the unlabelled web
set), the minimum, and per family.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = ["embeds", "block_cls@11", "block_cls@3", "block_cls@5", "block_cls@7",
            "block_cls@9", "block_tokens@7", "block_cls@5,7,9,11",
            "block_cls@0,1,2,3,4,5,6,7,8,9,10,11"]  # fmt: skip
HARD = ("aligned-taef2", "unspecified-ai")


def screen(recipe, samples, feature: str, C: float) -> dict[str, list[float]]:  # noqa: ANN001
    from sklearn.metrics import roc_auc_score

    from noisetrace.heads.fit import Features, fold_of
    from noisetrace.heads.linear import LinearHead

    feature, _, side = feature.partition(":")  # "block_cls@5:160": views of 160 px
    ext = {"kind": "clip", "backbone": "clip-vit-b16-int8", "views": "resize", "numerics": "float",
           **({"taps": "blocks"} if feature.startswith("block") else {}),
           **({"image_size": int(side)} if side else {})}  # fmt: skip
    recipe.branches = {"b": {"extractor": ext, "feature": feature}}
    F = Features(recipe, samples, verbose=False)
    T, K = recipe.test_transforms, recipe.folds
    gf = np.array([fold_of(g, K, recipe.seed) for g in F.groups])
    out: dict[str, list[float]] = {}
    for fam in sorted(set(F.family[F.y == 1])):
        sc = {t: np.full(len(F.y), np.nan) for t in T}
        for k in range(K):
            tr = np.flatnonzero((gf != k) & (F.family != fam)
                                & ~np.isin(F.family, recipe.test_only))  # fmt: skip
            te = np.flatnonzero((gf == k) & ((F.family == fam) | (F.y == 0)))
            X = np.concatenate([F.x[("b", t)][tr] for t in recipe.transforms])
            y = np.tile(F.y[tr], len(recipe.transforms))
            head = LinearHead(C=C, l2norm=True).fit(X, y)
            for t in T:
                sc[t][te] = head.decision_function(F.x[("b", t)][te])
        sel = np.flatnonzero((F.family == fam) | (F.y == 0))
        out[fam] = [float(roc_auc_score(F.y[sel], sc[t][sel])) for t in T]
    return out


def main() -> int:
    from noisetrace.heads.fit import HeadRecipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=VARIANTS, help="features to compare")
    ap.add_argument("--config", default="configs/default_fusion.yaml", help="data and folds")
    ap.add_argument("--data", nargs="+", help="replace the recipe's data")
    ap.add_argument("--cache", help="feature cache folder")
    ap.add_argument("--C", type=float, default=0.02, help="inverse L2 strength of the head")
    args = ap.parse_args()
    recipe = HeadRecipe.from_yaml(args.config, data=args.data, cache=args.cache)
    missing = [d for d in recipe.data if not Path(d).exists()]
    if missing:
        print(f"data not found ({', '.join(missing)}); see docs/data.md", file=sys.stderr)
        return 2
    samples = recipe.corpus()  # whole images, or face crops for a face recipe
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"CLIP ViT-B/16 INT8 features, one linear head, leave one family out "
                        f"(C={args.C}; q90 / q65)")  # fmt: skip
    for col in ("feature", "mean AUC", f"mean w/o {' & '.join(HARD)}", "min AUC", "seconds"):
        table.add_column(col)
    per_family = {}
    for v in args.variants:
        t0 = time.perf_counter()
        res = screen(recipe, samples, v, args.C)
        m = np.array(list(res.values()))
        core = np.array([a for f, a in res.items() if f not in HARD])
        table.add_row(v, f"{m[:, 0].mean():.3f} / {m[:, 1].mean():.3f}",
                      f"{core[:, 0].mean():.3f} / {core[:, 1].mean():.3f}",
                      f"{m.min():.3f}", f"{time.perf_counter() - t0:.0f}")  # fmt: skip
        per_family[v] = res
        print(f"measured {v}", file=sys.stderr, flush=True)
    console = Console()
    console.print(table)
    fams = sorted(next(iter(per_family.values())))
    t2 = Table(title="AUC per held-out family at JPEG 90")
    t2.add_column("family")
    for v in args.variants:
        t2.add_column(v)
    for f in fams:
        t2.add_row(f, *[f"{per_family[v][f][0]:.2f}" for v in args.variants])
    console.print(t2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
