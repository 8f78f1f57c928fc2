"""Explanations: IG completeness, map shapes and ranges, noise traces, files written by the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisetrace.cli import main
from noisetrace.errors import InputError, ModelError
from noisetrace.explain import ig as igm
from noisetrace.explain import report
from noisetrace.explain.heatmap import colormap, overlay
from noisetrace.explain.intensity import IntensityAnalysis, run_intensity_analysis
from noisetrace.explain.numbers import fmt_num, round_floats
from noisetrace.explain.render import caption, output_scale, render_figure
from noisetrace.explain.report import explain_array, explain_file, top_regions
from noisetrace.explain.traces import (
    load_siamese,
    locate_face,
    noise_traces,
    plot_traces,
    square_pair,
    srm_maps,
)
from noisetrace.media.video import write_video

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a busy 2-core machine, more threads thrash (100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def small(photo) -> np.ndarray:
    return np.ascontiguousarray(photo[100:172, 150:230])  # 72 x 80, textured


# -- Integrated Gradients --------------------------------------------------------------------
@pytest.mark.parametrize("baseline", ["black", "blurred", "noise"])
def test_ig_completeness(tiny_detector, small, baseline):
    r = igm.integrated_gradients(
        tiny_detector, small, baseline=baseline, steps=64, internal_batch_size=16
    )
    diff = r.logit - r.baseline_logit
    assert not r.tiled
    assert r.attributions.shape == small.shape and r.attributions.dtype == np.float32
    assert abs(r.logit - tiny_detector.logit(small)) < 1e-4
    # Completeness: the attributions add up to f(x) - f(baseline).
    total = float(r.attributions.astype(np.float64).sum())
    # (ReLU networks are piecewise linear, so the quadrature error shrinks slowly: 3%.)
    assert abs(total - diff) <= 0.03 * abs(diff) + 2e-4, (total, diff)
    assert abs(r.delta - (total - diff)) < 1e-6


def test_ig_tiled_is_complete_and_explains_the_tiled_logit(tiny_detector, small):
    tiny_detector.config.tile = 32  # 72 x 80 -> 3 x 3 tiles, the last ones thinner
    try:
        r = igm.integrated_gradients(
            tiny_detector, small, baseline="noise", steps=64, internal_batch_size=12
        )
        tiled_logit = tiny_detector.logit(small)
    finally:
        tiny_detector.config.tile = 1024
    assert r.tiled
    assert abs(r.logit - tiled_logit) < 1e-4
    diff = r.logit - r.baseline_logit
    assert abs(r.attributions.sum() - diff) <= 0.03 * abs(diff) + 2e-4


def test_ig_tiled_equals_captum_on_one_tile(tiny_detector, small):
    x = tiny_detector.to_tensor(small)
    b = tiny_detector.to_tensor(igm.make_baseline(small, "noise"))
    model = tiny_detector.model
    a1, fx1, fb1 = igm._captum_ig(model, x, b, 16, 4, "gausslegendre")
    a2, fx2, fb2 = igm._tiled_ig(model, x, b, 16, 3, "gausslegendre", 1024)
    assert fx1 == pytest.approx(fx2, abs=1e-5) and fb1 == pytest.approx(fb2, abs=1e-5)
    torch.testing.assert_close(a1, a2, rtol=1e-3, atol=1e-7)


def test_baselines(small):
    black = igm.make_baseline(small, "black")
    blurred = igm.make_baseline(small, "blurred")
    noise = igm.make_baseline(small, "noise", seed=3)
    for b in (black, blurred, noise):
        assert b.shape == small.shape and b.dtype == np.float32
        assert b.min() >= 0 and b.max() <= 255
    assert not black.any()
    # The blur keeps the content (mean) but removes the high-frequency residual.
    assert abs(blurred.mean() - small.mean()) < 2
    assert np.abs(srm_maps(blurred.round().astype(np.uint8))).mean() < 0.3 * np.abs(
        srm_maps(small)
    ).mean()
    np.testing.assert_array_equal(noise, igm.make_baseline(small, "noise", seed=3))
    with pytest.raises(InputError):
        igm.make_baseline(small, "grey")  # type: ignore[arg-type]


def test_ig_maps_ranges(tiny_detector, small):
    r = igm.integrated_gradients(tiny_detector, small, steps=4)
    assert r.pixel_map().shape == small.shape[:2]
    infl = r.normalized_influence()
    assert infl.shape == small.shape[:2] and infl.min() >= 0 and infl.max() <= 1
    assert infl.max() == 1.0  # the top 1% saturate


# -- DJIN's intensity analysis ---------------------------------------------------------------
def test_intensity_counts_and_direction(tmp_path):
    rng = np.random.default_rng(0)
    ana = IntensityAnalysis()
    for label in (0, 1):
        for _ in range(3):
            img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            # Reals: dark pixels matter; fakes: bright pixels matter (DJIN's finding).
            infl = (255 - luma) if label == 0 else luma
            attr = np.repeat((infl / 3)[..., None], 3, axis=2).astype(np.float32)
            ana.add(img, attr, label)
    assert ana.images == [3, 3]
    assert ana.total.sum() == 6 * 40 * 50
    assert ana.top.sum(axis=1).tolist() == [3 * math.ceil(0.01 * 2000)] * 2
    s = ana.summary()
    assert s["real"]["p_top_dark"] > 0.02 > s["real"]["p_top_bright"] == 0
    assert s["fake"]["p_top_bright"] > 0.02 > s["fake"]["p_top_dark"] == 0
    p = ana.probability(1)
    assert p.shape == (256,) and np.nanmin(p) >= 0 and np.nanmax(p) <= 1
    assert ana.histogram(0).sum() == pytest.approx(1.0)
    png = ana.plot(tmp_path / "i.png", title="t")
    assert png.read_bytes()[:8] == PNG_MAGIC
    back = IntensityAnalysis.from_json(json.loads(json.dumps(ana.to_json())))
    np.testing.assert_array_equal(back.top, ana.top)
    with pytest.raises(InputError):
        ana.add(img, attr[:10], 0)


def test_intensity_nan_where_unseen():
    ana = IntensityAnalysis(unit="channel")
    img = np.full((10, 10, 3), 100, np.uint8)
    ana.add(img, np.ones(img.shape, np.float32), 1)
    p = ana.probability(1)
    assert p[100] == pytest.approx(math.ceil(0.01 * 300) / 300)
    assert np.isnan(p[:100]).all() and np.isnan(p[101:]).all()
    assert ana.images == [0, 1]


def test_run_intensity_analysis_crops_and_counts(tiny_detector, photo):
    ana = run_intensity_analysis(
        tiny_detector, [(photo, 0), (photo[::-1].copy(), 1)], max_side=48, steps=2
    )
    assert ana.images == [1, 1]
    assert ana.total.sum(axis=1).tolist() == [48 * 48, 48 * 48]


# -- noise traces ----------------------------------------------------------------------------
def test_face_and_background_squares():
    shape = (120, 200, 3)
    f, b, overlaps = square_pair(shape, (150, 10, 180, 50), scale=1.0)
    assert f == (145, 10, 185, 50)  # 40 x 40 around the face
    assert b == (0, 80, 40, 120) and not overlaps  # the corner furthest from a top-right face
    # Centre square without a face; a tight face crop has no clear background: flagged.
    assert square_pair(shape, None)[:2] == ((80, 40, 120, 80), (0, 0, 40, 40))
    f, b, overlaps = square_pair((50, 50, 3), (5, 5, 45, 45))
    assert overlaps and b[2] - b[0] == f[2] - f[0]
    # A close-up: no face-sized square is clear, a smaller clear one (>= min_side) is taken,
    # as a face + background model cuts its pair.
    f, b, overlaps = square_pair((400, 300, 3), (60, 90, 300, 330), scale=1.0, min_side=64)
    assert f == (60, 90, 300, 330) and b == (0, 0, 90, 90) and not overlaps
    _, b, overlaps = square_pair((400, 300, 3), (60, 90, 300, 330), scale=1.0, min_side=100)
    assert overlaps and b[2] - b[0] == 240
    # A given background square (the one a model scored) is used as it is.
    tr = noise_traces(np.zeros((400, 300, 3), np.uint8), (60, 90, 300, 330), detect=None,
                      scale=1.0, background=(200, 0, 264, 64))
    assert tr.background_box == (200, 0, 264, 64) and tr.background.shape == (64, 64, 3)
    with pytest.raises(InputError):
        square_pair(shape, (10, 10, 10, 30))


def test_locate_face_on_a_portrait(photo):
    box = locate_face(photo, "skimage")  # the astronaut's face, upper middle of the photo
    assert box is not None
    x0, y0, x1, y1 = box
    assert 120 < (x0 + x1) / 2 < 320 and 40 < (y0 + y1) / 2 < 220
    tr = noise_traces(photo, detect="skimage")
    assert tr.face_source == "detected" and not tr.background_overlaps


def test_srm_maps_shape_and_flat_zero(small):
    r = srm_maps(small)
    assert r.shape == (3, *small.shape[:2]) and r.dtype == np.float32
    assert np.abs(r).mean() > 0.5
    assert np.abs(srm_maps(np.full((20, 30, 3), 77, np.uint8))).max() < 1e-3


class _FakeSiamese(torch.nn.Module):
    """Stands in for siamese-dncnn: noise = image minus a 3x3 box blur."""

    pretrained_cfg = {"normalize": "unit", "input_size": None}

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.ones(3, 1, 3, 3) / 9
        return x - torch.nn.functional.conv2d(x, k, padding=1, groups=3)


def test_noise_traces_and_figure(photo, tmp_path):
    img = np.ascontiguousarray(photo[:160, :200])
    tr = noise_traces(img, face=(90, 40, 138, 88), siamese=_FakeSiamese(), scale=1.0)
    for m in (tr.srm_face, tr.srm_background, tr.noise_face, tr.noise_background):
        assert m.shape == (48, 48) and m.dtype == np.float32 and np.isfinite(m).all()
    assert tr.srm_face.min() >= 0 and tr.face_source == "given"
    st = tr.stats()
    assert st["srm_ratio"] > 0 and st["noise_ratio"] > 0
    out = plot_traces(img, tr, tmp_path / "t.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    plain = noise_traces(img, detect=None)  # SRM only without an extractor, centre square
    assert plain.noise_face is None and plain.face_source == "centre"


def test_siamese_from_dncnn_checkpoint(photo, tmp_path):
    from noisetrace import models

    if "siamese-dncnn" not in models.list_models():
        pytest.skip("siamese-dncnn is not registered in this install")
    from noisetrace.models.siamese_dncnn import DnCNN

    torch.manual_seed(1)
    ckpt = tmp_path / "dncnn.th"
    torch.save({"network": DnCNN(3, 64, 2).state_dict()}, ckpt)
    model = load_siamese(ckpt)
    first = model.extractor[0].weight
    torch.testing.assert_close(first, torch.load(ckpt)["network"]["0.weight"])
    tr = noise_traces(photo[:200, :300].copy(), face=(10, 10, 90, 90), siamese=model,
                      detect=None)  # fmt: skip
    assert tr.noise_face.shape == tr.noise_background.shape == (64, 64)  # the model's input
    assert np.isfinite(tr.noise_face).all() and tr.noise_face.std() > 0


def test_load_siamese_errors_clearly():
    with pytest.raises(ModelError, match="siamese-dncnn|noise"):
        load_siamese("no-such-extractor")
    with pytest.raises(ModelError, match="noise"):
        load_siamese(torch.nn.Identity())


# -- reports ---------------------------------------------------------------------------------
def test_top_regions_finds_planted_square():
    m = np.zeros((100, 120), np.float32)
    m[60:80, 10:30] = 1.0
    m[5:15, 100:110] = 0.5
    regs = top_regions(m, window=20, k=3)
    assert (regs[0]["x"], regs[0]["y"]) == (10, 60)
    assert regs[0]["mean"] == pytest.approx(1.0) and regs[0]["share"] == pytest.approx(400 / 450)
    for r in regs:
        assert 0 <= r["x"] <= 100 and 0 <= r["y"] <= 80
    for a in regs:  # no two regions overlap
        for b in regs:
            if a is not b:
                assert abs(a["x"] - b["x"]) >= 20 or abs(a["y"] - b["y"]) >= 20


@pytest.mark.parametrize("method", ["heatmap", "ig"])
def test_explain_array_maps(tiny_detector, photo, method):
    img = np.ascontiguousarray(photo[:96, :128])
    ex = explain_array(tiny_detector, img, method, steps=4, window=32)
    assert ex.map.shape == img.shape[:2] and ex.map.dtype == np.float32
    assert ex.map.min() >= 0 and ex.map.max() <= 1
    assert ex.overlay.shape == img.shape and ex.overlay.dtype == np.uint8
    assert 0 <= ex.score <= 1 and ex.verdict in ("fake", "real")
    assert ex.score == pytest.approx(tiny_detector.score(img), abs=1e-5)
    assert ex.regions and all(r["w"] == 32 for r in ex.regions)
    assert ex.overlay_png()[:8] == PNG_MAGIC
    s = ex.summary()
    json.dumps(s)
    if method == "ig":
        assert abs(s["ig"]["delta"]) < 1.0


def test_explain_file_image_and_video(tiny_detector, photo, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo[:90, :110]).save(src / "x.png")
    Image.fromarray(photo[100:190, :110]).save(src / "sub" / "x.png")
    frames = [np.ascontiguousarray(photo[i * 8 : i * 8 + 64, :64]) for i in range(6)]
    write_video(src / "v.mp4", frames, fps=6)
    out = tmp_path / "out"
    s1 = explain_file(
        tiny_detector, src / "x.png", out, traces=True, face=(30, 20, 70, 60), face_backend=None
    )
    s2 = explain_file(tiny_detector, src / "sub" / "x.png", out)
    assert s1["files"]["overlay"] == "x.png.overlay.png"
    assert s2["files"]["overlay"] != s1["files"]["overlay"]  # same name, other file
    assert explain_file(tiny_detector, src / "x.png", out)["files"] == {
        "overlay": "x.png.overlay.png"
    }  # rerun overwrites its own
    s3 = explain_file(tiny_detector, src / "v.mp4", out, "ig", steps=2)
    assert s3["kind"] == "video" and 0 <= s3["frame"]["index"] < 6
    res = tiny_detector.scan(src / "v.mp4")
    assert s3["score"] == pytest.approx(res.score) and s3["verdict"] == res.verdict
    for s in (s1, s2, s3):
        png = Image.open(out / s["files"]["overlay"])
        fig = s["figure"]
        assert png.size == (fig["width"], fig["height"]) and fig["scale"] == 1.0
        x0, y0, x1, y1 = fig["image_box"]
        assert (x1 - x0, y1 - y0) == (s["width"], s["height"])  # small: never upscaled
        assert png.size[1] > s["height"]  # title and legend bands
        js = json.loads((out / (s["files"]["overlay"][: -len(".overlay.png")] + ".explain.json"))
                        .read_text())  # fmt: skip
        assert js["regions"] and js["model"] == "tiny"
    assert (out / "x.png.traces.png").read_bytes()[:8] == PNG_MAGIC
    assert s1["traces"]["face_box"] == [24, 14, 76, 66]  # 1.3 x the 40 px face, same centre
    with pytest.raises(InputError):
        explain_file(tiny_detector, src / "missing.jpg", out)


# -- command line ----------------------------------------------------------------------------
def _gen_images(d: Path, photo: np.ndarray, n: int = 3) -> Path:
    d.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(photo[i * 60 : i * 60 + 80, i * 50 : i * 50 + 96]).save(d / f"g{i}.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return d


def test_scan_explain_writes_one_per_flagged_file(tiny_model_dir, photo, tmp_path, capsys):
    src = _gen_images(tmp_path / "imgs", photo)
    out = tmp_path / "ev"
    # threshold 0 flags every readable file as fake; the broken one is an error, not flagged.
    rc = main(["scan", str(src), "--model", str(tiny_model_dir), "--threshold", "0",
               "--explain", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"g{i}.png.overlay.png" for i in range(3)] + [f"g{i}.png.explain.json" for i in range(3)]
    )
    js = json.loads((out / "g0.png.explain.json").read_text())
    assert js["verdict"] == "fake" and js["method"] == "heatmap"
    out2 = tmp_path / "none"
    rc = main(["scan", str(src), "--model", str(tiny_model_dir), "--threshold", "1",
               "--explain", str(out2), "--quiet"])  # fmt: skip
    assert rc == 0 and (not out2.exists() or not any(out2.iterdir()))


def test_explain_command(tiny_model_dir, photo, tmp_path):
    src = _gen_images(tmp_path / "imgs", photo, n=2)
    out = tmp_path / "ex"
    rc = main(["explain", str(src), "--model", str(tiny_model_dir), "--method", "ig",
               "--steps", "2", "--out", str(out), "--traces", "--siamese", "none",
               "--face", "10,10,30,30"])  # fmt: skip
    assert rc == 0
    for i in range(2):
        for suffix in ("overlay.png", "explain.json", "traces.png"):
            assert (out / f"g{i}.png.{suffix}").is_file()


def test_explain_intensity_command(tiny_model_dir, photo, tmp_path):
    root = tmp_path / "data"
    for label, sl in (("real", slice(0, 64)), ("fake", slice(200, 264))):
        d = root / label / ("gen" if label == "fake" else "")
        d.mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(np.ascontiguousarray(photo[sl, i * 64 : i * 64 + 64])).save(
                d / f"{i}.png"
            )
    out = tmp_path / "ana"
    rc = main(["explain", str(root), "--intensity", "--model", str(tiny_model_dir),
               "--steps", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0
    js = json.loads((out / "intensity.json").read_text())
    assert js["images"] == [2, 2]
    assert (out / "intensity.png").read_bytes()[:8] == PNG_MAGIC


# -- readable output: figure, size, progress, numbers ---------------------------------------
def _text_of(segments) -> str:
    return "".join(t for seg in segments for t, _ in seg)


def _has_colour(a: np.ndarray, rgb: np.ndarray) -> bool:
    return bool((a.reshape(-1, 3) == rgb.reshape(1, 3)).all(axis=1).any())


@pytest.mark.parametrize("method", ["heatmap", "ig"])
def test_figure_has_title_and_legend(tiny_detector, photo, method):
    img = np.ascontiguousarray(photo[:96, :128])
    ex = explain_array(tiny_detector, img, method, steps=2, window=32)
    fig = ex.figure(name="x.png")
    a = np.asarray(fig.image)
    x0, y0, x1, y1 = fig.image_box
    assert (x1 - x0, y1 - y0) == (128, 96) and fig.scale == 1.0
    np.testing.assert_array_equal(a[y0:y1, x0:x1], ex.overlay)  # the overlay, unchanged
    assert y0 >= 20 and a.shape[0] - y1 >= 40  # a title band above, a legend band below
    # The title band holds light text (its bounding box is not empty).
    title = Image.fromarray(a[:y0]).convert("L").point(lambda v: 255 if v > 150 else 0)
    assert title.getbbox() is not None
    # The legend's colour bar spans the method's colours, end to end.
    legend = a[y1:]
    lo, hi = (0.0, 1.0) if method == "heatmap" else (0.5, 1.0)
    for end in (lo, hi):
        assert _has_colour(legend, colormap(np.array([end]))[0]), end
    bx0, by0, bx1, by1 = fig.bar_box
    np.testing.assert_array_equal(a[by0 + 1, bx0], colormap(np.array([lo]))[0])
    np.testing.assert_array_equal(a[by0 + 1, bx1 - 1], colormap(np.array([hi]))[0])
    assert ex.overlay_png()[:8] == PNG_MAGIC


def test_caption_names_file_score_verdict_threshold():
    text = _text_of(caption("clip.mp4", "default", "ig", 0.87654, "fake", 0.5,
                            "frame 13 of 240, t=3.2 s"))  # fmt: skip
    for part in ("clip.mp4", "FAKE", "score 0.877", "threshold 0.500", "model default", "ig",
                 "frame 13 of 240, t=3.2 s"):  # fmt: skip
        assert part in text, part


def test_explain_file_titles_with_the_scan_score(tiny_detector, photo, tmp_path, monkeypatch):
    seen = []

    def spy(*args, **kw):
        seen.append(args)
        return caption(*args, **kw)

    monkeypatch.setattr(report, "caption", spy)
    Image.fromarray(photo[:90, :110]).save(tmp_path / "x.png")
    frames = [np.ascontiguousarray(photo[i * 8 : i * 8 + 64, :64]) for i in range(6)]
    write_video(tmp_path / "v.mp4", frames, fps=6)
    s1 = explain_file(tiny_detector, tmp_path / "x.png", tmp_path / "out")
    s2 = explain_file(tiny_detector, tmp_path / "v.mp4", tmp_path / "out")
    (name1, _, _, score1, verdict1, _, note1), (name2, _, _, score2, verdict2, _, note2) = seen
    assert (name1, verdict1, note1) == ("x.png", s1["verdict"], "")
    assert (name2, verdict2) == ("v.mp4", s2["verdict"])
    assert score1 == pytest.approx(s1["score"], abs=1e-6)  # the JSON keeps 6 digits
    assert score2 == pytest.approx(s2["score"], abs=1e-6)
    # The title names the frame shown, counted from 1, with its time.
    assert note2.startswith(f"frame {s2['frame']['index'] + 1} of 6, t=") and " s" in note2


def test_figure_size_cap_and_png_size():
    rng = np.random.default_rng(0)
    from skimage import data

    # A 2592 x 1944 "camera photo": the astronaut upscaled, plus sensor-like noise.
    big = np.asarray(Image.fromarray(data.astronaut()).resize((2592, 1944), Image.BICUBIC))
    big = np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:1944, 0:2592]
    ov = overlay(big, (0.5 + 0.5 * np.sin(xx / 300) * np.cos(yy / 200)).astype(np.float32))
    title = caption("big.jpg", "m", "heatmap", 0.9, "fake", 0.5)
    fig = render_figure(ov, "heatmap", title)
    assert max(fig.image.size) <= 1600 and fig.scale == pytest.approx(1600 / 2592, rel=0.05)
    x0, y0, x1, y1 = fig.image_box
    assert x1 - x0 == round(2592 * fig.scale) and y1 - y0 == round(1944 * fig.scale)
    png = fig.png()
    assert len(png) < 3_000_000, len(png)  # full resolution: 7 MB and more
    assert Image.open(__import__("io").BytesIO(png)).size == fig.image.size
    # A tall image: image plus bands fit, not just the image.
    tall = render_figure(ov[:, :900], "ig", title, max_size=600)
    assert max(tall.image.size) <= 600
    assert output_scale(2592, 1944, 0) == 1.0 and output_scale(100, 80) == 1.0
    with pytest.raises(InputError, match="at least"):
        render_figure(ov[:10, :10], "heatmap", title, max_size=100)


def test_explain_command_max_size(tiny_model_dir, photo, tmp_path, capsys):
    Image.fromarray(photo).save(tmp_path / "p.png")  # 512 x 512
    base = ["explain", str(tmp_path / "p.png"), "--model", str(tiny_model_dir), "--window", "128"]
    assert main([*base, "--out", str(tmp_path / "a"), "--max-size", "300"]) == 0
    js = json.loads((tmp_path / "a" / "p.png.explain.json").read_text())
    im = Image.open(tmp_path / "a" / "p.png.overlay.png")
    assert max(im.size) <= 300 and im.size == (js["figure"]["width"], js["figure"]["height"])
    assert js["figure"]["scale"] < 0.6 and js["width"] == 512  # the map was full resolution
    assert main([*base, "--out", str(tmp_path / "b"), "--max-size", "0"]) == 0
    js = json.loads((tmp_path / "b" / "p.png.explain.json").read_text())
    x0, y0, x1, y1 = js["figure"]["image_box"]
    assert (x1 - x0, y1 - y0) == (512, 512) and js["figure"]["scale"] == 1.0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "c"), "--max-size", "100"]) == 2
    assert "--max-size" in capsys.readouterr().err


@pytest.mark.parametrize("tile", [1024, 32])
def test_ig_progress_observes_without_changing_result(tiny_detector, small, tile):
    calls: list[tuple[int, int]] = []
    tiny_detector.config.tile = tile  # 32: the tiled path, 3 x 3 tiles
    try:
        plain = igm.integrated_gradients(tiny_detector, small, steps=6, internal_batch_size=4)
        seen = igm.integrated_gradients(tiny_detector, small, steps=6, internal_batch_size=4,
                                        progress=lambda d, t: calls.append((d, t)))
    finally:
        tiny_detector.config.tile = 1024
    assert seen.tiled == (tile == 32)
    np.testing.assert_array_equal(seen.attributions, plain.attributions)
    assert seen.logit == plain.logit and seen.delta == plain.delta
    done = [d for d, _ in calls]
    assert len(calls) >= 3 and done == sorted(done)  # one call per batch of path points
    assert calls[-1][0] == calls[-1][1] and len({t for _, t in calls}) == 1


def test_explain_progress_lines(tiny_model_dir, photo, tmp_path, capsys):
    src = _gen_images(tmp_path / "imgs", photo, n=2)
    args = ["explain", str(src), "--model", str(tiny_model_dir), "--method", "ig", "--steps",
            "4", "--batch", "2", "--out", str(tmp_path / "ex")]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    quiet = capsys.readouterr().err
    assert "integrated gradients" not in quiet  # not a terminal, not asked: result lines only
    assert "g0.png: " in quiet
    assert main([*args, "--progress"]) == 0
    err = capsys.readouterr().err
    # broken.jpg is listed too (and reported unreadable): three files
    assert re.search(r"\[\d/3\] g0\.png: explaining \(ig\)", err) and "/3] g1.png" in err
    assert re.search(r"g0\.png: integrated gradients 100% \(\d+/\d+ passes", err)
    assert re.search(r"g1\.png: integrated gradients [1-9]\d%", err)  # partway, per batch


def test_numbers_are_rounded():
    assert fmt_num(1.3255391630545724e-05) == "1.33e-05"
    assert fmt_num(0.010812345) == "0.0108" and fmt_num(187.6) == "188"
    assert fmt_num(12345.6) == "12346" and fmt_num(0) == "0" and fmt_num(None) == "n/a"
    assert round_floats({"a": [1.23456789, 3], "b": 1.3255391630545724e-05, "c": True}) == {
        "a": [1.23457, 3], "b": 1.32554e-05, "c": True
    }


def _floats(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _floats(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _floats(v)


def test_intensity_and_json_numbers_are_short(
    tiny_model_dir, tiny_detector, photo, tmp_path, capsys
):
    root = tmp_path / "data"
    for label, sl in (("real", slice(0, 64)), ("fake", slice(200, 264))):
        d = root / label
        d.mkdir(parents=True)
        Image.fromarray(np.ascontiguousarray(photo[sl, :64])).save(d / "0.png")
    capsys.readouterr()
    rc = main(["explain", str(root), "--intensity", "--model", str(tiny_model_dir),
               "--steps", "2", "--out", str(tmp_path / "ana")])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "P(top) dark" in err
    assert not re.search(r"\d\.\d{7,}", err), err  # no raw floats
    assert not re.search(r"\d\.\d{3,}e", err), err  # exponents with 3 significant digits
    js = json.loads((tmp_path / "ana" / "intensity.json").read_text())
    for v in _floats(js["summary"]):
        assert float(f"{v:.6g}") == v, v
    s = explain_file(tiny_detector, root / "real" / "0.png", tmp_path / "ex", "ig", steps=2)
    written = json.loads((tmp_path / "ex" / "0.png.explain.json").read_text())
    assert written == s
    for v in _floats(written):
        assert float(f"{v:.6g}") == v, v
