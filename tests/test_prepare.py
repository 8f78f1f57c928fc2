"""``noisetrace prepare``: crops from face / no-face videos, cache key, resume, bad files."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data

from noisetrace.data.manifest import read_manifest
from noisetrace.media.video import write_video
from noisetrace.prepare import PrepareConfig, cache_key, extract_crops, prepare


def _scene(with_face: bool, shift: int) -> np.ndarray:
    """A 320x240 frame: the coffee photo, with the astronaut's head pasted in when asked."""
    bg = np.asarray(Image.fromarray(data.coffee()).resize((320, 240)))
    if with_face:
        head = np.asarray(Image.fromarray(data.astronaut()[0:256, 96:352]).resize((160, 160)))
        bg = bg.copy()
        bg[40:200, 20 + shift : 180 + shift] = head
    return bg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    (root / "real").mkdir()
    (root / "fake" / "gan").mkdir(parents=True)
    write_video(root / "real" / "face.mp4", [_scene(True, 4 * i) for i in range(8)], fps=8)
    write_video(root / "fake" / "gan" / "noface.mp4", [_scene(False, 0)] * 4, fps=8)
    Image.fromarray(data.astronaut()).save(root / "fake" / "gan" / "still.png")
    (root / "real" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    with av.open(str(root / "real" / "empty.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    return root


def rows(manifest) -> list[dict]:
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_extract_crops_tracks_the_face_and_handles_no_face(dataset):
    cfg = PrepareConfig(frames="all", size=64, background=True)
    crops = extract_crops(dataset / "real" / "face.mp4", cfg)
    faces = [c for c in crops if c.kind == "face"]
    assert len(faces) == 8 and {c.track for c in faces} == {0}
    assert [c.frame for c in faces] == list(range(8))
    assert faces[-1].box[0] > faces[0].box[0]  # the head moves right
    assert sum(c.kind == "background" for c in crops) == 8
    assert all(c.image.shape == (64, 64, 3) for c in crops)
    none = dataset / "fake" / "gan" / "noface.mp4"
    assert extract_crops(none, cfg) == []
    whole = extract_crops(none, PrepareConfig(frames="first", n=2, no_face="whole", size=32))
    assert [c.kind for c in whole] == ["whole", "whole"]
    from noisetrace.media.faces import NoFaceError

    with pytest.raises(NoFaceError):
        extract_crops(none, PrepareConfig(no_face="error"))


def test_prepare_cache_manifest_and_resume(dataset, tmp_path):
    cfg = PrepareConfig(frames="even", n=3, size=48, split="ratios", ratios=(0.5, 0.25, 0.25))
    first = prepare(dataset, tmp_path, cfg, workers=2, limit=2)  # an "interrupted" run
    assert first.processed == 2 and first.errors == 2  # broken, empty: recorded, not raised
    assert {p.rsplit("/", 1)[-1] for p, _ in first.error_examples} == {"broken.mp4", "empty.mp4"}
    res = prepare(dataset, tmp_path, cfg, workers=2)
    assert res.skipped_done == 2 and res.processed == 3 and res.files == 5
    assert res.errors == 0 and res.no_face == 1 and res.crops == 4
    assert res.cache.name == cache_key(cfg, dataset)
    rs = rows(res.manifest)
    by_src = {}
    for r in rs:
        by_src.setdefault(r["source_path"].rsplit("/", 1)[-1], []).append(r)
    assert set(by_src) == {"face.mp4", "still.png"}
    assert [r["frame"] for r in by_src["face.mp4"]] == ["0", "4", "7"]
    assert {r["track"] for r in by_src["face.mp4"]} == {"0"}
    assert (
        by_src["still.png"][0]["label"] == "fake" and by_src["still.png"][0]["generator"] == "gan"
    )
    assert all(r["split"] in ("train", "val", "test") for r in rs)
    samples = read_manifest(res.manifest)  # the cache is a dataset for training
    assert len(samples) == len(rs)
    img = np.asarray(Image.open(samples[0].path))
    assert img.shape == (48, 48, 3)
    again = prepare(dataset, tmp_path, cfg)  # nothing left to do
    assert again.processed == 0 and rows(again.manifest) == rs


def test_cache_key_follows_the_settings(dataset, tmp_path):
    a = PrepareConfig(size=64)
    assert cache_key(a, dataset) == cache_key(PrepareConfig(size=64), dataset)
    assert cache_key(a, dataset) != cache_key(PrepareConfig(size=128), dataset)
    assert cache_key(a, dataset) != cache_key(a, tmp_path)
    # "auto" is resolved, so it shares the cache of the backend it stands for
    from noisetrace.media.faces import resolve_backend

    assert cache_key(a, dataset) == cache_key(
        PrepareConfig(size=64, faces=resolve_backend()), dataset
    )


def test_cli_prepare(dataset, tmp_path, capsys):
    from noisetrace.cli import main

    rc = main(["prepare", str(dataset), "--out", str(tmp_path), "--faces", "none", "--size", "0",
               "--frames", "first", "--n", "1", "--workers", "1", "--quiet"])  # fmt: skip
    assert rc == 0
    manifest = capsys.readouterr().out.strip().splitlines()[-1]
    rs = rows(manifest)
    assert {r["kind"] for r in rs} == {"whole"}
    still = next(r for r in rs if r["source_path"].endswith("still.png"))
    assert still["box"] == "0,0,512,512"  # size 0 keeps the whole image at native size


def test_prepare_then_train_on_too_few_files_explains_itself(dataset, tmp_path, capsys,
                                                             monkeypatch):
    """Issue 20: prepare on a couple of videos, then train on its manifest: both say what is
    missing, and train stops before any work instead of failing in scikit-learn."""
    import noisetrace.train.loop as loop
    from noisetrace.cli import main

    rc = main(["prepare", str(dataset), "--out", str(tmp_path), "--faces", "none", "--size",
               "32", "--frames", "first", "--n", "2", "--workers", "1", "--quiet"])  # fmt: skip
    out = capsys.readouterr()
    err = " ".join(out.err.split())
    assert rc == 0 and "crops per split: " in err
    assert "warning: the val split has no real and no fake crops" in err
    monkeypatch.setattr(loop, "train", lambda cfg: pytest.fail("training started"))
    manifest = out.out.strip().splitlines()[-1]
    assert main(["train", "--data", manifest, "--out", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the validation split has" in err and "--ratios" in err
