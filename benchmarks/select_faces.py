"""The MesoNet peer of the `faces` model: `python benchmarks/select_faces.py --out DIR`.

Until 2026-12-02 this built the bundled `faces` model; the project now fits its own
(configs/faces.yaml), and this builds the best released MesoNet as a model directory to
compare with (`benchmarks/faces_lofo.py --peer DIR`). Candidates are the MesoNet authors'
released weights (../shared/weights/mesonet, Apache-2.0) at two face margins. Each
candidate scans the face material of ../shared/data through the one scanning path (face
detection, crops, scores); the winner by AUC over all files is Platt-calibrated on the
(balanced) face crops and written to --out with its card.
Prints the candidate table. Formats are matched by construction: real and fake crops are both
PNG face crops, real and fake videos both H.264 MP4.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = ["dfdc_sample_facecrops_aaronchong888", "icpr2020dfdc_ffpp_dfdc_videos"]
SCALES = (1.0, 1.3)
DETECT = {"max_side": 320}  # Haar on a 320 px copy: ~4x faster, faces < 1/12 frame ignored


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def score_files(det, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, logits, is_video) per file; a video's logit is that of its mean frame score."""
    ys, zs, vid = [], [], []
    for s in samples:
        r = det.scan(s.path)
        if r.error:
            raise SystemExit(f"{s.path}: {r.error}")
        ys.append(s.label)
        zs.append(_logit(r.score))
        vid.append(r.kind == "video")
    return np.array(ys), np.array(zs), np.array(vid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=SHARED / "weights" / "mesonet")
    ap.add_argument("--data", type=Path, nargs="+", default=[SHARED / "data" / d for d in DATA])
    ap.add_argument("--out", type=Path, required=True, help="model directory to write")
    args = ap.parse_args()
    missing = [p for p in [args.weights, *args.data] if not p.exists()]
    if missing:
        print(f"missing: {', '.join(map(str, missing))} (this script needs ../shared)")
        return 2

    from rich.console import Console
    from rich.table import Table

    from noisetrace.data.manifest import discover
    from noisetrace.detector import Detector
    from noisetrace.export import from_keras
    from noisetrace.metrics import binary_metrics, fit_platt

    samples = [s for d in args.data for s in discover(d, images_only=False)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h5 in sorted(args.weights.glob("*.h5")):
            model_dir = Path(tmp) / h5.stem
            from_keras(h5, model_dir)
            for scale in SCALES:
                det = Detector.load(model_dir, device="cpu", backend="auto")
                det.config.face.update(scale=scale, size=256, detect=DETECT, max_faces=4)
                y, z, vid = score_files(det, samples)
                m = {
                    k: binary_metrics(y[sel], z[sel])["auc"]
                    for k, sel in (("all", slice(None)), ("images", ~vid), ("videos", vid))
                }
                rows.append(
                    {"weights": h5.name, "scale": scale, **m, "_det": det, "_yz": (y, z, vid)}
                )
                print(f"{h5.name} margin {scale}: {m}", file=sys.stderr, flush=True)
    table = Table(title=f"face model candidates on {len(samples)} files of ../shared/data")
    for col in ("weights", "face margin", "AUC all", "AUC face crops", "AUC videos"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["weights"], str(r["scale"]), *(f"{r[k]:.3f}" for k in ("all", "images", "videos"))
        )
    Console().print(table)

    best = max(rows, key=lambda r: (r["all"], r["images"]))
    det, (y, z, vid) = best["_det"], best["_yz"]
    # Platt on the face crops alone: they are balanced (11 + 11), so 0.5 means even odds;
    # the files as a whole are mostly fake and would tilt every verdict towards "fake".
    a, b = fit_platt(z[~vid], y[~vid])
    det.config.name = "faces"
    det.config.calibration = {"a": a, "b": b}
    det.config.extra["source"] = best["weights"]
    p = 1 / (1 + np.exp(-(a * z + b)))
    metrics = {
        k: {kk: round(float(vv), 4) for kk, vv in binary_metrics(y[sel], p[sel]).items()}
        | {"n": int(np.sum(np.ones_like(y)[sel])), "n_fake": int(np.sum(y[sel]))}
        for k, sel in (("all files", slice(None)), ("face crops", ~vid), ("videos", vid))
    }
    args.out.mkdir(parents=True, exist_ok=True)
    det.save(args.out, onnx=True)
    card = {
        "name": "faces",
        "summary": "Probability that a face (image or video frame) is a face swap.",
        "arch": det.config.arch,
        "weights": f"{best['weights']} (MesoNet authors, Apache-2.0), unchanged",
        "face": det.config.face,
        "data": [str(d) for d in args.data],
        "candidates": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "metrics": metrics,
        "calibration": {"method": "Platt scaling on the face crops (in-sample)", "a": a, "b": b},
    }
    (args.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(
        json.dumps(
            {"chosen": best["weights"], "scale": best["scale"], "metrics": metrics}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
