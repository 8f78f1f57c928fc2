"""Whole image + faces in one scan (``--model WHOLE+FACES``): both judgements, face boxes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image
from skimage import data

from noisetrace.cli import main
from noisetrace.combined import WholeAndFaces
from noisetrace.detector import Detector
from noisetrace.errors import ModelError
from noisetrace.media.video import write_video
from noisetrace.zoo import load_detector

FACE_CENTER = (222, 115)  # the astronaut's face in skimage.data.astronaut()


@pytest.fixture(scope="module")
def face_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("face_model"), "tinyface", 1, input="face",
                           threshold=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("combined")
    Image.fromarray(data.astronaut()).save(d / "face.jpg", quality=92)
    Image.fromarray(data.coffee()).save(d / "noface.jpg", quality=92)
    frames = [np.ascontiguousarray(data.astronaut()[:, i * 4 : i * 4 + 448]) for i in range(6)]
    write_video(d / "clip.mp4", frames, fps=6)
    return d


def test_both_models_judge_the_same_file(tiny_model_dir, face_model_dir, files):
    combo = load_detector(f"{tiny_model_dir}+{face_model_dir}", device="cpu")
    assert isinstance(combo, WholeAndFaces) and combo.name == "tiny+tinyface"
    whole = Detector.load(tiny_model_dir, device="cpu")
    plain = whole.scan(files / "face.jpg")
    r = combo.scan(files / "face.jpg")
    assert r.error is None and r.score == pytest.approx(plain.score, abs=1e-9)
    assert r.face_score is not None and r.face_threshold == 0.0 and r.faces >= 1
    (x0, y0, x1, y1) = r.face_boxes[0]["box"]
    assert abs((x0 + x1) / 2 - FACE_CENTER[0]) < 40 and abs((y0 + y1) / 2 - FACE_CENTER[1]) < 45
    assert r.face_boxes[0]["frame"] == 0 and r.face_boxes[0]["kind"] == "face"
    # Either judge calling it fake makes the verdict fake (the face threshold here is 0).
    combo.config.threshold = 1.0
    assert combo.scan(files / "face.jpg").verdict == "fake"
    # No face: the face model says nothing and the verdict is the whole-image model's.
    n = combo.scan(files / "noface.jpg")
    assert n.face_score is None and n.face_boxes == [] and n.faces == 0 and n.verdict == "real"
    v = combo.scan(files / "clip.mp4")
    assert v.frames == 6 and v.face_score is not None
    assert sorted({b["frame"] for b in v.face_boxes}) == list(range(6))


def test_order_and_kind_are_checked(tiny_model_dir, face_model_dir):
    with pytest.raises(ModelError, match="put the whole-image model first"):
        load_detector(f"{face_model_dir}+{tiny_model_dir}", device="cpu")
    with pytest.raises(ModelError, match="must be a face model"):
        load_detector(f"{tiny_model_dir}+{tiny_model_dir}", device="cpu")
    with pytest.raises(ModelError, match="WHOLE\\+FACES"):
        load_detector("default+", device="cpu")


def test_cli_writes_both_scores_and_boxes(tiny_model_dir, face_model_dir, files, tmp_path,
                                          capsys):  # fmt: skip
    out_j, out_c = tmp_path / "o.jsonl", tmp_path / "o.csv"
    rc = main(["scan", str(files / "face.jpg"), str(files / "noface.jpg"), "--model",
               f"{tiny_model_dir}+{face_model_dir}", "--jsonl", str(out_j), "--csv", str(out_c)])
    assert rc == 0
    lines = out_j.read_text().splitlines()
    recs = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, lines)}
    assert recs["face.jpg"]["face_score"] is not None and recs["face.jpg"]["face_boxes"]
    assert recs["noface.jpg"]["face_score"] is None and recs["noface.jpg"]["face_boxes"] == []
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out_c.open())}
    first = json.loads(rows["face.jpg"]["face_boxes"])[0]
    assert first["box"] == recs["face.jpg"]["face_boxes"][0]["box"]
    table = capsys.readouterr().out
    assert "faces" in table and "none" in table
