"""``noisetrace fit``: fit heads on frozen features and their fusion from a recipe, with
leave-one-family-out validation first; writes a model directory any command can load."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace fit`` (registered in ``noisetrace.cli.COMMANDS``)."""
    p.description = (
        "Fit a semantic (CLIP) head, a noise-residual head and their stacked late fusion on "
        "labelled images, validate by leaving each fake family out, then fit on everything "
        "and write a model directory (config.json, heads, card.json with the tables). "
        "Features are cached by file content, so refits take minutes."
    )
    p.epilog = """examples:
  noisetrace fit --config configs/default_fusion.yaml --out runs/fusion
  noisetrace fit --config configs/default_fusion.yaml --data my_data/ --out runs/mine --no-lofo
  noisetrace fit --config configs/clip_probe.yaml --backbone-file /models/clip_fp32.onnx \\
      --out runs/fp32-probe"""
    p.add_argument("--config", required=True, help="recipe YAML (configs/default_fusion.yaml)")
    p.add_argument("--data", nargs="+", action="extend",
                   help="manifests or folders; replaces the recipe's data")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--no-lofo", dest="lofo", action="store_false",
                   help="skip leave-one-family-out validation (fit only)")
    p.add_argument("--cache", help="feature cache folder (default: ~/.cache/noisetrace/features "
                                   "or $NOISETRACE_CACHE/features)")
    p.add_argument("--backbone-file", dest="backbone_file",
                   help="an ONNX CLIP image encoder to use instead of the recipe's backbone "
                        "(e.g. an fp32 export); its hash is recorded with the head")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from noisetrace.heads.fit import HeadRecipe, fit_recipe, lofo_section, markdown_tables

    err = Console(stderr=True)
    recipe = HeadRecipe.from_yaml(args.config, data=args.data, cache=args.cache)
    if args.backbone_file:
        for b in recipe.branches.values():
            ext = b.get("extractor", {})
            if ext.get("kind") == "clip":
                ext.update(backbone="onnx", file=str(Path(args.backbone_file).resolve()))
                ext.pop("sha256", None)
    card = fit_recipe(recipe, args.out, lofo=args.lofo, config_path=args.config)
    out = Path(args.out)
    if card.get("lofo"):
        md = markdown_tables(lofo_section(card["lofo"]))
        (out / "lofo.md").write_text(md)
        err.print(escape(md))
    err.print(f"model written to {escape(str(out))} (threshold {card['fusion']['threshold']:.3f};"
              f" scan with: noisetrace scan --model {escape(str(out))} FILES)")
    print(json.dumps({"out": str(out), "fusion": card["fusion"]}))
    return 0
