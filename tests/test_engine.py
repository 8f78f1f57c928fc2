"""The one training engine (noisetrace.train.engine) under the steganalysis recipe: an
interrupted pre-training resumes from its checkpoint to the same weights as an uninterrupted
run, and pair batches split across DDP ranks without breaking a pair."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisetrace.train.engine import run
from noisetrace.train.stego import PairBatchSampler, Steganalysis, StegoConfig

torch.set_num_threads(1)


def test_pair_batches_are_shared_out_to_ranks_whole_and_evenly() -> None:
    whole = list(PairBatchSampler(7, 2, seed=3))
    ranks = [list(PairBatchSampler(7, 2, seed=3, rank=r, world=2)) for r in range(2)]
    assert [len(r) for r in ranks] == [2, 2]  # 4 batches of the epoch, 2 each
    assert sorted(map(tuple, ranks[0] + ranks[1])) == sorted(map(tuple, whole))
    three = [list(PairBatchSampler(7, 2, seed=3, rank=r, world=3)) for r in range(3)]
    assert [len(r) for r in three] == [2, 2, 2]  # rank 1 and 2 repeat a batch: equal steps
    for batch in (b for r in three for b in r):
        assert all(batch[i] + 1 == batch[i + 1] and batch[i] % 2 == 0
                   for i in range(0, len(batch), 2))  # fmt: skip


def _covers(root):
    skdata = pytest.importorskip("skimage.data")
    root.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skdata, name)()[:64, :64, :3]).save(root / f"{name}.png")
    return root


def test_stego_pretraining_resumes_through_the_engine_to_the_same_weights(tmp_path) -> None:
    pytest.importorskip("conseal")
    covers = _covers(tmp_path / "covers")

    def cfg(out: str, resume: bool = False) -> StegoConfig:
        return StegoConfig(
            covers=[str(covers)], out=str(tmp_path / out), crop=32, crops_per_image=1,
            payloads=[1.0, 0.5], epochs=[1, 2], batch_pairs=2, val_fraction=0.34,
            device="cpu", resume=resume,
        )  # fmt: skip

    whole = run(Steganalysis(cfg("a")))

    def crash(epoch: int, row: dict) -> None:
        if row["stage"] == 1 and epoch == 0:  # after stage 1's first epoch, mid-stage
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(Steganalysis(cfg("b")), on_epoch_end=crash)
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert (state["stage"], state["epoch"]) == (1, 0)
    resumed = run(Steganalysis(cfg("b", resume=True)))

    a = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert (b["stage"], b["epoch"]) == (1, 1)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k  # the same run, interrupted or not
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    rows_a, rows_b = json.loads(a["history"]), json.loads(b["history"])
    assert [(r["stage"], r["epoch"]) for r in rows_b] == [(0, 0), (1, 0), (1, 1)]
    assert np.allclose([r["train_loss"] for r in rows_a], [r["train_loss"] for r in rows_b])
    assert resumed["final"]["val_acc"] == whole["final"]["val_acc"]
    assert (tmp_path / "b" / "model.safetensors").is_file()


def _toy_images(root):
    """real/: noisy crops of a photo; fake/smooth/: the same crops blurred (no noise)."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import ImageFilter

    (root / "real").mkdir(parents=True)
    (root / "fake" / "smooth").mkdir(parents=True)
    rng = np.random.default_rng(0)
    photo = skdata.astronaut()
    for k in range(10):
        y, x = rng.integers(0, photo.shape[0] - 48, size=2)
        crop = photo[y : y + 48, x : x + 48]
        noisy = np.clip(crop + rng.normal(0, 6, crop.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / "real" / f"r{k}.png")
        Image.fromarray(crop).filter(ImageFilter.GaussianBlur(1.5)).save(
            root / "fake" / "smooth" / f"f{k}.png")  # fmt: skip
    return root


def test_time_budget_stops_after_the_epoch_that_spent_it_and_resume_continues(
    tmp_path, caplog
) -> None:
    from noisetrace.train.loop import TrainConfig, train

    data = _toy_images(tmp_path / "toy")

    def cfg(out: str, budget: float, resume: bool = False) -> TrainConfig:
        return TrainConfig(
            data=[str(data)], out=str(tmp_path / out), arch="srm-cnn",
            arch_config={"widths": [4, 8], "hidden": 8}, epochs=3, batch_size=8, patch=32,
            crops_per_image=1, augment={"jpeg_p": 0.0, "prior_jpeg_p": 0.0},
            val_fraction=0.3, val_max_side=48, device="cpu", progress=False,
            time_budget_s=budget, resume=resume,
        )  # fmt: skip

    with pytest.raises(SystemExit, match="time_budget_s"):
        cfg("x", -1.0).check()
    whole = train(cfg("a", 0.0))  # 0: no limit, all 3 epochs

    caplog.set_level("INFO", logger="noisetrace.train")
    card = train(cfg("b", 1e-6))  # any epoch takes longer: stops after the first
    hist = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(hist) == 2  # header + epoch 0
    assert any("stopping: time budget of 1e-06s spent" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    best = json.loads((tmp_path / "b" / "best" / "config.json").read_text())
    assert set(best["calibration"]) == {"a", "b"}  # calibrated as after any run
    assert "validation" in card["metrics"]
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["epoch"] == 0

    caplog.clear()
    train(cfg("b", 1e-6, resume=True))  # the budget is spent already: no further epoch
    assert len((tmp_path / "b" / "metrics.csv").read_text().splitlines()) == 2
    assert any("before resuming" in r.getMessage() for r in caplog.records)

    resumed = train(cfg("b", 0.0, resume=True))  # lifted: continues to the same end
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k  # interrupted by its budget or not
    assert resumed["metrics"]["validation"] == whole["metrics"]["validation"]


class _Tiny:
    """A minimal engine recipe: a linear model on fixed random data; the first epoch is not
    ranked (like CFFN's triplet phase), so there is no model to keep after it."""

    checkpoint_name, history_name, key_names = "last.pt", "history.csv", ("epoch",)
    device, seed, resume, amp, progress = "cpu", 0, False, "off", False
    min_lr, early_stopping = 0.0, 0

    def __init__(self, out, budget: float) -> None:
        self.out, self.time_budget_s, self.kept = out, budget, 0
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(16, 3, generator=g), (torch.rand(16, generator=g) > 0.5)

    def setup(self, ctx):
        self.out.mkdir(parents=True, exist_ok=True)
        return torch.nn.Linear(3, 1)

    def resumed(self, state) -> None: ...

    def schedule(self):
        from noisetrace.train.engine import Epoch

        return [Epoch((e,), ranked=e > 0, row={"epoch": e}) for e in range(4)]

    def extra_state(self):
        return {}

    def optimizer(self, epoch, model):
        from noisetrace.train.engine import Optim

        return Optim(torch.optim.SGD(model.parameters(), lr=0.1))

    def trainable(self, epoch, model):
        return model, False

    def batches(self, epoch, model, ctx):
        return [(self.x, self.y.float())]

    def forward(self, epoch, net, x):
        return net(x).squeeze(1)

    def loss(self, epoch, z, y):
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y)

    def validate(self, epoch, model):
        return {}, 0.5 if epoch.ranked else float("nan")

    def keep_best(self, model) -> None:
        self.kept += 1

    def describe(self, row) -> str:
        return str(row)

    def finish(self, model, ctx, best, history):
        return {"epochs": len(history), "kept": self.kept}


def test_time_budget_never_stops_before_a_ranked_epoch(tmp_path) -> None:
    assert run(_Tiny(tmp_path / "a", 1e-6)) == {"epochs": 2, "kept": 1}  # unranked + 1 ranked
    assert run(_Tiny(tmp_path / "b", 0.0)) == {"epochs": 4, "kept": 1}  # no budget: all 4
