"""The face corpus builder (issue 17) on media the tests make from scikit-image's astronaut."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

from noisetrace.data.face_corpus import FIELDS, CorpusConfig, build  # noqa: E402
from noisetrace.data.families import family_of, load_corpus  # noqa: E402
from noisetrace.data.manifest import FAKE, REAL, read_manifest  # noqa: E402


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from PIL import Image
    from skimage.data import astronaut

    from noisetrace.media.video import write_video

    root = tmp_path_factory.mktemp("src")
    face = astronaut()[:320, 64:384]  # (320, 320, 3): one face, upper middle
    rng = np.random.default_rng(0)
    frames = [np.clip(face.astype(int) + rng.integers(-3, 4, face.shape), 0, 255).astype(np.uint8)
              for _ in range(6)]  # fmt: skip
    # A side-by-side source (left real, right swap) and a plain labelled one.
    pair = root / "pairs"
    (pair / "clips").mkdir(parents=True)
    write_video(pair / "clips/a.mp4", [np.concatenate([f, f[:, ::-1]], axis=1) for f in frames])
    (pair / "MANIFEST.tsv").write_text(
        "path\tlabel\tgenerator\tgroup\nclips/a.mp4\tpair\ttool\tpairs/m1\n"
    )
    plain = root / "plain"
    (plain / "real").mkdir(parents=True)
    (plain / "fake").mkdir()
    Image.fromarray(face).save(plain / "real/vidaaaaaaa-000-00.png")
    Image.fromarray(face[:, ::-1]).save(plain / "fake/vidbbbbbbb-001-00.png")
    write_video(plain / "fake/clip.mp4", frames)
    (plain / "MANIFEST.tsv").write_text(
        "path\tlabel\tgenerator\nreal/vidaaaaaaa-000-00.png\treal\tcam\n"
        "fake/vidbbbbbbb-001-00.png\tfake\tswap\nfake/clip.mp4\tfake\tswap\n"
    )
    return [f"tool={pair}", str(plain)]


def test_build_manifest(sources: list[str], tmp_path: Path) -> None:
    from PIL import Image

    cfg = CorpusConfig(frames=3, size=64, sbi=2, landmarks="haar")
    man = build(sources, tmp_path / "corpus", cfg, verbose=False)
    rows = list(csv.DictReader(man.read_text().splitlines(), delimiter="\t"))
    assert tuple(rows[0]) == FIELDS
    for r in rows:
        assert (man.parent / r["path"]).is_file()
    pair = [r for r in rows if r["dataset"] == "tool"]
    # Every sampled frame gives a real left half and a fake right half, one group (the model).
    assert {r["label"] for r in pair} == {"real", "fake"}
    assert sum(r["label"] == "real" for r in pair) == sum(r["label"] == "fake" for r in pair)
    assert {r["group"] for r in pair} == {"pairs/m1"}
    assert {r["source"].rsplit("#", 1)[1] for r in pair} == {"left", "right"}
    plain = [r for r in rows if r["dataset"] == "plain"]
    # Groups: DFDC-style crop names -> their video id; a video -> itself (all its frames).
    assert {r["group"] for r in plain} == {"plain/vidaaaaaaa", "plain/vidbbbbbbb", "plain/clip"}
    assert sum(r["group"] == "plain/clip" for r in plain) == 3
    sbi = [r for r in rows if r["dataset"] == "sbi"]
    assert sbi and all(r["label"] == "fake" for r in sbi)
    real_groups = {r["group"] for r in rows if r["label"] == "real"}
    assert {r["group"] for r in sbi} <= real_groups  # an SBI fake stays with its real
    # Families: one per source, reals by source; the whole-image corpus drops all of it.
    samples = read_manifest(man)
    fams = {(s.label, family_of(s)) for s in samples}
    assert fams == {(REAL, "face-real-tool"), (FAKE, "face-tool"), (REAL, "face-real-plain"),
                    (FAKE, "face-plain"), (FAKE, "face-sbi")}  # fmt: skip
    assert load_corpus([man]) == []
    assert len(load_corpus([man], whole_images=False)) == len(rows)
    img = np.asarray(Image.open(man.parent / rows[0]["path"]))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_build_pairs_for_siamese(sources: list[str], tmp_path: Path) -> None:
    """``background=True``: every face crop comes with its background square, and the
    training loop's pairing keys a self-blended fake apart from the real frame it came from."""
    from noisetrace.train.dataset import build_pairs, crop_meta

    cfg = CorpusConfig(frames=2, size=64, sbi=2, landmarks="haar", background=True)
    man = build(sources, tmp_path / "pairs", cfg, verbose=False)
    # A face too large for any 64 px background square beside it is counted, not kept.
    from noisetrace.data.face_corpus import Cropper

    cropper = Cropper(cfg)
    from skimage.data import astronaut

    close = np.ascontiguousarray(astronaut()[30:230, 130:330])  # the face fills the frame
    assert cropper.det.detect(close)  # a face is found ...
    assert cropper(close, is_video=True) == [] and cropper.no_room == 1  # ... with no room
    rows = list(csv.DictReader(man.read_text().splitlines(), delimiter="\t"))
    kinds = [r["kind"] for r in rows]
    assert set(kinds) == {"face", "background"} and kinds.count("face") == kinds.count("background")
    for face, bg in zip(rows[::2], rows[1::2], strict=True):
        assert (face["kind"], bg["kind"]) == ("face", "background")
        assert face["source_path"] == bg["source_path"] and face["frame"] == bg["frame"]
        assert face["label"] == bg["label"]
        fb = [int(v) for v in face["box"].split(",")]
        bb = [int(v) for v in bg["box"].split(",")]
        assert bb[2] <= fb[0] or bb[0] >= fb[2] or bb[3] <= fb[1] or bb[1] >= fb[3]  # disjoint
    samples = read_manifest(man)
    pairs, unpaired = build_pairs(samples, crop_meta(man))
    assert unpaired == 0 and len(pairs) == len(rows) // 2
    assert sum(p.label == FAKE and "sbi" in p.members[0].path for p in pairs) >= 1
    assert {len(p.members) for p in pairs} == {2}


def test_self_blending_at_the_crop_scale() -> None:
    """``sbi_scale="crop"`` scales a frame down so that its face square is the crop size
    before blending (SBI blends face crops at its working size), and leaves smaller faces
    alone."""
    from types import SimpleNamespace

    from noisetrace.data.face_corpus import _at_crop_scale

    cfg = CorpusConfig(size=256, margin=1.3)
    frame = np.zeros((1000, 800, 3), np.uint8)
    big = lambda img: SimpleNamespace(box=(100, 100, 500, 500))  # noqa: E731 - 400 px face
    out = _at_crop_scale(frame, big, cfg)
    f = 256 / (1.3 * 400)
    assert out.shape == (round(1000 * f), round(800 * f), 3) and out.dtype == np.uint8
    small = lambda img: SimpleNamespace(box=(10, 10, 150, 150))  # noqa: E731 - square 182 px
    assert _at_crop_scale(frame, small, cfg) is frame
    assert _at_crop_scale(frame, lambda img: None, cfg) is None


def test_cross_blended_fakes(sources: list[str], tmp_path: Path, monkeypatch,
                             capsys) -> None:
    """``--xray``: cross-blended fakes (noisetrace.data.xray) of real frames, each with a
    donor of another group, in their own family; a target keeps its group. Landmarks come from
    a stub (the astronaut's dlib points, shifted into the test's 320 px face crops)."""
    from test_sbi import ASTRONAUT_68

    from noisetrace.data import sbi
    from noisetrace.media.faces import FaceBackendError

    class Stub:
        backend = "dlib68"

        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, img: np.ndarray) -> sbi.FaceShape:
            pts = (ASTRONAUT_68 - [64, 0]) * (img.shape[1] / 320)
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            return sbi.FaceShape((float(x0), float(y0), float(x1), float(y1)), pts)

    with pytest.raises(FaceBackendError, match="dlib"):
        build(sources, tmp_path / "haar", CorpusConfig(frames=2, size=64, sbi=0, xray=2,
                                                      landmarks="haar"), verbose=False)  # fmt: skip
    monkeypatch.setattr(sbi, "FaceShapeDetector", Stub)
    cfg = CorpusConfig(frames=3, size=64, sbi=0, xray=3, landmarks="dlib68")
    man = build(sources, tmp_path / "corpus", cfg, verbose=False)
    rows = list(csv.DictReader(man.read_text().splitlines(), delimiter="\t"))
    xr = [r for r in rows if r["dataset"] == "xray"]
    assert len(xr) == 3 and all(r["label"] == "fake" for r in xr)
    assert all(r["path"].startswith("crops/xray/") for r in xr)
    reals = {r["source"].split("#")[0]: r["group"] for r in rows if r["label"] == "real"}
    for r in xr:
        assert r["group"] == reals[r["source"].split("#")[0]]  # the target's group
        assert "donor from" in r["generator"]
    # the only two real groups donate to each other
    assert {r["group"] for r in xr} <= set(reals.values())
    assert {family_of(s) for s in read_manifest(man) if s.label == FAKE} >= {"face-xray"}
    # a target its blend fails on (landmarks off the frame) is reported, the build goes on
    class OffFrame(Stub):
        def __call__(self, img: np.ndarray) -> sbi.FaceShape:
            face = super().__call__(img)
            return sbi.FaceShape(face.box, face.landmarks + 5_000)

    monkeypatch.setattr(sbi, "FaceShapeDetector", OffFrame)
    capsys.readouterr()
    off = build(sources, tmp_path / "off", cfg, verbose=True)
    assert not [r for r in read_manifest(off) if "xray" in r.path]
    out = capsys.readouterr().out
    assert "xray: 0 crops (dlib68), 3 frames left out (the face mask is empty" in out
    monkeypatch.setattr(sbi, "FaceShapeDetector", Stub)
    a = build(sources, tmp_path / "again", cfg, verbose=False)
    assert a.read_text() == man.read_text()  # paths are relative to the corpus
    for r in xr:
        assert (man.parent / r["path"]).read_bytes() == (a.parent / r["path"]).read_bytes()


def test_shape_at_crop_scale_scales_the_landmarks() -> None:
    from noisetrace.data.face_corpus import _shape_at_crop_scale
    from noisetrace.data.sbi import FaceShape

    pts = np.array([[100.0, 100.0], [500.0, 100.0], [300.0, 500.0]], np.float32)
    big = lambda img: FaceShape((100.0, 100.0, 500.0, 500.0), pts)  # noqa: E731
    frame = np.zeros((1000, 800, 3), np.uint8)
    img, face = _shape_at_crop_scale(frame, big, CorpusConfig(size=256, margin=1.3))
    f = 256 / (1.3 * 400)
    assert img.shape == (round(1000 * f), round(800 * f), 3)
    assert np.allclose(face.landmarks, pts * [img.shape[1] / 800, img.shape[0] / 1000])
    no_marks = lambda i: FaceShape((0, 0, 9, 9), None)  # noqa: E731 - a Haar box only
    assert _shape_at_crop_scale(frame, no_marks, CorpusConfig()) is None


def test_one_panel_of_a_side_by_side_demo(tmp_path: Path) -> None:
    """A ``panel`` row reads only its panel: the k-th of n equal-width columns, exactly."""
    from PIL import Image
    from skimage.data import astronaut

    from noisetrace.data.face_corpus import parse_panel, read_source

    face = astronaut()[:320, 64:384]
    rng = np.random.default_rng(1)
    sides = [rng.integers(0, 256, face.shape, dtype=np.uint8) for _ in range(2)]
    demo = np.concatenate([sides[0], face, sides[1]], axis=1)  # reference | output | driving
    src = tmp_path / "demo"
    src.mkdir()
    Image.fromarray(demo).save(src / "demo.png")
    (src / "MANIFEST.tsv").write_text("path\tlabel\tgenerator\tpanel\n"
                                      "demo.png\tfake\tanimator\t2/3\n")  # fmt: skip
    items = list(read_source(src, "demo", CorpusConfig(frames=1)))
    assert len(items) == 1 and items[0].label == FAKE and items[0].part == "panel2of3"
    np.testing.assert_array_equal(items[0].image, face)
    cfg = CorpusConfig(frames=1, size=64, sbi=0, landmarks="haar")
    rows = list(csv.DictReader(build([str(src)], tmp_path / "c", cfg, verbose=False)
                               .read_text().splitlines(), delimiter="\t"))  # fmt: skip
    assert [(r["label"], r["kind"], r["source"].rsplit("#", 1)[1]) for r in rows] == [
        ("fake", "face", "panel2of3")]
    assert parse_panel("") is None and parse_panel(" 1/2 ") == (1, 2)
    for bad in ("3/2", "0/2", "2", "a/b"):
        with pytest.raises(ValueError, match="k-th of n"):
            parse_panel(bad)


def test_a_bad_manifest_row_stops_the_build_before_any_work(tmp_path: Path) -> None:
    src = tmp_path / "demo"
    src.mkdir()
    (src / "MANIFEST.tsv").write_text("path\tlabel\tgenerator\tpanel\n"
                                      "a.mp4\tfake\tanimator\t2/3\n"
                                      "b.mp4\tfake\tanimator\t4/3\n")  # fmt: skip
    out = tmp_path / "corpus"
    with pytest.raises(ValueError, match=r"MANIFEST.tsv, line 3: panel '4/3'"):
        build([f"demo={src}"], out, CorpusConfig(sbi=0, landmarks="haar"), verbose=False)
    assert not out.exists()  # nothing half-written
    (src / "MANIFEST.tsv").write_text("path\tlabel\tpanel\nc.mp4\tpair\t1/2\n")
    with pytest.raises(ValueError, match="line 2: a pair clip"):
        build([str(src)], out, CorpusConfig(sbi=0, landmarks="haar"), verbose=False)
    from noisetrace.data.face_corpus import main

    with pytest.raises(SystemExit, match="face_corpus: .*line 2"):
        main(["--out", str(out), str(src)])


def test_an_unreadable_file_is_reported_and_the_rest_go_on(
        sources: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    src = tmp_path / "mixed"
    shutil.copytree(Path(sources[1]), src)
    (src / "fake/broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    (src / "MANIFEST.tsv").write_text((src / "MANIFEST.tsv").read_text()
                                      + "fake/broken.mp4\tfake\tswap\n")  # fmt: skip
    cfg = CorpusConfig(frames=3, size=64, sbi=0, landmarks="haar")
    rows = list(csv.DictReader(build([str(src)], tmp_path / "c", cfg, verbose=False)
                               .read_text().splitlines(), delimiter="\t"))  # fmt: skip
    assert not any("broken" in r["source"] for r in rows)
    assert {r["group"] for r in rows} == {"mixed/vidaaaaaaa", "mixed/vidbbbbbbb", "mixed/clip"}
    err = capsys.readouterr().err
    assert "file left out" in err and "broken.mp4" in err and "corrupt" in err
