"""Saving matplotlib figures: one place, written atomically so no half-written PNG is left."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` (temporary name, then rename) and close it."""
    import matplotlib.pyplot as plt

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        fig.savefig(tmp, format="png")
        tmp.replace(p)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return p
