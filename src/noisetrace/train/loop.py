"""The one training loop: patches in, best-by-validation-AUC detector out.

Runs on CPU or CUDA, and under ``torchrun --nproc_per_node=N`` it trains with DDP (gloo on
CPU, nccl on GPU) and a distributed sampler; rank 0 validates and writes checkpoints.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from noisetrace import models
from noisetrace.data.augment import Augment, center_crop, matched_format
from noisetrace.data.manifest import Sample, discover, split
from noisetrace.detector import Detector, DetectorConfig, select_device
from noisetrace.evaluate.metrics import binary_metrics, expected_calibration_error, fit_platt
from noisetrace.train.card import write_model_card
from noisetrace.train.dataset import PatchDataset, load_samples

log = logging.getLogger("noisetrace.train")


@dataclass
class TrainConfig:
    data: list[str]
    out: str = "runs/model"
    name: str = "custom"
    arch: str = "srm-cnn"
    arch_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamax | adamw | sgd
    scheduler: str = "none"  # none | plateau | cosine
    min_lr: float = 0.0  # with plateau: stop once the learning rate falls below this
    patch: int = 128
    crops_per_image: int = 4
    augment: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.2
    val_max_side: int = 1024  # validation views are centre crops at most this big (no resize)
    val_quality: int = 90
    holdout: list[str] = field(default_factory=list)  # regexes on generator: held-out test
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    resume: bool = False
    max_images: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        raw: dict[str, Any] = {}
        if args.config:
            import yaml

            raw = yaml.safe_load(Path(args.config).read_text()) or {}
        for f in dataclasses.fields(cls):
            v = getattr(args, f.name, None)
            if v not in (None, [], False):
                raw[f.name] = v
        for item in args.set or []:
            k, _, v = item.partition("=")
            import yaml

            raw[k] = yaml.safe_load(v)
        if not raw.get("data"):
            raise SystemExit("noisetrace train: give --data (folders or manifests) or a --config")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SystemExit(f"noisetrace train: unknown config keys {sorted(unknown)}")
        return cls(**raw)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); flags below override it")
    p.add_argument("--data", nargs="+", help="folders (real/, fake/<gen>/) or manifests")
    p.add_argument("--out", help="output directory for the trained model")
    p.add_argument("--name", help="model name recorded in its config and card")
    p.add_argument("--arch", help="architecture from `noisetrace models`")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patch", type=int, help="training crop size in pixels")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--max-images", dest="max_images", type=int)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override any config key")


# -- helpers -------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    return None


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


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


def score_views(det: Detector, views: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    det.model.eval()
    return {k: np.array([det.logit(im) for im in v]) for k, v in views.items()}


# -- the loop ------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
    device = select_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    _seed_all(cfg.seed)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    # Data: discover, hold out generators, split, decode once.
    samples: list[Sample] = []
    for spec in cfg.data:
        samples += discover(spec)
    if cfg.max_images:
        random.Random(cfg.seed).shuffle(samples)
        samples = samples[: cfg.max_images]
    pats = [re.compile(p) for p in cfg.holdout]
    held = [s for s in samples if any(p.search(s.generator) for p in pats)]
    pool = [s for s in samples if s not in set(held)]
    tr_s, va_s = split(pool, cfg.val_fraction, cfg.seed)
    tr_s, tr_img, tr_fail = load_samples(tr_s)
    va_s, va_img, va_fail = load_samples(va_s)
    if not tr_s or len({s.label for s in tr_s}) < 2:
        raise SystemExit("noisetrace train: the training split needs both real and fake images")
    log.info(
        "train %d images (%d fake), val %d, held-out %d, unreadable %d",
        len(tr_s),
        sum(s.label for s in tr_s),
        len(va_s),
        len(held),
        len(tr_fail + va_fail),
    )

    aug = Augment(size=cfg.patch, **cfg.augment)
    ds = PatchDataset(tr_s, tr_img, aug, cfg.crops_per_image, cfg.seed)
    sampler = (
        DistributedSampler(ds, num_replicas=world, rank=rank, seed=cfg.seed)
        if distributed
        else None
    )
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.workers,
        generator=g,
        drop_last=len(ds) > cfg.batch_size,
    )

    model = models.create(cfg.arch, **cfg.arch_config).to(device)
    net: torch.nn.Module = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = _make_optimizer(cfg, model.parameters())
    sched = _make_scheduler(cfg, opt)
    # Class imbalance: weight the positive (fake) term by n_real / n_fake.
    n_fake = sum(s.label for s in tr_s)
    pos_weight = torch.tensor((len(tr_s) - n_fake) / max(1, n_fake), device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    det_cfg = DetectorConfig(name=cfg.name, arch=cfg.arch, arch_config=cfg.arch_config)
    val_views = validation_views(va_s, va_img, cfg) if rank == 0 else {}
    va_labels = np.array([s.label for s in va_s])

    start_epoch, best_auc, history = 0, -math.inf, []
    ckpt_path = out / "last.pt"
    if cfg.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        start_epoch, best_auc = state["epoch"] + 1, state["best_auc"]
        history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from epoch %d (best val AUC %.4f)", start_epoch, best_auc)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        ds.set_epoch(epoch)
        g.manual_seed(cfg.seed * 1000 + epoch)  # per-epoch order, so --resume replays exactly
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = net(x).float()
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(y)
            count += len(y)
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": total / max(1, count),
            "lr": opt.param_groups[0]["lr"],
        }
        stop = False
        if rank == 0:
            det = Detector(model, det_cfg, device=str(device))
            logits_v = score_views(det, val_views)
            for view, lv in logits_v.items():
                m = binary_metrics(va_labels, lv, threshold=0.0)
                row[f"val_auc_{view}"] = m["auc"]
                row[f"val_acc_{view}"] = m["accuracy"]
            row["seconds"] = round(time.perf_counter() - t0, 1)
            auc = row["val_auc_matched"]
            if auc > best_auc or not math.isfinite(best_auc):
                best_auc = auc
                det.save(out / "best")
            history.append(row)
            _write_history(out / "metrics.csv", history)
            log.info(
                "epoch %d  loss %.4f  val AUC matched %.4f raw %.4f  (%.0fs)",
                epoch,
                row["train_loss"],
                row["val_auc_matched"],
                row["val_auc_raw"],
                row["seconds"],
            )
            if sched is not None:
                sched.step(auc) if cfg.scheduler == "plateau" else sched.step()
            stop = cfg.min_lr > 0 and opt.param_groups[0]["lr"] < cfg.min_lr
            _atomic_torch_save({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "epoch": epoch, "best_auc": best_auc, "history": json.dumps(history),
                "torch_rng": torch.get_rng_state(),
            }, ckpt_path)  # fmt: skip
        if distributed:
            flag = torch.tensor([int(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            log.info("learning rate below %g: stopping", cfg.min_lr)
            break

    result: dict[str, Any] = {"best_val_auc_matched": best_auc}
    if rank == 0:
        result = finalize(cfg, out, va_s, va_img, val_views, held)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _write_history(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    tmp.replace(path)


def finalize(cfg: TrainConfig, out: Path, va_s, va_img, val_views, held) -> dict[str, Any]:
    """Calibrate the best model on validation (matched) logits and write its model card."""
    det = Detector.load(out / "best", device=cfg.device)
    labels = np.array([s.label for s in va_s])
    logits = score_views(det, val_views)
    a, b = fit_platt(logits["matched"], labels)
    det.config.calibration = {"a": a, "b": b}
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
    if held:
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
    card = {
        "name": cfg.name,
        "summary": "Scores the probability that an image is AI-generated or manipulated, "
                   "from its SRM noise residual.",
        "arch": cfg.arch, "arch_config": cfg.arch_config, "parameters": n_params,
        "data": [f"{spec}" for spec in cfg.data] + [
            f"{len(va_s)} validation images (never trained on); held out: {cfg.holdout or 'none'}"
        ],
        "recipe": dataclasses.asdict(cfg),
        "metrics": {**metrics, "validation per dataset (matched formats)": per_dataset},
        "calibration": {"method": "Platt scaling on matched-format validation logits",
                        "a": a, "b": b, "threshold": det.threshold},
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
