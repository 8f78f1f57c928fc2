"""DJIN fine-tuning from a steganalysis initialisation versus from scratch (docs/stego.md).

Two helpers around the existing tools, so the comparison uses `noisetrace train` unchanged:

``covers``: write a manifest of the *real* images that `noisetrace train` would put in its
training split for the same ``--data``/``--max-images``/``--seed``/``--val-fraction``, so the
steganalysis pre-training never sees a validation image of the fine-tuning::

    python benchmarks/stego_finetune.py covers --data ../shared/data/... --max-images 240 \\
        --out runs/stego-covers.tsv

``train``: `noisetrace train ...` with ``--init DIR`` applied to the freshly built model
(:func:`noisetrace.train.stego.load_init`); a stop-gap until ``TrainConfig`` has ``init:``::

    python benchmarks/stego_finetune.py train --init runs/stego-init -- --config ... --arch djin

``--model-seed N`` draws the fresh weights from another seed (same split, same batches), to
measure the run-to-run spread that an init has to beat.

Reads ../shared/data only when given those paths; says so when they are missing.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path


def _covers(args: argparse.Namespace) -> int:
    from noisetrace.data.manifest import REAL, discover, split

    missing = [d for d in args.data if not Path(d).exists()]
    if missing:
        print(f"data not found: {', '.join(missing)} (this benchmark needs ../shared/data)")
        return 2
    samples = []
    for spec in args.data:
        samples += discover(spec)
    # Same selection and split as noisetrace.train.loop.train (no holdout patterns here).
    if args.max_images:
        random.Random(args.seed).shuffle(samples)
        samples = samples[: args.max_images]
    train, val = split(samples, args.val_fraction, args.seed)
    reals = [s for s in train if s.label == REAL]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["path\tlabel\tgenerator\tgroup\tdataset"]
    # Absolute paths: a manifest's relative paths are read from its own folder.
    lines += [
        f"{Path(s.path).resolve()}\treal\t{s.generator}\t{s.group}\t{s.dataset}" for s in reals
    ]
    out.write_text("\n".join(lines) + "\n")
    print(f"{len(reals)} training-split real images -> {out} ({len(val)} held out)")
    return 0


def _train(args: argparse.Namespace, rest: list[str]) -> int:
    import torch

    from noisetrace import cli, models
    from noisetrace.train.stego import load_init

    create = models.create

    def create_with_init(name: str, **config):
        if args.model_seed is not None:  # other fresh weights, same data split and order
            torch.manual_seed(args.model_seed)
        model = create(name, **config)
        if args.init is None:
            return model
        report = load_init(model, args.init, head=not args.fresh_head)
        print(
            f"init {args.init}: {len(report['matched'])} tensors loaded, "
            f"missing {report['missing']}, mismatched {report['mismatched']}",
            file=sys.stderr,
        )
        return model

    # loop.py calls models.create(...) once for the model it trains (Detector.load at the end
    # rebuilds the best model and then loads its own weights over the init, as it should).
    models.create = create_with_init
    return cli.main(["train", *rest])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("covers", help="manifest of the fine-tuning training split's reals")
    c.add_argument("--data", nargs="+", required=True)
    c.add_argument("--max-images", type=int, default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--val-fraction", type=float, default=0.2)
    c.add_argument("--out", required=True)
    t = sub.add_parser("train", help="noisetrace train with --init DIR (args after --)")
    t.add_argument("--init", help="pretrain-stego output directory (none: from scratch)")
    t.add_argument("--model-seed", type=int, help="seed of the fresh weights (run-to-run spread)")
    t.add_argument("--fresh-head", action="store_true", help="do not load the fc layer")
    args = p.parse_args(argv)
    return _covers(args) if args.cmd == "covers" else _train(args, rest)


if __name__ == "__main__":
    sys.exit(main())
