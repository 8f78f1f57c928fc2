"""A 2-process DDP run on CPU (torchrun, gloo) trains through the one loop, and its ranks end
with equal weights, equal to the checkpoint rank 0 wrote."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from noisetrace.train.loop import DUMP_ENV


def _digest(state: dict[str, torch.Tensor]) -> str:
    # Same digest as the loop's debug hook (noisetrace.train.loop._state_digest).
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture()
def toy(tmp_path) -> Path:
    from skimage import data

    root = tmp_path / "toy"
    (root / "real").mkdir(parents=True)
    (root / "fake" / "smooth").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, p in enumerate([data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]):
        y, x = rng.integers(0, p.shape[0] - 48), rng.integers(0, p.shape[1] - 48)
        crop = p[y : y + 48, x : x + 48]
        noisy = np.clip(crop + rng.normal(0, 8, crop.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / "real" / f"r{k}.png")
        Image.fromarray(crop).filter(ImageFilter.GaussianBlur(1.5)).save(
            root / "fake" / "smooth" / f"f{k}.png"
        )
    return root


def test_two_process_ddp_on_cpu_trains_and_ranks_agree(toy, tmp_path):
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = {**os.environ, DUMP_ENV: str(dump), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "noisetrace.cli", "train", "--data", str(toy), "--out", str(out),
        "--epochs", "2", "--batch-size", "4", "--patch", "32", "--device", "cpu",
        # plateau: every rank must step its scheduler with rank 0's validation AUC
        "--set", "crops_per_image=4", "val_max_side=64", "progress=false",
        "scheduler=plateau", "plateau_patience=0", "lr=0.003",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 and float(rows[-1]["train_loss"]) > 0
    h0 = (dump / "rank0.sha256").read_text().strip()
    h1 = (dump / "rank1.sha256").read_text().strip()
    assert h0 == h1  # DDP kept the replicas identical
    last = torch.load(out / "last.pt", weights_only=True)
    assert _digest(last["model"]) == h0  # and rank 0 saved exactly those weights
    # The weights moved from the seeded initialisation the loop starts from.
    from noisetrace import models

    torch.manual_seed(0)
    init = models.create("srm-cnn").state_dict()
    assert not torch.equal(init["head.0.weight"], last["model"]["head.0.weight"])
    assert (out / "best" / "model.safetensors").is_file()
