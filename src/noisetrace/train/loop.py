"""``noisetrace train``: the classification recipe of the one training engine
(:mod:`noisetrace.train.engine`), from a YAML recipe.

Strategies are chosen by the data a model takes (``task``, from its ``pretrained_cfg``):

* ``image``: augmented random patches of whole images or face crops (DJIN's augmentation,
  :class:`~noisetrace.data.augment.Augment`); validated at full resolution by
  :class:`~noisetrace.detector.Detector`, exactly as it will be used.
* ``sequence``: windows of ``T`` consecutive crops of one face track -> (B, T, 3, S, S).
* ``pair``: [face, background] crops of one frame -> (B, 2, 3, S, S).

and hooks set by the recipe: a triplet phase before classification (CFFN), warm-up epochs
with a frozen backbone (Xception), learning-rate schedules per epoch or per step, stopping
when ReduceLROnPlateau drives the rate below ``min_lr`` (DJIN), on no improvement or once
``time_budget_s`` seconds of epochs are spent, class weighting by loss or by sampler.
Validation keeps the best model by matched-format AUC; ``last.pt`` (atomic) lets
``--resume`` continue an interrupted run with the same result.

The engine runs it on CPU or CUDA (bf16 autocast there), and under
``torchrun --nproc_per_node=N`` with DDP (gloo on CPU, nccl on GPU); the recipe gives each
rank its share through a distributed (or balanced) sampler; rank 0 validates and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from noisetrace import models
from noisetrace.data.augment import Augment, center_crop, matched_format
from noisetrace.data.families import family_of
from noisetrace.data.manifest import Sample, discover, split
from noisetrace.detector import Detector, DetectorConfig
from noisetrace.metrics import (
    binary_metrics,
    expected_calibration_error,
    fit_platt,
    threshold_at_fpr,
)
from noisetrace.runtime import Preprocess
from noisetrace.train.card import write_model_card
from noisetrace.train.dataset import (
    Group,
    GroupDataset,
    PatchDataset,
    build_pairs,
    build_sequences,
    crop_meta,
    fit_input,
    load_samples,
)
from noisetrace.train.engine import DUMP_ENV, Context, Epoch, Optim, load_init, run

__all__ = ["DUMP_ENV", "Classification", "TrainConfig", "finalize", "train"]  # DUMP_ENV: engine's

log = logging.getLogger("noisetrace.train")

TASKS = ("auto", "image", "sequence", "pair")
SCHEDULERS = ("none", "plateau", "cosine", "step", "multistep")
BALANCE = ("pos_weight", "balanced", "sampler", "none")


@dataclass
class TrainConfig:
    """A training recipe (configs/*.yaml); every field can be overridden on the command line.

    ``epochs`` counts every epoch, including ``warmup_epochs`` and ``triplet_epochs``.
    """

    data: list[str]
    out: str = "runs/model"
    name: str = "custom"
    arch: str = "srm-cnn"
    arch_config: dict[str, Any] = field(default_factory=dict)
    task: str = "auto"  # auto (from the model) | image | sequence | pair
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamax | adamw | sgd
    scheduler: str = "none"  # none | plateau | cosine | step | multistep
    min_lr: float = 0.0  # stop once the learning rate falls below this (DJIN: 2e-7)
    final_lr: float = 0.0  # cosine: the rate it ends at
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    step_every: int = 2000  # step: optimizer steps between decays
    step_gamma: float = 0.8  # step: rate multiplier per decay (Xception: -20%)
    milestones: list[int] = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    loss: str = "bce"  # bce | ce (two-class softmax CE; equal to BCE on the fake logit)
    class_balance: str = "pos_weight"  # pos_weight | balanced | sampler | none
    warmup_epochs: int = 0  # first epochs train with the modules in `freeze` frozen
    freeze: list[str] = field(default_factory=lambda: ["backbone"])
    triplet_epochs: int = 0  # first epochs train model.embed with a batch-all triplet loss
    triplet_margin: float = 0.8
    early_stopping: int = 0  # stop after this many epochs without a better val AUC (0: off)
    # Stop after the epoch during which the epochs' wall-clock seconds (training + validation,
    # resumed epochs included) reached this; best model and calibration as usual (0: off).
    time_budget_s: float = 0.0
    sequence_length: int | None = None  # sequence task: frames per item (None: the model's)
    patch: int = 128
    crops_per_image: int = 4
    augment: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.2
    val_max_side: int = 1024  # validation views are centre crops at most this big (no resize)
    val_quality: int = 90
    # The decision threshold holds at most this share of every kind of validation real
    # (20 or more images) called fake, never below 0.5, as `noisetrace fit` sets it; None: 0.5.
    target_fpr: float | None = 0.03
    holdout: list[str] = field(default_factory=list)  # regexes on generator: held-out test
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 autocast on CUDA) | bf16 | off
    workers: int = 0
    resume: bool = False
    max_images: int | None = None
    init: str | None = None  # model directory to start from (e.g. `noisetrace pretrain-stego`)
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        import yaml

        raw: dict[str, Any] = {}
        if args.config:
            raw = yaml.safe_load(Path(args.config).read_text()) or {}
        for f in dataclasses.fields(cls):
            v = getattr(args, f.name, None)
            if v not in (None, [], False):
                raw[f.name] = v
        for item in args.set or []:
            k, _, v = item.partition("=")
            raw[k] = yaml.safe_load(v)
        if not raw.get("data"):
            raise SystemExit("noisetrace train: give --data (folders or manifests) or a --config")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SystemExit(f"noisetrace train: unknown config keys {sorted(unknown)}")
        cfg = cls(**raw)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Reject settings the loop cannot honour, with what to use instead."""
        for name, value, allowed in (
            ("task", self.task, TASKS),
            ("scheduler", self.scheduler, SCHEDULERS),
            ("class_balance", self.class_balance, BALANCE),
            ("loss", self.loss, ("bce", "ce")),
            ("amp", self.amp, ("auto", "bf16", "off")),
        ):
            if value not in allowed:
                raise SystemExit(f"noisetrace train: {name} {value!r}: use one of {allowed}")
        if self.time_budget_s < 0:
            raise SystemExit("noisetrace train: time_budget_s must be 0 (no limit) or more")
        if self.triplet_epochs >= self.epochs:
            raise SystemExit(
                "noisetrace train: triplet_epochs must leave classifier epochs "
                f"(epochs {self.epochs} counts both phases)"
            )


# -- helpers -------------------------------------------------------------------------------
def _make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    kind = cfg.optimizer.lower()
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "adamax":
        return torch.optim.Adamax(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise SystemExit(
        f"noisetrace train: unknown optimizer {cfg.optimizer!r}: use adam, adamax, adamw or sgd"
    )


def _make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    S = torch.optim.lr_scheduler
    if cfg.scheduler == "plateau":
        return S.ReduceLROnPlateau(
            opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "cosine":
        return S.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs), eta_min=cfg.final_lr)
    if cfg.scheduler == "step":  # stepped after every optimizer step, not every epoch
        return S.StepLR(opt, step_size=max(1, cfg.step_every), gamma=cfg.step_gamma)
    if cfg.scheduler == "multistep":
        return S.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return None


def resolve_task(cfg: TrainConfig, model: torch.nn.Module) -> str:
    """``auto`` -> what the model's ``pretrained_cfg`` says it takes."""
    if cfg.task != "auto":
        return cfg.task
    pc = model.pretrained_cfg
    if pc.get("input") == "face_background":
        return "pair"
    return "sequence" if pc.get("sequence_length") else "image"


def batch_all_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of the positive terms max(0, |a-p|^2 - |a-n|^2 + margin) over all valid triplets
    of the batch (anchor and positive of one class, negative of the other; CFFN's phase 1).

    emb: (B, D) embeddings; labels: (B,) 0/1. Zero (with a graph) when no triplet exists.
    """
    d = (emb[:, None, :] - emb[None, :, :]).pow(2).sum(-1)  # (B, B) squared distances
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]  # (a, p, n)
    t = (d[:, :, None] - d[:, None, :] + margin).clamp_min(0)[valid]
    n_pos = (t > 1e-12).sum().clamp_min(1)
    return t.sum() / n_pos


class BalancedSampler(Sampler[int]):
    """Draws ``len(labels)`` indices per epoch with replacement, each class equally likely;
    the same draw on every rank (seeded by epoch), each rank taking its strided share."""

    def __init__(self, labels: list[int], seed: int, rank: int = 0, world: int = 1) -> None:
        counts = np.bincount(np.asarray(labels), minlength=2).astype(np.float64)
        w = 1.0 / np.maximum(counts, 1)
        self.weights = torch.tensor(w[np.asarray(labels)], dtype=torch.double)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0
        self.n = int(math.ceil(len(labels) / world))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        idx = torch.multinomial(self.weights, self.n * self.world, True, generator=g)
        return iter(idx[self.rank :: self.world].tolist())


class _Embed(torch.nn.Module):
    """``forward = model.embed``, so DDP can wrap the triplet phase."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def _phase(cfg: TrainConfig, epoch: int) -> tuple[str, bool]:
    """(``triplet`` | ``classify``, backbone frozen?) for this epoch."""
    return ("triplet" if epoch < cfg.triplet_epochs else "classify",
            epoch < cfg.warmup_epochs and bool(cfg.freeze))  # fmt: skip


def _frozen(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# -- validation ------------------------------------------------------------------------------
def validation_views(
    samples: list[Sample], images: list[np.ndarray], cfg: TrainConfig
) -> dict[str, list[np.ndarray]]:
    """Deterministic validation inputs: ``raw`` (as stored) and ``matched`` (both classes
    JPEG-encoded alike after a camera-like pass for lossless files)."""
    raw, matched = [], []
    for s, img in zip(samples, images, strict=True):
        h, w = img.shape[:2]
        if max(h, w) > cfg.val_max_side:
            img = (
                center_crop(img, min(cfg.val_max_side, h, w))
                if min(h, w) >= cfg.val_max_side
                else img[: cfg.val_max_side, : cfg.val_max_side]
            )
        raw.append(img)
        matched.append(matched_format(img, s.lossless, quality=cfg.val_quality))
    return {"raw": raw, "matched": matched}


def group_views(
    groups: list[Group],
    images: dict[str, np.ndarray],
    size: tuple[int, int] | None,
    cfg: TrainConfig,
) -> dict[str, list[np.ndarray]]:
    """Validation inputs of groups: (K, H, W, 3) uint8 stacks, ``raw`` and ``matched``."""
    raw, matched = [], []
    for g in groups:
        crops = [fit_input(images[s.path], size, cfg.patch) for s in g.members]
        raw.append(np.stack(crops))
        matched.append(np.stack([
            matched_format(c, s.lossless, quality=cfg.val_quality)
            for c, s in zip(crops, g.members, strict=True)
        ]))  # fmt: skip
    return {"raw": raw, "matched": matched}


@torch.inference_mode()
def _group_logits(det: Detector, items: list[np.ndarray], batch: int = 8) -> np.ndarray:
    """Fake logits of (K, H, W, 3) uint8 stacks -> model input (B, K, 3, H, W)."""
    pre = Preprocess(det.model.pretrained_cfg.get("normalize", "unit")).to(det.device)
    out = []
    for i in range(0, len(items), batch):
        x = torch.from_numpy(np.stack(items[i : i + batch])).to(det.device)  # (B, K, H, W, 3)
        b, k = x.shape[:2]
        xx = pre(x.flatten(0, 1)).unflatten(0, (b, k))
        out.append(det.model(xx).float().cpu().numpy().reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def score_views(det: Detector, views: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Logits of every view: images (H, W, 3) through ``Detector.logit`` (full resolution,
    tiled), groups (K, H, W, 3) through the model in batches."""
    det.model.eval()
    out = {}
    for k, v in views.items():
        if v and v[0].ndim == 4:
            out[k] = _group_logits(det, v)
        else:
            out[k] = np.array([det.logit(im) for im in v])
    return out


# -- data ------------------------------------------------------------------------------------
@dataclass
class _Data:
    task: str
    train_ds: PatchDataset | GroupDataset
    val_views: dict[str, list[np.ndarray]]
    val_labels: np.ndarray
    val_samples: list[Sample]  # one per validation item (a group's first crop)
    held: list[Sample]
    train_labels: list[int]
    info: dict[str, Any]


def split_pool(pool: list[Sample], cfg: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """A prepared cache's own train/val split when every sample has one, else a stratified
    group-preserving split (``noisetrace.data.manifest.split``)."""
    if pool and all(s.split in ("train", "val", "test") for s in pool):
        tr = [s for s in pool if s.split == "train"]
        va = [s for s in pool if s.split == "val"]
        if tr and va:
            return tr, va
    return split(pool, cfg.val_fraction, cfg.seed)


def _load_data(cfg: TrainConfig, task: str, model: torch.nn.Module, rank: int) -> _Data:
    samples: list[Sample] = []
    meta: dict[str, dict[str, str]] = {}
    for spec in cfg.data:
        p = Path(spec)
        if p.is_dir() and (p / "manifest.tsv").is_file() and not (p / "MANIFEST.tsv").is_file():
            spec = str(p / "manifest.tsv")  # a `noisetrace prepare` cache folder
        samples += discover(spec)
        meta.update(crop_meta(spec))
    if task != "pair":  # background squares only make sense as the pair's second half
        samples = [s for s in samples if meta.get(s.path, {}).get("kind") != "background"]
    if cfg.max_images:
        random.Random(cfg.seed).shuffle(samples)
        samples = samples[: cfg.max_images]
    pats = [re.compile(p) for p in cfg.holdout]
    held = [s for s in samples if any(p.search(s.generator) for p in pats)]
    held_set = set(held)
    pool = [s for s in samples if s not in held_set]
    tr_s, va_s = split_pool(pool, cfg)
    # A network with a fixed input (MesoNet 256, CFFN 224) trains on patches of that size,
    # the size scanning resizes its inputs to; `patch` applies to fully convolutional ones.
    fixed = model.pretrained_cfg.get("input_size")
    patch = int(fixed[0]) if fixed else cfg.patch
    if fixed and patch != cfg.patch:
        log.info("%s takes %dx%d inputs: training patches are %d px (not --patch %d)",
                 cfg.arch, fixed[0], fixed[1], patch, cfg.patch)  # fmt: skip
    aug = Augment(size=patch, **cfg.augment)
    info: dict[str, Any] = {"held": len(held)}
    if task == "image":
        tr_s, tr_img, tr_fail = load_samples(tr_s)
        va_s, va_img, va_fail = load_samples(va_s)
        ds: PatchDataset | GroupDataset = PatchDataset(
            tr_s, tr_img, aug, cfg.crops_per_image, cfg.seed
        )
        views = validation_views(va_s, va_img, cfg) if rank == 0 else {}
        info.update(train=len(tr_s), val=len(va_s), unreadable=len(tr_fail + va_fail))
        return _Data(task, ds, views, np.array([s.label for s in va_s]), va_s, held,
                     [s.label for s in tr_s], info)  # fmt: skip
    if not meta:
        raise SystemExit(
            f"noisetrace train: task {task!r} groups crops by video, frame and track; train "
            "on a `noisetrace prepare` manifest (--background for face/background pairs)"
        )
    length = cfg.sequence_length or model.pretrained_cfg.get("sequence_length") or 5

    def groups_of(ss: list[Sample]) -> tuple[list[Group], int]:
        return build_sequences(ss, meta, length) if task == "sequence" else build_pairs(ss, meta)

    tr_g, tr_left = groups_of(tr_s)
    va_g, va_left = groups_of(va_s)
    need = {s.path for g in tr_g + va_g for s in g.members}
    kept, imgs, failed = load_samples([s for s in tr_s + va_s if s.path in need])
    images = dict(zip([s.path for s in kept], imgs, strict=True))
    tr_g = [g for g in tr_g if all(s.path in images for s in g.members)]
    va_g = [g for g in va_g if all(s.path in images for s in g.members)]
    size = model.pretrained_cfg.get("input_size")
    ds = GroupDataset(tr_g, images, aug, cfg.crops_per_image, cfg.seed)
    views = group_views(va_g, images, size, cfg) if rank == 0 else {}
    info.update(train=len(tr_g), val=len(va_g), unreadable=len(failed),
                unused_crops=tr_left + va_left, unit="sequences" if task == "sequence"
                else "pairs")  # fmt: skip
    return _Data(task, ds, views, np.array([g.label for g in va_g]),
                 [g.members[0] for g in va_g], held, [g.label for g in tr_g], info)  # fmt: skip


# -- the classification recipe -----------------------------------------------------------
class Classification:
    """``noisetrace train``'s task for :func:`noisetrace.train.engine.run`: real/fake
    classification of images, face-track sequences or face/background pairs, with the
    recipe's phases (CFFN's triplet epochs train ``model.embed``; warm-up epochs freeze
    ``cfg.freeze``). Ranked by matched-format validation AUC; the best epoch is saved to
    ``OUT/best`` and calibrated by :func:`finalize`."""

    checkpoint_name = "last.pt"
    history_name = "metrics.csv"
    key_names = ("epoch",)

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device, self.seed, self.resume = cfg.device, cfg.seed, cfg.resume
        self.amp, self.progress = cfg.amp, cfg.progress
        self.min_lr, self.early_stopping = cfg.min_lr, cfg.early_stopping
        self.time_budget_s = float(cfg.time_budget_s)

    def setup(self, ctx: Context) -> torch.nn.Module:
        cfg, device = self.cfg, ctx.device
        self.ctx = ctx
        if ctx.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(
                json.dumps(dataclasses.asdict(cfg), indent=2)
            )
        model = models.create(cfg.arch, **cfg.arch_config).to(device)
        if cfg.init:  # safetensors only; a resumed run's last.pt overrides it
            load_init(model, cfg.init)
        task = resolve_task(cfg, model)
        if cfg.triplet_epochs and not hasattr(model, "embed"):
            raise SystemExit(
                f"noisetrace train: triplet_epochs needs a model with embed(); "
                f"{cfg.arch!r} has none (use cffn, or set triplet_epochs: 0)"
            )
        self.data = data = _load_data(cfg, task, model, ctx.rank)
        if len(data.train_ds) == 0 or len(set(data.train_labels)) < 2:
            raise SystemExit(
                "noisetrace train: the training split needs both real and fake "
                f"{data.info.get('unit', 'images')}"
            )
        log.info("task %s: %s", task, json.dumps(data.info))
        self.imagenet = model.pretrained_cfg.get("normalize", "unit") == "imagenet"
        self.pre_mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(3, 1, 1)
        self.pre_std = torch.tensor((0.229, 0.224, 0.225), device=device).view(3, 1, 1)

        ds = data.train_ds
        self.sampler: Sampler | None
        if cfg.class_balance == "sampler":
            self.sampler = BalancedSampler(ds.labels, cfg.seed, ctx.rank, ctx.world)
        elif ctx.distributed:
            from torch.utils.data import DistributedSampler

            self.sampler = DistributedSampler(
                ds, num_replicas=ctx.world, rank=ctx.rank, seed=cfg.seed
            )
        else:
            self.sampler = None
        per_rank = len(ds) if self.sampler is None else len(self.sampler)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.loader = DataLoader(
            ds, batch_size=cfg.batch_size, shuffle=self.sampler is None, sampler=self.sampler,
            num_workers=cfg.workers, generator=self.generator,
            drop_last=per_rank > cfg.batch_size,
        )  # fmt: skip
        # Class imbalance: weights from the training counts (a balanced sampler needs none).
        n, n_fake = len(data.train_labels), sum(data.train_labels)
        self.pos_weight = torch.tensor((n - n_fake) / max(1, n_fake), device=device)
        self.class_w = torch.tensor(
            [n / (2 * max(1, n - n_fake)), n / (2 * max(1, n_fake))], device=device
        )
        self.det_cfg = DetectorConfig.for_model(model, cfg.name, cfg.arch,
                                                arch_config=cfg.arch_config)  # fmt: skip
        self.det: Detector | None = None
        return model

    def resumed(self, state: dict[str, Any] | None) -> None:
        """Any ``last.pt`` in ``--out`` continues: it was written by this run's recipe."""

    def extra_state(self) -> dict[str, Any]:
        return {}

    def schedule(self) -> list[Epoch]:
        out = []
        for e in range(self.cfg.epochs):
            phase, frozen = _phase(self.cfg, e)
            out.append(Epoch(
                key=(e,), phase=(phase, frozen), ranked=phase == "classify",
                title=f"epoch {e} {phase}",
                row={"epoch": e, "phase": phase + (" (frozen)" if frozen else "")},
            ))  # fmt: skip
        return out

    def optimizer(self, epoch: Epoch, model: torch.nn.Module) -> Optim:
        opt = _make_optimizer(self.cfg, model.parameters())
        # "step" is stepped after every optimizer step, the others once per epoch.
        return Optim(opt, _make_scheduler(self.cfg, opt), per_step=self.cfg.scheduler == "step")

    def trainable(self, epoch: Epoch, model: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
        phase, frozen = epoch.phase
        for name, p in model.named_parameters():
            p.requires_grad_(not (frozen and _frozen(name, self.cfg.freeze)))
        # The triplet phase leaves the classifier without gradients: DDP must allow that.
        return (_Embed(model) if phase == "triplet" else model), phase == "triplet"

    def batches(self, epoch: Epoch, model: torch.nn.Module, ctx: Context) -> DataLoader:
        e = epoch.key[-1]
        self.data.train_ds.set_epoch(e)
        self.generator.manual_seed(self.cfg.seed * 1000 + e)  # per-epoch order: exact resume
        if self.sampler is not None:
            self.sampler.set_epoch(e)  # type: ignore[attr-defined]
        if epoch.phase[1]:  # frozen layers keep their statistics too (BN running means)
            for name, mod in model.named_modules():
                if name and _frozen(name, self.cfg.freeze):
                    mod.eval()
        return self.loader

    def forward(self, epoch: Epoch, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet:
            x = (x - self.pre_mean) / self.pre_std
        return net(x)

    def loss(self, epoch: Epoch, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg, bce = self.cfg, torch.nn.functional.binary_cross_entropy_with_logits
        if epoch.phase[0] == "triplet":
            return batch_all_triplet_loss(z, y, cfg.triplet_margin)
        # Two-class cross-entropy on [0, z] equals BCE on z = logit_fake - logit_real.
        if cfg.class_balance == "pos_weight":
            return bce(z, y, pos_weight=self.pos_weight)
        w = self.class_w[y.long()] if cfg.class_balance == "balanced" else None
        return bce(z, y, weight=w)

    def validate(self, epoch: Epoch, model: torch.nn.Module) -> tuple[dict[str, Any], float]:
        if epoch.phase[0] != "classify":  # the triplet phase has no trained head yet
            return {}, math.nan
        self.det = Detector(model, self.det_cfg, device=str(self.ctx.device))
        row: dict[str, Any] = {}
        for view, lv in score_views(self.det, self.data.val_views).items():
            m = binary_metrics(self.data.val_labels, lv, threshold=0.0)
            row[f"val_auc_{view}"] = m["auc"]
            row[f"val_acc_{view}"] = m["accuracy"]
        return row, row["val_auc_matched"]

    def keep_best(self, model: torch.nn.Module) -> None:
        assert self.det is not None  # validate() built it for this epoch's model
        self.det.save(self.out / "best")

    def describe(self, row: dict[str, Any]) -> str:
        return (
            f"epoch {row['epoch']} {row['phase']}  loss {row['train_loss']:.4f}  val AUC "
            f"matched {row.get('val_auc_matched', math.nan):.4f} "
            f"raw {row.get('val_auc_raw', math.nan):.4f}  lr {row['lr']:.3g}  "
            f"({row['seconds']:.0f}s)"
        )

    def finish(
        self, model: torch.nn.Module, ctx: Context, best: float, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if ctx.rank != 0:
            return {"best_val_auc_matched": best}
        d = self.data
        return finalize(self.cfg, self.out, d.val_samples, d.val_views, d.held)


def train(
    cfg: TrainConfig, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train ``cfg`` and return the model card of the best model (rank 0; other ranks get
    ``{"best_val_auc_matched": ...}``). ``on_epoch_end(epoch, row)`` runs after each epoch's
    checkpoint is written (an exception there leaves a resumable run)."""
    cfg.check()
    return run(Classification(cfg), on_epoch_end)


_SUMMARY = {
    "image": "Scores the probability that an image (or face crop) is AI-generated or "
             "manipulated, from its noise residual.",
    "sequence": "Scores the probability that a sequence of face crops from one video track "
                "is a deepfake.",
    "pair": "Scores the probability that a face is swapped, from how its noise compares "
            "with the background's.",
}  # fmt: skip


def finalize(
    cfg: TrainConfig,
    out: Path,
    va_s: list[Sample],
    val_views: dict[str, list[np.ndarray]],
    held: list[Sample],
) -> dict[str, Any]:
    """Calibrate the best model on validation (matched) logits and write its model card.

    ``va_s``: one sample per validation item (its labels and datasets); ``held``: held-out
    generators' samples (scored for the card when the task is ``image``)."""
    det = Detector.load(out / "best", device=cfg.device, backend="torch")
    task = resolve_task(cfg, det.model)
    labels = np.array([s.label for s in va_s])
    logits = score_views(det, val_views)
    a, b = fit_platt(logits["matched"], labels)
    det.config.calibration = {"a": a, "b": b}
    det.config.extra["task"] = task
    if cfg.target_fpr is not None:
        real = labels == 0
        kinds = np.array([family_of(s) for s, r in zip(va_s, real, strict=True) if r])
        det.set_threshold(threshold_at_fpr(det.calibrate(logits["matched"][real]), kinds,
                                           cfg.target_fpr))  # fmt: skip
    metrics: dict[str, dict[str, Any]] = {}
    for view, lv in logits.items():
        probs = det.calibrate(lv)
        m = binary_metrics(labels, probs, det.threshold)
        m["ece"] = expected_calibration_error(labels, probs)
        metrics.setdefault("validation", {})[f"{view} formats"] = m
    per_dataset = {}
    for ds_name in sorted({s.dataset for s in va_s}):
        idx = [i for i, s in enumerate(va_s) if s.dataset == ds_name]
        per_dataset[ds_name] = binary_metrics(
            labels[idx], det.calibrate(logits["matched"][idx]), det.threshold
        )
    if held and task == "image":
        held_s, held_img, _ = load_samples(held)
        hv = validation_views(held_s, held_img, cfg)
        hl = score_views(det, hv)
        hy = np.array([s.label for s in held_s])
        # A held-out set of one class only still gets accuracy; mix in validation reals for AUC.
        real_idx = labels == 0
        for view in hl:
            y = np.concatenate([hy, labels[real_idx]])
            p = det.calibrate(np.concatenate([hl[view], logits[view][real_idx]]))
            metrics.setdefault("held-out generators (+ validation reals)", {})[view] = (
                binary_metrics(y, p, det.threshold)
            )
    det.save(out / "best")
    n_params = sum(p.numel() for p in det.model.parameters())
    unit = {"image": "images", "sequence": "sequences", "pair": "face/background pairs"}[task]
    card = {
        "name": cfg.name,
        "summary": _SUMMARY[task],
        "arch": cfg.arch, "arch_config": cfg.arch_config, "parameters": n_params,
        "task": task,
        "data": [f"{spec}" for spec in cfg.data] + [
            f"{len(va_s)} validation {unit} (never trained on); held out: {cfg.holdout or 'none'}"
        ],
        "recipe": dataclasses.asdict(cfg),
        "metrics": {**metrics, "validation per dataset (matched formats)": per_dataset},
        "calibration": {"method": "Platt scaling on matched-format validation logits",
                        "a": a, "b": b, "threshold": det.threshold,
                        "threshold_rule": (
                            f"at most {cfg.target_fpr:.0%} of each kind of validation real "
                            "(20 or more images) called fake, never below 0.5"
                            if cfg.target_fpr is not None else "0.5")},
    }  # fmt: skip
    write_model_card(out / "best", card)
    log.info(
        "best model in %s: %s",
        out / "best",
        json.dumps(
            {
                k: {kk: round(vv, 4) for kk, vv in v.items() if kk in ("auc", "accuracy")}
                for k, v in metrics["validation"].items()
            }
        ),
    )
    return card
