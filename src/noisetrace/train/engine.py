"""The one training engine: epochs, DDP, resume, checkpoints and best-epoch keeping.

What is trained, on which batches and with which loss is a task recipe's (:class:`Recipe`):
classification in :mod:`noisetrace.train.loop` (``noisetrace train``: image, sequence and
pair tasks, with CFFN's triplet phase and warm-up freezing as phases of one run) and
steganalysis pairs in :mod:`noisetrace.train.stego` (``noisetrace pretrain-stego``: one stage
per payload). Everything around it is here, the same for every recipe:

* **Distributed.** Under ``torchrun`` every rank runs :func:`run`; DDP (nccl on GPU, gloo
  on CPU) averages the gradients, recipes give each rank its share of the batches, rank 0
  validates and writes, and its validation score is broadcast so every rank steps its
  scheduler and stops alike.
* **Schedule.** A recipe lists its epochs up front (:class:`Epoch`). An epoch's ``key`` ends
  with the epoch number; the names before it are stages, and each stage gets a fresh
  optimiser and scheduler (the steganalysis curriculum). A change of ``phase`` (trainable
  set or forward, e.g. triplet -> classify) re-wraps the model for DDP, which fixes the
  parameters it synchronises when it is built.
* **Resume.** After every epoch rank 0 writes the checkpoint atomically (weights, optimiser,
  scheduler, RNG, history, best score, the epoch's key); ``resume`` continues after the saved
  key with the same result as an uninterrupted run.
* **Best epoch.** A ``ranked`` epoch's validation score competes; the recipe keeps the best
  model; ``early_stopping`` and ``min_lr`` end a run early.
* **Time budget.** A recipe with a ``time_budget_s`` above 0 stops after the epoch during
  which its epochs' wall-clock seconds (training and validation, kept in the checkpoint, so
  a resumed run counts the epochs before the interruption) reached the budget, but not
  before its first ranked epoch (there must be a best model); the checkpoint, the best model
  and the recipe's ``finish`` are as after any other stop. An epoch longer than the budget
  overshoots it: size epochs to a fraction of the budget.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from noisetrace.errors import NoisetraceError
from noisetrace.io import atomic_path

log = logging.getLogger("noisetrace.train")

DUMP_ENV = "NOISETRACE_TRAIN_DUMP"  # debug hook: every rank writes its final weights here

Batch = tuple[torch.Tensor, torch.Tensor]
Scheduler = Any  # torch's LR schedulers share no public base class with ReduceLROnPlateau


@dataclass(frozen=True)
class Epoch:
    """One epoch of a recipe's schedule."""

    key: tuple[int, ...]  # (stage..., epoch): its place in the run, saved in the checkpoint
    phase: Hashable = None  # a change re-sets the trainable set and re-wraps for DDP
    ranked: bool = True  # its validation score competes for the best epoch
    title: str = ""  # progress bar text
    row: dict[str, Any] = field(default_factory=dict)  # columns naming it in the history

    @property
    def stage(self) -> tuple[int, ...]:
        """The key without the epoch number: a new stage gets a fresh optimiser."""
        return self.key[:-1]


@dataclass
class Context:
    """Where this process trains: its rank among ``world`` and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def rank0_first(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0, then on the other ranks: for work whose result rank 0 caches
        on disk (made once, read by the rest)."""
        if self.rank == 0:
            result = fn()
            self.barrier()
            return result
        self.barrier()
        return fn()


@dataclass
class Optim:
    """A stage's optimiser and scheduler; ``per_step`` schedulers step after every batch,
    the others after every epoch (ReduceLROnPlateau with the validation score)."""

    optimizer: torch.optim.Optimizer
    scheduler: Scheduler | None = None
    per_step: bool = False


class Recipe(Protocol):
    """A training task plugged into :func:`run` (see docs/extending.md)."""

    out: Path
    checkpoint_name: str  # e.g. last.pt
    history_name: str  # per-epoch CSV, e.g. metrics.csv
    key_names: tuple[str, ...]  # names of Epoch.key's parts in the checkpoint, ending "epoch"
    device: str
    seed: int
    resume: bool
    amp: str  # auto (bf16 autocast on CUDA) | bf16 | off
    progress: bool
    min_lr: float  # stop once the learning rate falls below this (0: never)
    early_stopping: int  # stop after this many ranked epochs without a better score (0: off)
    time_budget_s: float  # stop after the epoch that used up this many seconds (0: off)

    def setup(self, ctx: Context) -> nn.Module:
        """Build the model (on ``ctx.device``) and the data; return the model."""
        ...

    def resumed(self, state: dict[str, Any] | None) -> None:
        """Check a checkpoint about to be resumed (None: a fresh start); raise to refuse."""
        ...

    def schedule(self) -> list[Epoch]: ...

    def extra_state(self) -> dict[str, Any]:
        """More checkpoint entries, e.g. the settings :meth:`resumed` compares."""
        ...

    def optimizer(self, epoch: Epoch, model: nn.Module) -> Optim:
        """A fresh optimiser and scheduler for ``epoch``'s stage."""
        ...

    def trainable(self, epoch: Epoch, model: nn.Module) -> tuple[nn.Module, bool]:
        """Set ``requires_grad`` for ``epoch``'s phase; return the module to train and whether
        DDP must allow parameters without gradients."""
        ...

    def batches(self, epoch: Epoch, model: nn.Module, ctx: Context) -> Iterable[Batch]:
        """This rank's (x, y) batches of ``epoch``, after the model was put in train mode."""
        ...

    def forward(self, epoch: Epoch, net: nn.Module, x: torch.Tensor) -> torch.Tensor: ...

    def loss(self, epoch: Epoch, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def validate(self, epoch: Epoch, model: nn.Module) -> tuple[dict[str, Any], float]:
        """Rank 0: history columns and the score (NaN: none) of the model after ``epoch``."""
        ...

    def keep_best(self, model: nn.Module) -> None:
        """Rank 0: save ``model``, the best so far."""
        ...

    def describe(self, row: dict[str, Any]) -> str:
        """One log line for an epoch's history row."""
        ...

    def finish(
        self, model: nn.Module, ctx: Context, best: float, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """After the last epoch, on every rank (``history``: rank 0's rows, resumed ones
        included): write the results, return the summary."""
        ...


# -- helpers ---------------------------------------------------------------------------------
def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) otherwise."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` under a temporary name, then rename: a checkpoint is whole or absent."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_history(path: Path, history: list[dict]) -> None:
    """Per-epoch metrics as CSV, written atomically."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def state_digest(model: nn.Module) -> str:
    """SHA-256 over a model's state dict (sorted keys, raw tensor bytes)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_init(model: nn.Module, path: str | Path, head: bool = True) -> dict[str, list[str]]:
    """Initialise ``model`` from a model directory (e.g. a ``noisetrace pretrain-stego``
    output, holding ``model.safetensors``) or the file itself; safetensors only, never pickles.

    Loads with ``strict=False``: tensors whose name and shape match are copied, the rest keep
    their fresh values. ``head=False`` leaves the final classifier (``fc``) fresh. Returns
    ``{"matched", "missing", "unexpected", "mismatched"}`` key lists (also logged), and raises
    if nothing matched (wrong architecture).
    """
    from safetensors.torch import load_file

    p = Path(path)
    f = p / "model.safetensors" if p.is_dir() else p
    if f.is_file() and f.suffix != ".safetensors" and hasattr(model, "load_pretrained"):
        # An architecture that starts from a published checkpoint reads it itself
        # (siamese-dncnn: GRIP's DnCNN, tensors only, weights_only=True).
        report = model.load_pretrained(f)
        log.info("init from %s: %s", f, report)
        return {"pretrained": [str(f)]}
    if f.suffix != ".safetensors" or not f.is_file():
        raise NoisetraceError(
            f"init {p}: expected a pretrain-stego output directory with model.safetensors "
            "(or a .safetensors file; siamese-dncnn also reads a DnCNN checkpoint); "
            "pickled checkpoints are not loaded"
        )
    state = load_file(str(f))
    own = model.state_dict()
    keep, mismatched = {}, []
    for k, v in state.items():
        if not head and k.startswith("fc."):
            continue
        if k in own and own[k].shape == v.shape:
            keep[k] = v
        elif k in own:
            mismatched.append(k)
    if not keep:
        raise NoisetraceError(
            f"init {f}: no tensor fits this model (different architecture?); "
            "pre-train the same arch with `noisetrace pretrain-stego --arch ...`"
        )
    missing, unexpected = model.load_state_dict(keep, strict=False)
    report = {
        "matched": sorted(keep),
        "missing": sorted(missing),
        "unexpected": sorted(k for k in state if k not in own),
        "mismatched": sorted(mismatched),
    }
    log.info(
        "init from %s: %d tensors loaded, %d missing, %d unexpected, %d shape mismatches",
        f, len(report["matched"]), len(report["missing"]), len(report["unexpected"]),
        len(report["mismatched"]),
    )  # fmt: skip
    return report


def progress_bar(enabled: bool):  # noqa: ANN201 - a rich Progress
    """A rich progress bar on a terminal (rank 0), or a no-op."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), console=console, transient=True,
        disable=not (enabled and console.is_terminal),
    )  # fmt: skip


def _start(device: str) -> Context:
    """Join the process group under torchrun; each rank takes its own GPU."""
    from noisetrace.detector import select_device

    rank, world, local_rank = dist_info()
    dev = select_device(device)
    # One GPU per rank: NCCL cannot put two ranks on one device; say so before it hangs.
    if world > 1 and dev.type == "cuda" and local_rank >= torch.cuda.device_count():
        raise NoisetraceError(
            f"torchrun started more processes on this machine than it has GPUs "
            f"({torch.cuda.device_count()}): use --nproc_per_node={torch.cuda.device_count()}, "
            "or --device cpu to train on the CPU"
        )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return Context(rank, world, dev)


# -- the loop ----------------------------------------------------------------------------------
def run(
    recipe: Recipe, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train ``recipe`` to the end of its schedule (or an early stop) and return what its
    ``finish`` returns. ``on_epoch_end(epoch number, row)`` runs after each epoch's checkpoint
    is written (an exception there leaves a resumable run)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ctx = _start(recipe.device)
    device = ctx.device
    seed_all(recipe.seed)
    model = recipe.setup(ctx)
    schedule = recipe.schedule()
    names = recipe.key_names

    best, bad_epochs, history = -math.inf, 0, []
    done: tuple[int, ...] | None = None  # key of the last finished epoch
    saved_optim: dict[str, Any] | None = None
    ckpt_path = recipe.out / recipe.checkpoint_name
    state = None
    if recipe.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
    recipe.resumed(state)
    if state is not None:
        model.load_state_dict(state["model"])
        done = tuple(int(state[k]) for k in names)
        saved_optim = {"optimizer": state["optimizer"], "scheduler": state.get("scheduler")}
        best, bad_epochs = state.get("best_auc", -math.inf), state.get("bad_epochs", 0)
        history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed after %s (best score %.4f)",
                 ", ".join(f"{n} {v}" for n, v in zip(names, done, strict=True)), best)  # fmt: skip
    elif recipe.resume:
        log.info("--resume: no %s yet, starting from scratch", ckpt_path)

    budget = float(recipe.time_budget_s)
    # Seconds of epochs so far, resumed ones included: kept exact in the checkpoint (the
    # history's per-epoch figures are rounded, and a fast epoch rounds to 0).
    spent = float(state.get("spent_s", 0.0)) if state is not None else 0.0

    def over_budget(after: str) -> bool:
        # Never before a ranked epoch has run: a run needs a model to keep (CFFN's triplet
        # epochs are not ranked).
        if budget > 0 and spent >= budget and best != -math.inf:
            log.info("stopping: time budget of %gs spent (%.1fs of epochs) %s",
                     budget, spent, after)  # fmt: skip
            return True
        return False

    use_amp = recipe.amp == "bf16" or (recipe.amp == "auto" and device.type == "cuda")
    optim: Optim | None = None
    stage: tuple[int, ...] | None = None
    net: nn.Module = model
    wrapped_for: Hashable = object()  # no phase yet
    for epoch in schedule:
        if done is not None and epoch.key <= done:
            continue
        if over_budget("before resuming"):  # a resumed run whose budget was already spent
            break
        t0 = time.perf_counter()
        if optim is None or epoch.stage != stage:
            optim, stage = recipe.optimizer(epoch, model), epoch.stage
            if saved_optim is not None and done is not None and epoch.stage == done[:-1]:
                optim.optimizer.load_state_dict(saved_optim["optimizer"])
                if optim.scheduler is not None and saved_optim["scheduler"]:
                    optim.scheduler.load_state_dict(saved_optim["scheduler"])
            saved_optim = None  # only the stage it was saved in continues it
        opt, sched = optim.optimizer, optim.scheduler
        if epoch.phase != wrapped_for:
            inner, find_unused = recipe.trainable(epoch, model)
            net = inner
            if ctx.distributed:
                net = nn.parallel.DistributedDataParallel(
                    inner, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=find_unused,
                )  # fmt: skip
            wrapped_for = epoch.phase
        net.train()
        batches = recipe.batches(epoch, model, ctx)
        total, count = 0.0, 0
        n_batches = len(batches) if hasattr(batches, "__len__") else None
        with progress_bar(recipe.progress and ctx.rank == 0) as bar:
            task_id = bar.add_task(epoch.title, total=n_batches, loss=0.0)
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    z = recipe.forward(epoch, net, x).float()
                loss = recipe.loss(epoch, z, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if optim.per_step and sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(y)
                count += len(y)
                bar.update(task_id, advance=1, loss=total / count)
        row: dict[str, Any] = {
            **epoch.row, "train_loss": total / max(1, count), "lr": opt.param_groups[0]["lr"],
        }  # fmt: skip
        score = math.nan
        if ctx.rank == 0:
            extra, score = recipe.validate(epoch, model)
            row.update(extra)
        seconds = time.perf_counter() - t0
        if ctx.distributed:  # every rank steps its scheduler and stops on rank 0's validation
            t = torch.tensor([score, seconds], dtype=torch.float64, device=device)
            dist.broadcast(t, 0)  # ... and on rank 0's clock
            score, seconds = float(t[0]), float(t[1])
        row["seconds"] = round(seconds, 1)
        spent += seconds
        improved = False
        if epoch.ranked:
            improved = score > best or not math.isfinite(best)
            bad_epochs = 0 if improved else bad_epochs + 1
            best = score if improved else best
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(score if math.isfinite(score) else 0.5)  # one-class validation: no signal
        elif sched is not None and not optim.per_step:
            sched.step()
        low_lr = recipe.min_lr > 0 and opt.param_groups[0]["lr"] < recipe.min_lr
        patience_out = recipe.early_stopping > 0 and bad_epochs >= recipe.early_stopping
        if ctx.rank == 0:
            if improved:
                recipe.keep_best(model)
            history.append(row)
            write_history(recipe.out / recipe.history_name, history)
            log.info("%s", recipe.describe(row))
            atomic_torch_save({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                **dict(zip(names, epoch.key, strict=True)),
                "best_auc": best, "bad_epochs": bad_epochs,  # best_auc: the best score
                "spent_s": spent,
                "history": json.dumps(history), "torch_rng": torch.get_rng_state(),
                **recipe.extra_state(),
            }, ckpt_path)  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(epoch.key[-1], row)
        if low_lr or patience_out:
            log.info("stopping: %s", f"learning rate below {recipe.min_lr:g}" if low_lr else
                     f"no better validation score for {bad_epochs} epochs")  # fmt: skip
            break
        if epoch is not schedule[-1] and over_budget(f"after {epoch.title or epoch.key}"):
            break

    if ctx.distributed:
        # DDP syncs parameters every step but buffers (BN statistics) only at the next
        # forward: give every rank rank 0's, the ones it saved, so all hold one model.
        for buf in model.buffers():
            dist.broadcast(buf, 0)
    if os.environ.get(DUMP_ENV):
        d = Path(os.environ[DUMP_ENV])
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank{ctx.rank}.sha256").write_text(state_digest(model) + "\n")
    result = recipe.finish(model, ctx, best, history)
    if ctx.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result
