"""The jitter index of face videos through the scan path, beside the frame model (issue 17).

    python benchmarks/faces_flicker.py --config configs/faces.yaml --out OUT [--lofo LOFO]

Reads every video of the recipe's ``temporal`` block (configs/faces.yaml) as ``scan`` reads
it with the bundled face model (``--model``), with :func:`noisetrace.heads.temporal.
measure_videos`: its sampled frames, each with the run of ``frames`` consecutive frames after
it, scored by the model while ``Detector.with_runs`` measures each run (the largest face the
model found in the sampled frame, its square cut from the run, the Laplacian's change). A
``pairs`` clip (DeepFaceLive: the real feed left, its real-time swap right, frame-aligned)
gives two videos, its halves, so the two differ only by the swap.

Printed: per source, the index alone (no training; its sign is fixed in advance: a rendered
face jitters more), against the source's own reals and against all reals
(:func:`~noisetrace.heads.temporal.index_markdown`); the model's own video score beside it
and the larger of the two, each standardised on the real videos (no fake used). With
``--lofo`` (a ``benchmarks/faces_lofo.py --out`` folder: the held-out frame scores of every
crop) the frame model held out of each source is set beside the index, summed and learned
(:func:`~noisetrace.heads.temporal.learned_combination`, each video source left out).
Per-video values go to ``--out``/flicker.json (``--reuse`` reads them back).

Nothing here is shipped: ``noisetrace fit --config configs/faces.yaml`` runs the same
measuring, validation and fitting as the last step of fitting the face model and writes the
calibration and the combination into the model (``config.temporal``) and its card.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from noisetrace.heads.fit import HeadRecipe
from noisetrace.heads.temporal import (
    TemporalRecipe,
    VideoSource,
    auc_cell,
    combination_markdown,
    held_out_video_scores,
    index_markdown,
    learned_combination,
    measure_videos,
)
from noisetrace.zoo import load_detector


def combination(rows: list[dict]) -> str:
    """Per fake source, against every real video: the model's own video score, the jitter
    index, and the larger of the two once each is standardised on the real videos (a
    combination that uses no fake). Sources the model was trained on flatter its score."""
    real = np.array([r["label"] == "real" for r in rows])
    p = np.clip([r["score"] for r in rows], 1e-6, 1 - 1e-6)
    z = {"model score": np.log(p / (1 - p)), "jitter index": np.array([r["jitter"] for r in rows])}
    z = {k: (v - v[real].mean()) / v[real].std() for k, v in z.items()}
    z["larger of the two"] = np.maximum(*z.values())
    out = ["| fake source | videos | " + " | ".join(f"{k}: AUC vs all reals" for k in z) + " |",
           "|---|---|" + "---|" * len(z)]  # fmt: skip
    for source in sorted({r["source"] for r in rows if r["label"] == "fake"}):
        m = real | np.array([r["source"] == source and r["label"] == "fake" for r in rows])
        y = (~real[m]).astype(int)
        out.append(f"| {source} | {int(y.sum())} | "
                   + " | ".join(auc_cell(y, v[m]) for v in z.values()) + " |")
    return "\n".join(out)


def print_fusion(rows: list[dict], lofo: Path, held_out: str = "face-deepfacelive") -> None:
    """The frame model held out of ``held_out`` (its video score, aggregated as the shipped
    ``faces`` aggregates, from ``lofo``/scores.npz) beside the jitter index and their sum
    and maximum, each standardised on the real videos that have both (no fake is used to
    combine them)."""
    from noisetrace.metrics import aggregate_by_group

    agg = load_detector("faces").config.video_aggregate
    z = np.load(lofo / "scores.npz", allow_pickle=True)
    keys, y = z["keys"], z["y"]
    label = dict(zip(keys, y, strict=True))
    jit = {(Path(r["path"]).name, r["label"]): r["jitter"] for r in rows}
    print(f"\n| transform | evidence | {held_out} fake vs its own real videos (95% CI) | "
          "vs all real videos | caught at 5% of reals called fake |")
    print("|---|---|---|---|---|")
    names = {k.split("|")[1] for k in z.files if k.startswith(held_out + "|")}
    for t in sorted(n for n in names if not n.startswith("thr:")):  # thr:T are thresholds
        s = z[f"{held_out}|{t}"]
        ok = np.isfinite(s)
        vids, vs = aggregate_by_group(keys[ok], s[ok], agg)
        got = []
        for key, v in zip(vids, vs, strict=True):
            path = key.split("|", 1)[1]
            j = jit.get((Path(path).name, "fake" if label[key] == 1 else "real"))
            if j is not None:
                got.append((path, int(label[key]), float(v), j))
        yy = np.array([g[1] for g in got])
        p = np.clip([g[2] for g in got], 1e-6, 1 - 1e-6)
        own = np.array([held_out.removeprefix("face-") in g[0] for g in got])
        real, fake = yy == 0, (yy == 1) & own
        logit, jv = np.log(p / (1 - p)), np.array([g[3] for g in got])
        z1 = (logit - logit[real].mean()) / logit[real].std()
        z2 = (jv - jv[real].mean()) / jv[real].std()
        for name, sc in (("frame model", z1), ("jitter index", z2), ("sum", z1 + z2),
                         ("max", np.maximum(z1, z2))):  # fmt: skip
            cells = [auc_cell(yy[m], sc[m]) for m in (fake | (real & own), fake | real)]
            caught = np.mean(sc[fake] > np.quantile(sc[real], 0.95))
            print(f"| {t} | {name} | {cells[0]} | {cells[1]} | {caught:.2f} |")


def lofo_scores(lofo: Path, transform: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """From a faces_lofo.py scores.npz: per crop its video's real path ("" for stills) and
    label, and family -> held-out probabilities under ``transform``."""
    z = np.load(lofo / "scores.npz", allow_pickle=True)
    paths = [k.split("|", 1)[1] for k in z["keys"]]
    videos = np.array([os.path.realpath(p) if p.lower().endswith((".mp4", ".avi", ".mov",
                                                                  ".mkv", ".webm", ".gif"))
                       else "" for p in paths])  # fmt: skip
    held = {k.split("|")[0]: z[k] for k in z.files if k.endswith(f"|{transform}")}
    return videos, z["y"], held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/faces.yaml",
                    help="a face recipe whose `temporal` block lists the videos")
    ap.add_argument("--pairs", nargs="*", default=[],
                    help="instead of the recipe's: manifests of side-by-side clips")
    ap.add_argument("--videos", nargs="*", default=[],
                    help="instead of the recipe's: manifests of real/fake videos")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="faces", help="the face model whose search and crops "
                    "are used (bundled name or folder)")  # fmt: skip
    ap.add_argument("--samples", type=int, help="frames sampled per video (default: the "
                    "model's video_frames, as scan samples them)")  # fmt: skip
    ap.add_argument("--frames", type=int, help="the run read with each one")
    ap.add_argument("--size", type=int)
    ap.add_argument("--luma", action="store_true", help="the luma's change, not the Laplacian's")
    ap.add_argument("--lofo", type=Path, help="a benchmarks/faces_lofo.py --out folder: also "
                    "combine its held-out frame scores with the jitter index")  # fmt: skip
    ap.add_argument("--reuse", action="store_true",
                    help="read --out/flicker.json from an earlier run instead of the videos")
    args = ap.parse_args()
    recipe = HeadRecipe.from_yaml(args.config)
    tr = TemporalRecipe.from_dict(recipe.temporal or {"videos": args.pairs + args.videos})
    if args.pairs or args.videos:
        tr.videos = ([VideoSource(m, pairs=True) for m in args.pairs]
                     + [VideoSource(m) for m in args.videos])  # fmt: skip
    for k in ("samples", "frames", "size"):
        if getattr(args, k):
            setattr(tr, k, getattr(args, k))
    tr.highpass = tr.highpass and not args.luma
    if args.reuse:
        rows = json.loads((args.out / "flicker.json").read_text())
    else:
        measured = measure_videos(load_detector(args.model), tr)
        rows = measured.rows
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "flicker.json").write_text(json.dumps(rows, indent=1))
        if measured.failed:
            print("\nnot measured:\n" + "\n".join(measured.failed))
    print("\n" + index_markdown(rows))
    if all("score" in r for r in rows):
        print("\n" + combination(rows))
    if args.lofo:
        print_fusion(rows, args.lofo)
        agg = load_detector("faces").config.video_aggregate
        for t in ("matched90", "matched65"):
            videos, y, held = lofo_scores(args.lofo, t)
            got = learned_combination(rows, held_out_video_scores(rows, videos, y, held, agg),
                                      tr.folds, tr.seed)  # fmt: skip
            print(f"\nLearned combination of the frame model's video score and the jitter "
                  f"index, each video source left out in turn ({t}); video AUC against "
                  f"every real video (95% CI):\n\n{combination_markdown(got)}")
            (args.out / f"learned_{t}.json").write_text(json.dumps(got, indent=1))


if __name__ == "__main__":
    main()
