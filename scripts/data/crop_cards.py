"""Cut the photo out of a captioned card of ``declan-wright/Image-Dataset`` (``web-cards``).

Each card (1024x1536 JPEG, 4:4:4) holds the photo (about 1024x768) above a black band whose
caption names the generator or the photographer. Scoring the whole card measures the card
(half of it is the same black band in both classes), so :func:`crop_card` keeps the photo only:

- the band is the first run (from the top) of at least ``MIN_BAND_ROWS`` black rows (a
  padding fill: near zero with only JPEG ringing, not dark picture content); its first row
  is the photo's lower edge;
- the 8-row JPEG block that straddles that edge (photo and band mixed in one block) is
  dropped: the crop ends at the last block boundary at or above the edge;
- a thin black side margin (columns of the same black fill over the whole photo height,
  found the same way) is trimmed with the block that holds its first picture column (a mix
  of fill and picture), so the crop keeps the JPEG 8x8 grid at phase 0 on every side;
- the pixels are written as PNG (lossless; no second JPEG round, no metadata).

Nothing is hard-coded per file. :func:`crop_card` is ``rebuild.py``'s ``crop_card`` transform;
``python scripts/data/crop_cards.py SRC OUT`` crops one file by hand.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BLOCK = 8  # JPEG block size (the cards are 4:4:4: no 16-pixel chroma MCU)
#: A padding line: nearly every pixel (99.5th percentile of the brightest channel) below
#: FILL_PEAK and a mean below FILL_MEAN. Dark picture content has texture and fails the mean.
FILL_PEAK = 24.0
FILL_MEAN = 3.0
#: The band's black gap between photo and caption is 138 rows or more on every card; dark
#: picture content never gives this many padding-black rows in a row (A21's dark top: 31).
MIN_BAND_ROWS = 64


def _is_fill(lines: np.ndarray, axis: int) -> np.ndarray:
    """True for each row (axis=1) or column (axis=0) of ``lines`` that is black fill."""
    return (np.percentile(lines, 99.5, axis=axis) < FILL_PEAK) & (lines.mean(axis=axis) < FILL_MEAN)


def _first_run(mask: np.ndarray, min_len: int) -> int | None:
    """Start of the first run of at least ``min_len`` True values in ``mask`` (None if none)."""
    start = None
    for i, v in enumerate([*mask.tolist(), False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start >= min_len:
                return start
            start = None
    return None


def _leading(mask: np.ndarray) -> int:
    """Number of leading True values in ``mask``."""
    n = 0
    for v in mask.tolist():
        if not v:
            break
        n += 1
    return n


def photo_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the photo in a card (H, W, 3 uint8)."""
    lum = rgb.max(axis=2).astype(np.float64)
    band_start = _first_run(_is_fill(lum, axis=1), MIN_BAND_ROWS)
    if not band_start:  # None, or a black run from the very top: no photo above it
        raise ValueError(f"no black caption band below a photo (first run: {band_start})")
    bottom = band_start // BLOCK * BLOCK  # drops the block straddling the edge, if any
    photo = lum[:bottom]
    cols = _is_fill(photo, axis=0)
    n_left, n_right = _leading(cols), _leading(cols[::-1])
    width = photo.shape[1]
    # The first column past a margin is still a mix of fill and picture (B3: mean 2.7 beside
    # 0 and 106): its block goes with the margin.
    left = (n_left // BLOCK + 1) * BLOCK if n_left else 0
    right = width - (n_right // BLOCK + 1) * BLOCK if n_right else width
    if right - left < width // 2 or bottom < rgb.shape[0] // 4:
        raise ValueError(f"implausible photo box {(left, 0, right, bottom)}")
    return left, 0, right, bottom


def crop_card(data: bytes) -> tuple[bytes, str]:
    """The photo of one card (JPEG bytes) as PNG bytes, and the suffix ``.png``."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"))
    left, top, right, bottom = photo_box(rgb)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right])).save(out, format="PNG")
    return out.getvalue(), ".png"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: crop_cards.py SRC OUT", file=sys.stderr)
        return 2
    data, _ = crop_card(Path(args[0]).read_bytes())
    Path(args[1]).write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
