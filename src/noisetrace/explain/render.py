"""The overlay as a figure a person can read, drawn with Pillow (no matplotlib needed).

Layout, top to bottom: a title band (file name, verdict, score and threshold, model and
method, for videos the frame explained), the overlay itself (downscaled so its longer side
fits ``max_size``: a full 2592 px photo as a lossless PNG is 7-10 MB and nobody looks at it
at 1:1), and a legend band with the colour bar and what its colours mean.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from noisetrace.errors import InputError

MAX_SIZE = 1600  # default longer side of the written figure, pixels
MIN_SIZE = 256  # below this the title and legend would not fit
_MIN_WIDTH = 480  # narrower images are centred on a canvas this wide so the text still fits
_BACKGROUND = (30, 30, 30)
_TEXT = (240, 240, 240)
_DIM = (175, 175, 175)
_VERDICT_COLOURS = {"fake": (240, 90, 80), "real": (100, 205, 120)}
_SEP = "   "

Run = tuple[str, tuple[int, int, int]]  # text and its colour
Segment = list[Run]  # kept on one line when it fits; lines break between segments first


@dataclass(frozen=True)
class Legend:
    """What the overlay's colours mean: ``caption``, the bar's end labels and the range of
    :func:`~noisetrace.explain.heatmap.colormap` values the method's overlay uses."""

    caption: str
    low: str
    high: str
    lo_value: float
    hi_value: float


LEGENDS: dict[str, Legend] = {
    "heatmap": Legend("local fake probability (what each region would score on its own)",
                      "0 real", "1 fake", 0.0, 1.0),
    # The IG overlay tints by colormap(0.5 + influence / 2): yellow (low) to red (high), and
    # the tint fades out where the influence is near zero.
    "ig": Legend("influence on the fake score (Integrated Gradients; untinted: little)",
                 "low", "high", 0.5, 1.0),
    "occlusion": Legend("fall of the fake score when the region is blurred (occlusion)",
                        "none", "largest", 0.0, 1.0),
}  # fmt: skip


@dataclass
class Figure:
    """The rendered figure. ``scale`` maps image pixels to figure pixels; the image occupies
    ``image_box`` (x0, y0, x1, y1) and the colour bar ``bar_box``."""

    image: Image.Image
    scale: float
    image_box: tuple[int, int, int, int]
    bar_box: tuple[int, int, int, int]

    def png(self) -> bytes:
        """Lossless PNG bytes."""
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()

    def info(self) -> dict[str, object]:
        """For the JSON summary: the written size, the scale and where the image sits."""
        w, h = self.image.size
        return {"width": w, "height": h, "scale": round(self.scale, 6),
                "image_box": list(self.image_box)}  # fmt: skip


def output_scale(width: int, height: int, max_size: int = MAX_SIZE) -> float:
    """Factor (<= 1) that brings the longer side within ``max_size``; 0 keeps full size."""
    if max_size <= 0 or max(width, height) <= max_size:
        return 1.0
    return max_size / max(width, height)


def downscale(img: np.ndarray, scale: float) -> Image.Image:
    """(H, W, 3) uint8 -> PIL image ``scale`` times the size; Lanczos, which keeps edges
    sharp and, unlike nearest-neighbour, does not alias fine detail into moire."""
    im = Image.fromarray(img)
    if scale >= 1.0:
        return im
    h, w = img.shape[:2]
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def caption(
    name: str, model: str, method: str, score: float, verdict: str, threshold: float,
    note: str = "",
) -> list[Segment]:  # fmt: skip
    """The title: file, verdict with score and threshold, model and method, ``note``."""
    colour = _VERDICT_COLOURS.get(verdict, _TEXT)
    segs: list[Segment] = [
        [(name, _TEXT)],
        [(verdict.upper(), colour), (f" score {score:.3f}", _TEXT),
         (f" (threshold {threshold:.3f})", _DIM)],
        [(f"model {model}, {method}", _DIM)],
    ]  # fmt: skip
    if note:
        segs.append([(note, _DIM)])
    return segs


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _width(font, runs: list[Run]) -> float:
    return sum(font.getlength(t) for t, _ in runs)


def _shorten(text: str, font, avail: float) -> str:
    """``text`` cut in the middle with "..." until it fits (file names keep both ends)."""
    if font.getlength(text) <= avail:
        return text
    keep = len(text)
    while keep > 2:
        keep -= 1
        cut = text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2 :]
        if font.getlength(cut) <= avail:
            return cut
    return text[:1] + "..."


def _layout(segments: list[Segment], font, avail: float) -> list[list[Run]]:
    """Lines of runs no wider than ``avail``: whole segments where they fit, else words."""
    lines: list[list[Run]] = [[]]
    for seg in segments:
        sep: list[Run] = [(_SEP, _DIM)] if lines[-1] else []
        if _width(font, lines[-1] + sep + seg) <= avail:
            lines[-1] += sep + seg
            continue
        if lines[-1]:
            lines.append([])
        if _width(font, seg) <= avail:
            lines[-1] += seg
            continue
        for text, colour in seg:  # too long for a line of its own: wrap its words
            for word in text.split(" "):
                if not word:
                    continue
                piece = (" " + word) if lines[-1] else word
                if lines[-1] and _width(font, [*lines[-1], (piece, colour)]) > avail:
                    lines.append([])
                    piece = word
                lines[-1].append((_shorten(piece, font, avail), colour))
    return [ln for ln in lines if ln]


def render_figure(
    overlay: np.ndarray, method: str, title: list[Segment], max_size: int = MAX_SIZE
) -> Figure:
    """Frame an (H, W, 3) uint8 overlay with ``title`` (see :func:`caption`) and the
    ``method``'s legend; the whole figure's longer side is at most ``max_size`` (0: the
    image at full resolution)."""
    if method not in LEGENDS:
        raise InputError(f"no legend for method {method!r}; use {' or '.join(LEGENDS)}")
    if 0 < max_size < MIN_SIZE:
        raise InputError(
            f"a figure of at most {max_size} px has no room for its title and legend; use a "
            f"maximum size of at least {MIN_SIZE} px, or 0 for full resolution"
        )
    legend = LEGENDS[method]
    h, w = overlay.shape[:2]
    scale = output_scale(w, h, max_size)
    # The text size follows the canvas width and the bands' height follows the text, so
    # shrink the image until image plus bands fit (two rounds settle it; a third is spare).
    for _ in range(3):
        iw, ih = max(1, round(w * scale)), max(1, round(h * scale))
        cw = max(iw, min(_MIN_WIDTH, max_size or _MIN_WIDTH))
        fs = int(np.clip(cw // 48, 14, 28))
        font = _font(fs)
        pad, lh = fs // 2, round(fs * 1.35)
        lines = _layout(title, font, cw - 2 * pad)
        title_h = 2 * pad + lh * len(lines)
        legend_h = 2 * pad + lh + fs + pad // 2
        if not max_size or max(cw, title_h + ih + legend_h) <= max_size:
            break
        scale = min(scale, (max_size - title_h - legend_h) / h)
    canvas = Image.new("RGB", (cw, title_h + ih + legend_h), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for line in lines:
        x = float(pad)
        for text, colour in line:
            draw.text((x, y), text, font=font, fill=colour)
            x += font.getlength(text)
        y += lh
    x0 = (cw - iw) // 2
    canvas.paste(downscale(overlay, scale), (x0, title_h))

    from noisetrace.explain.heatmap import colormap

    y = title_h + ih + pad
    draw.text((pad, y), legend.caption, font=font, fill=_TEXT)
    y += lh + pad // 2
    lo_w, hi_w = font.getlength(legend.low), font.getlength(legend.high)
    bx0 = round(pad + lo_w + pad)
    bar_w = int(min(cw - bx0 - hi_w - 2 * pad, 24 * fs))
    bar_h = fs
    draw.text((pad, y), legend.low, font=font, fill=_TEXT)
    bar = colormap(np.linspace(legend.lo_value, legend.hi_value, max(2, bar_w))[None, :])
    canvas.paste(Image.fromarray(np.repeat(bar, bar_h, axis=0)), (bx0, y))
    draw.text((bx0 + bar_w + pad, y), legend.high, font=font, fill=_TEXT)
    return Figure(
        canvas, scale, (x0, title_h, x0 + iw, title_h + ih), (bx0, y, bx0 + bar_w, y + bar_h)
    )
