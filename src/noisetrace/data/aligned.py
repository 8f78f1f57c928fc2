"""Aligned fakes: real photos passed through a generator's autoencoder (TAEF2).

A fake made this way has the content, size and compression history of its real twin; only
the decoder's synthesis traces differ, so a detector trained on such pairs cannot lean on
content, size or format (Rajan et al., ICLR 2025; B-Free, Guillaro et al., CVPR 2025).

TAEF2 (MIT, Ollin Boer Bohan) is a tiny autoencoder distilled from the FLUX.2 image
autoencoder: 3x3 convolutions and residual blocks, three stride-2 steps down to 32 latent
channels, a mirrored decoder with nearest upsampling; the FLUX.2 variant adds a
GroupNorm "pool" branch to the three blocks next to the latent. The layer sequence below
follows the released state dicts' keys (loaded with ``strict=True``).

``python -m noisetrace.data.aligned SRC_MANIFEST_OR_DIR OUT_DIR --weights DIR`` writes the
fakes and a ``MANIFEST.tsv`` beside them (see ``docs/data.md``).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from noisetrace.io import atomic_path

LATENT_CHANNELS = 32


def _conv(n_in: int, n_out: int, **kw: object) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class TAEBlock(nn.Module):
    """Residual block; ``pool`` adds a 1x1 GroupNorm branch (FLUX.2 variant) to its input."""

    def __init__(self, ch: int = 64, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(ch, ch), nn.ReLU(), _conv(ch, ch), nn.ReLU(), _conv(ch, ch)
        )
        self.pool = (
            nn.Sequential(
                nn.Conv2d(ch, 4 * ch, 1, bias=False),
                nn.GroupNorm(4, 4 * ch),
                nn.ReLU(),
                nn.Conv2d(4 * ch, ch, 1, bias=False),
            )
            if pool
            else None
        )
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def taef2_encoder() -> nn.Sequential:
    """(B, 3, H, W) in [0, 1] -> (B, 32, H/8, W/8) latents."""
    def down() -> nn.Conv2d:
        return _conv(64, 64, stride=2, bias=False)

    return nn.Sequential(
        _conv(3, 64), TAEBlock(),
        down(), TAEBlock(), TAEBlock(), TAEBlock(),
        down(), TAEBlock(), TAEBlock(), TAEBlock(),
        down(), TAEBlock(pool=True), TAEBlock(pool=True), TAEBlock(pool=True),
        _conv(64, LATENT_CHANNELS),
    )  # fmt: skip


def taef2_decoder() -> nn.Sequential:
    """(B, 32, h, w) latents -> (B, 3, 8h, 8w), about [0, 1]."""
    def up() -> list[nn.Module]:
        return [nn.Upsample(scale_factor=2), _conv(64, 64, bias=False)]

    return nn.Sequential(
        _Clamp(), _conv(LATENT_CHANNELS, 64), nn.ReLU(),
        TAEBlock(pool=True), TAEBlock(pool=True), TAEBlock(pool=True),
        *up(), TAEBlock(), TAEBlock(), TAEBlock(),
        *up(), TAEBlock(), TAEBlock(), TAEBlock(),
        *up(), TAEBlock(),
        _conv(64, 3),
    )  # fmt: skip


class TAEF2(nn.Module):
    """Encoder + decoder; ``forward`` reconstructs an image through the latent space."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = taef2_encoder(), taef2_decoder()

    @classmethod
    def load(cls, directory: str | Path) -> TAEF2:
        """Load ``taef2_encoder.pth`` / ``taef2_decoder.pth`` (plain state dicts, no pickle
        code is run: ``weights_only=True``)."""
        d = Path(directory)
        m = cls()
        for part in ("encoder", "decoder"):
            f = d / f"taef2_{part}.pth"
            if not f.is_file():
                raise FileNotFoundError(f"{f} not found: pass the folder holding TAEF2's weights")
            state = torch.load(f, map_location="cpu", weights_only=True)
            getattr(m, part).load_state_dict(state, strict=True)
        return m.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).clamp(0, 1)


    @torch.inference_mode()
    def reconstruct(self, img: np.ndarray, tile: int = 1024) -> np.ndarray:
        """(H, W, 3) uint8 -> its reconstruction, same size, uint8 (see ``reconstruct``)."""
        return reconstruct(self, img, tile)


@torch.inference_mode()
def reconstruct(model: nn.Module, img: np.ndarray, tile: int = 1024) -> np.ndarray:
    """(H, W, 3) uint8 -> ``model``'s reconstruction in [0, 1] space, same size, uint8.

    Sides are reflect-padded to a multiple of 8; images larger than ``tile`` go through
    in overlapping tiles (64 px margins) so memory stays bounded.
    """
    h, w = img.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8
    x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 8 else "edge")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255
    dev = next(model.parameters()).device

    def run(a: torch.Tensor) -> torch.Tensor:
        return model(a.to(dev)).clamp(0, 1).cpu()

    H, W = t.shape[2:]
    if H <= tile and W <= tile:
        out = run(t)
    else:
        m = 64  # receptive-field margin discarded at tile seams
        out = torch.zeros_like(t)
        for y in range(0, H, tile):
            for x0 in range(0, W, tile):
                ya, xa = max(0, y - m), max(0, x0 - m)
                yb, xb = min(H, y + tile + m), min(W, x0 + tile + m)
                r = run(t[:, :, ya:yb, xa:xb])
                th, tw = min(tile, H - y), min(tile, W - x0)
                out[:, :, y : y + th, x0 : x0 + tw] = r[
                    :, :, y - ya : y - ya + th, x0 - xa : x0 - xa + tw
                ]
    rec = (out[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return rec[:h, :w]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _save_like(rec: np.ndarray, src: Path, out: Path) -> Path:
    """Save with the source's compression history: a JPEG source is written as JPEG at the
    source's estimated quality, anything else as PNG."""
    from PIL import Image

    im = Image.fromarray(rec)
    with Image.open(src) as s:
        fmt = (s.format or "").upper()
        q = getattr(s, "quantization", None)
    if fmt == "JPEG":
        out = out.with_suffix(".jpg")
        # Reuse the source's quantisation tables: same compression as the real twin.
        buf = io.BytesIO()
        im.save(buf, "JPEG", qtables=q, subsampling=-1) if q else im.save(buf, "JPEG", quality=90)
        out.write_bytes(buf.getvalue())
    else:
        out = out.with_suffix(".png")
        im.save(out, "PNG")
    return out


def main(argv: list[str] | None = None) -> int:
    from noisetrace.data.manifest import read_manifest
    from noisetrace.media.image import load_image

    ap = argparse.ArgumentParser(description="Make aligned fakes from real images.")
    ap.add_argument("src", nargs="+", help="MANIFEST.tsv files (their real rows are used)")
    ap.add_argument("--out", required=True, help="output folder (fakes + MANIFEST.tsv)")
    ap.add_argument("--weights", required=True,
                    help="folder with taef2_{encoder,decoder}.pth, or a TinyAE checkpoint "
                    "(.pt, python -m noisetrace.data.tiny_ae)")  # fmt: skip
    ap.add_argument("--max-side", type=int, default=1600,
                    help="skip sources larger than this (CPU time); default 1600")  # fmt: skip
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model: nn.Module
    if Path(a.weights).is_file():
        from noisetrace.data.tiny_ae import TinyAE

        model = TinyAE.load(a.weights)
        generator = f"tinyae-{model.config['upsample']}"
    else:
        model, generator = TAEF2.load(a.weights), "taef2"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for man in a.src:
        for s in read_manifest(man):
            if s.label != 0:
                continue
            src = Path(s.path)
            img = load_image(src)
            if max(img.shape[:2]) > a.max_side:
                continue
            stem = f"{Path(man).parent.name}__{src.stem}"
            rec = reconstruct(model, img)
            f = _save_like(rec, src, out / stem)
            rows.append((f.name, "fake", generator, str(src), f"{psnr(rec, img):.2f}"))
            print(f"{f.name}\t{rows[-1][-1]} dB", flush=True)
    with atomic_path(out / "MANIFEST.tsv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        # group = the real twin's path, so a pair never straddles a train/test split
        w.writerow(["path", "label", "generator", "group", "psnr"])
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
