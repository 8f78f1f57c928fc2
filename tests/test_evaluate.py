"""Evaluation protocols and reports end to end on generated data with a tiny trained model.

Reals are smooth synthetic scenes with faint noise; fakes carry strong pixel noise (two
"generators" with different strengths), so a few training steps of srm-cnn separate them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisetrace import models
from noisetrace.cli import main
from noisetrace.data.augment import jpeg, matched_format
from noisetrace.data.manifest import Sample, discover
from noisetrace.detector import Detector, DetectorConfig
from noisetrace.errors import NoisetraceError
from noisetrace.evaluate import protocols as P
from noisetrace.evaluate.report import write_report
from noisetrace.media.image import load_image
from noisetrace.media.video import write_video
from noisetrace.metrics import binary_metrics, fit_platt

NOISE = {"real": 1.0, "heavy": 14.0, "light": 8.0}


def _scene(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(1, 4, 3)
    base = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (f[c] * xx + yy * c) + rng.uniform(0, 6))
                     for c in range(3)], -1) * 255
    return np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)


def _make_data(root: Path, n: int = 6, videos: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for kind in NOISE:
        d = root / "real" if kind == "real" else root / "fake" / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = _scene(rng, 48 + 8 * (i % 3), 64, NOISE[kind])
            # Reals as JPEG (camera-like), fakes as PNG: the format confound of ../shared/data.
            if kind == "real":
                Image.fromarray(img).save(d / f"{i}.jpg", quality=95)
            else:
                Image.fromarray(img).save(d / f"{i}.png")
        if videos:
            for i in range(2):
                frames = [_scene(rng, 64, 64, NOISE[kind]) for _ in range(8)]
                write_video(d / f"clip{i}.mp4", frames, fps=4, codec="libx264")
    return root


def tiny_train(samples: list[Sample], steps: int = 40, seed: int = 0) -> Detector:
    """A few Adam steps of a small srm-cnn on 32x32 crops, then Platt on the training logits."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    imgs, ys = [], []
    for s in samples:
        if Path(s.path).suffix == ".mp4":
            from noisetrace.media.video import iter_frames

            imgs += [f.image for f in iter_frames(s.path, mode="first", n=2)]
            ys += [s.label] * 2
        else:
            imgs.append(load_image(s.path))
            ys.append(s.label)
    model = models.create("srm-cnn", widths=(4, 8), hidden=8, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = rng.integers(0, len(imgs), 12)
        crops = []
        for i in idx:
            im = imgs[i]
            y0, x0 = rng.integers(0, im.shape[0] - 31), rng.integers(0, im.shape[1] - 31)
            crops.append(im[y0 : y0 + 32, x0 : x0 + 32])
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        y = torch.tensor([float(ys[i]) for i in idx])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    det = Detector(model, DetectorConfig(name="tiny-eval", arch="srm-cnn",
                                         arch_config=model.arch_config), device="cpu")
    a, b = fit_platt([det.logit(im) for im in imgs], ys)
    det.config.calibration = {"a": a, "b": b}
    return det


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors on a busy 2-core machine: intra-op threads cost ~30x; use one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _make_data(tmp_path_factory.mktemp("evaldata"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir) -> Path:
    det = tiny_train(discover(data_dir))
    return det.save(tmp_path_factory.mktemp("evalmodel"))


@pytest.fixture(scope="module")
def det(model_dir) -> Detector:
    return Detector.load(model_dir, device="cpu")


# -- conditions ------------------------------------------------------------------------------
def test_condition_views():
    rng = np.random.default_rng(1)
    img = _scene(rng, 300, 700, 3.0)
    assert P.Condition().apply(img, True) is img
    assert np.array_equal(P.Condition(65).apply(img, False), jpeg(img, 65))
    crop = P.Condition(size=224).apply(img, False)
    assert crop.shape == (224, 224, 3)
    assert np.array_equal(crop, img[38:262, 238:462])  # centre crop, untouched pixels
    assert P.Condition(size=512).apply(img, False).shape == (300, 512, 3)  # never padded
    assert P.Condition(size=512).apply(img, False, "resize").shape == (512, 512, 3)
    m = P.Condition().twin()
    assert m == P.Condition(90, None, True) and m.name == "matched QF 90"
    assert np.array_equal(m.apply(img, True), matched_format(img, True, 90))
    assert np.array_equal(m.apply(img, False), matched_format(img, False, 90))
    assert not np.array_equal(m.apply(img, True), m.apply(img, False))


def test_web_format_downscales_large_files_then_compresses():
    """``webQ`` (the file as a platform republishes it): camera-like JPEG 95 for lossless
    files, the longer side down to 1080 px, JPEG Q; a small image keeps its size."""
    from PIL import Image

    from noisetrace.data.augment import web_format
    from noisetrace.heads.cache import apply_transform

    rng = np.random.default_rng(2)
    big = _scene(rng, 1200, 1800, 3.0)
    out = web_format(big, True, 80)
    assert out.shape == (720, 1080, 3) and out.dtype == np.uint8
    smaller = np.asarray(Image.fromarray(jpeg(big, 95)).resize((1080, 720), Image.BICUBIC))
    assert np.array_equal(out, jpeg(smaller, 80))
    small = _scene(rng, 300, 400, 3.0)
    assert np.array_equal(web_format(small, False, 80), jpeg(small, 80))
    assert np.array_equal(apply_transform(big, "web80", True), out)
    with pytest.raises(ValueError, match="webQ"):
        apply_transform(big, "web", True)


def test_republished_protocol_uses_the_training_transform():
    """`evaluate --protocol republished` views a file as `fit`'s web80 transform does."""
    from noisetrace.data.augment import web_format

    rng = np.random.default_rng(3)
    big = _scene(rng, 1200, 1800, 3.0)
    conds = P.plan(["republished"], P.EvalOptions(qualities=(80, 65)))["republished"]
    assert [c.name for c in conds] == ["matched QF 90", "republished, JPEG 80",
                                       "republished, JPEG 65"]
    assert np.array_equal(conds[1].apply(big, True), web_format(big, True, 80))
    assert conds[1].twin() == conds[1] and "1080 px" in conds[1].describe()


def test_webp_and_screenshot_views():
    """``webpQ``: the republished view with WebP instead of JPEG; ``shotS``: the matched
    history resampled to S% (bilinear), shared as JPEG 90. Named and direct calls agree."""
    from PIL import Image

    from noisetrace.data.augment import screenshot, web_format
    from noisetrace.heads.cache import apply_transform
    from noisetrace.media.image import encode_webp

    rng = np.random.default_rng(4)
    big = _scene(rng, 1200, 1800, 3.0)
    webp = apply_transform(big, "webp80", True)
    assert webp.shape == (720, 1080, 3) and webp.dtype == np.uint8
    smaller = np.asarray(Image.fromarray(jpeg(big, 95)).resize((1080, 720), Image.BICUBIC))
    assert np.array_equal(webp, encode_webp(smaller, 80))
    assert not np.array_equal(webp, web_format(big, True, 80))  # a different codec's traces
    with pytest.raises(ValueError, match="codec"):
        web_format(big, True, 80, codec="avif")

    small = _scene(rng, 200, 300, 3.0)
    for scale, shape in ((75, (150, 225, 3)), (125, (250, 375, 3))):
        shot = apply_transform(small, f"shot{scale}", True)
        assert shot.shape == shape and shot.dtype == np.uint8
        want = Image.fromarray(jpeg(small, 95)).resize(shape[1::-1], Image.BILINEAR)
        assert np.array_equal(shot, jpeg(np.asarray(want), 90))
        assert np.array_equal(shot, screenshot(small, True, scale / 100))
    # At its own size a screenshot is the JPEG 90 it is shared as; a JPEG source keeps its
    # history (no JPEG 95 first).
    assert np.array_equal(apply_transform(small, "shot100", False), jpeg(small, 90))
    with pytest.raises(ValueError, match="positive"):
        screenshot(small, True, 0)


def test_online_protocol_views_are_the_training_views():
    """`evaluate --protocol online` views a file as `fit`'s webpQ and shotS transforms do;
    an unknown online view is refused with the names that exist."""
    from noisetrace.heads.cache import apply_transform

    rng = np.random.default_rng(5)
    img = _scene(rng, 300, 400, 3.0)
    conds = P.plan(["online"], P.EvalOptions(qualities=(80,)))["online"]
    assert [c.name for c in conds] == ["matched QF 90", "republished, WebP 80",
                                       "screenshot at 75%", "screenshot at 125%"]
    for c, t in zip(conds[1:], ("webp80", "shot75", "shot125"), strict=True):
        assert np.array_equal(c.apply(img, True), apply_transform(img, t, True))
        assert c.twin() == c
    assert "WebP" in conds[1].describe() and "screenshot" in conds[2].describe()
    with pytest.raises(NoisetraceError, match="webpQ"):
        P.Condition(online="avif80")


def test_transform_labels_for_cards():
    from noisetrace.heads.cache import describe_transforms, transform_label

    assert transform_label("matched90") == "JPEG 90"
    assert transform_label("web80") == "republished, JPEG 80"
    assert transform_label("stored") == "stored"
    assert transform_label("webp75") == "republished, WebP 75"
    assert transform_label("shot125") == "screenshot at 125%"
    assert "webQ" not in describe_transforms(["matched90", "matched65"])
    assert "1080 px" in describe_transforms(["matched90", "web80"])
    assert "screenshot" in describe_transforms(["shot75"])
    assert "screenshot" not in describe_transforms(["web80", "webp80"])


def test_plan_and_unknown_protocol():
    opts = P.EvalOptions()
    plan = P.plan(["jpeg", "resolution", "generators", "confound"], opts)
    assert [c.name for c in plan["jpeg"]] == ["uncompressed", "QF 90", "QF 65", "QF 40"]
    assert [c.size_label for c in plan["resolution"]] == ["224", "512", "original"]
    assert len(plan["generators"]) == 12
    assert len(plan["confound"]) == len(set(plan["jpeg"] + plan["resolution"]
                                            + plan["generators"]))
    with pytest.raises(NoisetraceError, match="unknown protocol"):
        P.plan(["jpg"], opts)


# -- end to end ------------------------------------------------------------------------------
def test_evaluate_writes_report_with_tables(det, data_dir, tmp_path):
    samples = discover(data_dir)
    opts = P.EvalOptions(bootstrap=100, sizes=(40, None))
    rep = P.evaluate(det, samples, ["standard", "jpeg", "resolution", "generators",
                                    "confound"], opts)
    files = write_report(rep, tmp_path / "out")
    for name in ("report.json", "report.md", "report.html", "scores.csv", "roc_jpeg.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert set(files) >= {"report.json", "report.md", "report.html"}
    j = json.loads((tmp_path / "out" / "report.json").read_text())
    secs = {s["protocol"]: s for s in j["sections"]}
    assert list(secs) == ["standard", "jpeg", "resolution", "generators", "confound"]
    # The trained model separates the generated classes as stored.
    std = j["metrics"]["sample"]["uncompressed"]
    assert std["auc"] > 0.9 and std["n"] == 18 and std["n_fake"] == 12
    lo, hi = std["auc_ci"]
    assert lo <= std["auc"] <= hi
    # JPEG table: one row per quality, in order.
    assert [r[0] for r in secs["jpeg"]["tables"][0]["rows"]] == [
        "uncompressed", "QF 90", "QF 65", "QF 40"]
    assert [r[0] for r in secs["resolution"]["tables"][0]["rows"]] == ["40", "original"]
    # DJIN Table 2 form: Real/Fake rows per JPEG condition, one column per generator.
    gt = secs["generators"]["tables"][0]
    assert gt["columns"][:2] == ["condition", "predicted"]
    assert gt["columns"][2:5] == ["heavy", "light", "real"]
    assert [r[1] for r in gt["rows"]] == ["Real", "Fake"] * 4
    for real_row, fake_row in zip(gt["rows"][::2], gt["rows"][1::2], strict=True):
        assert [a + b for a, b in zip(real_row[2:5], fake_row[2:5], strict=True)] == [6, 6, 6]
        assert real_row[-1].count("/") == 1 and real_row[-1].endswith("%")
    # Counts agree with the per-sample scores in scores.csv.
    with open(tmp_path / "out" / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    heavy_fake = sum(float(r["QF 65 @40"]) >= det.threshold for r in rows
                     if r["generator"] == "heavy")
    qf65 = gt["data"][2]
    assert qf65["condition"] == "QF 65" and qf65["counts"]["heavy"]["fake"] == heavy_fake
    # Every table value comes from binary_metrics on those same scores.
    y = np.array([int(r["label"]) for r in rows])
    for cond in ("uncompressed", "QF 40", "matched QF 90 @40"):
        p = np.array([float(r[cond]) for r in rows])
        ref = binary_metrics(y, p, det.threshold)
        assert j["metrics"]["sample"][cond]["auc"] == pytest.approx(ref["auc"])
        assert j["metrics"]["sample"][cond]["accuracy"] == pytest.approx(ref["accuracy"])
    # Format confound: every raw condition beside its matched twin.
    ct = secs["confound"]["tables"][0]
    raw = [n for n, c in j["conditions"].items() if not c["matched"]]
    assert [r[0] for r in ct["rows"]] == raw
    assert {r[1] for r in ct["rows"]} == {n for n, c in j["conditions"].items() if c["matched"]}
    assert ("uncompressed", "matched QF 90") in {(r[0], r[1]) for r in ct["rows"]}
    matched_rows = [r[0] for r in secs["confound"]["tables"][1]["rows"]]
    assert len(matched_rows) == len(set(matched_rows)) == len(j["conditions"]) - len(raw)
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "http" not in html.split("<body>")[1]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| condition | predicted | heavy | light | real |" in md
    assert "## Format confound" in md and "![ROC curves, JPEG robustness](roc_jpeg.png)" in md
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_video_level_and_frame_level(det, tmp_path):
    data = _make_data(tmp_path / "v", n=2, videos=True)
    samples = [s for s in discover(data, images_only=False) if s.path.endswith(".mp4")]
    assert len(samples) == 6
    conds = [P.Condition()]
    mean = P.score_conditions(det, samples, conds, P.EvalOptions(video_frames=5))
    mx = P.score_conditions(det, samples, conds, P.EvalOptions(video_frames=5, aggregate="max"))
    fr = mean.frames["uncompressed"]
    assert [len(f) for f in fr] == [5] * 6 and mean.kinds == ["video"] * 6
    assert np.allclose(mean.probs["uncompressed"], [f.mean() for f in fr])
    assert np.allclose(mx.probs["uncompressed"], [f.max() for f in fr])
    rep = P.evaluate(det, samples, ["standard"], P.EvalOptions(video_frames=5, bootstrap=0))
    assert rep["metrics"]["frame"]["uncompressed"]["n"] == 30
    assert rep["metrics"]["sample"]["uncompressed"]["n"] == 6
    titles = [t["title"] for t in rep["sections"][0]["tables"]]
    assert titles[:2] == ["Image/video level", "Frame level"]


def test_unreadable_files_are_listed(det, data_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    samples = discover(data_dir) + [Sample(str(bad), 1, "heavy")]
    rep = P.evaluate(det, samples, ["standard"], P.EvalOptions(bootstrap=0))
    assert rep["counts"]["unreadable"] == 1 and rep["unreadable"][0]["path"] == str(bad)
    assert rep["counts"]["samples"] == 18


def test_one_class_data_still_reports(det, data_dir, tmp_path):
    fakes = [s for s in discover(data_dir) if s.label == 1]
    rep = P.evaluate(det, fakes, ["jpeg", "confound"], P.EvalOptions(bootstrap=20))
    write_report(rep, tmp_path / "one")
    j = json.loads((tmp_path / "one" / "report.json").read_text())  # strict JSON, no NaN
    m = j["metrics"]["sample"]["uncompressed"]
    assert m["auc"] is None and m["auc_ci"] == [None, None] and 0 <= m["accuracy"] <= 1
    assert "n/a" in (tmp_path / "one" / "report.md").read_text()


def test_cli_evaluate(model_dir, data_dir, tmp_path):
    out = tmp_path / "cli"
    rc = main(["evaluate", "--model", str(model_dir), "--data", str(data_dir), "--protocol",
               "jpeg,confound", "--out", str(out), "--bootstrap", "50", "--device", "cpu",
               "--threads", "1", "--quiet"])
    assert rc == 0
    j = json.loads((out / "report.json").read_text())
    assert [s["protocol"] for s in j["sections"]] == ["jpeg", "confound"]
    assert len(j["sections"][1]["tables"][0]["rows"]) == 4
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data_dir),
                 "--protocol", "nope", "--out", str(out)]) == 2


def test_cli_split_val_rebuilds_the_training_split(model_dir, data_dir, tmp_path):
    import shutil

    from noisetrace.data.manifest import split

    m = tmp_path / "m"
    shutil.copytree(model_dir, m)
    recipe = {"data": [str(data_dir)], "val_fraction": 0.3, "seed": 1, "holdout": ["^heavy$"]}
    (m / "train_config.json").write_text(json.dumps(recipe))
    pool = [s for s in discover(data_dir) if s.generator != "heavy"]
    val = split(pool, 0.3, 1)[1]
    for which, expect in (("val", val), ("heldout", [s for s in discover(data_dir)
                                                     if s.generator == "heavy"])):
        out = tmp_path / which
        assert main(["evaluate", "--model", str(m), "--split", which, "--out", str(out),
                     "--bootstrap", "0", "--device", "cpu", "--quiet"]) == 0
        with open(out / "scores.csv") as fh:
            got = sorted(r["path"] for r in csv.DictReader(fh))
        assert got == sorted(s.path for s in expect) and 0 < len(got) < 18
    # Without --data and without a split there is nothing to evaluate.
    assert main(["evaluate", "--model", str(m), "--out", str(tmp_path / "x")]) == 2


# -- protocols that train --------------------------------------------------------------------
def test_leave_one_out_trains_without_the_held_out_generator(data_dir):
    samples = discover(data_dir)
    calls: list[list[Sample]] = []

    def train_fn(ss):
        calls.append(ss)
        return tiny_train(ss, steps=4)

    sec = P.leave_one_out(samples, train_fn, opts=P.EvalOptions(bootstrap=0))
    rows = sec["tables"][0]["rows"]
    assert [r[1] for r in rows] == ["seen (held-back split)", "heavy", "light"]
    assert [r[0] for r in rows] == ["heavy, light", "light", "heavy"]
    assert len(calls) == 3
    assert {s.generator for s in calls[1] if s.label} == {"light"}
    assert {s.generator for s in calls[2] if s.label} == {"heavy"}
    data = sec["tables"][0]["data"]
    # The unseen generator is tested on all 6 of its samples plus the held-back reals.
    n_real_test = data[0]["metrics"]["n"] - data[0]["metrics"]["n_fake"]
    assert data[1]["metrics"]["n"] == 6 + n_real_test
    test_paths = {s.path for s in calls[0]}
    assert all(0 <= r[3] <= 1 for r in rows) and test_paths


def test_cli_loo_through_the_training_loop(data_dir, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("arch_config: {widths: [4, 8], hidden: 8}\nepochs: 1\nbatch_size: 8\n"
                   "patch: 32\ncrops_per_image: 1\nval_max_side: 64\n")
    out = tmp_path / "loo"
    rc = main(["evaluate", "--data", str(data_dir), "--protocol", "loo", "--out", str(out),
               "--train-config", str(cfg), "--device", "cpu", "--bootstrap", "0", "--quiet"])
    assert rc == 0
    sec = json.loads((out / "report.json").read_text())["sections"][0]
    assert sec["protocol"] == "loo"
    assert [r[1] for r in sec["tables"][0]["rows"]] == ["seen (held-back split)", "heavy",
                                                        "light"]


def test_cross_dataset_matrix(tmp_path):
    a = discover(_make_data(tmp_path / "A", n=4))
    b = discover(_make_data(tmp_path / "B", n=4))
    sec = P.cross_dataset({"A": a, "B": b}, lambda ss: tiny_train(ss, steps=4),
                          opts=P.EvalOptions(bootstrap=0))
    acc = sec["tables"][0]
    assert acc["columns"] == ["train \\ test", "A", "B"]
    assert [r[0] for r in acc["rows"]] == ["A", "B"] and all(len(r) == 3 for r in acc["rows"])
    assert set(acc["data"]) == {"A -> A", "A -> B", "B -> A", "B -> B"}
    with pytest.raises(NoisetraceError, match="only one class"):
        P.cross_dataset({"A": [s for s in a if s.label]}, tiny_train)


def test_sequence_length_sweep(tmp_path):
    data = _make_data(tmp_path / "seq", n=0, videos=True)
    samples = discover(data, images_only=False)
    for i in range(2, 4):  # two more videos per class so every split has test videos
        for kind in NOISE:
            d = data / ("real" if kind == "real" else f"fake/{kind}")
            rng = np.random.default_rng(i)
            write_video(d / f"extra{i}.mp4", [_scene(rng, 64, 64, NOISE[kind])
                                               for _ in range(8)], fps=4, codec="libx264")
    samples = discover(data, images_only=False)
    lengths_seen = []

    def train_fn(ss, length):
        lengths_seen.append(length)
        return tiny_train(ss, steps=4)

    sec = P.sequence_length_sweep(samples, train_fn, lengths=(2, 4), max_frames=8,
                                  opts=P.EvalOptions(bootstrap=0))
    t = sec["tables"][0]
    assert lengths_seen == [2, 4]
    assert t["columns"] == ["test", "2", "4"] and [r[0] for r in t["rows"]] == ["heavy", "light"]
    # 8 frames per video: 4 clips of 2, 2 clips of 4, for each test video.
    n2, n4 = t["data"]["heavy @ 2"]["n"], t["data"]["heavy @ 4"]["n"]
    assert n2 == 2 * n4 and n2 % 4 == 0 and n2 > 0


def test_cli_evaluate_reads_every_manifest_even_with_the_same_name(model_dir, data_dir, tmp_path):
    """Two prepared caches both hold `manifest.tsv`: neither may be dropped."""
    files = sorted(p for p in data_dir.rglob("*") if p.suffix in (".png", ".jpg"))
    manifests = []
    for i, part in enumerate((files[0::2], files[1::2])):
        d = tmp_path / f"cache{i}"
        d.mkdir()
        rows = ["path\tlabel"] + [f"{p}\t{'real' if 'real' in p.parts else 'fake'}" for p in part]
        (d / "manifest.tsv").write_text("\n".join(rows) + "\n")
        manifests.append(str(d / "manifest.tsv"))
    out = tmp_path / "two"
    assert main(["evaluate", "--model", str(model_dir), "--data", *manifests, "--out", str(out),
                 "--bootstrap", "0", "--device", "cpu", "--threads", "1", "--quiet"]) == 0
    j = json.loads((out / "report.json").read_text())
    assert j["counts"]["samples"] == len(files), j["counts"]


# -- the protocol registry -------------------------------------------------------------------
def test_builtin_protocols_are_registered_in_order():
    from noisetrace.evaluate.registry import protocol_names

    assert protocol_names()[:11] == ["standard", "jpeg", "resolution", "generators",
                                     "republished", "online", "confound", "loo",
                                     "crossdataset", "seqlen", "lofo"]


def test_a_registered_protocol_runs_through_the_cli(model_dir, data_dir, tmp_path, capsys):
    """A protocol defined here, in one class, reaches --help and the report; command.py and
    protocols.py know nothing of it."""
    from noisetrace.evaluate.registry import (
        ConditionProtocol,
        protocol_names,
        register_protocol,
        unregister_protocol,
    )

    @register_protocol
    class Toy(ConditionProtocol):
        name = "toy"
        description = "every file JPEG QF 50, then a 40 px centre crop"
        title = "Toy protocol"

        def plan(self, opts, others):
            return [P.Condition(50, 40)]

        def summarize(self, section, metrics):
            return [f"Toy: AUC {metrics[section['roc'][0]]['auc']:.3f}."]

    try:
        assert "toy" in protocol_names()
        with pytest.raises(SystemExit):
            main(["evaluate", "--help"])
        assert "every file JPEG QF 50, then a 40 px centre crop" in capsys.readouterr().out
        out = tmp_path / "toy"
        assert main(["evaluate", "--model", str(model_dir), "--data", str(data_dir),
                     "--protocol", "standard,toy", "--out", str(out), "--bootstrap", "0",
                     "--device", "cpu", "--threads", "1", "--quiet"]) == 0
        j = json.loads((out / "report.json").read_text())
        assert [s["protocol"] for s in j["sections"]] == ["standard", "toy"]
        toy = j["sections"][1]
        assert toy["title"] == "Toy protocol" and toy["description"] == Toy.description
        assert toy["roc"] == ["QF 50 @40"]
        row = toy["tables"][0]["rows"][0]
        assert row[:3] == ["QF 50 @40", 18, 12]
        assert row[3] == pytest.approx(j["metrics"]["sample"]["QF 50 @40"]["auc"], abs=1e-4)
        assert any(s.startswith("Toy: AUC ") for s in j["summary"])
        assert "## Toy protocol" in (out / "report.md").read_text()
        assert (out / "roc_toy.png").is_file()
    finally:
        unregister_protocol("toy")
    assert "toy" not in protocol_names()


def test_unknown_protocol_lists_the_registered_ones(model_dir, data_dir, tmp_path, capsys):
    from noisetrace.evaluate.registry import get_protocol, protocol_names

    with pytest.raises(NoisetraceError, match="unknown protocol") as exc:
        get_protocol("jpg")
    assert all(n in str(exc.value) for n in protocol_names())
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data_dir), "--protocol",
                 "jpeg,nope", "--out", str(tmp_path / "r")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown protocol(s) nope; choose from " + ", ".join(protocol_names()) in err
    assert not (tmp_path / "r").exists()


def test_register_protocol_refuses_clashes_and_bad_names(tmp_path, capsys):
    from noisetrace.evaluate.registry import ConditionProtocol, register_protocol

    def make(name, description="one line", base=ConditionProtocol):
        return type("X", (base,), {"name": name, "description": description})

    with pytest.raises(ValueError, match="already registered"):
        register_protocol(make("jpeg"))
    with pytest.raises(ValueError, match="without commas"):
        register_protocol(make("a,b"))
    with pytest.raises(ValueError, match="one line"):
        register_protocol(make("two", "two\nlines"))
    with pytest.raises(TypeError, match="must subclass"):
        register_protocol(make("plain", base=object))
    # lofo writes a report of its own: it cannot share a run.
    assert main(["evaluate", "--protocol", "lofo,jpeg", "--out", str(tmp_path / "r")]) == 2
    assert "run it alone (--protocol lofo)" in " ".join(capsys.readouterr().err.split())
