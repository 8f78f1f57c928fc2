"""Every seed recipe (configs/*.yaml) runs through the one training loop on tiny generated
data, and the loop's hooks (warm-up freezing, triplet phase, schedules, class balance,
stopping, resume) do what they say.

Data: real = photo crops with sensor-like noise, fake = the same content smoothed (no noise).
Face-track and face/background recipes get a prepared-cache-style manifest.tsv (the columns
``noisetrace prepare`` writes) over generated "videos".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from noisetrace import models
from noisetrace.cli import main
from noisetrace.detector import Detector
from noisetrace.prepare import MANIFEST_FIELDS
from noisetrace.train.loop import (
    BalancedSampler,
    TrainConfig,
    batch_all_triplet_loss,
    train,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
torch.set_num_threads(2)


def _pair(rng: np.random.Generator, photo: np.ndarray, size: int) -> tuple[Image.Image, ...]:
    y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
    crop = photo[y : y + size, x : x + size]
    noisy = np.clip(crop + rng.normal(0, 8, crop.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy), Image.fromarray(crop).filter(ImageFilter.GaussianBlur(1.5))


@pytest.fixture(scope="module")
def image_data(tmp_path_factory) -> Path:
    """real/ and fake/smooth/ folders, 3 images per class, 48 px."""
    from skimage import data

    root = tmp_path_factory.mktemp("images")
    (root / "real").mkdir()
    (root / "fake" / "smooth").mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    for k, p in enumerate(photos):
        real, fake = _pair(rng, p, 48)
        real.save(root / "real" / f"r{k}.png")
        fake.save(root / "fake" / "smooth" / f"f{k}.png")
    return root


@pytest.fixture(scope="module")
def crop_cache(tmp_path_factory) -> Path:
    """A `noisetrace prepare`-style manifest: 3 real and 3 fake "videos", one face track of
    4 frames each, a face and a background square (32 px) per frame."""
    from skimage import data

    root = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(1)
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    rows = []
    for v in range(6):
        label = "real" if v % 2 == 0 else "fake"
        src = f"/videos/{label}{v}.mp4"
        for frame in range(4):
            for kind in ("face", "background"):
                real, fake = _pair(rng, photos[v // 2], 32)
                img = real if label == "real" or kind == "background" else fake
                rel = f"crops/v{v}/{frame:06d}_0_{kind}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                img.save(root / rel)
                row = dict.fromkeys(MANIFEST_FIELDS, "")
                row.update(path=rel, label=label, generator="swap" if label == "fake" else "",
                           group=src, dataset="toyvideos", video=src, source_path=src,
                           frame=frame, track=0, kind=kind)  # fmt: skip
                rows.append(row)
    with open(root / "manifest.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, MANIFEST_FIELDS, delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    return root


_TINY = ["--batch-size", "4", "--set", "crops_per_image=1", "val_max_side=64", "progress=false"]
# recipe -> (data fixture, epochs, overrides): tiny sizes; one epoch each except CFFN, whose
# two phases need two (warm-up freezing itself is checked on srm-cnn below).
RECIPES = {
    "djin": ("image_data", 1, ["patch=32"]),
    "corvi_resnet50": ("image_data", 1, ["patch=32"]),
    "srm_cnn": ("image_data", 2, ["patch=32"]),
    "xception_rgb": ("image_data", 1, ["patch=64", "warmup_epochs=1"]),
    "xception_srm": ("image_data", 1, ["patch=64", "warmup_epochs=1"]),
    "cffn": ("image_data", 2, ["patch=64", "triplet_epochs=1"]),
    "xception_rgb_lstm": ("crop_cache", 1, ["patch=32", "warmup_epochs=1", "sequence_length=2",
                                            "arch_config={sequence_length: 2}"]),
    "xception_srm_lstm": ("crop_cache", 1, ["patch=32", "warmup_epochs=1", "sequence_length=2",
                                            "arch_config={sequence_length: 2}"]),
    "siamese_dncnn": ("crop_cache", 1, ["patch=32", "arch_config={input_size: 32, depth: 3, "
                                        "conv_channels: [16, 32, 32]}"]),
}  # fmt: skip


def test_every_recipe_has_a_config_the_loop_accepts():
    for name in RECIPES:
        raw = __import__("yaml").safe_load((CONFIGS / f"{name}.yaml").read_text())
        raw.setdefault("data", ["x"])
        TrainConfig(**raw).check()
        assert raw["arch"] in models.list_models()


def test_the_bundled_fast_recipes_are_accepted():
    """configs/fast.yaml then configs/fast_finetune.yaml (init from the first) made the
    bundled `fast`: both must stay valid, and stage 2 must continue stage 1's model."""
    yaml = __import__("yaml")
    one = yaml.safe_load((CONFIGS / "fast.yaml").read_text())
    two = yaml.safe_load((CONFIGS / "fast_finetune.yaml").read_text())
    for raw in (one, two):
        TrainConfig(**raw).check()
    assert two["init"] == "runs/fast/best" and two["arch_config"] == one["arch_config"]
    assert two["holdout"] == one["holdout"]


# Xception (validated at its 224 px input), ResNet-50 without early down-sampling, CFFN and the
# 20-layer DnCNN take well over 10 s each on a 2-core CPU: `-m "not slow"` skips them.
_SLOW = {"corvi_resnet50", "cffn", "siamese_dncnn", "xception_rgb", "xception_srm",
         "xception_rgb_lstm", "xception_srm_lstm"}  # fmt: skip


@pytest.mark.parametrize(
    "recipe",
    [pytest.param(r, marks=pytest.mark.slow) if r in _SLOW else r for r in sorted(RECIPES)],
)
def test_recipe_trains_a_few_steps(recipe, request, tmp_path):
    fixture, epochs, extra = RECIPES[recipe]
    data = request.getfixturevalue(fixture)
    out = tmp_path / recipe
    args = ["--data", str(data), "--out", str(out), "--epochs", str(epochs), "--device", "cpu"]
    rc = main(["train", "--config", str(CONFIGS / f"{recipe}.yaml"), *args, *_TINY, *extra])
    assert rc == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == epochs and all(np.isfinite(float(r["train_loss"])) for r in rows)
    card = json.loads((out / "best" / "card.json").read_text())
    raw = __import__("yaml").safe_load((CONFIGS / f"{recipe}.yaml").read_text())
    for key in ("optimizer", "scheduler", "lr", "class_balance"):
        if key in raw:
            assert card["recipe"][key] == raw[key], key  # the recipe's own settings trained
    assert card["arch"] == raw["arch"]
    assert 0.0 <= card["metrics"]["validation"]["matched formats"]["auc"] <= 1.0
    assert (out / "best" / "MODEL_CARD.md").is_file()
    det = Detector.load(out / "best", device="cpu", backend="torch")
    assert det.config.extra["task"] == card["task"]
    if raw.get("warmup_epochs"):
        assert rows[0]["phase"] == "classify (frozen)"
    if raw.get("triplet_epochs"):
        assert rows[0]["phase"] == "triplet" and rows[1]["phase"] == "classify"


# -- hooks ---------------------------------------------------------------------------------
def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=[str(data)], out=str(out), arch="srm-cnn", epochs=2, batch_size=4,
                patch=32, crops_per_image=2, val_max_side=64, device="cpu", progress=False,
                augment={"jpeg_p": 0.0, "prior_jpeg_p": 0.0})  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_warmup_freezes_the_named_modules(image_data, tmp_path):
    torch.manual_seed(0)
    init = models.create("srm-cnn").state_dict()
    train(_cfg(image_data, tmp_path / "w", epochs=1, warmup_epochs=1, freeze=["conv1", "conv2"]))
    after = torch.load(tmp_path / "w" / "last.pt", weights_only=True)["model"]
    for k, v in init.items():
        if k.startswith(("conv1", "conv2")):
            assert torch.equal(v, after[k]), k  # weights and BN statistics untouched
    assert not torch.equal(init["head.0.weight"], after["head.0.weight"])


def test_batch_all_triplet_loss():
    e = torch.tensor([[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [1.0, 0.1]])
    y = torch.tensor([0, 0, 1, 1])
    # Well separated: every |a-p|^2 - |a-n|^2 + margin < 0 for margin 0.5 -> zero loss.
    assert float(batch_all_triplet_loss(e, y, 0.5)) == 0.0
    # Margin 1.5: anchor 0, positive 1 (d=0.01), negatives 2 (1.0) and 3 (1.01) etc.
    d = torch.cdist(e, e) ** 2
    terms = [float(d[a, p] - d[a, n] + 1.5) for a in range(4) for p in range(4) for n in range(4)
             if a != p and y[a] == y[p] and y[a] != y[n]]  # fmt: skip
    want = sum(t for t in terms if t > 0) / sum(t > 0 for t in terms)
    assert float(batch_all_triplet_loss(e, y, 1.5)) == pytest.approx(want, rel=1e-5)
    # Gradient descent on it pulls the classes apart.
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    lab = torch.tensor([0, 1] * 4)
    first = float(batch_all_triplet_loss(z, lab, 0.8))
    opt = torch.optim.SGD([z], lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        batch_all_triplet_loss(z, lab, 0.8).backward()
        opt.step()
    assert float(batch_all_triplet_loss(z, lab, 0.8)) < 0.5 * first


def test_balanced_sampler_draws_classes_alike_and_splits_ranks():
    labels = [0] * 90 + [1] * 10
    s = BalancedSampler(labels, seed=0)
    s.set_epoch(3)
    idx = list(s)
    assert len(idx) == 100 and 35 < sum(labels[i] for i in idx) < 65
    r0, r1 = list(BalancedSampler(labels, 0, 0, 2)), list(BalancedSampler(labels, 0, 1, 2))
    assert len(r0) == len(r1) == 50
    # The two ranks' shares make up exactly the one-process draw of the same epoch.
    assert sorted(r0 + r1) == sorted(BalancedSampler(labels, 0, 0, 1))


def test_plateau_stops_below_min_lr_and_early_stopping(image_data, tmp_path):
    # patience 0 and factor 0.1: the first epoch without a better AUC drops lr to 1e-4 < 5e-4.
    train(_cfg(image_data, tmp_path / "p", epochs=6, scheduler="plateau", plateau_patience=0,
               plateau_factor=0.1, min_lr=5e-4, lr=1e-3, val_fraction=0.34))  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "p" / "metrics.csv").open()))
    assert len(rows) < 6
    state = torch.load(tmp_path / "p" / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] < 5e-4
    train(_cfg(image_data, tmp_path / "e", epochs=6, early_stopping=1, lr=1e-6))
    rows = list(csv.DictReader((tmp_path / "e" / "metrics.csv").open()))
    assert len(rows) < 6  # an lr of 1e-6 cannot keep improving the AUC every epoch


def test_step_schedule_decays_per_optimizer_step(image_data, tmp_path):
    cfg = _cfg(image_data, tmp_path / "s", epochs=1, scheduler="step", step_every=1,
               step_gamma=0.5, lr=1e-2)  # fmt: skip
    train(cfg)
    state = torch.load(tmp_path / "s" / "last.pt", weights_only=True)
    steps = state["scheduler"]["last_epoch"]
    assert steps >= 1
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-2 * 0.5**steps)


def test_resume_equals_an_uninterrupted_run(image_data, tmp_path):
    kw = dict(epochs=3, scheduler="step", step_every=2, class_balance="sampler", lr=3e-3)
    train(_cfg(image_data, tmp_path / "a", **kw))

    class Crash(Exception):
        pass

    def crash(epoch, row):
        if epoch == 0:
            raise Crash  # after epoch 0's checkpoint, like a killed job

    with pytest.raises(Crash):
        train(_cfg(image_data, tmp_path / "b", **kw), on_epoch_end=crash)
    train(_cfg(image_data, tmp_path / "b", resume=True, **kw))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    ra = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    rb = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))
    assert [r["train_loss"] for r in ra] == [r["train_loss"] for r in rb]


def test_group_task_without_crop_columns_says_what_to_do(image_data, tmp_path):
    with pytest.raises(SystemExit, match="noisetrace prepare"):
        train(_cfg(image_data, tmp_path / "x", arch="siamese-dncnn"))


def test_model_card_names_branch_count_and_video_score():
    """The bundled faces card is rendered from its card.json: four stacked branches, and a
    video scored by the mean of its most suspicious quarter of frames, as its config says."""
    import json

    from noisetrace.heads.fit import model_card
    from noisetrace.zoo import ZOO_DIR

    d = ZOO_DIR / "faces"
    card = json.loads((d / "card.json").read_text())
    md = model_card(card)
    assert "four lines of evidence" in md
    assert "most suspicious quarter" in md
    # The source its own reals cannot be told from is named under "Where it is weak".
    weak = md.split("## Where it is weak")[1].split("## ")[0]
    assert "face-deepfacelive's fakes against the same source's real videos" in weak
    assert json.loads((d / "config.json").read_text())["video_aggregate"] == "top25"
    # The jitter index: calibrated on real videos, combined into the video score by a
    # regression validated by leaving each video source out (its table is in the card).
    t = json.loads((d / "config.json").read_text())["temporal"]
    assert t["real"] == sorted(t["real"]) and len(t["real"]) == card["temporal"]["real_videos"]
    assert card["temporal"]["combined"] and len(t["combine"]["coef"]) == 2
    assert "## On video: the jitter index, combined into the score" in md
    assert "Learned combination" in md and "combined with the index" in weak
    card["temporal"]["combined"] = False  # a model that only reports it
    md2 = model_card(card)
    assert "beside the score, never in it" in md2 and "reported beside the score" in md2
    card["temporal"]["combined"] = True
    assert (d / "MODEL_CARD.md").read_text() == md  # the card shipped is the one rendered
    card["recipe"]["video_aggregate"] = "mean"
    assert "the mean of its sampled frames' scores" in model_card(card)


def test_model_card_names_each_weak_family_once():
    """A family weak under several views is one clause with its range, not one per view; a
    single flagged view is named by its label."""
    from noisetrace.heads.fit import _per_name

    rows = [{"family": "aligned", "transform": t, "auc": a}
            for t, a in (("matched90", 0.55), ("web80", 0.49), ("shot75", 0.53))]
    rows += [{"family": "biggan", "transform": "webp80", "auc": 0.84},
             {"family": "biggan", "transform": "matched90", "auc": 0.90},
             {"family": "sbi", "transform": "matched90", "auc": 0.621},
             {"family": "sbi", "transform": "matched65", "auc": 0.618}]
    text = _per_name(rows, "family", "auc", lambda v: v < 0.85, lambda v: f"AUC {v:.2f}")
    assert text == ("aligned (AUC 0.49 to AUC 0.55 in 3 views); "
                    "biggan (AUC 0.84, republished, WebP 80); sbi (AUC 0.62 in 2 views)")
    assert _per_name(rows, "family", "auc", lambda v: v < 0.1, str) == ""


def test_default_card_is_rendered_and_says_it_was_validated_as_scanned():
    """The bundled default's card is the one its card.json renders, and it says the features
    were those scan computes (configs/default_fusion.yaml: features_as_scanned)."""

    import yaml

    from noisetrace.heads.fit import model_card
    from noisetrace.zoo import ZOO_DIR

    d = ZOO_DIR / "default"
    card = json.loads((d / "card.json").read_text())
    md = model_card(card)
    assert (d / "MODEL_CARD.md").read_text() == md
    assert card["recipe"]["features_as_scanned"] is True
    assert "Features are those `scan` computes" in md
    root = Path(__file__).resolve().parents[1]
    assert yaml.safe_load((root / card["config_path"]).read_text())["features_as_scanned"]
    card["recipe"]["features_as_scanned"] = False
    assert "Features are those `scan` computes" not in model_card(card)
