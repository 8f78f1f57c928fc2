"""Seed face detectors and the project's face recipe on one held-out-source split (issue 17).

    nice -n 5 .venv/bin/python benchmarks/faces_unseen.py \\
        --corpus /work/data/faces_corpus/v2/MANIFEST.tsv --out /work/data/faces_unseen \\
        --runs /work/data/runs/faces_unseen --budget-s 240 --cache /work/data/cache \\
        --max-images cffn=270

One split of the face corpus (:mod:`noisetrace.data.face_corpus`, ``face:<source>``
generators): **test** = DeepFaceLive and inswapper (face-swapper), both classes; **train** =
everything else (self-blended fakes, DFDC crops and videos, StyleTalk, CelebA-HQ, DFDC reals),
less every crop whose ``group`` or ``identity`` is also on the test side (self-blended fakes
made from DeepFaceLive or face-swapper real frames are the same clips as test reals). Both
manifests (absolute paths, the corpus's columns) go to ``OUT/train.tsv`` and ``OUT/test.tsv``.

Detectors, each given the same wall-clock budget (``--budget-s``; the training engine's
``time_budget_s``: stops after the epoch during which the budget was spent):

* ``srm-cnn``, ``xception-srm``, ``cffn``, ``xception-srm-lstm``: ``noisetrace train
  --config configs/<x>.yaml --data OUT/train.tsv --out RUNS/<name>`` (``--device cpu``; a few
  keys changed so a phase that learns fits in the budget: see ``TRAIN``). The engine checks
  the budget between epochs only: where one epoch overruns it, ``--max-images NAME=N``
  shortens the epoch. The LSTM trains on windows of 4 consecutive crops of one video and
  scores each test video's crops window by window (inswapper images: one-crop sequences);
* ``siamese-dncnn`` (seed 003) trains on [face, background] pairs of the same frames: a
  second corpus cut with ``--background`` (``--pairs-corpus``; the face square and the
  furthest background square, 64 px; see :mod:`noisetrace.data.face_corpus`), split by the
  same rule into ``OUT/pairs/``, started from GRIP's DnCNN (``--dncnn``, ``init:``). Only
  frames with room for a background square are in it (close-ups such as the inswapper and
  StyleTalk 256 px faces have none), so its test set is the DeepFaceLive frames that have
  one, scored as pairs (each pair's score is its face crop's);
* ``faces``: ``noisetrace fit --config configs/faces.yaml --data OUT/train.tsv --no-lofo``
  (CLIP blocks 2-5 + SPAM, stacked); ``clip-probe``: the same recipe with the semantic branch
  only (a YAML written to ``OUT/``); features come from ``--cache``;
* ``mesonet``: the MesoInception-4 model folder ``--mesonet`` as it is (never trained here).

Scoring: ``noisetrace evaluate`` does not fit face crops (face models re-detect faces in a
crop), so every model scores the test crops directly through the Detector API
(``Detector.logit`` on the crop, i.e. no face detection) under the same transforms:
``matched90`` and ``matched65`` (both classes with one history: a JPEG 95 pass for the
lossless crops, then JPEG Q; :func:`noisetrace.heads.cache.apply_transform`), then the
model's own calibration and threshold. The fitted recipes are scored from the same cached
features their fit reads (the heads applied to the test crops' features). Reported per test
source and overall: crop AUC, video AUC (mean crop score per video; DeepFaceLive's real and
fake halves are separate videos, every inswapper image is its own "video"), the share of
each source's reals called fake at the model's threshold, and the training seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TEST_SOURCES = ("deepfacelive", "inswapper")
TRANSFORMS = ["matched90", "matched65"]  # --transforms may keep fewer (set in main)

# name -> (config, changed keys). Changes so that each recipe's learning phase fits the
# budget on 2 shared CPU cores (an epoch of a few hundred 224 px crops takes minutes):
# Xception starts from random weights here (ImageNet weights need the network), so its
# frozen warm-up (a random backbone, only the classifier learning) is dropped; CFFN's
# triplet phase is cut to one epoch (no model is kept before the classifier phase) and its
# batch to 32 (a few hundred crops: 4 steps an epoch at 128).
SEQ_LEN = 4
TRAIN: dict[str, tuple[str, list[str]]] = {
    "srm-cnn": ("configs/srm_cnn.yaml", ["val_max_side=256"]),
    "xception-srm": ("configs/xception_srm.yaml", ["warmup_epochs=0"]),
    "cffn": ("configs/cffn.yaml", ["triplet_epochs=1", "batch_size=32"]),
    # Windows of 4 crops: two per 8-crop video instead of one (and 3 crops dropped) at 5.
    "xception-srm-lstm": ("configs/xception_srm_lstm.yaml",
                          ["warmup_epochs=0", f"sequence_length={SEQ_LEN}"]),
}
SEQUENCE = {"xception-srm-lstm"}
# Pair models train and score on the --pairs-corpus split; init (GRIP's DnCNN) is set in main.
# A pair through the 20-layer DnCNN costs about 0.4 s forward and backward here: the budget
# holds about 6 epochs of the ~130 training pairs, i.e. 12 optimizer steps at the recipe's
# batch of 64 (the loss moved by 0.007 in a first run); a batch of 8 gives ~100 steps.
TRAIN["siamese-dncnn"] = ("configs/siamese_dncnn.yaml", ["batch_size=8"])
# The same with GRIP's DnCNN kept as it is (no backward pass through its 20 layers), so only
# the similarity-matrix classifier learns.
TRAIN["siamese-dncnn-frozen"] = ("configs/siamese_dncnn.yaml",
                                 ["batch_size=8", "warmup_epochs=1000", "freeze=[extractor]"])
PAIRS = {"siamese-dncnn", "siamese-dncnn-frozen"}
FIT = ("faces", "clip-probe")
ALL = [*TRAIN, *FIT, "mesonet"]
NOT_RUN: dict[str, str] = {}


# -- the split -------------------------------------------------------------------------------
def source_of(generator: str) -> str:
    return generator.split()[0].removeprefix("face:")


def build_split(corpus: Path, out: Path) -> dict[str, Any]:
    """Write OUT/train.tsv and OUT/test.tsv; return counts and what was dropped."""
    rows = list(csv.DictReader(corpus.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    cols = list(rows[0])
    for r in rows:
        p = Path(r["path"])
        r["path"] = str(p if p.is_absolute() else (corpus.parent / p).resolve())
    test = [r for r in rows if source_of(r["generator"]) in TEST_SOURCES]
    groups = {r["group"] for r in test}
    ids = {r["identity"] for r in test if r["identity"]}
    rest = [r for r in rows if source_of(r["generator"]) not in TEST_SOURCES]
    train = [r for r in rest if r["group"] not in groups and r["identity"] not in ids]
    dropped: dict[str, int] = {}
    for r in rest:
        if r["group"] in groups or r["identity"] in ids:
            k = r["generator"].split(" from ")[-1] if " from " in r["generator"] else r["group"]
            dropped[f"{source_of(r['generator'])} from {k}"] = dropped.get(
                f"{source_of(r['generator'])} from {k}", 0) + 1  # fmt: skip
    assert not {r["group"] for r in train} & groups
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        with open(out / f"{name}.tsv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, cols, delimiter="\t", lineterminator="\n")
            w.writeheader()
            w.writerows(part)

    def count(part: list[dict]) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in part:
            k = f"{r['label']}:{source_of(r['generator'])}"
            c[k] = c.get(k, 0) + 1
        return dict(sorted(c.items()))

    return {"train": count(train), "test": count(test), "dropped_from_train": dropped,
            "shared_groups": 0}  # fmt: skip


# -- training ---------------------------------------------------------------------------------
def noisetrace_cli() -> list[str]:
    exe = Path(sys.executable).with_name("noisetrace")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "noisetrace.cli"]


def run_logged(cmd: list[str], log: Path) -> float:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    dt = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}; see {log}")
    return dt


def train(name: str, data: Path, runs: Path, out: Path, budget: float, again: bool,
          max_images: int | None = None) -> dict:  # fmt: skip
    cfg, sets = TRAIN[name]
    if max_images:  # a seeded subset: a shorter epoch when one epoch overruns the budget
        sets = [*sets, f"max_images={max_images}"]
    run = runs / name
    info_f = run / "faces_unseen.json"
    if (run / "best" / "config.json").exists() and info_f.exists() and not again:
        return json.loads(info_f.read_text())
    cmd = [*noisetrace_cli(), "train", "--config", cfg, "--data", str(data), "--out", str(run),
           "--device", "cpu", "--set", f"time_budget_s={budget:g}", "progress=false", *sets]
    if run.exists() and again:
        import shutil

        shutil.rmtree(run)
    wall = run_logged(cmd, out / f"train-{name}.log")
    epochs = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    info = {"command": " ".join(cmd), "wall_s": round(wall, 1),
            "epoch_s": round(sum(float(e.get("seconds") or 0) for e in epochs), 1),
            "epochs": len(epochs), "metrics": epochs}  # fmt: skip
    info_f.write_text(json.dumps(info, indent=2) + "\n")
    return info


# -- fitted recipes ----------------------------------------------------------------------------
def recipe_yaml(name: str, out: Path) -> Path:
    import yaml

    raw = yaml.safe_load(Path("configs/faces.yaml").read_text())
    if name == "faces":
        return Path("configs/faces.yaml")
    raw["name"] = "faces-clip-probe"
    raw["branches"] = {"semantic": raw["branches"]["semantic"]}
    p = out / "clip_probe_faces.yaml"
    p.write_text("# configs/faces.yaml, semantic (CLIP blocks 2-5) branch only; written by "
                 "benchmarks/faces_unseen.py\n" + yaml.safe_dump(raw, sort_keys=False))  # fmt: skip
    return p


def fit_and_score(name: str, train_m: Path, test_m: Path, runs: Path, out: Path, cache: str,
                  again: bool) -> tuple[dict, dict[str, dict[str, float]], float]:  # fmt: skip
    """``noisetrace fit`` on the train manifest (the model folder), then the same fit in
    process on the cached features, applied to the test crops' cached features."""
    from noisetrace.heads.fit import Features, HeadRecipe, fit_stack

    cfg = recipe_yaml(name, out)
    run = runs / name
    info_f = out / f"fit-{name}.json"
    if (run / "card.json").exists() and info_f.exists() and not again:
        info = json.loads(info_f.read_text())
    else:
        cmd = [*noisetrace_cli(), "fit", "--config", str(cfg), "--data", str(train_m),
               "--no-lofo", "--cache", cache, "--out", str(run)]  # fmt: skip
        wall = run_logged(cmd, out / f"fit-{name}.log")
        info = {"command": " ".join(cmd), "wall_s": round(wall, 1)}
        info_f.write_text(json.dumps(info, indent=2) + "\n")
    t0 = time.perf_counter()
    recipe = HeadRecipe.from_yaml(cfg, data=[str(train_m)], cache=cache)
    ftr = Features(recipe, recipe.corpus(), verbose=False)
    model = fit_stack(recipe, ftr, np.arange(len(ftr.y)))
    card = json.loads((run / "card.json").read_text())
    keys = sorted(model.coef)
    same = np.allclose([model.coef[k] for k in keys],
                       [card["fusion"]["coef"][k] for k in keys], rtol=1e-6)  # fmt: skip
    info["same_as_cli_fit"] = bool(same)
    fte = Features(recipe, load(test_m), verbose=False)
    idx = np.arange(len(fte.y))
    scores = {t: dict(zip([s.path for s in fte.samples], model.proba(fte, idx, t).tolist(),
                          strict=True)) for t in TRANSFORMS}  # fmt: skip
    info["scoring_s"] = round(time.perf_counter() - t0, 1)  # refit + test features + heads
    return info, scores, float(model.threshold)


# -- scoring ------------------------------------------------------------------------------------
def load(manifest: Path) -> list:
    from noisetrace.data.families import load_corpus

    return load_corpus([str(manifest)], whole_images=False)


def detector_scores(model_dir: str, test_m: Path, cache: str
                    ) -> tuple[dict[str, dict[str, float]], float]:  # fmt: skip
    """Calibrated scores of a model folder on every test crop (``Detector.logit`` on the
    transformed crop, cached by the model's weights), and the model's threshold."""
    from noisetrace.heads.fit import Features, HeadRecipe
    from noisetrace.zoo import load_detector

    det = load_detector(model_dir)
    out = {}
    for t in TRANSFORMS:  # one transform at a time, in order: each is cached when done
        recipe = HeadRecipe(data=[str(test_m)], branches={"m": {"model": model_dir}},
                            transforms=[t], test_transforms=[t], cache=cache,
                            input="face")  # fmt: skip
        feats = Features(recipe, load(test_m), verbose=False)
        out[t] = dict(zip([s.path for s in feats.samples],
                          det.calibrate(feats.x[("m", t)][:, 0, 0]).tolist(), strict=True))
    return out, float(det.threshold)


def sequence_scores(model_dir: str, test_m: Path, length: int
                    ) -> tuple[dict[str, dict[str, float]], float]:  # fmt: skip
    """A sequence model's scores: each video's crops (frame order) cut into windows of at
    most ``length`` crops, each window scored once (every crop gets its window's score);
    single images (inswapper) are one-frame sequences. Same transforms as the others."""
    import torch

    from noisetrace.detector import Detector
    from noisetrace.heads.cache import apply_transform
    from noisetrace.media.image import load_image

    det = Detector.load(model_dir, device="cpu", backend="torch")
    rows = list(csv.DictReader(test_m.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    frame = {r["path"]: int(r["frame"] or 0) for r in rows}
    videos: dict[str, list] = {}
    for s in load(test_m):
        videos.setdefault(f"{s.label}|{s.video or s.group or s.path}", []).append(s)
    out: dict[str, dict[str, float]] = {t: {} for t in TRANSFORMS}
    with torch.inference_mode():
        for t in TRANSFORMS:
            for members in videos.values():
                members = sorted(members, key=lambda s: (frame.get(s.path, 0), s.path))
                for i in range(0, len(members), length):
                    win = members[i : i + length]
                    imgs = [det.fit_size(apply_transform(load_image(s.path), t, s.lossless))
                            for s in win]  # fmt: skip
                    z = float(det.model(det.to_tensor(np.stack(imgs))[None])[0])
                    p = float(det.calibrate(np.array([z]))[0])
                    out[t].update({s.path: p for s in win})
    return out, float(det.threshold)


def pair_scores(model_dir: str, test_m: Path) -> tuple[dict[str, dict[str, float]], float]:
    """A pair model's scores: each [face, background] pair of one frame (both crops under the
    same transform, as the training loop keeps one compression history per pair) scored
    once; the score is filed under the face crop's path."""
    import torch

    from noisetrace.detector import Detector
    from noisetrace.heads.cache import apply_transform
    from noisetrace.media.image import load_image
    from noisetrace.train.dataset import build_pairs, crop_meta

    det = Detector.load(model_dir, device="cpu", backend="torch")
    pairs, _ = build_pairs(load(test_m), crop_meta(test_m))
    out: dict[str, dict[str, float]] = {t: {} for t in TRANSFORMS}
    with torch.inference_mode():
        for t in TRANSFORMS:
            for i in range(0, len(pairs), 64):
                chunk = pairs[i : i + 64]
                x = np.stack([np.stack([det.fit_size(apply_transform(load_image(s.path), t,
                                                                     s.lossless))
                                        for s in g.members]) for g in chunk])  # fmt: skip
                z = det.model(det.to_tensor(x.reshape(-1, *x.shape[2:])).unflatten(
                    0, (len(chunk), 2))).numpy()  # fmt: skip
                p = det.calibrate(z.astype(np.float64))
                out[t].update({g.members[0].path: float(v) for g, v in zip(chunk, p,
                                                                            strict=True)})
    return out, float(det.threshold)


def auc(y: np.ndarray, s: np.ndarray) -> float:
    from noisetrace.metrics import binary_metrics

    return round(float(binary_metrics(y, s, 0.5)["auc"]), 4)


def table_rows(name: str, scores: dict[str, dict[str, float]], thr: float, samples: list,
               seconds: float | None) -> list[dict]:  # fmt: skip
    from noisetrace.data.manifest import FAKE

    rows = []
    for t in TRANSFORMS:
        sc = scores[t]
        keep = [s for s in samples if s.path in sc]
        src = np.array([source_of(s.generator) for s in keep])
        y = np.array([s.label for s in keep])
        p = np.array([sc[s.path] for s in keep])
        vkey = np.array([f"{s.label}|{s.video or s.group or s.path}" for s in keep])
        for part in [*TEST_SOURCES, "all"]:
            m = np.ones(len(keep), bool) if part == "all" else src == part
            if not m.any():
                continue
            u, inv = np.unique(vkey[m], return_inverse=True)
            vs = np.bincount(inv, weights=p[m]) / np.bincount(inv)
            vy = np.zeros(len(u), int)
            vy[inv] = y[m]
            real = m & (y != FAKE)
            rows.append({"model": name, "transform": t, "test source": part,
                         "crops": int(m.sum()), "videos": int(len(u)),
                         "crop AUC": auc(y[m], p[m]), "video AUC": auc(vy, vs),
                         "fakes detected": round(float(np.mean(p[m & (y == FAKE)] >= thr)), 4),
                         "reals called fake": round(float(np.mean(p[real] >= thr)), 4),
                         "threshold": round(thr, 4),
                         "train s": None if seconds is None else round(seconds, 1),
                         "scored": f"{len(keep)}/{len(samples)}"})  # fmt: skip
    return rows


def render(rows: list[dict]) -> str:
    cols = [c for c in rows[0] if c != "scored"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |"
           for r in rows]  # fmt: skip
    return "\n".join(md) + "\n"


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t90 = {(r["model"], r["test source"]): r for r in rows if r["transform"] == "matched90"}
    t65 = {(r["model"], r["test source"]): r for r in rows if r["transform"] == "matched65"}
    table = Table(title="Faces, unseen sources (test: DeepFaceLive + inswapper), "
                        "crop / video AUC at JPEG 90 | 65")  # fmt: skip
    for c in ("model", "train s", "DFL crop", "DFL video", "inswapper crop", "inswapper video",
              "all crop", "all video", "reals called fake q90", "fakes detected q90"):
        table.add_column(c, justify="left" if c == "model" else "right")
    def cell(tab: dict, model: str, part: str, k: str) -> str:
        r = tab.get((model, part))
        return "-" if r is None else f"{r[k]:.3f}"

    for model in dict.fromkeys(r["model"] for r in rows):
        first = t90.get((model, "all")) or t65[(model, "all")]
        cells = [model, str(first["train s"] or "-")]
        for part in (*TEST_SOURCES, "all"):
            for k in ("crop AUC", "video AUC"):
                cells.append(f"{cell(t90, model, part, k)} | {cell(t65, model, part, k)}")
        cells.append(cell(t90, model, "all", "reals called fake"))
        cells.append(cell(t90, model, "all", "fakes detected"))
        table.add_row(*cells)
    Console(width=180).print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("/work/data/faces_corpus/v2/MANIFEST.tsv"))
    ap.add_argument("--pairs-corpus", type=Path,
                    default=Path("/work/data/faces_corpus/pairs64/MANIFEST.tsv"),
                    help="face corpus built with --background --size 64 (siamese-dncnn)")
    ap.add_argument("--dncnn", default="../shared/weights/dncnn_grip/model_best.th",
                    help="pre-trained DnCNN the Siamese extractor starts from")
    ap.add_argument("--out", type=Path, default=Path("/work/data/faces_unseen"))
    ap.add_argument("--runs", type=Path, default=Path("/work/data/runs/faces_unseen"),
                    help="where the trained and fitted model folders go")
    ap.add_argument("--budget-s", type=float, default=240.0,
                    help="training wall-clock budget per trained detector (time_budget_s)")
    ap.add_argument("--only", nargs="+", choices=ALL, default=ALL, metavar="NAME",
                    help=f"run these only ({', '.join(ALL)})")
    ap.add_argument("--cache", default="/work/data/cache", help="feature cache of the fits")
    ap.add_argument("--mesonet", default="/work/data/runs/mesonet-faces",
                    help="MesoInception-4 model folder (benchmarks/select_faces.py --out DIR)")
    ap.add_argument("--again", action="store_true", help="retrain/refit models already there")
    ap.add_argument("--max-images", nargs="+", default=[], metavar="NAME=N",
                    help="train NAME on a seeded subset of N crops (train + validation): "
                         "when one epoch alone overruns the budget")  # fmt: skip
    ap.add_argument("--transforms", nargs="+", choices=TRANSFORMS, default=TRANSFORMS,
                    help="score under these only (default: both)")
    a = ap.parse_args()
    TRANSFORMS[:] = a.transforms
    a.out.mkdir(parents=True, exist_ok=True)
    a.runs.mkdir(parents=True, exist_ok=True)
    max_images = {k: int(v) for k, v in (x.split("=") for x in a.max_images)}
    split = build_split(a.corpus, a.out)
    print(json.dumps(split, indent=1), flush=True)
    train_m, test_m = a.out / "train.tsv", a.out / "test.tsv"
    samples = load(test_m)
    pairs_split = None
    if PAIRS & set(a.only):
        pairs_split = build_split(a.pairs_corpus, a.out / "pairs")
        print(json.dumps({"pairs": pairs_split}, indent=1), flush=True)
        for name in PAIRS:
            TRAIN[name] = (TRAIN[name][0], [*TRAIN[name][1], f"init={a.dncnn}"])
    logits_cache = str(a.out / "logit_cache")  # trained models' logits stay out of --cache
    res_f = a.out / "faces_unseen.json"
    res = json.loads(res_f.read_text()) if res_f.exists() else {"models": {}}
    res.update({"split": split, "budget_s": a.budget_s, "not_run": NOT_RUN})
    if pairs_split is not None:
        res["pairs_split"] = pairs_split
    for name in a.only:
        scored = samples
        if name in TRAIN:
            tr_m, te_m = ((a.out / "pairs" / "train.tsv", a.out / "pairs" / "test.tsv")
                          if name in PAIRS else (train_m, test_m))  # fmt: skip
            info = train(name, tr_m, a.runs, a.out, a.budget_s, a.again, max_images.get(name))
            t0 = time.perf_counter()
            best = str(a.runs / name / "best")
            if name in PAIRS:
                scores, thr = pair_scores(best, te_m)
                scored = [s for s in load(te_m) if s.path in scores[TRANSFORMS[0]]]
            elif name in SEQUENCE:
                scores, thr = sequence_scores(best, test_m, SEQ_LEN)
            else:
                scores, thr = detector_scores(best, test_m, logits_cache)
            seconds = info["wall_s"]
        elif name in FIT:
            info, scores, thr = fit_and_score(name, train_m, test_m, a.runs, a.out, a.cache,
                                              a.again)  # fmt: skip
            seconds, t0 = info["wall_s"], time.perf_counter() - info["scoring_s"]
        else:
            if not Path(a.mesonet, "config.json").exists():
                raise SystemExit(f"{a.mesonet}: no model; build it with "
                                 "benchmarks/select_faces.py --out DIR")  # fmt: skip
            info, seconds = {"model": a.mesonet, "note": "not trained here"}, None
            t0 = time.perf_counter()
            scores, thr = detector_scores(a.mesonet, test_m, a.cache)
        rows = table_rows(name, scores, thr, scored, seconds)
        res["models"][name] = {"info": info, "rows": rows,
                               "scoring_s": round(time.perf_counter() - t0, 1)}
        res_f.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"done {name}: " + ", ".join(
            f"{r['transform']} {r['test source']} {r['video AUC']}" for r in rows), flush=True)
    rows = [r for n in ALL if n in res["models"] for r in res["models"][n]["rows"]]
    (a.out / "faces_unseen.md").write_text(render(rows))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
