"""The jitter index of face videos through the scan path, with no training (issue 17).

    python benchmarks/faces_flicker.py --pairs ../data/faces/deepfacelive/MANIFEST.tsv \\
        --videos ../shared/data/icpr2020dfdc_ffpp_dfdc_videos/MANIFEST.tsv \\
                 ../data/faces/styletalk/MANIFEST.tsv --out /work/data/runs/flicker

Each video is read as ``scan`` reads it with a face model: its sampled frames (the model's
``video_frames``), each with the run of ``--frames`` consecutive frames after it
(``media.video.iter_frames(context=...)``), scored by the ``--model`` while
``Detector.with_runs`` measures each run (the largest face the model found in the sampled
frame, its square cut from the run at ``--size`` px, the Laplacian's change unless
``--luma``); the model's video score is kept beside the index. A ``pair`` clip
(DeepFaceLive: the real feed left, its real-time swap right, frame-aligned) gives two
videos, its halves, so the two differ only by the swap.

Printed: per source, the AUC of the index (higher = fake) against the same source's reals
and against all reals, with bootstrap intervals; the share of pairs whose swapped half
jitters more; and the videos called ``unusual`` (fewer than 5% of the reference real videos
reach them) when each source's reals are left out of the reference, the way a new real
video meets the shipped calibration. Per-video values go to ``--out``/flicker.json, the
calibration (every real video's index, the settings) to ``--out``/temporal.json: the
``temporal`` block of a face model's config. The index itself is not fitted: its sign is
fixed in advance (a rendered face jitters more).

With ``--lofo`` (a ``benchmarks/faces_lofo.py`` output folder) the held-out frame model's
video scores are set beside the index and combined with it: without fakes (each standardised
on real videos; sum, maximum) and learned (a logistic regression on the two, validated by
leaving each video source out, :func:`learned_combination`). With ``--lofo`` and ``--into``
the learned combination, fitted on every source (:func:`fit_combination`), goes into the
model's ``temporal["combine"]``: scanning a video then scores the combination
(``Detector.temporal_score``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from noisetrace.detector import UNUSUAL
from noisetrace.media.video import iter_frames
from noisetrace.metrics import binary_metrics, bootstrap_ci
from noisetrace.zoo import load_detector

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")


def settings(args: argparse.Namespace) -> dict:
    return {"frames": args.frames, "size": args.size, "highpass": not args.luma}


def video_index(det, path: Path, pair: bool, samples: int, frames: int) -> dict[str, dict]:
    """{"real"/"fake" (halves of a pair) or "video": the detector's jitter evidence and its
    frame score} of one file, read as ``scan`` reads it (``Detector.with_runs`` beside the
    face model's own search of each sampled frame)."""
    from dataclasses import replace

    from noisetrace.metrics import aggregate_scores

    sampled = list(iter_frames(path, mode="even", n=samples, context=frames))
    halves = {"real": 0, "fake": 1} if pair else {"video": None}
    out = {}
    for half, k in halves.items():
        w2 = sampled[0].image.shape[1] // 2
        cols = slice(None) if k is None else slice(k * w2, (k + 1) * w2)
        part = [replace(f, image=np.ascontiguousarray(f.image[:, cols]),
                        run=None if f.run is None else tuple(x[:, cols] for x in f.run))
                for f in sampled]  # fmt: skip
        rows: list[np.ndarray] = []
        failed: list[str] = []
        probs, _ = det.face_details(det.with_runs(part, rows, failed))
        ev = {"error": failed[0]} if failed else det.jitter_evidence(rows)
        out[half] = None if ev is None else {
            **ev, "score": float(aggregate_scores(probs, det.config.video_aggregate))}
    return out


def measure(args: argparse.Namespace) -> list[dict]:
    """One row per video (per half of a pair clip): source, path, label, group, index."""
    det = load_detector(args.model)
    det.config.temporal = settings(args)
    samples = args.samples or det.config.video_frames
    rows: list[dict] = []
    for manifest, pair in [(m, True) for m in args.pairs] + [(m, False) for m in args.videos]:
        root = Path(manifest).parent
        for r in csv.DictReader(open(manifest), delimiter="\t"):
            p = root / r["path"]
            if pair != (r["label"] == "pair") or p.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            try:
                got = video_index(det, p, pair, samples, args.frames)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next video
                print(f"{p.name}: {exc}", flush=True)
                continue
            for part, ev in got.items():
                if ev is None:
                    print(f"{p.name} ({part}): no face in any run", flush=True)
                    continue
                if "error" in ev:
                    print(f"{p.name} ({part}): {ev['error']}", flush=True)
                    continue
                rows.append({"source": root.name, "path": r["path"],
                             "label": part if pair else r["label"],
                             "group": r.get("group") or r["path"], "jitter": ev["jitter_index"],
                             "runs": ev["runs"], "score": ev["score"]})  # fmt: skip
            print(f"{root.name}: {r['path'][-50:]}", flush=True)
    return rows


def _auc(y: np.ndarray, s: np.ndarray) -> str:
    if y.all() or not y.any():
        return "-"
    lo, hi = bootstrap_ci(y, s, "auc")
    return f"{binary_metrics(y, s)['auc']:.3f} ({lo:.2f}-{hi:.2f})"


def unusual(rows: list[dict], source: str) -> np.ndarray:
    """Per row of ``source``: called unusual against the reals of every other source."""
    ref = np.array([r["jitter"] for r in rows if r["label"] == "real" and r["source"] != source])
    return np.array([np.mean(ref > r["jitter"]) < UNUSUAL
                     for r in rows if r["source"] == source])  # fmt: skip


def table(rows: list[dict]) -> str:
    """The per-source table (markdown)."""
    out = ["| source | fake / real videos | AUC vs own reals (95% CI) | AUC vs all reals | "
           "pairs: fake > real | median fake / real | unusual: fakes / reals (reference: the "
           "other sources' reals) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    y_all = np.array([r["label"] == "fake" for r in rows], int)
    s_all = np.array([r["jitter"] for r in rows])
    for source in sorted({r["source"] for r in rows}):
        own = np.array([r["source"] == source for r in rows])
        y, s = y_all[own], s_all[own]
        vs_all = own | (y_all == 0)
        byp: dict[str, dict[str, float]] = {}
        for r in rows:
            if r["source"] == source:
                byp.setdefault(r["path"], {})[r["label"]] = r["jitter"]
        paired = [v["fake"] > v["real"] for v in byp.values() if {"fake", "real"} <= set(v)]
        share = f"{np.mean(paired):.2f} of {len(paired)}" if paired else "-"
        med = " / ".join(f"{np.median(s[y == c]):+.3f}" if (y == c).any() else "-"
                         for c in (1, 0))  # fmt: skip
        u = unusual(rows, source)
        flag = " / ".join(f"{u[y == c].mean():.2f}" if (y == c).any() else "-" for c in (1, 0))
        out.append(f"| {source} | {int(y.sum())} / {int((1 - y).sum())} | {_auc(y, s)} | "
                   f"{_auc(y_all[vs_all], s_all[vs_all])} | {share} | {med} | {flag} |")
    u_all = np.concatenate([unusual(rows, src) for src in sorted({r["source"] for r in rows})])
    y_sorted = np.concatenate([y_all[[r["source"] == src for r in rows]]
                               for src in sorted({r["source"] for r in rows})])  # fmt: skip
    out.append(f"| **all** | {int(y_all.sum())} / {int((1 - y_all).sum())} | - | "
               f"{_auc(y_all, s_all)} | | | {u_all[y_sorted == 1].mean():.2f} / "
               f"{u_all[y_sorted == 0].mean():.2f} |")
    return "\n".join(out)


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
                   + " | ".join(_auc(y, v[m]) for v in z.values()) + " |")
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
            cells = [_auc(yy[m], sc[m]) for m in (fake | (real & own), fake | real)]
            caught = np.mean(sc[fake] > np.quantile(sc[real], 0.95))
            print(f"| {t} | {name} | {cells[0]} | {cells[1]} | {caught:.2f} |")


#: Video sources of the flicker rows (manifest folders) -> the face corpus's fake family.
SOURCE_FAMILY = {"deepfacelive": "face-deepfacelive",
                 "icpr2020dfdc_ffpp_dfdc_videos": "face-dfdc-videos",
                 "talking-anitalker": "face-anitalker", "talking-dreamtalk": "face-dreamtalk",
                 "talking-edtalk": "face-edtalk"}  # fmt: skip


def held_out_video_scores(rows: list[dict], lofo: Path, transform: str
                          ) -> dict[str, dict[tuple[str, str], float]]:  # fmt: skip
    """family -> {(source/path, label): video score of the frame model held out of that
    family} for every flicker row the corpus has (fakes of the family, reals out of fold),
    the frames aggregated as the shipped ``faces`` aggregates them."""
    from noisetrace.metrics import aggregate_by_group

    agg = load_detector("faces").config.video_aggregate
    z = np.load(lofo / "scores.npz", allow_pickle=True)
    keys, y = z["keys"], z["y"]
    label = dict(zip(keys, y, strict=True))
    wanted = {f"{r['source']}/{r['path']}" for r in rows}
    out: dict[str, dict[tuple[str, str], float]] = {}
    for fam in sorted(set(SOURCE_FAMILY.values())):
        if f"{fam}|{transform}" not in z.files:
            continue
        s = z[f"{fam}|{transform}"]
        ok = np.isfinite(s)
        got: dict[tuple[str, str], float] = {}
        for key, v in zip(*aggregate_by_group(keys[ok], s[ok], agg), strict=True):
            path = key.split("|", 1)[1].replace("\\", "/")
            hit = [w for w in wanted if path.endswith(w)]
            if len(hit) == 1:
                got[(hit[0], "fake" if label[key] == 1 else "real")] = float(v)
        out[fam] = got
    return out


def learned_combination(rows: list[dict], lofo: Path, transform: str = "matched90",
                        folds: int = 5, seed: int = 0) -> tuple[str, list[dict]]:  # fmt: skip
    """A logistic regression on (frame-model logit, jitter index), validated by leaving each
    video source out: for held-out source S it is fitted on the other sources' fake videos
    (each scored by the frame model held out of its own source) and on real videos of other
    sources than S, in ``folds`` folds of the reals, so no real video is scored by a
    combination fitted on it; S's fakes get the mean of the fold combinations. Both inputs
    are standardised on the fitting reals. Returns the markdown table and its rows."""
    from sklearn.linear_model import LogisticRegression

    scores = held_out_video_scores(rows, lofo, transform)
    own_real = {"deepfacelive": "deepfacelive", "talking-edtalk": "talking-real-edtalk",
                "icpr2020dfdc_ffpp_dfdc_videos": "icpr2020dfdc_ffpp_dfdc_videos"}  # fmt: skip
    jit = {(f"{r['source']}/{r['path']}", r["label"]): (r["jitter"], r["source"]) for r in rows}
    md = ["| held-out source | fake / real videos | frame model | jitter index | learned "
          "combination | weights (frame, jitter) | caught at 5% of reals: frame / learned |",
          "|---|---|---|---|---|---|---|"]  # fmt: skip
    table_rows = []
    rng = np.random.default_rng(seed)
    for src, fam in SOURCE_FAMILY.items():
        if fam not in scores:
            continue
        test = scores[fam]
        fakes = [k for k in test if k[1] == "fake" and k in jit and jit[k][1] == src]
        reals = [k for k in test if k[1] == "real" and k in jit]
        # The combiner's fakes: every other source's fakes under their own held-out model.
        train_f = [(scores[f2][k], jit[k][0]) for s2, f2 in SOURCE_FAMILY.items()
                   if s2 != src and f2 in scores
                   for k in scores[f2] if k[1] == "fake" and k in jit and jit[k][1] == s2]
        if not fakes or len(train_f) < 5:
            continue
        fold = rng.integers(0, folds, len(reals))
        x_real = np.array([(test[k], jit[k][0]) for k in reals])
        x_fake = np.array([(test[k], jit[k][0]) for k in fakes])
        out_real = np.zeros(len(reals))
        out_fake = np.zeros(len(fakes))
        w_sum = np.zeros(2)
        fit_ok = np.array([jit[k][1] != own_real.get(src, src) for k in reals])
        for f in range(folds):
            fit_r = x_real[(fold != f) & fit_ok]
            X = np.vstack([np.array(train_f), fit_r])
            X = np.column_stack([_logit(X[:, 0]), X[:, 1]])
            mu, sd = X[len(train_f):].mean(0), X[len(train_f):].std(0) + 1e-9
            yy = np.r_[np.ones(len(train_f)), np.zeros(len(fit_r))]
            lr = LogisticRegression(C=1.0, class_weight="balanced").fit((X - mu) / sd, yy)
            w_sum += lr.coef_[0] / folds

            def dec(x: np.ndarray, lr=lr, mu=mu, sd=sd) -> np.ndarray:
                return lr.decision_function((np.column_stack([_logit(x[:, 0]), x[:, 1]]) - mu) / sd)

            out_real[fold == f] = dec(x_real[fold == f])
            out_fake += dec(x_fake) / folds
        y = np.r_[np.ones(len(fakes)), np.zeros(len(reals))]
        cells = {name: np.r_[a, b] for name, a, b in (
            ("frame", x_fake[:, 0], x_real[:, 0]), ("jitter", x_fake[:, 1], x_real[:, 1]),
            ("learned", out_fake, out_real))}  # fmt: skip
        auc = {n: binary_metrics(y, v)["auc"] for n, v in cells.items()}
        caught = {n: float(np.mean(v[y == 1] > np.quantile(v[y == 0], 0.95)))
                  for n, v in cells.items()}  # fmt: skip
        table_rows.append({"source": src, "fakes": len(fakes), "reals": len(reals), **auc,
                           "caught": caught, "weights": w_sum.round(2).tolist()})
        md.append(f"| {src} | {len(fakes)} / {len(reals)} | "
                  + " | ".join(_auc(y, v) for v in cells.values())
                  + f" | {w_sum[0]:.2f}, {w_sum[1]:.2f} | {caught['frame']:.2f} / "
                  f"{caught['learned']:.2f} |")
    if table_rows:
        mean = {n: np.mean([r[n] for r in table_rows]) for n in ("frame", "jitter", "learned")}
        md.append(f"| **mean** | | **{mean['frame']:.3f}** | **{mean['jitter']:.3f}** | "
                  f"**{mean['learned']:.3f}** | | |")
    return "\n".join(md), table_rows


def fit_combination(rows: list[dict], lofo: Path, target_fpr: float, threshold: float,
                    transform: str = "matched90") -> dict:  # fmt: skip
    """The shipped combination (``Detector.temporal_score``): the logistic regression of
    :func:`learned_combination` fitted on every video source's fakes (each under the frame
    model held out of its source) and every real video (its held-out scores' median over
    the runs), standardised on the reals; ``cut`` lets ``target_fpr`` of the reals through."""
    from sklearn.linear_model import LogisticRegression

    scores = held_out_video_scores(rows, lofo, transform)
    jit = {(f"{r['source']}/{r['path']}", r["label"]): (r["jitter"], r["source"]) for r in rows}
    fakes = [(scores[f][k], jit[k][0]) for s2, f in SOURCE_FAMILY.items() if f in scores
             for k in scores[f] if k[1] == "fake" and k in jit and jit[k][1] == s2]  # fmt: skip
    real_keys = sorted({k for f in scores for k in scores[f] if k[1] == "real" and k in jit})
    reals = [(float(np.median([scores[f][k] for f in scores if k in scores[f]])), jit[k][0])
             for k in real_keys]  # fmt: skip
    X = np.array(fakes + reals)
    X = np.column_stack([_logit(X[:, 0]), X[:, 1]])
    mu, sd = X[len(fakes):].mean(0), X[len(fakes):].std(0) + 1e-9
    y = np.r_[np.ones(len(fakes)), np.zeros(len(reals))]
    lr = LogisticRegression(C=1.0, class_weight="balanced").fit((X - mu) / sd, y)
    d_real = lr.decision_function((X[len(fakes):] - mu) / sd)
    cut = float(np.quantile(d_real, 1 - target_fpr))
    by_source: dict[str, list[bool]] = {}
    for k, d in zip(real_keys, d_real, strict=True):
        by_source.setdefault(jit[k][1], []).append(bool(d > cut))
    return {"coef": [round(float(w), 6) for w in lr.coef_[0]],
            "intercept": round(float(lr.intercept_[0]), 6),
            "mean": [round(float(v), 6) for v in mu], "scale": [round(float(v), 6) for v in sd],
            "cut": round(cut, 6), "target_fpr": target_fpr, "threshold": threshold,
            "inputs": ["frame logit", "jitter"],
            "fitted_on": {"fake_videos": len(fakes), "real_videos": len(reals),
                          "transform": transform},
            "real_videos_called_fake": {k: round(float(np.mean(v)), 3)
                                        for k, v in sorted(by_source.items())}}  # fmt: skip


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def write_into(model: Path, temporal: dict, markdown: str, args: argparse.Namespace) -> None:
    """Set ``temporal`` in the face model's config.json and this table in its card (both
    rewritten whole, atomically; the rest untouched)."""
    from noisetrace.heads.fit import write_card
    from noisetrace.io import atomic_write

    cfg_path = model / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("input") != "face":
        raise SystemExit(f"{model} is not a face model (input {cfg.get('input')!r})")
    cfg["temporal"] = temporal
    atomic_write(cfg_path, json.dumps(cfg, indent=2) + "\n")
    if (model / "card.json").is_file():
        card = json.loads((model / "card.json").read_text())
        manifests = " ".join([*(f"--pairs {m}" for m in args.pairs),
                              *(["--videos", *args.videos] if args.videos else [])])
        card["temporal"] = {
            "command": f"python benchmarks/faces_flicker.py {manifests} "
                       f"{f'--samples {args.samples} ' if args.samples else ''}"
                       f"--frames {args.frames} --size {args.size}"
                       f"{' --luma' if args.luma else ''}"
                       f"{' --lofo LOFO' if args.lofo else ''} --out OUT --into {model}",
            "markdown": markdown, "real_videos": len(temporal["real"]),
            "real_sources": temporal["real_sources"], "combined": "combine" in temporal,
        }  # fmt: skip
        write_card(model, card)
    print(f"wrote the temporal calibration ({len(temporal['real'])} real videos) into {model}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", nargs="*", default=[], help="manifests of side-by-side clips")
    ap.add_argument("--videos", nargs="*", default=[], help="manifests of real/fake videos")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="faces", help="the face model whose search and crops "
                    "are used (bundled name or folder)")  # fmt: skip
    ap.add_argument("--samples", type=int, help="frames sampled per video (default: the "
                    "model's video_frames, as scan samples them)")  # fmt: skip
    ap.add_argument("--frames", type=int, default=12, help="the run read with each one")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--luma", action="store_true", help="the luma's change, not the Laplacian's")
    ap.add_argument("--lofo", type=Path, help="a benchmarks/faces_lofo.py --out folder: also "
                    "combine its held-out frame scores with the jitter index")  # fmt: skip
    ap.add_argument("--reuse", action="store_true",
                    help="read --out/flicker.json from an earlier run instead of the videos")
    ap.add_argument("--into", type=Path, help="a face model folder: write the calibration "
                    "into its config.json (its `temporal` block), as the bundled `faces` got it")
    args = ap.parse_args()
    if args.reuse:
        rows = json.loads((args.out / "flicker.json").read_text())
    else:
        rows = measure(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "flicker.json").write_text(json.dumps(rows, indent=1))
        real = sorted(r["jitter"] for r in rows if r["label"] == "real")
        sources = sorted({r["source"] for r in rows if r["label"] == "real"})
        (args.out / "temporal.json").write_text(json.dumps(
            {**settings(args), "real": real, "real_sources": sources}, indent=1))  # fmt: skip
    md = table(rows)
    print("\n" + md)
    if all("score" in r for r in rows):
        print("\n" + combination(rows))
    temporal = json.loads((args.out / "temporal.json").read_text())
    if args.lofo:
        print_fusion(rows, args.lofo)
        for t in ("matched90", "matched65"):
            md_l, got = learned_combination(rows, args.lofo, t)
            md_l = (f"Learned combination of the frame model's video score and the jitter "
                    f"index, each video source left out in turn ({t}); video AUC against "
                    "every real video (95% CI):\n\n" + md_l)  # fmt: skip
            print("\n" + md_l)
            (args.out / f"learned_{t}.json").write_text(json.dumps(got, indent=1))
            if t == "matched90":
                md += "\n\n" + md_l
        if args.into:
            fpr = float(json.loads((args.into / "card.json").read_text())["recipe"]
                        .get("target_fpr", 0.03))  # fmt: skip
            thr = float(json.loads((args.into / "config.json").read_text())["threshold"])
            temporal["combine"] = fit_combination(rows, args.lofo, fpr, thr)
            print("\nshipped combination:", json.dumps(temporal["combine"]))
    if args.into:
        write_into(args.into, temporal, md, args)


if __name__ == "__main__":
    main()
