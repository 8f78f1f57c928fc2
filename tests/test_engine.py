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
