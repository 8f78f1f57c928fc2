"""JIN-style steganalysis pre-training for DJIN (SRNet), reproducible on any set of real photos.

DJIN (``djin-srnet-noise-residual-detector.md``) starts from JIN: SRNet first trained to tell
covers from stego images (J-UNIWARD on ImageNet), so that it attends to the noise and not the
content. Those weights are not downloadable here, so this module reproduces the method:

1. **Pairs.** Each real photo gives random crops (never resized: resizing would wash out the
   noise). JPEG and other lossy sources become JPEG covers at a chosen quality; J-UNIWARD
   (``conseal``) changes their luminance DCT coefficients by +-1, and the stego is written with
   the same quantisation tables (``jpeglib``). Lossless sources (PNG/TIFF) stay lossless and
   get a spatial method (HILL or S-UNIWARD), +-1 per pixel in each colour channel. Cover and
   stego are both decoded by the project's one image loader, so the network sees exactly the
   pixels a scan would.
2. **Pair-constrained batches.** :class:`PairBatchSampler` keeps each cover with its own stego
   in the same batch, and both get the same D4 transform: the batch then only differs by the
   embedding, the standard trick that makes steganalysis nets converge.
3. **Curriculum.** Payload from high to low (e.g. 0.4, 0.2, 0.1 bits per non-zero AC
   coefficient / per pixel); each stage starts from the previous one's weights.
4. **Resumable.** ``state.pt`` (weights, optimiser, stage, epoch) after every epoch; pairs are
   cached per stage as ``.npz``, so an interrupted run restarts where it stopped. The epochs
   run in the one training engine (:mod:`noisetrace.train.engine`, :class:`Steganalysis` is
   this task's recipe), so DDP under ``torchrun`` and ``--resume`` work as for
   ``noisetrace train``.
5. **Output.** ``model.safetensors`` + ``config.json`` (a regular noisetrace model directory,
   whose logit means "stego"), which a ``djin`` training run starts from with
   :func:`~noisetrace.train.engine.load_init` (``init: DIR`` in a training config).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from noisetrace.data.manifest import LOSSLESS_FORMATS, REAL, Sample, discover
from noisetrace.errors import InputError, NoisetraceError
from noisetrace.io import atomic_path
from noisetrace.media.formats import IMAGE_EXTENSIONS
from noisetrace.media.image import decode_image, load_image
from noisetrace.train.engine import Context, Epoch, Optim, load_init, run

__all__ = [  # load_init lives in the engine (any model directory can start a run); kept here
    "PairBatchSampler", "PairSet", "StegoConfig", "StegoPairDataset", "Steganalysis",
    "discover_covers", "evaluate_pairs", "jpeg_pair", "load_init", "make_pairs", "pretrain",
    "spatial_pair", "split_covers",
]  # fmt: skip

log = logging.getLogger("noisetrace.stego")

JPEG_METHODS = ("juniward",)
SPATIAL_METHODS = ("hill", "suniward")


def _stego_libs():
    """Import ``conseal`` and ``jpeglib`` with a message that says how to get them."""
    try:
        import conseal
        import jpeglib
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise NoisetraceError(
            f"steganographic embedding needs conseal and jpeglib ({exc}): "
            "pip install 'noisetrace[stego]'"
        ) from None
    return conseal, jpeglib


# -- cover/stego pairs -----------------------------------------------------------------------
@dataclass
class StegoPair:
    """One cover and its stego, both (H, W, 3) uint8 RGB as the image loader decodes them."""

    cover: np.ndarray
    stego: np.ndarray
    method: str
    payload: float
    changes: int  # embedding changes (DCT coefficients or pixel values)
    cover_jpeg: bytes | None = None  # the JPEG files, for JPEG methods
    stego_jpeg: bytes | None = None


def jpeg_pair(
    img: np.ndarray, quality: int, payload: float, seed: int, method: str = "juniward"
) -> StegoPair:
    """Compress ``img`` (H, W, 3) uint8 at ``quality`` into a cover JPEG and embed ``payload``
    bits per non-zero AC luminance coefficient with J-UNIWARD.

    Only the Y channel's quantised DCT coefficients change (by +-1); chroma, quantisation
    tables and all headers are copied from the cover, so the pair differs by the embedding only.
    """
    if method not in JPEG_METHODS:
        raise NoisetraceError(f"unknown JPEG embedding {method!r}; choose from {JPEG_METHODS}")
    cl, jpeglib = _stego_libs()
    img = np.ascontiguousarray(img, dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="noisetrace-stego-") as d:
        c_path, s_path = os.path.join(d, "cover.jpg"), os.path.join(d, "stego.jpg")
        jpeglib.from_spatial(img).write_spatial(c_path, qt=int(quality))
        jpeg = jpeglib.read_dct(c_path)
        qt_y = jpeg.qt[jpeg.quant_tbl_no[0]]
        y0 = jpeg.Y
        if cl.tools.dct.nzAC(y0) == 0:
            raise InputError("this crop is flat (no non-zero AC coefficient): nothing to embed in")
        x0 = cl.tools.decompress.decompress_channel(y0, qt_y)
        y1 = cl.juniward.simulate_single_channel(
            x0=x0, y0=y0, qt=qt_y, alpha=float(payload), seed=int(seed) % (2**31)
        )
        jpeg.Y = y1.astype(y0.dtype)
        jpeg.write_dct(s_path)
        cover_b, stego_b = Path(c_path).read_bytes(), Path(s_path).read_bytes()
    return StegoPair(
        cover=decode_image(cover_b),
        stego=decode_image(stego_b),
        method=method,
        payload=float(payload),
        changes=int(np.count_nonzero(y1 != y0)),
        cover_jpeg=cover_b,
        stego_jpeg=stego_b,
    )


def spatial_pair(img: np.ndarray, payload: float, seed: int, method: str = "hill") -> StegoPair:
    """Embed ``payload`` bits per pixel into each colour channel of a lossless (H, W, 3) uint8
    cover with HILL or S-UNIWARD; every pixel value changes by at most 1 and stays in 0..255."""
    if method not in SPATIAL_METHODS:
        raise NoisetraceError(f"unknown spatial embedding {method!r}; choose {SPATIAL_METHODS}")
    cl, _ = _stego_libs()
    cover = np.ascontiguousarray(img, dtype=np.uint8)
    embed = cl.hill if method == "hill" else cl.suniward
    stego = np.empty_like(cover)
    for c in range(3):
        x0 = cover[..., c]
        x1 = embed.simulate_single_channel(x0=x0, alpha=float(payload), seed=int(seed) + c)
        # conseal adds the change in uint8; undo any wrap-around (255 + 1 -> 0) before clipping
        # (its wet costs normally forbid those changes, this makes the bound hold regardless).
        delta = (np.asarray(x1).astype(np.int16) - x0 + 128) % 256 - 128
        stego[..., c] = np.clip(x0 + np.clip(delta, -1, 1), 0, 255).astype(np.uint8)
    return StegoPair(
        cover=cover,
        stego=stego,
        method=method,
        payload=float(payload),
        changes=int(np.count_nonzero(stego != cover)),
    )


# -- covers ------------------------------------------------------------------------------------
def discover_covers(specs: Sequence[str | Path]) -> list[Sample]:
    """Real images from folders, files or manifests (``../shared/data`` works as is).

    A folder with a manifest or ``real/``/``fake/`` layout contributes its *real* images only
    (steganalysis covers must be natural photos); any other folder is searched for images.
    """
    out: list[Sample] = []
    for spec in specs:
        p = Path(spec)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            out.append(Sample(str(p), REAL, group=str(p), dataset=p.parent.name))
            continue
        try:
            out += [s for s in discover(p) if s.label == REAL]
        except NoisetraceError:
            if not p.is_dir():
                raise NoisetraceError(f"{p}: no such cover image, folder or manifest") from None
            out += [
                Sample(str(f), REAL, group=str(f), dataset=p.name)
                for f in sorted(p.rglob("*"))
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            ]
    uniq = list({s.path: s for s in out}.values())
    if not uniq:
        raise NoisetraceError(
            f"no cover images found in {', '.join(map(str, specs))}: give folders of real photos "
            "(JPEG and/or PNG/TIFF) or manifests with 'real' rows"
        )
    return uniq


def _is_lossless(path: str) -> bool:
    return Path(path).suffix.lower().lstrip(".") in LOSSLESS_FORMATS


def split_covers(
    samples: Sequence[Sample], val_fraction: float, seed: int = 0, max_images: int | None = None
) -> tuple[list[Sample], list[Sample]]:
    """Image-level split, separately for JPEG and lossless covers so both kinds are held out:
    crops of one photo never straddle train and held-out. ``max_images`` keeps a seeded subset
    (in the same JPEG/lossless proportion)."""
    train, val = [], []
    kinds = [[s for s in samples if _is_lossless(s.path) == k] for k in (False, True)]
    total = len(samples)
    for group in kinds:
        if not group:
            continue
        order = sorted(group, key=lambda s: zlib.crc32(f"{seed}:{s.path}".encode()))
        if max_images:
            order = order[: max(1, round(max_images * len(group) / total))]
        n_val = round(len(order) * val_fraction) if len(order) > 1 else 0
        if val_fraction > 0 and len(order) > 1:
            n_val = max(1, n_val)
        val += order[:n_val]
        train += order[n_val:]
    return train, val


def _crop_boxes(h: int, w: int, crop: int, n: int, rng: np.random.Generator) -> list[tuple]:
    if h < crop or w < crop:
        return []
    return [(int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))) for _ in range(n)]


def _pairs_for_image(job: tuple) -> tuple[list[np.ndarray], list[np.ndarray], list[str], str]:
    """Worker: all crops of one cover image -> (covers, stegos, methods, error)."""
    with warnings.catch_warnings():
        # conseal warns when its payload bisection stops after 30 steps before proving a 1e-3
        # relative precision: common on small crops, and the payload is then only approximate.
        warnings.filterwarnings("ignore", "optimization might not have converged", RuntimeWarning)
        return _pairs_for_image_inner(*job)


def _pairs_for_image_inner(
    path: str, lossless: bool, crop: int, n: int, payload: float, quality: int,
    spatial_method: str, seed: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], str]:  # fmt: skip
    try:
        img = load_image(path)
    except InputError as exc:
        return [], [], [], f"{path}: {exc}"
    # Crop positions depend on (seed, image) only, so every payload stage reuses the same covers.
    ident = zlib.crc32(Path(path).name.encode())
    rng = np.random.default_rng([seed, ident])
    covers, stegos, methods = [], [], []
    for k, (y, x) in enumerate(_crop_boxes(*img.shape[:2], crop, n, rng)):
        patch = img[y : y + crop, x : x + crop]
        s = int(np.random.default_rng([seed, ident, k, round(payload * 1e4)]).integers(2**31))
        try:
            pair = (
                spatial_pair(patch, payload, s, spatial_method)
                if lossless
                else jpeg_pair(patch, quality, payload, s)
            )
        except (InputError, ValueError):  # flat crop: nothing to hide in, skip it
            continue
        covers.append(pair.cover)
        stegos.append(pair.stego)
        methods.append(pair.method)
    return covers, stegos, methods, ""


@dataclass
class PairSet:
    """Cached pairs: ``covers``/``stegos`` (N, S, S, 3) uint8, ``image`` (N,) cover index."""

    covers: np.ndarray
    stegos: np.ndarray
    image: np.ndarray
    methods: np.ndarray

    def __len__(self) -> int:
        return len(self.covers)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a handle: no ".npz" added
            np.savez(fh, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> PairSet:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in ("covers", "stegos", "image", "methods")})


def make_pairs(
    samples: Sequence[Sample],
    crop: int,
    crops_per_image: int,
    payload: float,
    quality: int = 75,
    spatial_method: str = "hill",
    seed: int = 0,
    workers: int = 1,
) -> PairSet:
    """Cover/stego pairs from ``crops_per_image`` random crops of each cover image.

    Lossless files (by extension) get ``spatial_method``; everything else J-UNIWARD at
    ``quality``. Images smaller than ``crop`` and flat crops are skipped.
    """
    jobs = [
        (s.path, _is_lossless(s.path), crop, crops_per_image, payload, quality, spatial_method,
         seed)
        for s in samples
    ]  # fmt: skip
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_pairs_for_image, jobs, chunksize=2))
    else:
        results = [_pairs_for_image(j) for j in jobs]
    covers, stegos, image, methods = [], [], [], []
    for i, (c, s, m, err) in enumerate(results):
        if err:
            log.warning("skipping cover %s", err)
        covers += c
        stegos += s
        methods += m
        image += [i] * len(c)
    if not covers:
        raise NoisetraceError(
            f"no cover/stego pairs could be made: every image is unreadable or smaller than the "
            f"{crop}-pixel crop (lower --crop)"
        )
    return PairSet(
        covers=np.stack(covers),
        stegos=np.stack(stegos),
        image=np.asarray(image, dtype=np.int64),
        methods=np.asarray(methods),
    )


# -- pair-constrained data -------------------------------------------------------------------
class StegoPairDataset(Dataset):
    """Item ``2p`` is cover ``p`` (label 0), item ``2p + 1`` its stego (label 1).

    Items are ((3, S, S) float in [0, 1], label float). With ``augment`` both members of a pair
    get the same random D4 transform (drawn from (seed, epoch, p)), so they still differ by the
    embedding only.
    """

    def __init__(self, pairs: PairSet, augment: bool = True, seed: int = 0) -> None:
        self.pairs, self.augment, self.seed, self.epoch = pairs, augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2 * len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, label = divmod(i, 2)
        img = (self.pairs.stegos if label else self.pairs.covers)[p]
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, p))
            img = np.rot90(img, int(rng.integers(4)))
            if rng.random() < 0.5:
                img = img[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        return x, torch.tensor(float(label))


class PairBatchSampler(Sampler[list[int]]):
    """Batches of ``pairs_per_batch`` whole pairs: indices ``2p, 2p + 1`` always together.

    Pairs are shuffled per epoch (``set_epoch``), reproducibly from ``seed``. Under DDP each
    of ``world`` ranks takes every ``world``-th batch from ``rank`` on; the ranks that run
    short repeat a batch from the start, so every rank takes the same number of steps.
    """

    def __init__(
        self, n_pairs: int, pairs_per_batch: int, shuffle: bool = True, seed: int = 0,
        drop_last: bool = False, rank: int = 0, world: int = 1,
    ) -> None:  # fmt: skip
        if pairs_per_batch < 1:
            raise ValueError("pairs_per_batch must be at least 1")
        self.n_pairs, self.pairs_per_batch = n_pairs, pairs_per_batch
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed, drop_last, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def n_batches(self) -> int:
        """Batches of the whole epoch, over all ranks."""
        if self.drop_last:
            return self.n_pairs // self.pairs_per_batch
        return math.ceil(self.n_pairs / self.pairs_per_batch)

    def __len__(self) -> int:
        return math.ceil(self.n_batches() / self.world)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.arange(self.n_pairs)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n_pairs)
        total = self.n_batches()
        for k in range(len(self)):
            b = (self.rank + k * self.world) % total
            chunk = order[b * self.pairs_per_batch : (b + 1) * self.pairs_per_batch]
            yield [int(i) for p in chunk for i in (2 * p, 2 * p + 1)]


# -- pre-training ----------------------------------------------------------------------------
@dataclass
class StegoConfig:
    covers: list[str]
    out: str = "runs/stego-init"
    arch: str = "djin"
    arch_config: dict[str, Any] = field(default_factory=dict)
    quality: int = 75  # JPEG covers
    payloads: list[float] = field(default_factory=lambda: [0.4, 0.2, 0.1])  # high -> low
    spatial_method: str = "hill"  # lossless covers: hill | suniward
    crop: int = 128
    crops_per_image: int = 8
    epochs: list[int] = field(default_factory=lambda: [4])  # per stage (last value repeats)
    batch_pairs: int = 16  # pairs per batch (batch size = 2x)
    lr: float = 1e-3
    weight_decay: float = 2e-4
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    workers: int = 1  # processes for embedding
    max_images: int | None = None
    resume: bool = False

    def stage_epochs(self, stage: int) -> int:
        return int(self.epochs[min(stage, len(self.epochs) - 1)])

    def validate(self) -> None:
        if not self.payloads or any(not 0 < p <= 2 for p in self.payloads):
            raise NoisetraceError("payloads must be in (0, 2], e.g. 0.4,0.2,0.1")
        if list(self.payloads) != sorted(self.payloads, reverse=True):
            raise NoisetraceError("the curriculum goes from high to low payload: sort --payloads")
        if self.crop % 16 or self.crop < 16:
            raise NoisetraceError("--crop must be a multiple of 16 (JPEG blocks with 4:2:0 chroma)")
        if not 1 <= self.quality <= 100:
            raise NoisetraceError("--quality must be between 1 and 100")
        if self.spatial_method not in SPATIAL_METHODS:
            raise NoisetraceError(f"--spatial must be one of {SPATIAL_METHODS}")


def _batches(
    pairs: PairSet, batch_pairs: int, seed: int, epoch: int, train: bool, rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    ds = StegoPairDataset(pairs, augment=train, seed=seed)
    ds.set_epoch(epoch)
    sampler = PairBatchSampler(len(pairs), batch_pairs, shuffle=train, seed=seed,
                               rank=rank, world=world)  # fmt: skip
    sampler.set_epoch(epoch)
    for idx in sampler:
        xs, ys = zip(*(ds[i] for i in idx), strict=True)
        yield torch.stack(xs), torch.stack(ys)


class _Sized:
    """An iterable of a known number of batches (for the progress bar)."""

    def __init__(self, it: Iterator, n: int) -> None:
        self.it, self.n = it, n

    def __iter__(self) -> Iterator:
        return self.it

    def __len__(self) -> int:
        return self.n


@torch.no_grad()
def evaluate_pairs(
    model: nn.Module, pairs: PairSet, device: torch.device, batch_pairs: int = 16
) -> dict[str, float]:
    """Held-out steganalysis metrics: accuracy at logit 0, pair accuracy (stego logit above its
    cover's) and mean BCE loss, overall and per embedding method."""
    model.eval()
    logits = []
    for x, _ in _batches(pairs, batch_pairs, 0, 0, train=False):
        logits.append(model(x.to(device)).float().cpu())
    z = torch.cat(logits).view(-1, 2)  # (N, [cover, stego])
    y = torch.tensor([0.0, 1.0]).expand_as(z)
    out = {
        "acc": float(((z > 0).float() == y).float().mean()),
        "pair_acc": float((z[:, 1] > z[:, 0]).float().mean()),
        "loss": float(nn.functional.binary_cross_entropy_with_logits(z, y)),
    }
    for m in sorted(set(pairs.methods.tolist())):
        sel = torch.from_numpy(pairs.methods == m)
        out[f"acc_{m}"] = float(((z[sel] > 0).float() == y[sel]).float().mean())
    return out


def _stage_pairs(cfg: StegoConfig, out: Path, name: str, samples, payload: float) -> PairSet:
    """Pairs for one split and payload, generated once and cached in ``out/pairs``."""
    key = f"{name}_p{payload:g}_q{cfg.quality}_{cfg.spatial_method}_c{cfg.crop}"
    path = out / "pairs" / f"{key}x{cfg.crops_per_image}_s{cfg.seed}_n{len(samples)}.npz"
    if path.is_file():
        return PairSet.load(path)
    t0 = time.perf_counter()
    pairs = make_pairs(
        samples, cfg.crop, cfg.crops_per_image, payload, cfg.quality, cfg.spatial_method,
        cfg.seed, cfg.workers,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs.save(path)
    log.info("%s: %d pairs at payload %g in %.0fs", name, len(pairs), payload,
             time.perf_counter() - t0)  # fmt: skip
    return pairs


# Settings a resumed run must share with the run it continues (they define the pairs).
_RESUME_FIXED = ("arch", "arch_config", "payloads", "crop", "quality", "spatial_method")


class Steganalysis:
    """``noisetrace pretrain-stego``'s task for :func:`noisetrace.train.engine.run`: cover vs
    stego on pair-constrained batches, one stage per payload (high to low), each with a fresh
    Adamax and cosine decay. Every epoch is validated on held-out pairs; the last weights (not
    a best epoch) are the output, as in the SRNet curriculum."""

    checkpoint_name = "state.pt"
    history_name = "history.csv"
    key_names = ("stage", "epoch")
    amp = "off"  # a +-1 embedding is at the edge of bf16's resolution: train in float32
    progress = True
    min_lr = 0.0
    early_stopping = 0
    time_budget_s = 0.0

    def __init__(self, cfg: StegoConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device, self.seed, self.resume = cfg.device, cfg.seed, cfg.resume
        self.cfg_json = json.dumps(dataclasses.asdict(cfg), indent=2)
        self._pairs: dict[tuple[str, int], PairSet] = {}

    def setup(self, ctx: Context) -> nn.Module:
        from noisetrace import models

        self.ctx = ctx
        samples = discover_covers(self.cfg.covers)
        self.train_s, self.val_s = split_covers(
            samples, self.cfg.val_fraction, self.cfg.seed, self.cfg.max_images
        )
        log.info("covers: %d train images, %d held-out images", len(self.train_s),
                 len(self.val_s))  # fmt: skip
        if ctx.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        return models.create(self.cfg.arch, **self.cfg.arch_config).to(ctx.device)

    def resumed(self, state: dict[str, Any] | None) -> None:
        """Refuse to overwrite a run without ``--resume``, or to continue one whose pairs
        were made with other settings."""
        out = self.out
        if state is None and (out / self.checkpoint_name).is_file():
            raise NoisetraceError(
                f"{out} holds an unfinished or finished pre-training run: add --resume to "
                "continue it, or choose another --out"
            )
        if state is not None:
            old, now = json.loads(state["config"]), dataclasses.asdict(self.cfg)
            for k in _RESUME_FIXED:
                if old[k] != now[k]:
                    raise NoisetraceError(
                        f"--resume: {k} was {old[k]!r} in {out}, now {now[k]!r}; "
                        "use the same settings or another --out"
                    )
        if self.ctx.rank == 0:
            (out / "pretrain_config.json").write_text(self.cfg_json)

    def extra_state(self) -> dict[str, Any]:
        return {"config": self.cfg_json}

    def schedule(self) -> list[Epoch]:
        return [
            Epoch(key=(s, e), phase="train", ranked=False, title=f"payload {p:g} epoch {e}",
                  row={"stage": s, "payload": p, "epoch": e})
            for s, p in enumerate(self.cfg.payloads)
            for e in range(self.cfg.stage_epochs(s))
        ]  # fmt: skip

    def optimizer(self, epoch: Epoch, model: nn.Module) -> Optim:
        # Fresh per stage (the SRNet curriculum re-trains from the previous stage's weights),
        # cosine decay within the stage.
        n_epochs = self.cfg.stage_epochs(epoch.key[0])
        opt = torch.optim.Adamax(model.parameters(), lr=self.cfg.lr,
                                 weight_decay=self.cfg.weight_decay)  # fmt: skip
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_epochs,
                                                           eta_min=self.cfg.lr * 0.05)  # fmt: skip
        return Optim(opt, sched)

    def trainable(self, epoch: Epoch, model: nn.Module) -> tuple[nn.Module, bool]:
        return model, False

    def train_pairs(self, stage: int) -> PairSet:
        """The stage's training pairs: made once by rank 0, read from its cache by the rest."""
        if ("train", stage) not in self._pairs:
            self._pairs = {}  # one stage in memory at a time
            payload = self.cfg.payloads[stage]
            self._pairs["train", stage] = self.ctx.rank0_first(
                lambda: _stage_pairs(self.cfg, self.out, "train", self.train_s, payload)
            )
        return self._pairs["train", stage]

    def val_pairs(self, stage: int) -> PairSet:
        """The stage's held-out pairs (rank 0 only: it alone validates)."""
        if ("val", stage) not in self._pairs:
            payload = self.cfg.payloads[stage]
            self._pairs["val", stage] = _stage_pairs(self.cfg, self.out, "val", self.val_s,
                                                     payload)  # fmt: skip
        return self._pairs["val", stage]

    def batches(self, epoch: Epoch, model: nn.Module, ctx: Context) -> _Sized:
        stage, e = epoch.key
        tr = self.train_pairs(stage)
        n = PairBatchSampler(len(tr), self.cfg.batch_pairs, rank=ctx.rank, world=ctx.world)
        it = _batches(tr, self.cfg.batch_pairs, self.cfg.seed + stage, e, train=True,
                      rank=ctx.rank, world=ctx.world)  # fmt: skip
        return _Sized(it, len(n))

    def forward(self, epoch: Epoch, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net(x)

    def loss(self, epoch: Epoch, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(z, y)

    def validate(self, epoch: Epoch, model: nn.Module) -> tuple[dict[str, Any], float]:
        if not self.val_s:
            return {}, math.nan
        metrics = evaluate_pairs(model, self.val_pairs(epoch.key[0]), self.ctx.device)
        return {f"val_{k}": v for k, v in metrics.items()}, metrics["pair_acc"]

    def keep_best(self, model: nn.Module) -> None:
        """Never called: no epoch is ranked (the curriculum's last weights are the output)."""

    def describe(self, row: dict[str, Any]) -> str:
        shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
        return f"stage {row['stage']} (payload {row['payload']:g}) epoch {row['epoch']}: {shown}"

    def finish(
        self, model: nn.Module, ctx: Context, best: float, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if ctx.rank != 0:
            return {}
        from noisetrace.detector import Detector, DetectorConfig

        cfg, out = self.cfg, self.out
        final = [r for r in history if r["stage"] == len(cfg.payloads) - 1]
        summary = {
            "arch": cfg.arch,
            "logit": "stego (cover/stego steganalysis), not fake",
            "payloads": cfg.payloads,
            "quality": cfg.quality,
            "spatial_method": cfg.spatial_method,
            "crop": cfg.crop,
            "train_images": len(self.train_s),
            "heldout_images": len(self.val_s),
            "final": final[-1] if final else None,
            "per_stage": {
                str(p): next((r for r in reversed(history) if r["stage"] == s), None)
                for s, p in enumerate(cfg.payloads)
            },
        }
        det_cfg = DetectorConfig.for_model(
            model, f"{cfg.arch}-stego-init", cfg.arch, arch_config=cfg.arch_config,
            extra={"kind": "steganalysis-init", "pretrain": summary},
        )  # fmt: skip
        Detector(model, det_cfg, device=str(ctx.device), backend="torch").save(out)
        (out / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("initialisation written to %s (start a djin run from it with init: %s)", out,
                 out)  # fmt: skip
        return summary


def pretrain(cfg: StegoConfig) -> dict[str, Any]:
    """Run the payload curriculum; write ``out/model.safetensors`` + ``config.json``.

    Returns the summary also written to ``out/pretrain.json`` (per-stage held-out metrics).
    """
    cfg.validate()
    return run(Steganalysis(cfg))
