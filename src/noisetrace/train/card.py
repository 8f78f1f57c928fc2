"""Model cards: what a model was trained on, how, and how well it did."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from noisetrace.io import atomic_write

log = logging.getLogger("noisetrace.train")

# Below this many validation items an AUC or a Platt fit says little: 6 images gave
# "AUC 1.000" and a slope of 99.8.
MIN_VALIDATION = 30
MAX_PLATT_SLOPE = 20.0  # steeper squeezes every score to 0 or 1


def card_warnings(card: dict[str, Any]) -> list[str]:
    """What a reader must know before trusting the card's figures, in words."""
    out = []
    val = (card.get("metrics") or {}).get("validation") or {}
    ns = [m["n"] for m in val.values() if isinstance(m, dict) and isinstance(m.get("n"), int)]
    if ns and min(ns) < MIN_VALIDATION:
        unit = {"sequence": "sequences", "pair": "face/background pairs"}.get(
            card.get("task", "image"), "images")  # fmt: skip
        out.append(
            f"Validated on only {min(ns)} {unit}: its AUC, accuracy and calibration are "
            f"unreliable (a handful of images can give AUC 1.000). Validate on "
            f"{MIN_VALIDATION} or more before relying on its scores."
        )
    a = (card.get("calibration") or {}).get("a")
    if isinstance(a, int | float) and abs(a) > MAX_PLATT_SLOPE:
        out.append(
            f"The calibration slope is {a:.1f}: scores are pushed to 0 or 1, a sign of too "
            "little (or too easy) validation data."
        )
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_model_card(directory: str | Path, card: dict[str, Any]) -> Path:
    """Write MODEL_CARD.md (for people) and card.json (for tools) next to the weights."""
    d = Path(directory)
    warnings = list(card.get("warnings") or [])
    warnings += [w for w in card_warnings(card) if w not in warnings]
    if warnings:
        card = {**card, "warnings": warnings}
        for w in warnings:
            log.warning("warning: %s", w)
    lines = [f"# Model card: {card['name']}", "", card.get("summary", ""), ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in warnings] + [""]
    lines += [
        "## Architecture",
        "",
        f"`{card['arch']}` with `{json.dumps(card.get('arch_config', {}))}`",
    ]
    lines += [
        f"({card.get('parameters', '?'):,} parameters)"
        if isinstance(card.get("parameters"), int)
        else "",
        "",
    ]
    lines += ["## Training data", ""]
    for row in card.get("data", []):
        lines.append(f"- {row}")
    lines += [
        "",
        "## Recipe",
        "",
        "```json",
        json.dumps(card.get("recipe", {}), indent=2),
        "```",
        "",
    ]
    for section, table in card.get("metrics", {}).items():
        lines += [f"## {section}", ""]
        keys = ["auc", "ap", "accuracy", "balanced_accuracy", "eer", "tpr@5%fpr", "n", "n_fake"]
        lines.append("| split | " + " | ".join(keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for split_name, m in table.items():
            lines.append(f"| {split_name} | " + " | ".join(_fmt(m.get(k, "")) for k in keys) + " |")
        lines.append("")
    if "calibration" in card:
        lines += [
            "## Calibration",
            "",
            card["calibration_text"] if "calibration_text" in card else "",
            "",
        ]
        lines += ["```json", json.dumps(card["calibration"], indent=2), "```", ""]
    if card.get("limitations"):
        lines += ["## Limitations", ""] + [f"- {x}" for x in card["limitations"]] + [""]
    atomic_write(d / "MODEL_CARD.md", "\n".join(lines))
    atomic_write(d / "card.json", json.dumps(card, indent=2, default=str) + "\n")
    return d / "MODEL_CARD.md"
