"""One path from a file to a score: scan, evaluate and explain give the same number.

A face model judges face crops in every one of them (not the whole frame in some), and
evaluation scores the full-resolution file as the scan does (no centre crop by default).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image
from skimage import data

from noisetrace.data.manifest import Sample
from noisetrace.detector import Detector
from noisetrace.evaluate.protocols import Condition, EvalOptions, score_conditions
from noisetrace.explain.report import explain_file
from noisetrace.media.video import write_video


@pytest.fixture(scope="module")
def face_detector(tmp_path_factory) -> Detector:
    d = save_tiny_model(tmp_path_factory.mktemp("face_model"), "tinyface", 2, input="face",
                        video_frames=4)  # fmt: skip
    return Detector.load(d, device="cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("one_path")
    big = np.asarray(Image.fromarray(data.astronaut()).resize((1040, 1040)))  # > 1024 px
    Image.fromarray(big).save(d / "big.jpg", quality=92)
    frames = [np.ascontiguousarray(data.astronaut()[:, i * 4 : i * 4 + 448]) for i in range(8)]
    write_video(d / "clip.mp4", frames, fps=8)
    Image.fromarray(data.coffee()[100:260, 200:420]).save(d / "small.jpg", quality=88)
    Image.fromarray(data.astronaut()[0:256, 128:384]).save(d / "face.png")  # a face picture
    return d


@pytest.mark.parametrize("which", ["whole", "face"])
def test_scan_evaluate_and_explain_agree(which, tiny_detector, face_detector, files, tmp_path):
    det = tiny_detector if which == "whole" else face_detector
    paths = [files / "big.jpg", files / "clip.mp4", files / "small.jpg", files / "face.png"]
    scanned = [det.scan(p) for p in paths]
    assert all(r.error is None for r in scanned), [r.error for r in scanned]
    if which == "face":
        # the face model judged faces, not frames (the coffee cup has none: its centre square)
        assert [bool(r.faces) for r in scanned] == [True, True, False, True]
    sc = score_conditions(det, [Sample(str(p), 0) for p in paths], [Condition()], EvalOptions())
    evaluated = sc.probs[Condition().name]
    np.testing.assert_allclose(evaluated, [r.score for r in scanned], rtol=0, atol=1e-6)
    for i in (0, 3):
        ex = explain_file(det, paths[i], tmp_path / "ex", window=128)
        assert abs(ex["score"] - scanned[i].score) < 1e-6 and ex["verdict"] == scanned[i].verdict
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from noisetrace.serve.app import create_app

    with TestClient(create_app(det, max_upload_mb=5, workers=1, timeout_s=60),
                    base_url="http://127.0.0.1") as c:  # fmt: skip
        for path, rec in zip(paths, scanned, strict=True):
            r = c.post("/v1/scan", files={"file": (path.name, path.read_bytes())})
            assert r.status_code == 200, r.text
            assert r.json()["score"] == pytest.approx(rec.score, abs=1e-6)


@pytest.fixture(scope="module")
def pair_detector(tmp_path_factory) -> Detector:
    """A randomly initialised Siamese DnCNN saved as a model: its input (face + background
    pairs) comes from the architecture's pretrained_cfg."""
    import torch

    from noisetrace import models
    from noisetrace.detector import DetectorConfig

    torch.manual_seed(0)
    m = models.create("siamese-dncnn")
    d = tmp_path_factory.mktemp("pair_model")
    Detector(m, DetectorConfig.for_model(m, "tinypair", "siamese-dncnn", video_frames=4)).save(d)
    return Detector.load(d, device="cpu")


def test_face_background_model_scores_pairs_the_same_everywhere(pair_detector, files, tmp_path):
    """A face + background model scans images and videos by [face, background] pairs of one
    frame, and scan, evaluate, the REST API and the pairs scored by hand agree; a picture
    without a face is an error for that file that says why."""
    from noisetrace.media.crops import crop_faces
    from noisetrace.media.faces import get_face_detector
    from noisetrace.media.image import load_image

    det = pair_detector
    assert det.pairs and det.config.input == "face_background"
    Image.fromarray(data.astronaut()).save(tmp_path / "face.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    paths = [tmp_path / "face.png", files / "clip.mp4"]
    scanned = [det.scan(p) for p in paths]
    assert all(r.error is None for r in scanned), [r.error for r in scanned]
    assert scanned[0].faces == 1 and scanned[1].frames == 4

    img = load_image(tmp_path / "face.png")
    p = det.face_cropper.policy
    crops = crop_faces(img, get_face_detector(p.get("backend", "auto"), **p.get("detect", {}))
                       .detect(img), scale=float(p["scale"]), size=64, background=True)  # fmt: skip
    assert [c.kind for c in crops[:2]] == ["face", "background"]
    pair = np.stack([crops[0].image, crops[1].image])[None]
    want = float(det.calibrate(det.runtime.forward(pair))[0])
    assert scanned[0].score == pytest.approx(want, abs=1e-6)

    sc = score_conditions(det, [Sample(str(q), 0) for q in paths], [Condition()], EvalOptions())
    np.testing.assert_allclose(sc.probs[Condition().name], [r.score for r in scanned],
                               rtol=0, atol=1e-6)  # fmt: skip
    no_face = det.scan(tmp_path / "coffee.png")
    assert no_face.verdict == "error" and "background" in no_face.error
    # explain shows the pair the scan scored: the paper's noise-trace figure, same score
    for path, rec in zip(paths, scanned, strict=True):
        ex = explain_file(det, path, tmp_path / "ex")
        assert ex["score"] == pytest.approx(rec.score, abs=1e-6) and ex["verdict"] == rec.verdict
        assert ex["method"] == "noise-traces"
        assert (tmp_path / "ex" / ex["files"]["traces"]).is_file()
    assert ex["frame"]["frame_score"] == pytest.approx(ex["view"]["score"], abs=1e-5)
    first = explain_file(det, paths[0], tmp_path / "ex1")
    assert first["view"]["score"] == pytest.approx(scanned[0].score, abs=1e-5)
    assert first["view"]["face"] == [int(v) for v in crops[0].box]
    assert first["view"]["background"] == [int(v) for v in crops[1].box]

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from noisetrace.serve.app import create_app

    app = create_app(det, max_upload_mb=5, workers=1, timeout_s=60)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for path, rec in zip(paths, scanned, strict=True):
            r = c.post("/v1/scan", files={"file": (path.name, path.read_bytes())})
            assert r.status_code == 200, r.text
            assert r.json()["score"] == pytest.approx(rec.score, abs=1e-6)
        r = c.post("/v1/explain", files={"file": ("face.png", paths[0].read_bytes())})
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n", r.text[:200]
        assert c.get("/v1/models").json()["active"]["explain"] is True


def test_an_unscored_frame_is_never_the_one_explained(pair_detector, files):
    """A frame a pair model found no pair in has a None score; the explained frame is the
    most suspicious scored one."""
    from noisetrace.explain.report import explained_frame

    rec = pair_detector.scan(files / "clip.mp4")
    rec.frame_scores = [None, 0.2, None, 0.1]
    _img, info, _ = explained_frame(pair_detector, files / "clip.mp4", rec)
    assert info["frame_score"] == 0.2
