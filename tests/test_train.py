"""The training loop on generated data: real = photo crops with sensor-like noise, fake =
the same content smoothed (noise-free, like many generators' outputs)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from noisetrace.cli import main
from noisetrace.data.manifest import discover, split
from noisetrace.detector import Detector


def test_split_is_stratified_and_disjoint(toy_dataset):
    s = discover(toy_dataset)
    tr, va = split(s, 0.25, seed=0)
    assert not {x.path for x in tr} & {x.path for x in va}
    assert {x.label for x in va} == {0, 1} and len(tr) + len(va) == len(s) == 40


def test_train_learns_and_writes_model_and_card(toy_dataset, tmp_path, photo):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data",
            str(toy_dataset),
            "--out",
            str(out),
            "--epochs",
            "4",
            "--patch",
            "64",
            "--batch-size",
            "16",
            "--name",
            "toy",
            "--set",
            "crops_per_image=4",
            "augment={jpeg_p: 0.0, prior_jpeg_p: 0.0, crop_weights: [0, 1, 0, 0]}",
            "lr=0.01",
            "val_max_side=96",
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 4
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    card = json.loads((out / "best" / "card.json").read_text())
    assert card["metrics"]["validation"]["matched formats"]["auc"] > 0.8
    assert (out / "best" / "MODEL_CARD.md").read_text().startswith("# Model card: toy")
    det = Detector.load(out / "best", device="cpu")
    assert det.name == "toy" and set(det.config.calibration) == {"a", "b"}
    assert 0 <= det.score(photo) <= 1


def test_resume_continues_where_it_stopped(toy_dataset, tmp_path):
    common = [
        "--data",
        str(toy_dataset),
        "--patch",
        "48",
        "--batch-size",
        "16",
        "--set",
        "crops_per_image=2",
        "val_max_side=64",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    main(["train", *common, "--out", str(a), "--epochs", "3"])
    main(["train", *common, "--out", str(b), "--epochs", "2"])
    main(["train", *common, "--out", str(b), "--epochs", "3", "--resume"])
    ra = list(csv.DictReader((a / "metrics.csv").open()))
    rb = list(csv.DictReader((b / "metrics.csv").open()))
    assert len(rb) == 3
    assert float(ra[-1]["train_loss"]) == pytest.approx(float(rb[-1]["train_loss"]), rel=1e-4)


def test_split_keeps_one_file_generators_in_validation_too():
    from noisetrace.data.manifest import Sample

    # 20 cameras with one photo each, as in a camera-model collection.
    samples = [Sample(f"c{i}.jpg", 0, f"camera:{i}", f"c{i}", "cams") for i in range(20)]
    samples += [Sample(f"f{i}.png", 1, "gan", f"f{i}", "fakes") for i in range(20)]
    tr, va = split(samples, 0.2, seed=0)
    assert sum(s.dataset == "cams" for s in va) == 4
    assert sum(s.dataset == "fakes" for s in va) == 4


def test_init_starts_training_from_a_model_directory(toy_dataset, tmp_path, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "run"
    main(["train", "--data", str(toy_dataset), "--out", str(out), "--epochs", "1", "--patch",
          "48", "--set", f"init={tiny_model_dir}", "lr=0.0", "crops_per_image=1",
          "val_max_side=64"])  # fmt: skip
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    end = load_file(str(out / "best" / "model.safetensors"))
    assert torch.equal(start["conv1.0.weight"], end["conv1.0.weight"])  # lr 0: the init itself


def test_set_is_repeatable_and_every_override_applies() -> None:
    import argparse

    from noisetrace.cli import add_train_arguments
    from noisetrace.train.loop import TrainConfig

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--data", "d", "--set", "holdout=[\"x\"]", "--set", "lr=0.5",
                         "seed=3"])  # fmt: skip
    cfg = TrainConfig.from_args(args)
    assert cfg.holdout == ["x"] and cfg.lr == 0.5 and cfg.seed == 3


# -- clear messages before any work (issue 20, item 2) --------------------------------------
def _two_video_manifest(root) -> str:
    """What `noisetrace prepare` gives for one real and one fake video: crops of two groups."""
    rows = ["path\tlabel\tgenerator\tgroup"]
    for label, video in (("real", "a.mp4"), ("fake", "b.mp4")):
        for i in range(4):
            name = f"{video}_{i}.png"
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / name)
            rows.append(f"{name}\t{label}\tgen\t{video}")
    (root / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return str(root / "manifest.tsv")


def test_train_stops_before_any_work_when_validation_is_empty(tmp_path, monkeypatch, capsys):
    import noisetrace.train.loop as loop

    monkeypatch.setattr(loop, "train", lambda cfg: pytest.fail("training started"))
    rc = main(["train", "--data", _two_video_manifest(tmp_path), "--out", str(tmp_path / "o")])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "the validation split has 0 real and 0 fake images" in err
    assert "val_fraction" in err and not (tmp_path / "o").exists()


def test_train_without_out_says_where_it_writes(toy_dataset, tmp_path, monkeypatch, capsys):
    import noisetrace.train.loop as loop

    seen = []
    monkeypatch.setattr(loop, "train", lambda cfg: seen.append(cfg.out))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(toy_dataset)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert seen == ["runs/model"]
    assert "training into runs/model/ (no --out given" in err
    assert "model: runs/model/best" in err


def test_small_validation_set_warns_in_the_log(toy_dataset, caplog):
    from noisetrace.cli import _check_training_data
    from noisetrace.train.loop import TrainConfig

    with caplog.at_level("WARNING", logger="noisetrace.train"):
        _check_training_data(TrainConfig(data=[str(toy_dataset)]))
    assert "only 8 validation images (4 real and 4 fake)" in caplog.text


def test_model_card_warns_about_a_tiny_validation_set(tmp_path, caplog):
    from noisetrace.train.card import write_model_card

    m = {"n": 6, "n_fake": 3, "auc": 1.0, "accuracy": 1.0}
    card = {"name": "tiny", "arch": "srm-cnn", "task": "image",
            "metrics": {"validation": {"matched formats": m, "raw formats": m}},
            "calibration": {"a": 99.8, "b": 0.1, "threshold": 0.5}}  # fmt: skip
    with caplog.at_level("WARNING", logger="noisetrace.train"):
        write_model_card(tmp_path, card)
    md = (tmp_path / "MODEL_CARD.md").read_text()
    assert "## Warnings" in md and "Validated on only 6 images" in md
    assert md.index("## Warnings") < md.index("## validation")
    assert "calibration slope is 99.8" in md
    assert len(json.loads((tmp_path / "card.json").read_text())["warnings"]) == 2
    assert "Validated on only 6 images" in caplog.text


def test_a_face_network_is_saved_as_a_face_model(toy_dataset, tmp_path):
    """The saved config takes ``input`` from the architecture's ``pretrained_cfg``: a face
    network trained here finds and crops faces when it scans, as its training data were."""
    out = tmp_path / "meso"
    rc = main(["train", "--data", str(toy_dataset), "--out", str(out), "--arch", "mesonet4",
               "--epochs", "1", "--batch-size", "16",
               "--set", "crops_per_image=1", "val_max_side=96"])  # fmt: skip
    assert rc == 0
    assert Detector.load(out / "best", device="cpu").config.input == "face"
