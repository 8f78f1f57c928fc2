"""Command line: ``noisetrace <command>``; every subcommand is registered in one place, the
:data:`COMMANDS` table, and nowhere else.

Each entry names the function that adds the command's arguments as ``"module:function"``
(``scan``, ``models`` and ``train`` here, the others in their own packages, e.g.
``noisetrace.train.stego_command:add_arguments``); that function also sets ``func``, what
the command runs, and optionally ``needs``, its optional requirements. The module is
imported only when its command is run or asked for ``--help``, and the heavy work is
imported inside ``func``: start-up stays light (``benchmarks/startup.py``), and this module
imports no torch, numpy or feature code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from noisetrace import __version__
from noisetrace.errors import NoisetraceError


def _scan(args: argparse.Namespace) -> int:
    """``noisetrace scan``: check the options, load the detector, and hand the engine and the
    outputs to the one scan driver (:func:`noisetrace.scan.run_scan`)."""
    from noisetrace.engines import EngineOptions, open_engine
    from noisetrace.outputs import OutputOptions, option_values
    from noisetrace.scan import run_scan
    from noisetrace.zoo import load_detector

    err = Console(stderr=True)
    det = load_detector(args.model, device=args.device)
    if args.threshold is not None:
        try:
            det.set_threshold(args.threshold)
        except NoisetraceError as exc:
            err.print(f"[red]--threshold: {escape(str(exc))}[/red]")
            return 2
    if getattr(args, "max_pixels", None) is not None:  # the decoding budget (issue 18)
        from noisetrace.media.image import set_max_pixels

        if args.max_pixels < 1:
            err.print("[red]--max-pixels must be at least 1[/red]")
            return 2
        set_max_pixels(args.max_pixels)
    if args.resume and not args.jsonl:
        err.print("[red]--resume needs --jsonl FILE (the scan to continue)[/red]")
        return 2
    if args.explain and args.engine != "local":
        err.print("[red]--explain runs with the local engine; leave out --engine ray[/red]")
        return 2

    options = EngineOptions(
        model=str(args.model), device=args.device, video_frames=args.frames,
        frame_scores=args.frame_scores, workers=args.workers, address=args.address,
    )  # fmt: skip
    engine = open_engine(args.engine, det, options)  # Ray is imported only for --engine ray
    outputs = OutputOptions(
        values=option_values(args), frame_scores=args.frame_scores, quiet=args.quiet,
        model=det.name, threshold=det.threshold,
    )  # fmt: skip

    def explain(r: Any) -> None:
        if r.verdict == "fake":
            _explain_flagged(det, r, args.explain, err)

    return run_scan(
        engine, args.paths, outputs, resume=args.jsonl if args.resume else None,
        strict=args.strict, progress=not args.quiet, after=explain if args.explain else None,
        err=err,
    )  # fmt: skip


def _explain_flagged(det, r, out_dir: Path, err: Console) -> None:
    """``scan --explain``: overlay + JSON for one flagged file; a failure only warns."""
    from noisetrace.explain.report import explain_file

    try:
        explain_file(det, r.path, out_dir, result=r)
    except Exception as exc:  # noqa: BLE001 - an explanation must never stop the scan
        err.print(f"[yellow]could not explain {escape(r.path)}: {escape(str(exc))}[/yellow]")


# -- models ------------------------------------------------------------------------------------
_ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_INPUTS = {"image": "whole image", "face": "faces (found, cropped and scored one by one)"}
_SKIP_SECTIONS = ("per dataset",)  # long per-source tables stay on the card


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or {} when it is missing or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _figure(v: Any) -> str | None:
    """A metric rounded for people; None for missing or NaN values."""
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        return None
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _validation_lines(card: dict[str, Any], limit: int = 3) -> list[str]:
    """``section: view AUC x (n N); ...`` for the first sections of card.json's metrics."""
    metrics = card.get("metrics")
    lines: list[str] = []
    if not isinstance(metrics, dict):
        return lines
    for section, views in metrics.items():
        if not isinstance(views, dict) or any(s in str(section) for s in _SKIP_SECTIONS):
            continue
        if "auc" in views:  # a section that is one table row: {"auc": ..., "n": ...}
            views = {"": views}
        parts = []
        for view, m in views.items():
            if not isinstance(m, dict):
                continue
            auc, n = _figure(m.get("auc")), _figure(m.get("n"))
            if auc is not None:
                parts.append(f"{view} AUC {auc}".lstrip() + (f" (n {n})" if n else ""))
        if parts:
            lines.append(f"{section}: " + "; ".join(parts))
        if len(lines) == limit:
            break
    return lines


def _card_summary(d: Path) -> str:
    """The first paragraph of MODEL_CARD.md under its title (for models without card.json)."""
    try:
        text = (d / "MODEL_CARD.md").read_text(encoding="utf-8")
    except OSError:
        return ""
    for para in text.split("\n\n"):
        para = " ".join(para.split())
        if para and not para.startswith(("#", "|", "```", "!")):
            return para
    return ""


def describe_bundled(zoo: Path = _ZOO_DIR) -> list[str]:
    """Lines describing each bundled model (a folder of ``zoo`` with config.json) from its
    config.json and card.json alone: no weights are loaded and torch is not imported. Every
    field is optional, so models with fields added later still list."""
    dirs = sorted(p for p in zoo.iterdir() if (p / "config.json").is_file())
    lines: list[str] = []
    for d in dirs:
        cfg, card = _read_json(d / "config.json"), _read_json(d / "card.json")
        purpose = (cfg.get("purpose") or cfg.get("description") or card.get("purpose")
                   or card.get("summary") or _card_summary(d))  # fmt: skip
        inp = cfg.get("input", "image")
        inp = _INPUTS.get(inp, str(inp)) if isinstance(inp, str) else json.dumps(inp)
        arch = cfg.get("arch") or card.get("arch") or "?"
        thr = _figure(cfg.get("threshold"))
        lines.append(f"{cfg.get('name') or d.name}")
        if purpose:
            lines.append(f"    {' '.join(str(purpose).split())}")
        lines.append(f"    input: {inp}; architecture: {arch}; threshold: {thr or 'n/a'}")
        lines += [f"    {v}" for v in _validation_lines(card)]
        card_file = next((d / f for f in ("MODEL_CARD.md", "card.json") if (d / f).is_file()),
                         None)  # fmt: skip
        lines.append(f"    card: {card_file if card_file else 'none'}")
    return lines


def architecture_catalog() -> dict[str, tuple[str, str]]:
    """``noisetrace.models.catalog.ARCHITECTURES``, read without importing
    ``noisetrace.models`` (whose ``__init__`` imports every architecture, and so torch)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "models" / "catalog.py"
    spec = importlib.util.spec_from_file_location("noisetrace._models_catalog", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.ARCHITECTURES)


def _models(args: argparse.Namespace) -> int:
    out = ["bundled models (noisetrace scan --model NAME):"]
    out += ["  " + line for line in describe_bundled()] or ["  none"]
    archs = architecture_catalog()
    out += ["", "architectures (noisetrace train --arch NAME):"]
    w1 = max(map(len, archs), default=0)
    w2 = max((len(inp) for inp, _ in archs.values()), default=0)
    out += [f"  {n:<{w1}}  {inp:<{w2}}  {what}" for n, (inp, what) in sorted(archs.items())]
    print("\n".join(out))
    return 0


# -- train -------------------------------------------------------------------------------------
def _check_training_data(cfg: Any) -> None:
    """Fail before any work when a split cannot train or validate, and warn when validation
    is too small to trust. Mirrors how the training loop reads and splits ``cfg.data``."""
    import logging
    import random
    import re

    from noisetrace.data.manifest import discover
    from noisetrace.train.card import MIN_VALIDATION
    from noisetrace.train.dataset import crop_meta
    from noisetrace.train.loop import split_pool  # the loop's own split: counts agree

    samples, kind = [], {}
    for spec in cfg.data:
        p = Path(spec)
        if p.is_dir() and (p / "manifest.tsv").is_file() and not (p / "MANIFEST.tsv").is_file():
            spec = str(p / "manifest.tsv")  # a `noisetrace prepare` cache folder
        samples += discover(spec)
        kind.update({k: v.get("kind", "") for k, v in crop_meta(spec).items()})
    samples = [s for s in samples if kind.get(s.path) != "background"]
    data = " ".join(map(str, cfg.data))
    if not samples:
        raise NoisetraceError(f"no images in --data {data}: give folders with real/ and "
                              "fake/<generator>/ images, a manifest, or a prepare cache")
    if cfg.max_images:
        random.Random(cfg.seed).shuffle(samples)
        samples = samples[: cfg.max_images]
    pats = [re.compile(p) for p in cfg.holdout]
    pool = [s for s in samples if not any(p.search(s.generator) for p in pats)]
    tr, va = split_pool(pool, cfg)

    def counts(ss: list) -> str:
        n_fake = sum(s.label for s in ss)
        return f"{len(ss) - n_fake} real and {n_fake} fake"

    more = ("Add files of the missing class, or check the labels of --data")
    if len({s.label for s in tr}) < 2:
        raise NoisetraceError(f"the training split has {counts(tr)} images (of {len(samples)} "
                              f"in --data): training needs both classes. {more}.")
    if len({s.label for s in va}) < 2:
        raise NoisetraceError(
            f"the validation split has {counts(va)} images ({len(tr)} for training): it picks "
            "the best epoch and calibrates the scores, so it needs real and fake images. Add "
            "data (several source files of each class: files of one video or group never "
            "split), or hold out more for validation (--set val_fraction=0.3; for a "
            "`noisetrace prepare` cache, prepare again with --ratios 60,20,20)."
        )
    if len(va) < MIN_VALIDATION:
        logging.getLogger("noisetrace.train").warning(
            "warning: only %d validation images (%s): its AUC and calibration are unreliable "
            "(aim for %d or more); the model card will say so", len(va), counts(va),
            MIN_VALIDATION,
        )  # fmt: skip


def _train(args: argparse.Namespace) -> int:
    import logging

    from noisetrace.train.loop import TrainConfig, train

    # train() configures logging the same way; done first so the checks below are logged too.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig.from_args(args)
    import os

    # Under torchrun every rank runs this; one of them speaks.
    err = Console(stderr=True, soft_wrap=True, quiet=os.environ.get("RANK", "0") != "0")
    out = Path(cfg.out)
    chosen = "" if args.out or cfg.out != TrainConfig.out else " (no --out given: the default)"
    err.print(f"training into {escape(str(out))}/{chosen}", highlight=False)
    if not args.resume:
        _check_training_data(cfg)
    train(cfg)
    err.print(f"model: {escape(str(out / 'best'))} (scan with: noisetrace scan FILE --model "
              f"{escape(str(out / 'best'))})", highlight=False)  # fmt: skip
    return 0


# -- subcommands -------------------------------------------------------------------------------
class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, and keeps multi-line text (the examples) as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        d = action.default
        # A flag's default (store_true/store_false) says nothing a reader can use:
        # "--no-lofo ... (default: True)" reads as "skipped by default".
        flag = action.nargs == 0 and isinstance(d, bool)
        if (d is not None and d is not False and d is not argparse.SUPPRESS and d != []
                and not flag and "default" not in text.lower()
                and action.option_strings):  # fmt: skip
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "\n".join(indent + line for line in text.strip("\n").splitlines())
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """Every (sub)parser shows defaults and examples alike."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def examples(*lines: str) -> str:
    """An epilog of example command lines."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_scan_arguments(s: argparse.ArgumentParser) -> None:
    from noisetrace.outputs import add_arguments as add_output_arguments

    s.description = ("Score images, videos and folders with a detector; one record per input "
                     "(a table on the terminal, or JSONL, CSV, JSON, Parquet).")
    s.epilog = examples(
        "noisetrace scan photo.jpg clip.mp4 folder/",
        "noisetrace scan folder/ --jsonl out.jsonl --csv out.csv",
        "noisetrace scan folder/ --jsonl out.jsonl --resume",
        "noisetrace scan clip.mp4 --model faces",
        "noisetrace scan clip.mp4 --model default+faces",
    )
    s.add_argument("paths", nargs="+", help="files or folders (scanned recursively)")
    s.add_argument("--model", default="default",
                   help="bundled model name or model directory; WHOLE+FACES (e.g. "
                        "default+faces) also runs a face model on the faces it finds and "
                        "reports both scores and the face boxes")  # fmt: skip
    s.add_argument("--threshold", type=float, default=None,
                   help="fake if score >= T (default: the model's)")
    add_output_arguments(s)  # --jsonl, --csv, --json, --parquet: one per noisetrace.outputs
    s.add_argument("--resume", action="store_true", help="continue the scan in --jsonl FILE")
    s.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    s.add_argument("--frames", type=int, default=None,
                   help="frames sampled per video (default: the model's, 16)")
    s.add_argument("--frame-scores", action="store_true",
                   help="add per-frame scores to --jsonl, --json and --parquet records (the "
                        "table does not show them)")
    s.add_argument("--workers", type=int, default=2, help="files in flight at once")
    s.add_argument("--max-pixels", dest="max_pixels", type=int, default=None, metavar="N",
                   help="largest image or video frame to decode, in pixels (default: 100 "
                        "million for images, 4096x4096 for video frames)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    s.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    s.add_argument("--explain", type=Path, metavar="DIR",
                   help="write an overlay PNG and JSON summary per flagged file to DIR")
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray cluster (pip install 'noisetrace[ray]')")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: 'auto' or ray://HOST:10001 (default: a local Ray)")
    s.set_defaults(func=_scan, needs=_scan_needs)


def _scan_needs(args: argparse.Namespace) -> dict[str, str]:
    from noisetrace.outputs import needs, option_values

    wanted = needs(option_values(args))  # e.g. pyarrow for --parquet
    if args.engine == "ray":
        wanted["ray"] = "noisetrace[ray]"
    return wanted


def add_models_arguments(m: argparse.ArgumentParser) -> None:
    m.description = ("Bundled models (purpose, input, threshold, validation figures, card) "
                     "and the architectures `noisetrace train --arch` accepts.")
    m.epilog = examples("noisetrace models")
    m.set_defaults(func=_models)


# Shown in `train --help`; the values are TrainConfig's (tests/test_cli_help.py checks them).
# The options default to None so a --config recipe's values are kept unless a flag is given.
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Train a detector on labelled folders, manifests or a `noisetrace "
                     "prepare` cache; the best epoch by validation AUC is calibrated and "
                     "written with a model card to OUT/best. Flags override --config.")
    p.epilog = examples(
        "noisetrace train --data my_data/ --out runs/mine",
        "noisetrace train --config configs/default.yaml --out runs/default",
        "noisetrace train --config configs/xception_rgb.yaml --data cache/prepare/KEY "
        "--out runs/xception",
        "torchrun --nproc_per_node=2 -m noisetrace.cli train --config configs/default.yaml",
    )
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); flags below override it")
    p.add_argument("--data", nargs="+",
                   help="folders (real/, fake/<gen>/), manifests or prepare caches")
    p.add_argument("--out", help="output directory for the run; the model is OUT/best "
                                 "(default: runs/model)")
    p.add_argument("--name", help="model name recorded in its config and card (default: custom)")
    p.add_argument("--arch", help="architecture from `noisetrace models` (default: srm-cnn)")
    p.add_argument("--epochs", type=int, help="epochs in all, warm-up and triplet epochs "
                                              "included (default: 10)")
    p.add_argument("--batch-size", dest="batch_size", type=int,
                   help="training patches per batch (default: 64)")
    p.add_argument("--lr", type=float, help="learning rate (default: 0.001)")
    p.add_argument("--patch", type=int, help="training crop size in pixels (default: 128)")
    p.add_argument("--seed", type=int, help="seed of the split, sampling and weights "
                                            "(default: 0)")
    p.add_argument("--device", help="auto, cpu, cuda (under torchrun: each rank its GPU) "
                                    "(default: auto)")
    p.add_argument("--max-images", dest="max_images", type=int,
                   help="train on a random subset of this many images (default: all)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set val_fraction=0.3 (repeatable)")
    p.set_defaults(func=_train)


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one line of help and ``module:function`` that adds its
    arguments (imported only when this command is run, so `noisetrace --help` stays fast)."""

    name: str
    help: str
    arguments: str


# Every subcommand, in the order `noisetrace --help` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("scan", "scan images, videos and folders", "noisetrace.cli:add_scan_arguments"),
    Command("models", "list bundled models and architectures",
            "noisetrace.cli:add_models_arguments"),
    Command("explain", "show why files were flagged: heatmap or Integrated Gradients "
            "overlays, noise traces", "noisetrace.explain.command:add_arguments"),
    Command("evaluate", "evaluate a detector with the seed papers' protocols; write a report",
            "noisetrace.evaluate.command:add_arguments"),
    Command("train", "train a detector on folders, manifests or a prepare cache",
            "noisetrace.cli:add_train_arguments"),
    Command("prepare", "crop faces (or frames) of a dataset into a cache with a manifest",
            "noisetrace.prepare:add_arguments"),
    Command("pretrain-stego", "pre-train SRNet (djin) as a cover/stego steganalysis detector "
            "(JIN-style init)", "noisetrace.train.stego_command:add_arguments"),
    Command("fit", "fit heads on frozen features (CLIP, SPAM) and their fusion; "
            "leave-one-family-out validation", "noisetrace.heads.command:add_arguments"),
    Command("export", "write ONNX graphs of a model (for ONNX Runtime)",
            "noisetrace.export:add_arguments"),
    Command("serve", "web page and REST API for scanning",
            "noisetrace.serve.command:add_arguments"),
)  # fmt: skip


def _add_arguments(cmd: Command, p: argparse.ArgumentParser) -> None:
    import importlib

    module, _, func = cmd.arguments.partition(":")
    getattr(importlib.import_module(module), func)(p)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``noisetrace`` parser, with the arguments of ``commands`` (default: all). The other
    subcommands are listed by name and help only, without importing their modules."""
    wanted = {c.name for c in COMMANDS} if commands is None else set(commands)
    p = _Parser(
        prog="noisetrace",
        description="Tell real images and videos from deepfakes by their noise residuals.",
        epilog=examples("noisetrace scan photo.jpg folder/", "noisetrace models",
                        "noisetrace serve", "noisetrace COMMAND --help"),
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"noisetrace {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)  # fmt: skip
    for cmd in COMMANDS:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name in wanted:
            _add_arguments(cmd, sp)
    return p


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    names = {c.name for c in COMMANDS}
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in names else None


def install_hint(requirement: str) -> str:
    """``pip install '<requirement>'`` escaped for rich, which would otherwise read
    ``[serve]`` in ``noisetrace[serve]`` as markup and print it away."""
    return escape(f"pip install '{requirement}'")


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_requirements(args: argparse.Namespace) -> dict[str, list[str]]:
    """requirement to install -> its missing modules, for what this command line needs
    (each command's ``needs(args) -> {module: requirement}``); checked before any work."""
    needs: Callable[[argparse.Namespace], dict[str, str]] | None = getattr(args, "needs", None)
    missing: dict[str, list[str]] = {}
    for module, requirement in (needs(args) if needs else {}).items():
        if not _importable(module):
            missing.setdefault(requirement, []).append(module)
    return missing


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = _command_in(argv)
    args = build_parser([chosen] if chosen else []).parse_args(argv)
    err = Console(stderr=True, soft_wrap=True)
    missing = missing_requirements(args)
    if missing:
        for requirement, modules in missing.items():
            err.print(f"[red]error:[/red] noisetrace {args.command} needs "
                      f"{', '.join(modules)}, which is not installed: "
                      f"{install_hint(requirement)}", highlight=False)  # fmt: skip
        return 2
    try:
        return int(args.func(args))
    except NoisetraceError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
