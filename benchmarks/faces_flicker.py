"""Temporal flicker of a face against its ring, with no training (issue 17).

    python benchmarks/faces_flicker.py --pairs ../data/faces/deepfacelive/MANIFEST.tsv \\
        --videos ../shared/data/icpr2020dfdc_ffpp_dfdc_videos/MANIFEST.tsv \\
                 ../data/faces/styletalk/MANIFEST.tsv --out /work/data/runs/flicker

For each video: ``--windows`` windows of ``--frames`` consecutive frames, evenly spaced; in
each, the largest face of the window's first frame (OpenCV), one face square 1.3x its box
for the whole window, crops resized to ``--size`` px; then
:func:`noisetrace.residuals.temporal.frame_changes` (luma and its Laplacian) pooled over the
windows and :func:`~noisetrace.residuals.temporal.still_flicker`. A ``pair`` clip
(DeepFaceLive: the real feed left, its real-time swap right, frame-aligned) gives two
videos, cut with the same square found on the real half, so the two differ only by the swap.

With ``--lofo`` (a ``benchmarks/faces_lofo.py`` output folder) the held-out frame model's
video scores are set beside the index and summed with it, each standardised on real videos.

Printed: per source, the AUC of the statistic (higher = fake) against the same source's
reals with a bootstrap interval, the share of pairs whose swapped half flickers more than its
real half, each source's median and the fakes caught at the value that 5% of its reals
exceed; then the same over all sources pooled. Per-video values go to
``--out``/flicker.json. Nothing is fitted: the sign is fixed in advance (a rendered face
flickers more).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from noisetrace.media.crops import face_square
from noisetrace.media.faces import get_face_detector
from noisetrace.media.video import read_windows
from noisetrace.metrics import binary_metrics, bootstrap_ci
from noisetrace.residuals.temporal import (
    frame_changes,
    frame_jitter,
    jitter_index,
    still_flicker,
)


def crop_window(frames: list[np.ndarray], box: tuple[int, int, int, int], size: int) -> np.ndarray:
    from PIL import Image

    x0, y0, x1, y1 = box
    crops = [Image.fromarray(np.ascontiguousarray(f[y0:y1, x0:x1])) for f in frames]
    return np.stack([np.asarray(c.resize((size, size), Image.BILINEAR)) for c in crops])


def video_changes(path: Path, pair: bool, args: argparse.Namespace, det) -> dict[str, dict]:
    """{"real"/"fake"/label: {"luma": (N, 2), "highpass": (N, 2)}} of one file."""
    acc: dict[str, dict[str, list[np.ndarray]]] = {}
    for window in read_windows(path, args.windows, args.frames):
        frames = [f.image for f in window]
        w2 = frames[0].shape[1] // 2
        first = frames[0][:, :w2] if pair else frames[0]
        faces = det.detect(np.ascontiguousarray(first))
        if not faces:
            continue
        f = max(faces, key=lambda f: f.width * f.height)
        box = face_square(f.box, first.shape[:2])
        parts = {"real": [x[:, :w2] for x in frames], "fake": [x[:, w2 : 2 * w2] for x in frames]} \
            if pair else {"video": frames}  # fmt: skip
        for name, fr in parts.items():
            win = crop_window(fr, box, args.size)
            d = acc.setdefault(name, {"luma": [], "highpass": [], "jitter": [], "jitter-hp": []})
            d["luma"].append(frame_changes(win))
            d["highpass"].append(frame_changes(win, highpass=True))
            d["jitter"].append(frame_jitter(win))
            d["jitter-hp"].append(frame_jitter(win, highpass=True))
    return {k: {m: np.concatenate(v) for m, v in d.items()} for k, d in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", nargs="*", default=[], help="manifests of side-by-side clips")
    ap.add_argument("--videos", nargs="*", default=[], help="manifests of real/fake videos")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--still", type=float, default=1 / 3)
    ap.add_argument("--lofo", type=Path, help="a benchmarks/faces_lofo.py --out folder: also "
                    "combine its held-out frame scores with the jitter index")  # fmt: skip
    ap.add_argument("--reuse", action="store_true",
                    help="read --out/flicker.json from an earlier run instead of the videos")
    args = ap.parse_args()
    if args.reuse:
        rows = json.loads((args.out / "flicker.json").read_text())
    else:
        rows = measure(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "flicker.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)
    if args.lofo:
        print_fusion(rows, args.lofo)


def measure(args: argparse.Namespace) -> list[dict]:
    """One row per video (per half of a pair clip): source, path, label, group, statistics."""
    det = get_face_detector("opencv")
    rows: list[dict] = []
    for manifest, pair in [(m, True) for m in args.pairs] + [(m, False) for m in args.videos]:
        root = Path(manifest).parent
        for r in csv.DictReader(open(manifest), delimiter="\t"):
            p = root / r["path"]
            if pair != (r["label"] == "pair") or p.suffix.lower() not in (".mp4", ".avi", ".mov",
                                                                         ".mkv", ".webm"):
                continue
            try:
                got = video_changes(p, pair, args, det)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next video
                print(f"{p.name}: {exc}", flush=True)
                continue
            source = root.name
            for part, ch in got.items():
                label = part if pair else r["label"]
                stats = {m: (jitter_index(c) if m.startswith("jitter") else
                             still_flicker(c, args.still)) for m, c in ch.items()}  # fmt: skip
                rows.append({"source": source, "path": r["path"], "label": label,
                             "group": r.get("group") or r["path"], **stats})  # fmt: skip
            print(f"{source}: {r['path'][-50:]} ({len(got)} part(s) with faces)", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| source | statistic | fake / real videos | AUC vs own reals (95% CI) | "
          "pairs: fake > real | median fake / real | caught at 5% of reals called fake |")
    print("|---|---|---|---|---|---|---|")
    for source in [*sorted({r["source"] for r in rows}), "all sources"]:
        sub = [r for r in rows if source in (r["source"], "all sources")]
        y = np.array([r["label"] == "fake" for r in sub], int)
        for m in ("luma", "highpass", "jitter", "jitter-hp"):
            s = np.array([r[m] for r in sub])
            nf, nr = int(y.sum()), int((1 - y).sum())
            auc = ci = "-"
            if nf and nr:
                auc = f"{binary_metrics(y, s)['auc']:.3f}"
                lo, hi = bootstrap_ci(y, s, "auc")
                ci = f" ({lo:.2f}-{hi:.2f})"
            byp: dict[str, dict[str, float]] = {}
            for r in sub:
                byp.setdefault(r["path"], {})[r["label"]] = r[m]
            paired = [v["fake"] > v["real"] for v in byp.values() if {"fake", "real"} <= set(v)]
            share = f"{np.mean(paired):.2f} of {len(paired)}" if paired else "-"
            med = " / ".join(f"{np.median(s[y == c]):.3f}" if (y == c).any() else "-"
                             for c in (1, 0))  # fmt: skip
            caught = "-"
            if nf and nr:
                caught = f"{np.mean(s[y == 1] > np.quantile(s[y == 0], 0.95)):.2f}"
            print(f"| {source} | {m} | {nf} / {nr} | {auc}{ci if auc != '-' else ''} | {share} "
                  f"| {med} | {caught} |")


def print_fusion(rows: list[dict], lofo: Path, held_out: str = "face-deepfacelive") -> None:
    """The frame model held out of ``held_out`` (its top-quarter video score, from
    ``lofo``/scores.npz) beside the jitter index (Laplacian) and their sum, each standardised
    on the real videos that have both (no fake is used to combine them)."""
    from noisetrace.metrics import aggregate_by_group

    z = np.load(lofo / "scores.npz", allow_pickle=True)
    keys, y = z["keys"], z["y"]
    label = dict(zip(keys, y, strict=True))
    jit = {(Path(r["path"]).name, r["label"]): r["jitter-hp"] for r in rows}
    print(f"\n| transform | evidence | {held_out} fake vs its own real videos (95% CI) | "
          "vs all real videos | caught at 5% of reals called fake |")
    print("|---|---|---|---|---|")
    names = {k.split("|")[1] for k in z.files if k.startswith(held_out + "|")}
    for t in sorted(n for n in names if not n.startswith("thr:")):  # thr:T are thresholds
        s = z[f"{held_out}|{t}"]
        ok = np.isfinite(s)
        vids, vs = aggregate_by_group(keys[ok], s[ok], "top25")
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
        for name, sc in (("frame model", z1), ("jitter index", z2), ("sum", z1 + z2)):
            cells = []
            for m in (fake | (real & own), fake | real):
                lo, hi = bootstrap_ci(yy[m], sc[m], "auc")
                cells.append(f"{binary_metrics(yy[m], sc[m])['auc']:.3f} ({lo:.2f}-{hi:.2f})")
            caught = np.mean(sc[fake] > np.quantile(sc[real], 0.95))
            print(f"| {t} | {name} | {cells[0]} | {cells[1]} | {caught:.2f} |")


if __name__ == "__main__":
    main()
