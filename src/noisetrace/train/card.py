"""Model cards: what a model was trained on, how, and how well it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_model_card(directory: str | Path, card: dict[str, Any]) -> Path:
    """Write MODEL_CARD.md (for people) and card.json (for tools) next to the weights."""
    d = Path(directory)
    lines = [f"# Model card: {card['name']}", "", card.get("summary", ""), ""]
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
    tmp = d / ".MODEL_CARD.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(d / "MODEL_CARD.md")
    tmpj = d / ".card.json.tmp"
    tmpj.write_text(json.dumps(card, indent=2, default=str) + "\n")
    tmpj.replace(d / "card.json")
    return d / "MODEL_CARD.md"
