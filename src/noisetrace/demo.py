"""``python -m noisetrace.demo``: make sample inputs offline and scan them with the default model.

Samples: scikit-image's bundled photos (real camera pictures) written as JPEG and PNG, a
short video made from one of them, and a deliberately broken file to show an error record.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from noisetrace.cli import main
from noisetrace.media.video import write_video

OUT = Path("demo-out")


def make_samples(out: Path = OUT / "samples") -> Path:
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
              "rocket": data.rocket()}  # fmt: skip
    for name, img in photos.items():
        Image.fromarray(img).save(out / f"{name}.jpg", quality=92)
    Image.fromarray(photos["coffee"]).save(out / "coffee.png")
    # A short pan across the astronaut photo: 24 frames of 256x256.
    a = photos["astronaut"]
    frames = [np.ascontiguousarray(a[i * 8 : i * 8 + 256, i * 8 : i * 8 + 256]) for i in range(24)]
    write_video(out / "astronaut_pan.mp4", frames, fps=12, bit_rate=20_000_000)
    (out / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    return out


def run() -> int:
    samples = make_samples()
    print(f"sample inputs in {samples}/ (scikit-image photos, a video, a broken file)\n")
    rc = main(["scan", str(samples), "--jsonl", str(OUT / "scan.jsonl"), "--csv",
               str(OUT / "scan.csv")])  # fmt: skip
    print(
        "\nAll sample inputs are real photographs, but small (at most 512 px), downscaled and\n"
        "re-encoded long ago: their camera noise is mostly gone, so a \"fake\" verdict on one of\n"
        "them would be a false alarm. Such inputs are outside what the bundled model was\n"
        "validated on: read their verdicts as uncertain (src/noisetrace/zoo/default/\n"
        "MODEL_CARD.md). Records are in\n"
        f"{OUT}/scan.jsonl and {OUT}/scan.csv; broken.jpg shows how a bad file is reported."
    )
    return rc


if __name__ == "__main__":
    sys.exit(run())
