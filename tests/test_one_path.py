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
    return d


@pytest.mark.parametrize("which", ["whole", "face"])
def test_scan_evaluate_and_explain_agree(which, tiny_detector, face_detector, files, tmp_path):
    det = tiny_detector if which == "whole" else face_detector
    paths = [files / "big.jpg", files / "clip.mp4"]
    scanned = [det.scan(p) for p in paths]
    assert all(r.error is None for r in scanned), [r.error for r in scanned]
    if which == "face":
        assert all(r.faces for r in scanned)  # the face model judged faces, not frames
    sc = score_conditions(det, [Sample(str(p), 0) for p in paths], [Condition()], EvalOptions())
    evaluated = sc.probs[Condition().name]
    np.testing.assert_allclose(evaluated, [r.score for r in scanned], rtol=0, atol=1e-6)
    ex = explain_file(det, paths[0], tmp_path / "ex", window=128)
    assert abs(ex["score"] - scanned[0].score) < 1e-6 and ex["verdict"] == scanned[0].verdict
