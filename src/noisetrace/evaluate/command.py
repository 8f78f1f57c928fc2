"""``noisetrace evaluate``: run evaluation protocols on labelled data and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    """The arguments of ``noisetrace evaluate`` (registered in ``noisetrace.cli.COMMANDS``).
    The protocols, their one-line help and their own options come from the registry."""
    from noisetrace.evaluate.registry import TrainingProtocol, protocol_classes

    protocols = protocol_classes()
    width = max(len(c.name) for c in protocols) + 2
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
      --train-config configs/default.yaml --out reports/cross

protocols:
""" + "\n".join(f"  {c.name:<{width}}{c.description}" for c in protocols)
    p.add_argument("--model", default="default", help="bundled model name or model directory")
    p.add_argument("--data", nargs="+", action="extend",
                   help="folders (real/, fake/<gen>/), manifests, or a folder of those; "
                        "repeat for cross-dataset domains")
    p.add_argument("--split", choices=("all", "val", "heldout"), default="all",
                   help="val/heldout: only the model's own validation split or held-out "
                        "generators, rebuilt from its training recipe (card.json or "
                        "train_config.json); --data then defaults to the recipe's data")
    p.add_argument("--protocol", default="standard",
                   help="comma-separated, from: "
                        f"{','.join(c.name for c in protocols)} (default: standard)")
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
    p.add_argument("--aggregate", choices=("mean", "median", "max", "top25"), default=None,
                   help="video score from its frame scores (default: the model's own, as in "
                        "scan; top25 = mean of the highest quarter)")  # fmt: skip
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
    training = ", ".join(c.name for c in protocols if issubclass(c, TrainingProtocol))
    tr = p.add_argument_group(f"training protocols ({training})")
    tr.add_argument("--train-config", help="YAML recipe for `noisetrace train` (configs/*.yaml)")
    tr.add_argument("--train-epochs", type=int, default=None,
                    help="override its epochs (default: the recipe's)")
    for c in protocols:  # each protocol's own options (loo: --loo-key, seqlen: --lengths)
        c.add_arguments(tr)
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
    from noisetrace.evaluate.registry import (
        ConditionProtocol,
        StandaloneProtocol,
        TrainingInputs,
        TrainingProtocol,
        get_protocols,
    )
    from noisetrace.zoo import load_detector

    err = Console(stderr=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    wanted = get_protocols(p.strip() for p in args.protocol.split(",") if p.strip())
    alone = [p for p in wanted if isinstance(p, StandaloneProtocol)]
    if alone:
        if len(wanted) > 1:
            raise NoisetraceError(f"{alone[0].name} writes a report of its own "
                                  f"({alone[0].description}): run it alone "
                                  f"(--protocol {alone[0].name})")
        return _write(alone[0].report(args, err.print), args, err)
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
    scoring = [p.name for p in wanted if isinstance(p, ConditionProtocol)]
    training = [p for p in wanted if isinstance(p, TrainingProtocol)]
    det = load_detector(args.model, device=args.device) if scoring else None
    if det is not None and args.threshold is not None:
        det.set_threshold(args.threshold)
    if det is not None and opts.aggregate is None:  # the report records what was used
        opts.aggregate = det.config.video_aggregate

    if det is not None:
        progress = Progress(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(),
                            console=err, transient=True,
                            disable=args.quiet or not err.is_terminal)
        with progress:
            task = progress.add_task("eval", total=len(samples))
            report = P.evaluate(det, samples, scoring, opts,
                                on_sample=lambda i, n: progress.update(task, completed=i))
    else:
        report = {"model": {"name": "trained per run", "arch": "", "threshold": 0.5,
                            "calibration": {}},
                  "options": {}, "counts": {}, "unreadable": [], "conditions": {},
                  "metrics": {"sample": {}}, "roc": {}, "sections": [], "summary": []}
    report["data"] = [str(d) for d in args.data]
    if training:
        with tempfile.TemporaryDirectory(prefix="noisetrace-eval-") as tmp:
            inputs = TrainingInputs(samples, domains, make_train_fn(args, Path(tmp)), opts,
                                    args)
            for p in training:  # every check before hours of training
                p.check(inputs)
            for p in training:
                err.print(f"[bold]{p.name}[/bold]: training (this takes a while)")
                sec = p.run(inputs)
                report["sections"].append(sec)
                report["summary"] += p.summarize(sec, report["metrics"]["sample"])
    return _write(report, args, err)


def _write(report: dict[str, Any], args: argparse.Namespace, err: Any) -> int:
    """Write the report files and print where, with the summary."""
    from rich.markup import escape  # paths may hold [brackets]

    from noisetrace.evaluate.report import write_report

    paths = write_report(report, args.out)
    err.print(f"report written to {escape(str(args.out))}: " + ", ".join(sorted(paths)))
    for line in report["summary"]:
        err.print("  " + line)
    return 0
