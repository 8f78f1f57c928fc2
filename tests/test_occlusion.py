"""Occlusion maps: how models fitted on frozen features (default, faces) are explained."""

import io

import numpy as np
import pytest
from PIL import Image

from noisetrace.detector import Detector, DetectorConfig
from noisetrace.explain.occlusion import cells, occlusion_map
from noisetrace.explain.report import explain_array, explain_file


def _img(rng: np.random.Generator, noisy: bool, side: int = 96) -> np.ndarray:
    base = np.linspace(70, 180, side)[None, :, None] * np.ones((side, 1, 3))
    if noisy:
        base = base + rng.normal(0, 12, (side, side, 1))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def noise_head(tmp_path_factory) -> Detector:
    """A head on frozen SPAM features that calls sensor-like noise "fake": no network."""
    from noisetrace.heads.detector import FeatureDetector
    from noisetrace.heads.extractors import SpamExtractor
    from noisetrace.heads.linear import LinearHead

    rng = np.random.default_rng(0)
    ext = SpamExtractor(max_side=1024)
    imgs = [_img(rng, i % 2 == 1) for i in range(16)]
    X = np.stack([ext(i)["spam"] for i in imgs])
    head = LinearHead(C=1.0).fit(X, np.arange(16) % 2)
    det = FeatureDetector(ext, head, "spam", DetectorConfig(name="spamhead", arch="feature-head"))
    d = tmp_path_factory.mktemp("spamhead")
    det.save(d)
    return Detector.load(d)


def test_cells_partition_the_image():
    for h, w, g in [(100, 75, 6), (5, 3, 6), (64, 64, 1)]:
        cover = np.zeros((h, w), int)
        for y0, y1, x0, x1 in cells(h, w, g):
            cover[y0:y1, x0:x1] += 1
        assert (cover == 1).all()


def test_the_map_finds_the_region_that_carries_the_score(noise_head):
    """Smooth everywhere but one noisy cell: blurring that cell lowers the fake logit most."""
    rng = np.random.default_rng(3)
    img = _img(rng, False, 192)
    img[64:96, 128:160] = _img(rng, True, 192)[64:96, 128:160]  # cell (2, 4) of a 6x6 grid
    m, logit, det = occlusion_map(noise_head, img, grid=6)
    assert logit == pytest.approx(noise_head.logit(img), abs=1e-6)
    assert m.shape == img.shape[:2] and m.dtype == np.float32 and 0 <= m.min() and m.max() == 1
    drops = np.array(det["drops"])
    assert drops.shape == (6, 6) and np.unravel_index(drops.argmax(), drops.shape) == (2, 4)
    assert m[70:90, 130:158].min() == 1.0 and m[:64].max() < 1.0


def test_a_head_model_is_explained_by_occlusion_on_the_one_path(noise_head, tmp_path):
    """`noisetrace explain` (and the heatmap it would default to) gives a head model an
    occlusion map with the score a scan gives; the REST API draws it too, and says so."""
    from fastapi.testclient import TestClient

    from noisetrace.serve.app import create_app

    rng = np.random.default_rng(4)
    img = _img(rng, True, 128)
    ex = explain_array(noise_head, img)
    assert ex.method == "occlusion" and "occlusion" in ex.details["note"]
    f = tmp_path / "n.png"
    Image.fromarray(img).save(f)
    summary = explain_file(noise_head, f, tmp_path / "ex")
    scanned = noise_head.scan(f)
    assert summary["method"] == "occlusion" and summary["score"] == pytest.approx(scanned.score,
                                                                                  abs=1e-6)
    assert (tmp_path / "ex" / summary["files"]["overlay"]).is_file()
    with TestClient(create_app(noise_head), base_url="http://127.0.0.1") as c:
        info = c.get("/v1/models").json()  # a head model used to make this fail (500)
        assert info["active"]["explain"] is True
        r = c.post("/v1/explain", files={"file": ("n.png", f.read_bytes())})
        assert r.status_code == 200 and r.headers["X-Explain-Method"] == "occlusion"
        assert Image.open(io.BytesIO(r.content)).size == (128, 128)
