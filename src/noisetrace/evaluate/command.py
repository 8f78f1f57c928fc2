"""``noisetrace evaluate``: run evaluation protocols on labelled data and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

_ALL = ("standard", "jpeg", "resolution", "generators", "confound", "loo", "crossdataset",
        "seqlen", "lofo")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _sizes(text: str) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for v in text.split(","):
        v = v.strip().lower()
        if v:
            out.append(None if v in ("original", "orig", "full") else int(v))
    return tuple(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace evaluate`` (registered in ``noisetrace.cli.COMMANDS``)."""
    p.description = (
        "Score labelled data under test conditions (JPEG quality, resolution, matched formats, "
        "per generator; or leave-one-out / cross-dataset / sequence-length with training) and "
        "write report.json, report.md, report.html and scores.csv."
    )
    p.epilog = """examples:
  noisetrace evaluate --model default --data my_data/ --out reports/default
  noisetrace evaluate --model runs/mine/best --split val --protocol jpeg,confound --out reports/val
  noisetrace evaluate --model default --protocol lofo --out reports/lofo
  noisetrace evaluate --data a/ --data b/ --protocol crossdataset \\
      --train-config configs/default.yaml --out reports/cross"""
    p.add_argument("--model", default="default", help="bundled model name or model directory")
    p.add_argument("--data", nargs="+", action="extend",
                   help="folders (real/, fake/<gen>/), manifests, or a folder of those; "
                        "repeat for cross-dataset domains")
    p.add_argument("--split", choices=("all", "val", "heldout"), default="all",
                   help="val/heldout: only the model's own validation split or held-out "
                        "generators, rebuilt from its training recipe (card.json or "
                        "train_config.json); --data then defaults to the recipe's data")
    p.add_argument("--protocol", default="standard",
                   help=f"comma-separated, from: {','.join(_ALL)} (default: standard)")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--qualities", type=_ints, default=(90, 65, 40),
                   help="JPEG qualities (default: 90,65,40)")
    p.add_argument("--sizes", type=_sizes, default=(224, 512, None),
                   help="test resolutions (default: 224,512,original)")
    p.add_argument("--resize-mode", choices=("crop", "resize"), default="crop",
                   help="resolution views: centre crop (keeps noise) or resize to a square")
    p.add_argument("--max-side", type=int, default=0,
                   help="centre-crop larger images to this side first, for speed (default 0: "
                        "full resolution, the view `scan` scores)")  # fmt: skip
    p.add_argument("--videos", action="store_true", help="include videos (images only by default)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames sampled evenly per video (default: the model's, as in scan)")
    p.add_argument("--aggregate", choices=("mean", "median", "max"), default="mean",
                   help="video score from its frame scores")
    p.add_argument("--group-by", choices=("generator", "dataset"), default="generator",
                   help="columns of the per-generator table")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the AUC CI")
    p.add_argument("--threshold", type=float, default=None, help="fake if score >= T")
    p.add_argument("--max-images", type=int, default=None, help="random subset (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsets and bootstrap")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (1 is fastest on a machine busy with other "
                        "work; default: torch's)")
    tr = p.add_argument_group("training protocols (loo, crossdataset, seqlen)")
    tr.add_argument("--train-config", help="YAML recipe for `noisetrace train` (configs/*.yaml)")
    tr.add_argument("--train-epochs", type=int, default=None,
                    help="override its epochs (default: the recipe's)")
    tr.add_argument("--loo-key", choices=("generator", "dataset"), default="generator",
                    help="what counts as one manipulation")
    tr.add_argument("--lengths", type=_ints, default=(5, 10, 20, 40, 60),
                    help="clip lengths of the sequence-length sweep (default: 5,10,20,40,60)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, needs=needs)


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional modules this command line needs (checked before any scoring)."""
    return {"matplotlib": "noisetrace[explain]"}  # the report's ROC figures


def make_train_fn(args: argparse.Namespace, workdir: Path):
    """``train_fn(samples) -> Detector`` through the one training loop: the samples go to a
    manifest, ``noisetrace.train.loop.train`` trains on it, its best model is loaded."""
    import dataclasses

    from noisetrace.detector import Detector
    from noisetrace.train.loop import TrainConfig, train

    base: dict[str, Any] = {}
    if args.train_config:
        import yaml

        base = yaml.safe_load(Path(args.train_config).read_text()) or {}
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in base.items() if k in allowed and k not in ("data", "out")}
    if args.train_epochs:
        base["epochs"] = args.train_epochs
    counter = [0]

    def train_fn(samples, length: int | None = None) -> Detector:
        counter[0] += 1
        run = workdir / f"run{counter[0]:02d}"
        run.mkdir(parents=True, exist_ok=True)
        rows = ["path\tlabel\tgenerator\tgroup"] + [
            f"{s.path}\t{'fake' if s.label else 'real'}\t{s.generator}\t{s.group}"
            for s in samples]
        (run / "train.tsv").write_text("\n".join(rows) + "\n")
        cfg = TrainConfig(data=[str(run / "train.tsv")], out=str(run / "model"),
                          name=f"eval-train-{counter[0]}", device=args.device,
                          seed=args.seed, **base)
        train(cfg)
        return Detector.load(run / "model" / "best", device=args.device)

    return train_fn


def _recipe(model_dir: Path) -> dict[str, Any]:
    """The training recipe recorded with a model: card.json's ``recipe`` or the run's
    train_config.json (beside the model or one folder up, as `noisetrace train` writes)."""
    import json

    from noisetrace.errors import NoisetraceError

    card = model_dir / "card.json"
    if card.is_file():
        recipe = json.loads(card.read_text()).get("recipe")
        if recipe:
            return recipe
    for f in (model_dir / "train_config.json", model_dir.parent / "train_config.json"):
        if f.is_file():
            return json.loads(f.read_text())
    raise NoisetraceError(f"{model_dir} records no training recipe (card.json or "
                          "train_config.json); evaluate with --split all and --data")


def recipe_split(recipe: dict[str, Any], which: str) -> list:
    """Rebuild the training loop's split from its recipe: the same discovery, subsetting,
    held-out generators and seeded group split, so ``val`` is exactly what it validated on."""
    import random
    import re

    from noisetrace.data.manifest import discover, split
    from noisetrace.errors import NoisetraceError

    samples = []
    for spec in recipe["data"]:
        if not Path(spec).exists():
            raise NoisetraceError(f"the model was trained on {spec}, which is not here; run "
                                  "from the folder it was trained in or give --data")
        samples += discover(spec)
    seed = int(recipe.get("seed", 0))
    if recipe.get("max_images"):
        random.Random(seed).shuffle(samples)
        samples = samples[: recipe["max_images"]]
    pats = [re.compile(p) for p in recipe.get("holdout") or []]
    held = [s for s in samples if any(p.search(s.generator) for p in pats)]
    if which == "heldout":
        if not held:
            raise NoisetraceError("the model's recipe holds out no generator")
        return held
    pool = [s for s in samples if s not in set(held)]
    return split(pool, float(recipe.get("val_fraction", 0.2)), seed)[1]


def run(args: argparse.Namespace) -> int:
    import os
    import random
    import tempfile

    from rich.console import Console
    from rich.markup import escape  # paths may hold [brackets]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from noisetrace.data.manifest import discover
    from noisetrace.errors import NoisetraceError
    from noisetrace.evaluate import protocols as P
    from noisetrace.evaluate.report import write_report
    from noisetrace.zoo import load_detector

    err = Console(stderr=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    wanted = [p.strip() for p in args.protocol.split(",") if p.strip()]
    bad = [p for p in wanted if p not in _ALL]
    if bad:
        raise NoisetraceError(f"unknown protocol(s) {', '.join(bad)}; choose from "
                              f"{', '.join(_ALL)}")
    if "lofo" in wanted:
        if len(wanted) > 1:
            raise NoisetraceError("lofo refits the model's recipe per held-out family: run it "
                                  "alone (--protocol lofo)")
        return _run_lofo(args, err)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise NoisetraceError("--threshold must be between 0 and 1")
    domains: dict[str, list] = {}
    for spec in args.data or []:
        # Domain names are for tables; two manifests both named manifest.tsv stay apart.
        key = Path(spec).name or spec
        if key in domains or key in ("manifest.tsv", "manifest.csv"):
            key = spec
        domains[key] = discover(spec, images_only=not args.videos)
    samples = [s for ss in domains.values() for s in ss]
    if args.split != "all":
        from noisetrace.zoo import resolve

        part = recipe_split(_recipe(resolve(args.model)), args.split)
        if args.data:
            keep = {os.path.realpath(s.path) for s in part}
            samples = [s for s in samples if os.path.realpath(s.path) in keep]
        else:
            samples = part
            args.data = [f"{args.model} {args.split} split"]
        err.print(f"{args.split} split of {escape(str(args.model))}: {len(samples)} samples")
    elif not args.data:
        raise NoisetraceError("give --data (folders or manifests), or --split val to use the "
                              "model's own validation split")
    if args.max_images and len(samples) > args.max_images:
        random.Random(args.seed).shuffle(samples)
        samples = samples[: args.max_images]
    if not samples:
        raise NoisetraceError("no images found in --data (add --videos to include videos)")
    opts = P.EvalOptions(max_side=args.max_side or None, resize_mode=args.resize_mode,
                         video_frames=args.frames, aggregate=args.aggregate,
                         bootstrap=args.bootstrap, group_by=args.group_by,
                         qualities=args.qualities, sizes=args.sizes, seed=args.seed)
    image_protocols = [p for p in wanted if p in P.PROTOCOLS]
    det = load_detector(args.model, device=args.device) if image_protocols else None
    if det is not None and args.threshold is not None:
        det.set_threshold(args.threshold)

    if det is not None:
        progress = Progress(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(),
                            console=err, transient=True,
                            disable=args.quiet or not err.is_terminal)
        with progress:
            task = progress.add_task("eval", total=len(samples))
            report = P.evaluate(det, samples, image_protocols, opts,
                                on_sample=lambda i, n: progress.update(task, completed=i))
    else:
        report = {"model": {"name": "trained per run", "arch": "", "threshold": 0.5,
                            "calibration": {}},
                  "options": {}, "counts": {}, "unreadable": [], "conditions": {},
                  "metrics": {"sample": {}}, "roc": {}, "sections": [], "summary": []}
    report["data"] = [str(d) for d in args.data]
    training = [p for p in wanted if p in P.TRAINING_PROTOCOLS]
    if training:
        with tempfile.TemporaryDirectory(prefix="noisetrace-eval-") as tmp:
            train_fn = make_train_fn(args, Path(tmp))
            for p in training:
                err.print(f"[bold]{p}[/bold]: training (this takes a while)")
                if p == "loo":
                    sec = P.leave_one_out(samples, train_fn, key=args.loo_key, opts=opts)
                elif p == "crossdataset":
                    if len(domains) < 2:
                        raise NoisetraceError("crossdataset needs two or more --data domains")
                    sec = P.cross_dataset(domains, train_fn, opts=opts)
                else:
                    if not args.videos:
                        raise NoisetraceError("seqlen scores video clips: add --videos")
                    # A frame model: training does not depend on L, so train once and sweep
                    # the clip length at test time.
                    cache: dict[str, Any] = {}

                    def once(ss, _length, _cache=cache):
                        if "det" not in _cache:
                            _cache["det"] = train_fn(ss)
                        return _cache["det"]

                    sec = P.sequence_length_sweep(samples, once, lengths=args.lengths,
                                                  opts=opts)
                report["sections"].append(sec)
                report["summary"].append(f"{sec['title']}: see its table.")
    paths = write_report(report, args.out)
    err.print(f"report written to {escape(str(args.out))}: " + ", ".join(sorted(paths)))
    for line in report["summary"]:
        err.print("  " + line)
    return 0


def _run_lofo(args: argparse.Namespace, err: Any) -> int:
    """Leave one fake family out with the recipe a feature-head model was fitted with
    (its card.json), or the head recipe given as --train-config; --data replaces its data."""
    import json

    from rich.markup import escape

    from noisetrace.errors import NoisetraceError
    from noisetrace.evaluate.report import write_report
    from noisetrace.heads.fit import Features, HeadRecipe, leave_one_family_out, lofo_section
    from noisetrace.zoo import resolve

    if args.train_config:
        recipe = HeadRecipe.from_yaml(args.train_config, data=args.data)
    else:
        card = resolve(args.model) / "card.json"
        raw = json.loads(card.read_text()).get("recipe") if card.is_file() else None
        if not raw or "branches" not in raw:
            raise NoisetraceError(f"{args.model} records no head recipe; lofo refits heads on "
                                  "frozen features: give --train-config configs/*.yaml")
        recipe = HeadRecipe(**{**raw, **({"data": args.data} if args.data else {})})
    recipe.seed = args.seed
    feats = Features(recipe, recipe.corpus(), verbose=not args.quiet)
    rep = leave_one_family_out(recipe, feats, bootstrap=args.bootstrap, verbose=not args.quiet)
    sec = lofo_section(rep)
    thr = float(sum(r["threshold"] for r in rep["families"]) / max(len(rep["families"]), 1))
    report = {"model": {"name": f"{recipe.name} (refitted per held-out family)", "arch": "fusion",
                        "threshold": round(thr, 4), "calibration": {}},
              "options": {"recipe": rep["recipe"]}, "counts": {"samples": rep["n_samples"]},
              "unreadable": [], "conditions": {}, "metrics": {"sample": {}}, "roc": {},
              "sections": [sec], "data": [str(d) for d in recipe.data],
              "summary": [f"{t}: mean AUC {v['mean_auc']:.3f}, min {v['min_auc']:.3f} "
                          f"({v['worst_family']})" for t, v in rep["summary"].items()]}
    paths = write_report(report, args.out)
    err.print(f"report written to {escape(str(args.out))}: " + ", ".join(sorted(paths)))
    for line in report["summary"]:
        err.print("  " + line)
    return 0
