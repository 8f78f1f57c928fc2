"""DJIN's pixel-intensity analysis (``djin-srnet-noise-residual-detector.md``, Fig. 2).

For every image, Integrated Gradients ranks the pixels by influence and the top 1% are kept.
Over a set of images, and per class, the analysis reports for each pixel value v in 0..255

    P(top | v) = #(pixels of value v among the top 1%) / #(pixels of value v),

plotted beside the two classes' intensity histograms. A flat curve at 0.01 means the detector
does not care about brightness; DJIN found its detector looked at dark areas in real images
and at bright areas in generated ones (whose studio-like renders are brighter overall).

"Pixel value" is the BT.601 luma of the RGB pixel and its influence ``|sum_c IG_c|`` (unit
``pixel``, the same influence the overlays show), or each colour sample with its own
``|IG_c|`` (unit ``channel``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from noisetrace.detector import Detector
from noisetrace.errors import InputError
from noisetrace.explain.figures import save_figure
from noisetrace.explain.numbers import round_floats

Unit = Literal["pixel", "channel"]
CLASS_NAMES = ("real", "fake")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def pixel_values(img: np.ndarray, unit: Unit = "pixel") -> np.ndarray:
    """(H, W, 3) uint8 -> flat int array of values 0..255 ((H*W,) luma or (H*W*3,) samples)."""
    if unit == "pixel":
        return np.clip(np.rint(img.astype(np.float32) @ _LUMA), 0, 255).astype(np.int64).ravel()
    if unit == "channel":
        return img.astype(np.int64).ravel()
    raise InputError(f"unknown unit {unit!r}; use 'pixel' or 'channel'")


def influence_values(attributions: np.ndarray, unit: Unit = "pixel") -> np.ndarray:
    """(H, W, 3) signed attributions -> flat influence aligned with :func:`pixel_values`."""
    if unit == "pixel":
        return np.abs(attributions.sum(axis=2)).ravel()
    return np.abs(attributions).ravel()


@dataclass
class IntensityAnalysis:
    """Per-class counts of all pixels and of top-influence pixels, by value 0..255.

    ``total[c, v]``: pixels of value v in class c; ``top[c, v]``: of those, how many were
    among the ``top_fraction`` most influential of their own image.
    """

    top_fraction: float = 0.01
    unit: Unit = "pixel"
    total: np.ndarray = field(default_factory=lambda: np.zeros((2, 256), np.int64))
    top: np.ndarray = field(default_factory=lambda: np.zeros((2, 256), np.int64))
    images: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, img: np.ndarray, attributions: np.ndarray, label: int) -> None:
        """Count one (H, W, 3) uint8 image with its (H, W, 3) IG attributions, class 0/1."""
        if attributions.shape != img.shape:
            raise InputError(
                f"attributions {attributions.shape} do not match image {img.shape}"
            )
        if label not in (0, 1):
            raise InputError(f"label must be 0 (real) or 1 (fake), got {label!r}")
        vals = pixel_values(img, self.unit)
        infl = influence_values(attributions, self.unit)
        k = max(1, int(math.ceil(self.top_fraction * vals.size)))
        idx = np.argpartition(-infl, k - 1)[:k]
        self.total[label] += np.bincount(vals, minlength=256)
        self.top[label] += np.bincount(vals[idx], minlength=256)
        self.images[label] += 1

    def probability(self, label: int) -> np.ndarray:
        """(256,) P(top | value) for class ``label``; NaN for values never seen."""
        with np.errstate(invalid="ignore", divide="ignore"):
            p = self.top[label] / self.total[label]
        return np.where(self.total[label] > 0, p, np.nan)

    def histogram(self, label: int) -> np.ndarray:
        """(256,) share of the class's pixels at each value (sums to 1, or zeros if empty)."""
        n = self.total[label].sum()
        return self.total[label] / n if n else np.zeros(256)

    def summary(self, dark: int = 64, bright: int = 192) -> dict[str, Any]:
        """Numbers behind the plot: per class, mean value of all and of top pixels, and
        P(top) over dark (< ``dark``) and bright (>= ``bright``) pixels."""
        out: dict[str, Any] = {
            "top_fraction": self.top_fraction, "unit": self.unit,
            "dark_below": dark, "bright_from": bright,
        }  # fmt: skip
        v = np.arange(256)
        for c, name in enumerate(CLASS_NAMES):
            tot, top = self.total[c], self.top[c]
            if tot.sum() == 0:
                out[name] = {"images": 0}
                continue

            def p_range(lo: int, hi: int, tot=tot, top=top) -> float | None:
                n = tot[lo:hi].sum()
                return None if n == 0 else float(top[lo:hi].sum() / n)

            out[name] = {
                "images": self.images[c],
                "pixels": int(tot.sum()),
                "mean_value_all": float((v * tot).sum() / tot.sum()),
                "mean_value_top": float((v * top).sum() / max(1, top.sum())),
                "p_top_dark": p_range(0, dark),
                "p_top_mid": p_range(dark, bright),
                "p_top_bright": p_range(bright, 256),
                "share_dark": float(tot[:dark].sum() / tot.sum()),
                "share_bright": float(tot[bright:].sum() / tot.sum()),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """Counts and summary (floats to 6 significant digits), JSON-ready (``from_json``
        reads it back)."""
        return {
            "summary": round_floats(self.summary()),
            "total": self.total.tolist(),
            "top": self.top.tolist(),
            "images": list(self.images),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> IntensityAnalysis:
        s = d["summary"]
        return cls(
            top_fraction=s["top_fraction"], unit=s["unit"],
            total=np.array(d["total"], np.int64), top=np.array(d["top"], np.int64),
            images=list(d["images"]),
        )  # fmt: skip

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Write DJIN's Fig. 2 (top) as a PNG: P(top | value) per class, then histograms."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        colours = {"real": "tab:blue", "fake": "tab:red"}
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
        v = np.arange(256)
        for c, name in enumerate(CLASS_NAMES):
            if self.images[c] == 0:
                continue
            label = f"{name} ({self.images[c]} images)"
            a1.plot(v, self.probability(c), color=colours[name], lw=1.2, label=label)
            a2.plot(v, self.histogram(c), color=colours[name], lw=1.2, label=label)
        a1.axhline(self.top_fraction, color="grey", ls="--", lw=0.8, label="no preference")
        a1.set_xlabel("pixel value" + (" (luma)" if self.unit == "pixel" else " (per channel)"))
        a1.set_ylabel(f"P(among top {self.top_fraction:.0%} by IG | value)")
        a1.set_xlim(0, 255)
        a1.set_ylim(bottom=0)
        a1.legend(fontsize=8)
        a1.set_title("most influential pixels by value")
        a2.set_xlabel("pixel value")
        a2.set_ylabel("share of pixels (log scale)")
        # Log scale: a few large flat areas (one grey level) would otherwise hide the shape.
        a2.set_yscale("log")
        a2.set_xlim(0, 255)
        a2.legend(fontsize=8)
        a2.set_title("intensity histogram")
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path)


def center_crop(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """Crop (never resize: resizing would erase the noise being explained) to at most
    ``max_side`` pixels a side, around the centre. (H, W, 3) -> (h, w, 3)."""
    if not max_side:
        return img
    h, w = img.shape[:2]
    ch, cw = min(h, max_side), min(w, max_side)
    y, x = (h - ch) // 2, (w - cw) // 2
    return img[y : y + ch, x : x + cw]


def run_intensity_analysis(
    det: Detector,
    samples: Iterable[tuple[str | np.ndarray, int]],
    *,
    top_fraction: float = 0.01,
    unit: Unit = "pixel",
    max_side: int | None = 512,
    baseline: str = "black",
    steps: int = 16,
    internal_batch_size: int = 4,
    on_image: Callable[[int, str, float], None] | None = None,
) -> IntensityAnalysis:
    """IG over every ``(image path or (H, W, 3) uint8 array, label)`` and the counts.

    Images are centre-cropped to ``max_side`` to bound the cost (IG is ``steps`` forward and
    backward passes). Unreadable files are passed over; ``on_image(i, name, logit)`` is
    called after each image (for progress), with logit NaN for a file passed over.
    """
    from noisetrace.explain.ig import integrated_gradients
    from noisetrace.media.image import load_image

    ana = IntensityAnalysis(top_fraction=top_fraction, unit=unit)
    for i, (src, label) in enumerate(samples):
        name = src if isinstance(src, str) else f"array {i}"
        try:
            img = load_image(src) if isinstance(src, str | Path) else src
        except InputError:
            if on_image:
                on_image(i, str(name), float("nan"))
            continue
        img = center_crop(img, max_side)
        r = integrated_gradients(
            det, img, baseline=baseline, steps=steps, internal_batch_size=internal_batch_size
        )  # type: ignore[arg-type]
        ana.add(r.image, r.attributions, int(label))
        if on_image:
            on_image(i, str(name), r.logit)
    return ana


def save_analysis(ana: IntensityAnalysis, out_dir: str | Path, title: str = "") -> list[Path]:
    """Write ``intensity.png`` and ``intensity.json`` into ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    png = ana.plot(d / "intensity.png", title=title)
    js = d / "intensity.json"
    js.write_text(json.dumps(ana.to_json(), indent=1) + "\n")
    return [png, js]
