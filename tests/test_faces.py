"""Face detectors, crops (margin, background square, no-face policy) and IoU tracks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from noisetrace.media import faces as faces_mod
from noisetrace.media.crops import (
    background_square,
    crop_faces,
    face_square,
    parse_margin,
)
from noisetrace.media.faces import (
    BACKENDS,
    Face,
    FaceBackendError,
    NoFaceError,
    backend_available,
    get_face_detector,
    resolve_backend,
)
from noisetrace.media.tracks import iou, track_faces

# The astronaut's face in skimage.data.astronaut() (512x512) spans about x 175-270, y 55-170.
FACE_CENTER = (222, 115)


@pytest.fixture(scope="module")
def default_detector():
    return get_face_detector()  # the default backend must work in every install


def test_default_backend_finds_the_face_and_nothing_in_coffee(default_detector):
    found = default_detector.detect(data.astronaut())
    assert len(found) >= 1
    f = found[0]
    cx, cy = f.center
    assert abs(cx - FACE_CENTER[0]) < 30 and abs(cy - FACE_CENTER[1]) < 35, f.box
    assert 60 < f.width < 160
    assert default_detector.detect(data.coffee()) == []
    assert default_detector.detect(np.zeros((48, 64, 3), np.uint8)) == []


def test_detect_maps_boxes_back_from_the_downscaled_copy(default_detector):
    big = np.repeat(np.repeat(data.astronaut(), 2, axis=0), 2, axis=1)  # 1024x1024 > max_side
    (f,) = default_detector.detect(big)[:1]
    assert abs(f.center[0] - 2 * FACE_CENTER[0]) < 60 and abs(f.center[1] - 2 * FACE_CENTER[1]) < 70


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_installed_backend(backend):
    if not backend_available(backend):
        pytest.skip(f"face backend {backend} not installed")
    det = get_face_detector(backend)
    found = det.detect(data.astronaut())
    assert found, f"{backend} found no face in the astronaut photo"
    cx, cy = found[0].center
    assert abs(cx - FACE_CENTER[0]) < 40 and abs(cy - FACE_CENTER[1]) < 45
    if found[0].landmarks is not None:
        assert found[0].landmarks.ndim == 2 and found[0].landmarks.shape[1] == 2


def test_missing_backend_says_how_to_install(monkeypatch):
    monkeypatch.setattr(faces_mod, "backend_available", lambda b: False)
    with pytest.raises(FaceBackendError, match="pip install mediapipe==0.10.14"):
        get_face_detector("mediapipe")
    with pytest.raises(FaceBackendError, match="no face detection backend is installed"):
        resolve_backend("auto")
    with pytest.raises(FaceBackendError, match="unknown face detection backend"):
        get_face_detector("retinaface-xyz")


def test_bad_input_is_rejected(default_detector):
    with pytest.raises(ValueError, match="uint8"):
        default_detector.detect(np.zeros((32, 32, 3), np.float32))


# -- crops ---------------------------------------------------------------------------------------
def test_parse_margin():
    assert parse_margin("20%") == pytest.approx(1.2)
    assert parse_margin("1.3x") == pytest.approx(1.3)
    assert parse_margin("deepfakebench") == pytest.approx(1.3)
    with pytest.raises(ValueError):
        parse_margin(0.5)


def test_face_square_is_square_scaled_and_inside():
    sq = face_square((100, 50, 200, 130), (480, 640), scale=1.3)
    assert sq[2] - sq[0] == sq[3] - sq[1] == 130
    assert ((sq[0] + sq[2]) / 2, (sq[1] + sq[3]) / 2) == pytest.approx((150, 90), abs=1)
    edge = face_square((0, 0, 100, 100), (480, 640), scale=1.3)  # shifted inside, not padded
    assert edge == (0, 0, 130, 130)
    huge = face_square((0, 0, 600, 470), (480, 640), scale=1.3)
    assert huge[2] - huge[0] == 480 and huge[3] <= 480


def test_background_square_is_the_furthest_clear_corner():
    face = (40, 40, 140, 140)
    bg = background_square(face, (480, 640))
    assert bg == (540, 380, 640, 480)  # opposite corner, same size
    assert background_square((100, 100, 400, 400), (480, 500)) is None  # no room
    # A close-up: no face-sized square is clear, the largest clear corner square is taken.
    close = (80, 120, 380, 420)  # 300 px face square in a 500 x 480 frame
    small = background_square(close, (480, 500), min_side=64)
    assert small is not None
    sx0, sy0, sx1, sy1 = small
    assert sx1 - sx0 == sy1 - sy0 == 120  # room above the face: y0 = 120
    assert sx1 <= close[0] or sx0 >= close[2] or sy1 <= close[1] or sy0 >= close[3]
    assert 0 <= sx0 and sx1 <= 500 and 0 <= sy0 and sy1 <= 480
    assert small == (380, 0, 500, 120)  # the top corner furthest from the face centre
    assert background_square(close, (480, 500), min_side=128) is None  # would upsample
    # Where the face-sized square fits, min_side changes nothing.
    assert background_square(face, (480, 640), min_side=64) == bg


def test_crop_faces_policies():
    img = data.astronaut()
    f = Face((175.0, 60.0, 270.0, 165.0), 0.9)
    crops = crop_faces(img, [f], scale=1.2, size=64, background=True)
    assert [c.kind for c in crops] == ["face", "background"]
    assert all(c.image.shape == (64, 64, 3) for c in crops)
    fx0, fy0, fx1, fy1 = crops[0].box
    bx0, by0, bx1, by1 = crops[1].box
    assert fx1 - fx0 == bx1 - bx0 == 126  # 1.2 * max(95, 105)
    assert bx0 >= fx1 or bx1 <= fx0 or by0 >= fy1 or by1 <= fy0  # disjoint
    native = crop_faces(img, [f], scale=1.2, size=None)
    assert native[0].image.shape == (126, 126, 3)
    assert np.array_equal(native[0].image, img[fy0:fy1, fx0:fx1])
    assert crop_faces(img, [], no_face="skip") == []
    (whole,) = crop_faces(data.coffee(), [], no_face="whole", size=32)
    assert whole.kind == "whole" and whole.box == (100, 0, 500, 400)
    with pytest.raises(NoFaceError):
        crop_faces(img, [], no_face="error")


# -- tracks --------------------------------------------------------------------------------------
def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_two_faces_become_two_tracks_across_a_gap():
    dets = []
    for i in range(8):
        a = Face((10.0 + 2 * i, 10.0, 60.0 + 2 * i, 60.0), 0.9)
        b = Face((300.0 - 3 * i, 200.0, 360.0 - 3 * i, 260.0), 0.8)
        dets.append((i, i / 10, [b, a] if i % 2 else [a, b]))
    dets.insert(4, (100, 10.0, []))  # a frame without faces does not break the tracks
    tracks = track_faces(dets)
    assert len(tracks) == 2 and [len(t) for t in tracks] == [8, 8]
    xs = tracks[0].boxes()[:, 0]
    assert np.all(np.diff(xs) != 0) and (np.all(np.diff(xs) > 0) or np.all(np.diff(xs) < 0))
    assert len(tracks[0].windows(4)) == 2
    # with max_gap, a face that vanished for long starts a new track
    gap = [
        (0, 0.0, [Face((0.0, 0.0, 50.0, 50.0), 1.0)]),
        (50, 5.0, [Face((0.0, 0.0, 50.0, 50.0), 1.0)]),
    ]
    assert len(track_faces(gap, max_gap=10)) == 2 and len(track_faces(gap)) == 1


@pytest.mark.parametrize("track", [0, 3])
def test_cropper_reads_a_video_only_a_few_frames_ahead(track):
    """``FaceCropper.map`` pulls frames lazily (each pending search holds a decoded frame), and
    a caller that stops early ends the follower instead of leaving it blocked or reading on."""
    import time

    from noisetrace.media import crops as crops_mod

    pulled = []

    def frames():
        for i in range(crops_mod.AHEAD * 4):
            pulled.append(i)
            yield np.zeros((48, 64, 3), np.uint8)  # faceless: cheap to search

    cropper = crops_mod.FaceCropper({"backend": "auto", "no_face": "whole", "track": track})
    it = cropper.map(frames())
    first = next(it)
    assert len(first) == 1 and first[0].kind == "whole"
    time.sleep(0.5)  # the follower runs ahead until the window is full
    assert len(pulled) <= crops_mod.AHEAD + 3
    it.close()
    time.sleep(0.3)
    n = len(pulled)
    time.sleep(0.3)
    assert len(pulled) == n < crops_mod.AHEAD * 4  # stopped, not read to the end
    assert len(list(cropper.map(frames()))) == crops_mod.AHEAD * 4  # and all of it, in full
