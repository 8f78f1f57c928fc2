"""JIN-style steganalysis pre-training: pairs differ by the embedding only, pairs stay in one
batch, training lowers the loss, the run resumes and its output initialises djin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("conseal")
jpeglib = pytest.importorskip("jpeglib")
skdata = pytest.importorskip("skimage.data")

from noisetrace import cli, models  # noqa: E402
from noisetrace.errors import NoisetraceError  # noqa: E402
from noisetrace.train.stego import (  # noqa: E402
    PairBatchSampler,
    PairSet,
    StegoPairDataset,
    jpeg_pair,
    load_init,
    make_pairs,
    spatial_pair,
    split_covers,
)

torch.set_num_threads(1)


def _photo(name: str = "astronaut", size: int = 64, y: int = 100, x: int = 150) -> np.ndarray:
    return np.ascontiguousarray(getattr(skdata, name)()[y : y + size, x : x + size, :3])


def _dct(data: bytes, tmp_path, name: str):
    p = tmp_path / name
    p.write_bytes(data)
    return jpeglib.read_dct(str(p))


def test_juniward_changes_only_luminance_coefficients_by_one(tmp_path):
    img = _photo()
    pair = jpeg_pair(img, quality=75, payload=0.4, seed=3)
    c, s = _dct(pair.cover_jpeg, tmp_path, "c.jpg"), _dct(pair.stego_jpeg, tmp_path, "s.jpg")
    assert np.array_equal(c.qt, s.qt)  # same quantisation tables
    assert np.array_equal(c.Cb, s.Cb) and np.array_equal(c.Cr, s.Cr)
    d = s.Y.astype(int) - c.Y.astype(int)
    assert np.abs(d).max() == 1
    assert np.count_nonzero(d) == pair.changes > 0
    # Pixels are what the project's loader decodes from those very files.
    from noisetrace.media.image import decode_image

    assert np.array_equal(pair.cover, decode_image(pair.cover_jpeg))
    assert np.array_equal(pair.stego, decode_image(pair.stego_jpeg))
    assert pair.cover.shape == pair.stego.shape == img.shape
    # The payload is honoured: more bits, more changes; same seed, same stego.
    assert jpeg_pair(img, 75, 1.0, seed=3).changes > pair.changes
    assert jpeg_pair(img, 75, 0.4, seed=3).stego_jpeg == pair.stego_jpeg


@pytest.mark.parametrize("method", ["hill", "suniward"])
def test_spatial_pairs_change_pixels_by_at_most_one(method):
    img = _photo("coffee", size=48)
    img[:8] = 255  # saturated and black rows: +1 / -1 must not wrap around
    img[-8:] = 0
    pair = spatial_pair(img, payload=0.4, seed=1, method=method)
    d = pair.stego.astype(int) - img.astype(int)
    assert pair.stego.dtype == np.uint8 and np.array_equal(pair.cover, img)
    assert np.abs(d).max() == 1
    assert 0 < pair.changes == np.count_nonzero(d)
    assert pair.changes < 0.3 * img.size  # ternary embedding at 0.4 bpp changes few values


def test_pair_batch_sampler_keeps_pairs_together():
    sampler = PairBatchSampler(n_pairs=11, pairs_per_batch=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    for b in batches:
        covers, stegos = {i // 2 for i in b if not i % 2}, {i // 2 for i in b if i % 2}
        assert covers == stegos
        assert len(b) == 2 * len({i // 2 for i in b})
    assert sorted(i for b in batches for i in b) == list(range(22))
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled per epoch
    assert len(list(PairBatchSampler(11, 4, drop_last=True))) == 2


def test_pair_dataset_applies_one_transform_to_both_members():
    cover = np.stack([_photo(size=32, y=k * 40) for k in range(4)])
    stego = cover.copy()
    stego[:, 3, 5, 1] ^= 1  # one changed value per pair, off the centre so D4 moves it
    pairs = PairSet(cover, stego, np.arange(4), np.array(["hill"] * 4))
    ds = StegoPairDataset(pairs, augment=True, seed=0)
    moved = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for p in range(4):
            (xc, yc), (xs, ys) = ds[2 * p], ds[2 * p + 1]
            assert (yc.item(), ys.item()) == (0.0, 1.0)
            assert torch.count_nonzero(xs - xc) == 1  # same transform: only the embedding differs
            moved += not torch.equal(xc, torch.from_numpy(cover[p]).permute(2, 0, 1) / 255.0)
    assert moved > 0  # and augmentation did happen


def test_training_on_pairs_lowers_the_loss():
    torch.manual_seed(0)
    crops = [_photo(n, size=32, y=y) for n in ("astronaut", "coffee", "chelsea") for y in (0, 64)]
    ps = [spatial_pair(c, payload=1.0, seed=i) for i, c in enumerate(crops)]
    pairs = PairSet(
        np.stack([p.cover for p in ps]), np.stack([p.stego for p in ps]),
        np.arange(len(ps)), np.array(["hill"] * len(ps)),
    )  # fmt: skip
    ds = StegoPairDataset(pairs, augment=False)
    idx = next(iter(PairBatchSampler(len(ps), len(ps), shuffle=False)))
    x = torch.stack([ds[i][0] for i in idx])
    y = torch.stack([ds[i][1] for i in idx])
    model = models.create("djin")
    opt = torch.optim.Adamax(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def _covers(tmp_path):
    d = tmp_path / "covers"
    d.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(skdata, name)()[:160, :160, :3]
        Image.fromarray(img).save(d / f"{name}.png")
        Image.fromarray(img[::-1].copy()).save(d / f"{name}.jpg", quality=95)
    return d


def test_make_pairs_and_split_by_image(tmp_path):
    d = _covers(tmp_path)
    from noisetrace.train.stego import discover_covers

    samples = discover_covers([d])
    tr, va = split_covers(samples, 0.34, seed=0)
    assert {s.path for s in tr}.isdisjoint({s.path for s in va})
    assert {s.path[-3:] for s in va} == {"png", "jpg"}  # both kinds held out
    ps = make_pairs(samples, crop=32, crops_per_image=2, payload=0.5)
    assert len(ps) == 12 and set(ps.methods) == {"hill", "juniward"}
    assert (ps.covers != ps.stegos).any(axis=(1, 2, 3)).all()


def test_pretrain_command_resumes_and_initialises_djin(tmp_path):
    covers, out = _covers(tmp_path), tmp_path / "init"
    args = ["pretrain-stego", "--covers", str(covers), "--out", str(out), "--crop", "32",
            "--crops-per-image", "2", "--payloads", "1.0,0.5", "--batch-pairs", "4",
            "--device", "cpu", "--val-fraction", "0.34"]  # fmt: skip
    assert cli.main([*args, "--epochs", "1,1"]) == 0
    hist = (out / "history.csv").read_text().splitlines()
    assert len(hist) == 3  # header + one epoch per stage
    # Same --out without --resume is refused; with --resume only the new epoch runs.
    assert cli.main([*args, "--epochs", "1,2"]) == 2
    assert cli.main([*args, "--epochs", "1,2", "--resume"]) == 0
    hist = (out / "history.csv").read_text().splitlines()
    assert len(hist) == 4 and hist[-1].split(",")[:3] == ["1", "0.5", "1"]
    summary = json.loads((out / "pretrain.json").read_text())
    assert 0.0 <= summary["final"]["val_acc"] <= 1.0 and summary["payloads"] == [1.0, 0.5]
    # A changed curriculum cannot resume into the same directory.
    assert cli.main([*args, "--payloads", "0.4", "--resume"]) == 2

    model = models.create("djin")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_init(model, out)
    assert not report["missing"] and not report["unexpected"] and not report["mismatched"]
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)
    assert any(not torch.equal(before[k], saved[k]) for k in saved)
    fresh_head = models.create("djin")
    fc = fresh_head.fc.weight.clone()
    load_init(fresh_head, out / "model.safetensors", head=False)
    assert torch.equal(fresh_head.fc.weight, fc)
    with pytest.raises(NoisetraceError):
        load_init(models.create("srm-cnn"), out)
    (tmp_path / "w.pt").write_bytes(b"not a pickle to load")
    with pytest.raises(NoisetraceError):
        load_init(models.create("djin"), tmp_path / "w.pt")
