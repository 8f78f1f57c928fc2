"""Detectors side by side on the leave-one-family-out protocol, in one run:
`python benchmarks/compare_lofo.py` (defaults: the fusion, its two branches alone, `fast`).

Each recipe (configs/*.yaml, see `noisetrace fit`) is refitted per held-out family and fold
on the same cached features (the first run computes them: about 0.2 s per image and
transform for CLIP on 2 cores), so rows differ only in the detector. Prints per recipe: mean
and minimum AUC over families at JPEG 90 and 65 (both classes with one compression history),
the worst family, the detection rate at each refit's threshold, the camera and web-photo
false-positive rates, and the CPU seconds the LOFO refits took (the fitting budget).
Needs the data named in the recipes (../shared/data and the folders in docs/data.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT = ["configs/default_fusion.yaml", "configs/clip_probe.yaml", "configs/spam_lr.yaml",
           "configs/fast_lofo.yaml"]  # fmt: skip


def main() -> int:
    from noisetrace.heads.fit import Features, HeadRecipe, leave_one_family_out

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", default=DEFAULT, help="head recipes (YAML)")
    ap.add_argument("--data", nargs="+", help="replace every recipe's data")
    ap.add_argument("--cache", help="feature cache folder")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args()
    rows, full = [], {}
    for cfg in args.configs:
        recipe = HeadRecipe.from_yaml(cfg, data=args.data, cache=args.cache)
        missing = [d for d in recipe.data if not Path(d).exists()]
        if missing:
            print(f"{cfg}: data not found ({', '.join(missing)}); see docs/data.md",
                  file=sys.stderr)  # fmt: skip
            return 2
        feats = Features(recipe, recipe.corpus(), verbose=False)
        t0 = time.process_time()
        rep = leave_one_family_out(recipe, feats, bootstrap=200, verbose=False)
        cpu = time.process_time() - t0
        fpr = {(r["kind"], r["transform"]): r["fpr"] for r in rep["real_fpr"]}
        s90, s65 = rep["summary"]["matched90"], rep["summary"]["matched65"]
        rows.append({"recipe": recipe.name, "mean AUC q90": s90["mean_auc"],
                     "min AUC q90": s90["min_auc"], "mean AUC q65": s65["mean_auc"],
                     "min AUC q65": s65["min_auc"], "worst (q90)": s90["worst_family"],
                     "detected q90": s90["mean_detected"],
                     "camera FPR q90": fpr.get(("camera", "matched90")),
                     "web FPR q90": fpr.get(("web", "matched90")),
                     "LOFO CPU s": round(cpu, 1)})  # fmt: skip
        full[recipe.name] = rep
        print(f"measured {recipe.name}: {rows[-1]}", file=sys.stderr, flush=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Leave one family out ({rows[0] and full[rows[0]['recipe']]['n_samples']}"
                        " images), one run")  # fmt: skip
    for col in rows[0]:
        table.add_column(col, justify="left" if col in ("recipe", "worst (q90)") else "right")
    for r in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) and v < 1.5 else str(v)
                        for v in r.values()))  # fmt: skip
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "reports": full}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
