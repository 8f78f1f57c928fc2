import json

import numpy as np
import pytest
import torch

from noisetrace import models
from noisetrace.detector import Detector, DetectorConfig
from noisetrace.errors import InputError, ModelError


def test_score_is_a_probability(tiny_detector, photo):
    s = tiny_detector.score(photo)
    assert 0.0 <= s <= 1.0


def test_score_rejects_wrong_arrays(tiny_detector):
    with pytest.raises(InputError):
        tiny_detector.score(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        tiny_detector.score(np.zeros((10, 10, 3), np.float32))


def test_tiled_scoring_matches_one_pass(tiny_model_dir, photo):
    whole = Detector.load(tiny_model_dir, device="cpu")
    whole.config.tile = 4096
    tiled = Detector.load(tiny_model_dir, device="cpu")
    tiled.config.tile = 128
    # Same answer up to the few pixels at tile seams.
    assert abs(whole.logit(photo) - tiled.logit(photo)) < 0.05 * (1 + abs(whole.logit(photo)))


def test_calibration_is_applied(tiny_model_dir, photo):
    det = Detector.load(tiny_model_dir, device="cpu")
    z = det.logit(photo)
    det.config.calibration = {"a": 2.0, "b": -1.0}
    assert det.score(photo) == pytest.approx(1 / (1 + np.exp(-(2 * z - 1))), rel=1e-6)


def test_save_load_round_trip_is_identical(tmp_path, photo):
    torch.manual_seed(1)
    det = Detector(
        models.create("srm-cnn", widths=(8, 8)),
        DetectorConfig("x", "srm-cnn", {"widths": [8, 8]}),
        device="cpu",
    )
    det.save(tmp_path)
    again = Detector.load(tmp_path, device="cpu", backend="torch")
    assert det.logit(photo) == again.logit(photo)


@pytest.mark.parametrize("shipped", [False, True])
def test_onnx_backend_gives_the_same_scores(tmp_path, tiny_model_dir, photo, shipped):
    ref = Detector.load(tiny_model_dir, device="cpu", backend="torch")
    if shipped:  # graphs saved beside the weights, verified by hash
        ref.save(tmp_path, onnx=True)
        assert (tmp_path / "features.onnx").is_file()
        fast = Detector.load(tmp_path, device="cpu", backend="onnx")
    else:  # exported on first use into the cache
        fast = Detector.load(tiny_model_dir, device="cpu", backend="onnx")
    assert fast.backend == "onnx"
    for img in (photo, photo[:300, :200], photo[:5, :3]):
        assert fast.logit(img) == pytest.approx(ref.logit(img), rel=1e-4, abs=1e-4)
    frames = [photo[:64, :64], photo[64:128, :64]]
    np.testing.assert_allclose(fast.logits_batch(frames), ref.logits_batch(frames), atol=1e-4)
    ref.config.tile = fast.config.tile = 200  # tiled path
    assert fast.logit(photo) == pytest.approx(ref.logit(photo), rel=1e-4, abs=1e-4)


def test_stale_onnx_graphs_are_removed_on_save(tmp_path, tiny_model_dir):
    det = Detector.load(tiny_model_dir, device="cpu", backend="torch")
    det.save(tmp_path, onnx=True)
    det.save(tmp_path)
    assert not (tmp_path / "features.onnx").exists()


def test_tampered_weights_are_refused(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match"):
        Detector.load(d)


def test_unknown_architecture_is_a_model_error(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["arch"] = "no-such-net"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="unknown model"):
        Detector.load(d)


def test_video_scan_has_frame_scores(tiny_detector, media_dir):
    r = tiny_detector.scan(media_dir / "clip.mp4", video_frames=5)
    assert r.kind == "video" and r.frames == 5 and len(r.frame_scores) == 5
    assert r.score == pytest.approx(float(np.mean(r.frame_scores)), abs=1e-5)


def test_video_score_uses_the_models_own_aggregation(tmp_path, tiny_model_dir, media_dir):
    """A model whose config says top25 scores a video by its most suspicious quarter of
    frames; the setting travels in config.json; an unknown aggregation is refused."""
    from noisetrace.metrics import aggregate_scores

    det = Detector.load(tiny_model_dir, device="cpu")
    det.config.video_aggregate = "top25"
    r = det.scan(media_dir / "clip.mp4", video_frames=8)
    frames = np.array(r.frame_scores, float)
    assert np.ptp(frames) > 1e-4  # frames differ, so the aggregations differ
    assert r.score == pytest.approx(np.sort(frames)[-2:].mean(), abs=1e-5)
    assert r.score == pytest.approx(aggregate_scores(frames, "top25"), abs=1e-5)
    det.save(tmp_path / "m")
    assert Detector.load(tmp_path / "m").config.video_aggregate == "top25"

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["video_aggregate"] = "loudest"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="video_aggregate"):
        Detector.load(tmp_path / "m")


def test_export_command_writes_verified_graphs(tmp_path, tiny_model_dir, photo):
    from noisetrace.cli import main

    out = tmp_path / "exported"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.onnx")} == {"features.onnx", "head.onnx"}
    fast = Detector.load(out, device="cpu", backend="onnx")
    ref = Detector.load(tiny_model_dir, device="cpu", backend="torch")
    assert fast.logit(photo) == pytest.approx(ref.logit(photo), rel=1e-4, abs=1e-4)


def test_face_model_scans_faces_and_falls_back_to_the_whole_frame(tmp_path, tiny_model_dir):
    from PIL import Image
    from skimage import data

    det = Detector.load(tiny_model_dir, device="cpu", backend="torch")
    det.config.input = "face"
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    with_face = det.scan(tmp_path / "astronaut.png")
    assert with_face.error is None and with_face.faces == 1 and 0 <= with_face.score <= 1
    no_face = det.scan(tmp_path / "coffee.png")
    assert no_face.error is None and no_face.faces == 0 and 0 <= no_face.score <= 1
    det.config.face = {**det.config.face, "no_face": "error"}
    strict = det.scan(tmp_path / "coffee.png")
    assert strict.verdict == "error" and "no face" in strict.error


def test_face_model_video_scores_each_frame_by_its_faces(tmp_path, tiny_model_dir):
    """Without tracking every sampled frame is searched in full (two threads): the video
    record matches scoring each frame's crops one by one. With tracking (the default) the
    faces followed from frame to frame are the ones a full search finds, and each frame's
    score is its crops' scores."""
    from PIL import Image
    from skimage import data

    from noisetrace.media.crops import crop_faces, cut, face_square
    from noisetrace.media.faces import get_face_detector, iou
    from noisetrace.media.video import read_frames, write_video

    det = Detector.load(tiny_model_dir, device="cpu", backend="torch")
    det.config.input = "face"
    det.config.face = {**det.config.face, "detect": {"max_side": 320}, "track": 0}
    a = np.asarray(Image.fromarray(data.astronaut()).resize((600, 600)))
    frames = [np.ascontiguousarray(a[i * 8 : i * 8 + 480, :]) for i in range(6)]
    write_video(tmp_path / "v.mp4", frames, fps=6)
    rec = det.scan(tmp_path / "v.mp4", video_frames=6)
    assert rec.error is None and rec.frames == 6 and rec.faces >= 5
    fd = get_face_detector("auto", max_side=320)
    want, full_boxes = [], []
    decoded = [f.image for f in read_frames(tmp_path / "v.mp4", mode="even", n=6)]
    for img in decoded:
        faces = fd.detect(img)
        full_boxes.append([f.box for f in faces])
        crops = crop_faces(img, faces, scale=1.3, size=128, no_face="whole", max_faces=4)
        want.append(max(det.score(c.image) for c in crops))
    np.testing.assert_allclose(rec.frame_scores, want, atol=1e-5)
    assert rec.score == pytest.approx(float(np.mean(want)), abs=1e-5)

    det.config.face = {**det.config.face, "track": 3}
    probs, crops = det.face_details(iter(decoded))
    assert len(probs) == 6
    for i, img in enumerate(decoded):
        mine = [c for c in crops if c["frame"] == i]
        assert mine and probs[i] == pytest.approx(max(c["score"] for c in mine), abs=1e-6)
        for c in mine:
            if c["kind"] == "face":  # the same face as the full search, within a few pixels
                box = tuple(c["box"])
                assert c["score"] == pytest.approx(det.score(cut(img, box, 128)), abs=1e-5)
                squares = [face_square(b, img.shape[:2], 1.3) for b in full_boxes[i]]
                assert max((iou(box, q) for q in squares), default=0) > 0.6, i
    tracked = det.scan(tmp_path / "v.mp4", video_frames=6)
    assert tracked.faces >= 5 and abs(tracked.score - rec.score) < 0.05
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_detect_near_follows_a_face_and_ignores_small_ones():
    """``detect_near`` searches a window around the last box on a scaled copy: it finds the
    face again, shifted, in full-image pixels; a window without a face gives []."""
    from PIL import Image
    from skimage import data

    from noisetrace.media.faces import get_face_detector

    fd = get_face_detector("opencv")
    img = np.asarray(Image.fromarray(data.astronaut()).resize((640, 640)))
    (face,) = fd.detect(img)[:1]
    moved = np.ascontiguousarray(np.roll(img, (12, -9), axis=(0, 1)))
    found = fd.detect_near(moved, [face.box])
    assert len(found) >= 1
    b, ref = found[0].box, face.box
    assert abs((b[0] + b[2]) / 2 - ((ref[0] + ref[2]) / 2 - 9)) < 12
    assert abs((b[1] + b[3]) / 2 - ((ref[1] + ref[3]) / 2 + 12)) < 12
    assert 0.7 < (b[2] - b[0]) / (ref[2] - ref[0]) < 1.4
    sky = np.ascontiguousarray(img[:100, 500:600])  # no face there
    assert fd.detect_near(np.ascontiguousarray(np.tile(sky, (7, 7, 1))), [face.box]) == []


def test_bundled_faces_model_finds_and_scores_a_face(tmp_path):
    """`faces` is the project's own fitted face model: it crops the face it finds the way
    its training crops were cut, and its card names the face sources it was validated on."""
    import json

    from PIL import Image
    from skimage import data

    from noisetrace.zoo import ZOO_DIR, list_bundled, load_detector

    assert {"default", "faces"} <= set(list_bundled())
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    det = load_detector("faces", device="cpu")
    assert det.config.input == "face" and det.config.face["scale"] == 1.3
    a, b = det.scan(tmp_path / "astronaut.png"), det.scan(tmp_path / "astronaut.png")
    assert a.error is None and a.faces == 1 and 0 < a.score < 1 and b.score == a.score
    card = json.loads((ZOO_DIR / "faces" / "card.json").read_text())
    assert card["recipe"]["input"] == "face"
    held_out = {f["family"] for f in card["lofo"]["families"]}
    assert {"face-deepfacelive", "face-inswapper", "face-sbi"} <= held_out
    # Its card is written from that record: what it scores, its recipe, its source table.
    md = (ZOO_DIR / "faces" / "MODEL_CARD.md").read_text()
    assert "probability that a face is swapped" in md and "whole image" not in md.split("\n")[2]
    assert "noisetrace fit --config configs/faces.yaml --out runs/faces" in md
    assert "each real source of faces" in md and "| held-out source |" in md


def test_set_threshold_is_the_one_validated_setter(tiny_detector):
    from noisetrace.errors import InputError

    old = tiny_detector.threshold
    try:
        tiny_detector.set_threshold(0.25)
        assert tiny_detector.threshold == 0.25 and tiny_detector.config.threshold == 0.25
        for bad in (1.5, -0.1, float("nan")):
            with pytest.raises(InputError, match="between 0 and 1"):
                tiny_detector.set_threshold(bad)
        assert tiny_detector.threshold == 0.25
    finally:
        tiny_detector.set_threshold(old)


def test_video_frames_are_scored_as_a_stream(tiny_detector, photo):
    """Frames are scored in batches as they are decoded: memory holds a batch, not a video."""
    from noisetrace.detector import FRAME_BATCH, ScanResult

    yielded, seen_at_call, sizes = [0], [], []
    real = tiny_detector.logits_batch

    def spy(imgs):
        seen_at_call.append(yielded[0])
        sizes.append(len(imgs))
        return real(imgs)

    def frames():
        for i in range(20):
            yielded[0] += 1
            yield np.ascontiguousarray(photo[i : i + 64, i : i + 64])

    tiny_detector.logits_batch = spy  # type: ignore[method-assign]
    try:
        probs = tiny_detector.judge(frames(), ScanResult(path="x"))
    finally:
        del tiny_detector.logits_batch
    assert len(probs) == 20 and max(sizes) <= FRAME_BATCH
    assert seen_at_call[0] == FRAME_BATCH  # the first batch was scored before the rest decoded
    whole = tiny_detector.calibrate(real([np.ascontiguousarray(photo[i : i + 64, i : i + 64])
                                          for i in range(20)]))  # fmt: skip
    np.testing.assert_allclose(probs, whole, atol=1e-6)
