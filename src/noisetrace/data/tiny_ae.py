"""A small image autoencoder the project trains itself, for aligned fakes of its own.

TAEF2 (``aligned.py``) gives one decoder's traces. A detector validated by leaving each
family out never sees an autoencoder round trip when TAEF2 is the one held out, and it
fails there (AUC about 0.55). A second, independently trained decoder lets training hold
*an* autoencoder round trip while TAEF2 is tested, and vice versa, so what is learnt is the
trace of decoding a latent back to pixels, not one network's fingerprint.

The architecture is deliberately generic (stride-2 encoder down by 8, upsample + 3x3 conv
decoder, as in latent-diffusion VAEs); ``upsample`` picks the decoder's upsampling, the
part that leaves the periodic traces detectors key on.

``python -m noisetrace.data.tiny_ae REAL_MANIFEST... --out ae.pt --minutes 20`` trains one
on random crops of the real images; ``python -m noisetrace.data.aligned ... --weights ae.pt``
then makes aligned fakes with it (see ``docs/data.md``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from noisetrace.io import atomic_path

UPSAMPLING = ("nearest", "bilinear", "transposed")


class _Res(nn.Module):
    """x + conv(relu(conv(x))), then ReLU: residual steps train in minutes on a CPU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class TinyAE(nn.Module):
    """(B, 3, H, W) in [0, 1] -> reconstruction, same shape; H, W multiples of 8.

    Encoder: 3x3 conv, then three (stride-2 conv, conv) steps to ``latent`` channels at
    1/8 size. Decoder: the mirror, each step an ``upsample`` (nearest, bilinear or a
    stride-2 transposed convolution) followed by two 3x3 convolutions.
    """

    def __init__(self, width: int = 32, latent: int = 16, upsample: str = "nearest") -> None:
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {UPSAMPLING}, not {upsample!r}")
        self.config = {"width": width, "latent": latent, "upsample": upsample}
        c = width
        enc: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), _Res(c)]
        for _ in range(3):
            enc += [nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(), _Res(c)]
        enc.append(nn.Conv2d(c, latent, 3, padding=1))
        dec: list[nn.Module] = [nn.Conv2d(latent, c, 3, padding=1), nn.ReLU(), _Res(c)]
        for _ in range(3):
            if upsample == "transposed":
                dec += [nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), nn.ReLU()]
            else:
                dec += [nn.Upsample(scale_factor=2, mode=upsample),
                        nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]  # fmt: skip
            dec.append(_Res(c))
        dec.append(nn.Conv2d(c, 3, 3, padding=1))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def save(self, path: str | Path, **meta: object) -> None:
        with atomic_path(Path(path)) as tmp:
            torch.save({"config": self.config, "state": self.state_dict(), "meta": meta}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> TinyAE:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        m = cls(**ck["config"])
        m.load_state_dict(ck["state"], strict=True)
        return m.eval()


def random_crops(
    images: list[np.ndarray], n: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, size, size, 3) uint8 crops, images drawn uniformly, positions uniformly; images
    smaller than ``size`` are skipped."""
    ok = [im for im in images if min(im.shape[:2]) >= size]
    if not ok:
        raise ValueError(f"no image is at least {size} px on its shorter side")
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        im = ok[rng.integers(len(ok))]
        y = rng.integers(im.shape[0] - size + 1)
        x = rng.integers(im.shape[1] - size + 1)
        out[i] = im[y : y + size, x : x + size]
    return out


def fit(
    images: list[np.ndarray],
    model: TinyAE,
    minutes: float = 20.0,
    size: int = 64,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    log_every: int = 100,
    spectral: float = 0.0,
    steps: int | None = None,
) -> dict[str, float]:
    """Train ``model`` to reconstruct random crops (L1 loss, AdamW, cosine decay over the
    time budget, or over ``steps`` optimizer steps when given: the same run on any
    machine). Returns the final loss and the steps taken.

    ``spectral`` > 0 adds that weight times the L1 distance of log Fourier amplitudes: the
    decoder must then put back high-frequency energy it cannot reconstruct exactly, i.e.
    synthesise texture, as decoders trained with adversarial losses do (pixel losses alone
    give blur, a trace no real generator's decoder leaves)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0, step, ema = time.time(), 0, None
    budget = minutes * 60
    model.train()

    def done() -> float:  # share of the budget spent: wall time, or steps when given
        return step / steps if steps else (time.time() - t0) / budget

    while (frac := done()) < 1:
        el = time.time() - t0
        for g in opt.param_groups:  # cosine over the budget, whichever is fixed
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * frac))
        x = torch.from_numpy(random_crops(images, batch, size, rng)).to(dev)
        x = x.permute(0, 3, 1, 2).float() / 255
        rec = model(x)
        loss = (rec - x).abs().mean()
        if spectral > 0:
            amp = [torch.log1p(torch.fft.rfft2(v, norm="ortho").abs()) for v in (rec, x)]
            loss = loss + spectral * (amp[0] - amp[1]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        v = float(loss.detach())
        ema = v if ema is None else 0.98 * ema + 0.02 * v
        step += 1
        if log_every and step % log_every == 0:
            print(f"step {step}  L1 {ema:.4f}  ({el:.0f} s)", flush=True)
    model.eval()
    return {"loss": float(ema or 0.0), "steps": float(step)}


def main(argv: list[str] | None = None) -> int:
    from noisetrace.data.manifest import REAL, read_manifest
    from noisetrace.media.image import load_image

    ap = argparse.ArgumentParser(description="Train a small autoencoder on real images.")
    ap.add_argument("src", nargs="+", help="MANIFEST.tsv files (their real rows are used)")
    ap.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    ap.add_argument("--upsample", default="nearest", choices=UPSAMPLING)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--crop", type=int, default=64, help="training crop side (px)")
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--max-images", type=int, default=600, help="real images kept in memory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spectral", type=float, default=0.0,
                    help="weight of the log-amplitude spectrum loss (texture, not blur)")
    ap.add_argument("--init", help="start from this checkpoint (same architecture)")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    paths = [s.path for m in a.src for s in read_manifest(m) if s.label == REAL]
    rng.shuffle(paths)
    images = []
    for p in paths[: a.max_images]:
        try:
            im = load_image(p)
        except Exception as e:  # noqa: BLE001 - one unreadable file must not stop training
            print(f"skip {p}: {e}", flush=True)
            continue
        s = max(im.shape[:2]) / 1024  # bound memory: very large photos are cropped centrally
        if s > 1:
            h, w = int(im.shape[0] / s), int(im.shape[1] / s)
            y, x = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
            im = im[y : y + h, x : x + w]
        images.append(np.ascontiguousarray(im))
    print(f"{len(images)} real images", flush=True)
    model = TinyAE.load(a.init).train() if a.init else TinyAE(a.width, a.latent, a.upsample)
    stats = fit(images, model, minutes=a.minutes, size=a.crop, seed=a.seed,
                spectral=a.spectral)  # fmt: skip
    model.save(a.out, images=len(images), **stats)
    print(f"saved {a.out}: L1 {stats['loss']:.4f} after {stats['steps']:.0f} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
