"""Every registered detector at an equal CPU budget on generators it never saw (issue 16):

    .venv/bin/python benchmarks/compare_unseen.py --train ../shared/data \\
        --test ../data/public ../data/aligned --out /work/data/unseen \\
        --runs /work/data/runs/unseen --cache /work/data/cache --budget-s 360

One held-out split instead of leave-one-family-out (which needs a CNN training per family and
fold): every detector is trained on the whole images of ``--train`` only and tested on
``--test``, whose generators none of them saw (modern diffusion, web-published FLUX-pro,
Imagen 3 and Recraft images, TAEF2 autoencoder-aligned fakes) and their real web and camera
photos. Face material is left out of both, as the whole-image loaders leave it out
(:func:`noisetrace.data.families.load_corpus`): the script writes the two lists it uses as
``OUT/train.tsv`` and ``OUT/test.tsv`` so every detector trains and is scored on the same
files.

* Heads (`default` fusion, CLIP probe, SPAM + LR): ``noisetrace fit --config C --data
  OUT/train.tsv --no-lofo --cache CACHE``; they take the time they take (reported).
* CNNs (srm-cnn, djin, xception-srm, cffn; corvi-resnet50 only with ``--only``): ``noisetrace
  train --config C --data OUT/train.tsv --set time_budget_s=BUDGET ...`` with small epochs
  (``CNN_SETTINGS``) so several fit in the budget; the run stops after the epoch in which its
  epochs' wall-clock seconds reached the budget, keeps its best epoch and is calibrated on
  its validation split as usual.
* Every model: ``noisetrace evaluate --model M --data OUT/test.tsv --protocol jpeg,confound
  --qualities 65`` (the matched twins of "as stored" and "QF 65" are ``matched QF 90`` and
  ``matched QF 65``: both classes re-encoded identically, lossless files JPEG 95 first). The
  fully convolutional CNNs get ``--max-side`` (a centre crop: full-resolution DJIN on 2 cores
  is too slow); the heads and the fixed-input CNNs (Xception, CFFN: the whole image resized
  to 224) are shown the whole image.

From each report's per-sample scores: AUC over all test images at matched JPEG 90 and 65,
AUC of each fake family (families of fewer than 12 images pooled as ``small-families``, as
``noisetrace fit`` pools them) against all reals, and the share of real photos called fake at
the model's own threshold. Models and reports already in ``--runs``/``--out`` are reused
(``--force`` redoes them), so an interrupted run continues. Writes OUT/compare_unseen.json and
OUT/compare_unseen.md, prints a rich table. Run it with ``nice``: it trains and scores on
every core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = {"q90": "matched QF 90", "q65": "matched QF 65"}
SMALL_FAMILY = 12  # as noisetrace.heads.fit pools families


@dataclass(frozen=True)
class Spec:
    """How one detector is trained and scored."""

    config: str
    kind: str  # "head" (noisetrace fit) | "cnn" (noisetrace train, time budget)
    max_side: int = 0  # evaluate --max-side (0: the whole image)
    sets: tuple[str, ...] = ()  # extra `noisetrace train --set` items
    default: bool = True  # in the default set (else only with --only)
    note: str = ""


# Small epochs (crops_per_image 1; a subset for the 224-px fixed-input models) so that several
# epochs fit in the budget; validation at the view the detector is evaluated on.
CNN_SETTINGS: dict[str, Spec] = {
    "srm-cnn": Spec("configs/srm_cnn.yaml", "cnn", 512, (
        "patch=128", "crops_per_image=1", "batch_size=32", "epochs=500", "val_max_side=512")),
    "djin": Spec("configs/djin.yaml", "cnn", 256, (
        "patch=96", "crops_per_image=1", "batch_size=16", "epochs=500", "val_max_side=256")),
    "xception-srm": Spec("configs/xception_srm.yaml", "cnn", 0, (
        "max_images=400", "warmup_epochs=1", "batch_size=16", "epochs=500",
        "val_max_side=100000",
        # its face recipe has no JPEG augmentation; whole images need the format control
        # the other image recipes have (lossless files JPEG-encoded first)
        "augment={crop_weights: [0, 0, 1, 0], use_d4: false, jpeg_p: 0.5, "
        "jpeg_quality: [40, 100], prior_jpeg_p: 1.0, prior_jpeg_quality: [85, 98]}"),
        note="random init (no ImageNet weights offline); format control added"),
    "cffn": Spec("configs/cffn.yaml", "cnn", 0, (
        "max_images=400", "triplet_epochs=1", "batch_size=32", "epochs=500",
        "val_max_side=100000")),
    "corvi-resnet50": Spec("configs/corvi_resnet50.yaml", "cnn", 256, (
        "patch=64", "crops_per_image=1", "batch_size=16", "epochs=500", "val_max_side=128"),
        default=False, note="0.6 images/s at 256 px on 2 cores: scoring costs about an hour"),
}  # fmt: skip
HEADS: dict[str, Spec] = {
    "default-fusion": Spec("configs/default_fusion.yaml", "head"),
    "clip-probe": Spec("configs/clip_probe.yaml", "head"),
    "spam-lr": Spec("configs/spam_lr.yaml", "head"),
}
DETECTORS: dict[str, Spec] = {**HEADS, **CNN_SETTINGS}


@dataclass
class Row:
    name: str
    spec: Spec
    train_s: float | None = None  # wall clock of the train/fit command
    epochs: int | None = None
    budget_stop: bool | None = None
    report: dict = field(default_factory=dict)


def write_manifest(specs: list[str], path: Path) -> dict[str, int]:
    """The whole images of ``specs`` (face material left out) as a manifest; counts."""
    from noisetrace.data.families import family_of, load_corpus

    samples = load_corpus(specs, whole_images=True)
    rows = ["path\tlabel\tgenerator\tgroup\tdataset"]
    counts: dict[str, int] = {}
    for s in samples:
        clean = [v.replace("\t", " ") for v in (s.generator, s.group, s.dataset)]
        rows.append("\t".join([str(Path(s.path).resolve()), "fake" if s.label else "real",
                               *clean]))  # fmt: skip
        key = f"{'fake' if s.label else 'real'}:{family_of(s)}"
        counts[key] = counts.get(key, 0) + 1
    path.write_text("\n".join(rows) + "\n")
    return dict(sorted(counts.items()))


def cli(*args: str, log: Path) -> float:
    """``noisetrace ARGS`` (output to ``log``); the wall-clock seconds it took."""
    cmd = [sys.executable, "-m", "noisetrace.cli", *args]
    print("$ noisetrace " + " ".join(args), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ noisetrace " + " ".join(args) + "\n")
        fh.flush()
        subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def train(name: str, spec: Spec, train_tsv: Path, run: Path, args: argparse.Namespace,
          log: Path) -> tuple[Path, dict]:  # fmt: skip
    """Train or fit ``name`` unless its model is there; (model dir, timing record)."""
    model = run / "best" if spec.kind == "cnn" else run
    timing = run.parent / f"{run.name}.timing.json"
    if (model / "config.json").is_file() and timing.is_file() and not args.force:
        return model, json.loads(timing.read_text())
    cfg = str(ROOT / spec.config)
    if spec.kind == "head":
        cache = ["--cache", str(Path(args.cache).resolve())] if args.cache else []
        secs = cli("fit", "--config", cfg, "--data", str(train_tsv), "--no-lofo", *cache,
                   "--out", str(run), log=log)  # fmt: skip
        rec: dict = {"train_s": round(secs, 1)}
    else:
        secs = cli("train", "--config", cfg, "--data", str(train_tsv), "--out", str(run),
                   "--device", "cpu", "--set", f"time_budget_s={args.budget_s}", "progress=false",
                   *spec.sets, log=log)  # fmt: skip
        import csv

        hist = list(csv.DictReader((run / "metrics.csv").open()))
        text = log.read_text()
        rec = {"train_s": round(secs, 1), "epochs": len(hist),
               "epoch_s": round(sum(float(r["seconds"]) for r in hist), 1),
               "budget_stop": f"stopping: time budget of {args.budget_s:g}s" in
               text[text.rfind(f"--out {run} "):],
               "best_val_auc_matched": max((float(r["val_auc_matched"]) for r in hist
                                            if r.get("val_auc_matched") not in (None, "", "nan")),
                                           default=None)}  # fmt: skip
    timing.write_text(json.dumps(rec, indent=2))
    return model, rec


def evaluate(name: str, spec: Spec, model: Path, test_tsv: Path, args: argparse.Namespace,
             log: Path) -> dict:  # fmt: skip
    out = Path(args.out) / "reports" / name
    if not (out / "report.json").is_file() or args.force:
        extra = ["--max-side", str(spec.max_side)] if spec.max_side else []
        cli("evaluate", "--model", str(model), "--data", str(test_tsv), "--protocol",
            "jpeg,confound", "--qualities", "65", "--bootstrap", "200", "--device", "cpu",
            "--quiet", "--out", str(out), *extra, log=log)  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    import csv

    with open(out / "scores.csv", newline="") as fh:  # the per-sample scores
        report["scores"] = [
            {**r, "label": int(r["label"]), **{c: float(r[c]) for c in CONDITIONS.values()}}
            for r in csv.DictReader(fh)]  # fmt: skip
    return report


def measures(report: dict) -> dict:
    """AUC overall and per family, detection and real false positives from the scores."""
    from sklearn.metrics import roc_auc_score

    from noisetrace.data.families import family_of, is_face_family
    from noisetrace.data.manifest import Sample

    rows = [r for r in report["scores"]]
    fam = [family_of(Sample(r["path"], r["label"], r["generator"], dataset=r["dataset"]))
           for r in rows]  # fmt: skip
    keep = [not is_face_family(f) for f in fam]
    rows = [r for r, k in zip(rows, keep, strict=True) if k]
    fam = np.array([f for f, k in zip(fam, keep, strict=True) if k], dtype=object)
    y = np.array([r["label"] for r in rows])
    for f in set(fam[y == 1]):
        if (fam[y == 1] == f).sum() < SMALL_FAMILY:
            fam[(fam == f) & (y == 1)] = "small-families"
    thr = float(report["model"]["threshold"])
    out: dict = {"threshold": thr, "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
                 "families_n": {f: int((fam[y == 1] == f).sum()) for f in sorted(set(fam[y == 1]))},
                 "eval_s": report.get("seconds")}  # fmt: skip
    for short, cond in CONDITIONS.items():
        p = np.array([r[cond] for r in rows])
        aligned = fam == "aligned-taef2"
        out[f"auc_{short}"] = float(roc_auc_score(y, p))
        out[f"auc_{short}_without_aligned"] = float(roc_auc_score(y[~aligned], p[~aligned]))
        out[f"family_auc_{short}"] = {
            f: float(roc_auc_score(y[(fam == f) | (y == 0)], p[(fam == f) | (y == 0)]))
            for f in out["families_n"]}  # fmt: skip
        out[f"detected_{short}"] = float(np.mean(p[y == 1] >= thr))
        out[f"real_fpr_{short}"] = float(np.mean(p[y == 0] >= thr))
        out[f"real_fpr_{short}_by_kind"] = {
            k: {"n": int((fam[y == 0] == k).sum()),
                "fpr": float(np.mean(p[(y == 0) & (fam == k)] >= thr))}
            for k in sorted(set(fam[y == 0]))}  # fmt: skip
    raw = report["metrics"]["sample"]
    out["auc_as_stored"] = raw.get("uncompressed", {}).get("auc")
    out["auc_qf65_unmatched"] = raw.get("QF 65", {}).get("auc")
    return out


def table_rows(results: list[dict], families: list[str]) -> tuple[list[str], list[list[str]]]:
    cols = ["detector", "budget s", "train s (epochs)", "eval max side", "AUC q90", "AUC q65",
            "AUC q90 w/o aligned", *families, "real FPR q90", "real FPR q65", "detected q90",
            "eval s"]  # fmt: skip
    body = []
    for r in results:
        m = r.get("measures")
        if not m:
            body.append([r["name"], "-", "-", "-", "not measured", *["-"] * (len(cols) - 5)])
            continue
        tr = r["training"]
        ep = f" ({tr['epochs']} ep{', budget stop' if tr.get('budget_stop') else ''})" \
            if tr.get("epochs") is not None else ""  # fmt: skip
        body.append([
            r["name"], f"{r['budget_s']:g}" if r["kind"] == "cnn" else "- (fit)",
            f"{tr['train_s']:.0f}{ep}", str(r["max_side"] or "whole image"),
            f"{m['auc_q90']:.3f}", f"{m['auc_q65']:.3f}", f"{m['auc_q90_without_aligned']:.3f}",
            *(f"{m['family_auc_q90'].get(f, float('nan')):.3f}" for f in families),
            f"{100 * m['real_fpr_q90']:.1f}%", f"{100 * m['real_fpr_q65']:.1f}%",
            f"{100 * m['detected_q90']:.0f}%", f"{m['eval_s']:.0f}",
        ])  # fmt: skip
    return cols, body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", nargs="+", default=["../shared/data"],
                    help="training data: folders or manifests (default: ../shared/data)")
    ap.add_argument("--test", nargs="+", default=["../data/public", "../data/aligned"],
                    help="test data of unseen generators (default: ../data/public "
                         "../data/aligned)")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for the manifests, reports, logs and the results")
    ap.add_argument("--runs", type=Path, default=None,
                    help="folder for the trained models (default: OUT/runs)")
    ap.add_argument("--cache", default=None,
                    help="feature cache of the heads (default: noisetrace fit's, "
                         "~/.cache/noisetrace/features)")  # fmt: skip
    ap.add_argument("--budget-s", type=float, default=360.0,
                    help="training budget of every CNN, wall-clock seconds (default: 360)")
    ap.add_argument("--only", nargs="+", choices=sorted(DETECTORS), metavar="NAME",
                    help=f"these detectors, in this order (default: "
                         f"{' '.join(n for n, s in DETECTORS.items() if s.default)}; "
                         f"choices: {', '.join(DETECTORS)})")  # fmt: skip
    ap.add_argument("--max-side", nargs="+", default=[], metavar="NAME=PX",
                    help="evaluate NAME with this --max-side instead of its own (0: the whole "
                         "image), e.g. djin=128 on a busy machine (default: none)")  # fmt: skip
    ap.add_argument("--force", action="store_true",
                    help="retrain and rescore even where a model or report exists")
    args = ap.parse_args()
    for d in [*args.train, *args.test]:
        if not Path(d).exists():
            print(f"{d}: not found (see docs/data.md)", file=sys.stderr)
            return 2
    args.out = args.out.resolve()  # the commands run from the repository root
    args.out.mkdir(parents=True, exist_ok=True)
    runs = (args.runs or args.out / "runs").resolve()
    runs.mkdir(parents=True, exist_ok=True)
    args.train = [str(Path(d).resolve()) for d in args.train]
    args.test = [str(Path(d).resolve()) for d in args.test]
    train_tsv, test_tsv = args.out / "train.tsv", args.out / "test.tsv"
    data = {"train": write_manifest(args.train, train_tsv),
            "test": write_manifest(args.test, test_tsv)}  # fmt: skip
    unseen = {k.split(":", 1)[1] for k in data["test"] if k.startswith("fake:")}
    seen = unseen & {k.split(":", 1)[1] for k in data["train"] if k.startswith("fake:")}
    if seen:
        print(f"warning: families in both training and test data: {sorted(seen)}",
              file=sys.stderr)  # fmt: skip
    names = args.only or [n for n, s in DETECTORS.items() if s.default]
    for item in args.max_side:
        name, _, px = item.partition("=")
        if name not in DETECTORS or not px.isdigit():
            ap.error(f"--max-side {item}: use NAME=PX with NAME one of {', '.join(DETECTORS)}")
        DETECTORS[name] = replace(DETECTORS[name], max_side=int(px))
    json_path = args.out / "compare_unseen.json"
    results: list[dict] = []
    for name in names:
        spec = DETECTORS[name]
        log = args.out / f"{name}.log"
        entry = {"name": name, "kind": spec.kind, "config": spec.config,
                 "max_side": spec.max_side, "settings": list(spec.sets), "note": spec.note,
                 "budget_s": args.budget_s if spec.kind == "cnn" else None}  # fmt: skip
        try:
            model, entry["training"] = train(name, spec, train_tsv, runs / name, args, log)
            report = evaluate(name, spec, model, test_tsv, args, log)
        except subprocess.CalledProcessError as exc:
            print(f"{name}: failed ({exc}); see {log}", file=sys.stderr, flush=True)
            entry["error"] = f"{exc}; see {log}"
        else:
            entry["measures"] = measures(report)
            entry["report_auc"] = {s: report["metrics"]["sample"][c]["auc"]
                                   for s, c in CONDITIONS.items()}  # fmt: skip
            print(f"measured {name}: AUC q90 {entry['measures']['auc_q90']:.3f} "
                  f"q65 {entry['measures']['auc_q65']:.3f}", file=sys.stderr, flush=True)
        results.append(entry)
        json_path.write_text(json.dumps({"data": data, "train": args.train, "test": args.test,
                                         "budget_s": args.budget_s, "results": results},
                                        indent=2))  # fmt: skip
    families = sorted({f for r in results if r.get("measures")
                       for f in r["measures"]["families_n"]},
                      key=lambda f: (f == "small-families", f))  # fmt: skip
    cols, body = table_rows(results, families)
    n_fake = next((r["measures"]["families_n"] for r in results if r.get("measures")), {})
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Unseen generators at {args.budget_s:g} s of CNN training (2 cores): "
                        "AUC by family at matched JPEG 90, one split")  # fmt: skip
    for c in cols:
        table.add_column(c + (f" ({n_fake[c]})" if c in n_fake else ""),
                         justify="left" if c == "detector" else "right")  # fmt: skip
    for row in body:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a log file: keep every column readable
        console = Console(width=260)
    console.print(table)
    md = ["| " + " | ".join(c + (f" ({n_fake[c]})" if c in n_fake else "") for c in cols) + " |",
          "|" + "---|" * len(cols)] + ["| " + " | ".join(r) + " |" for r in body]  # fmt: skip
    (args.out / "compare_unseen.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
