"""Video decoding: sampling modes, keyframes, animated GIF/WebP, bad files."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data

from noisetrace.errors import InputError
from noisetrace.media.video import (
    count_frames,
    is_animated_image,
    read_frames,
    write_video,
)

N, FPS, GOP = 30, 10, 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """30 frames of the astronaut sliding right, one I-frame every 10 frames."""
    a = np.asarray(Image.fromarray(data.astronaut()).resize((128, 128)))
    frames = [np.roll(a, 4 * i, axis=1) for i in range(N)]
    p = tmp_path_factory.mktemp("v") / "clip.mp4"
    write_video(p, frames, fps=FPS, gop=GOP)
    return str(p)


def test_all_frames_keep_index_and_time(clip):
    fs = read_frames(clip, "all")
    assert [f.index for f in fs] == list(range(N))
    assert [f.time for f in fs] == pytest.approx([i / FPS for i in range(N)])
    assert fs[0].image.shape == (128, 128, 3) and fs[0].image.dtype == np.uint8
    assert count_frames(clip) == N


@pytest.mark.parametrize(
    "mode,n,expected",
    [("every", 7, [0, 7, 14, 21, 28]), ("first", 5, [0, 1, 2, 3, 4]), ("even", 4, [0, 10, 19, 29])],
)
def test_sampling_modes(clip, mode, n, expected):
    assert [f.index for f in read_frames(clip, mode, n)] == expected


def test_keyframes_are_the_i_frames_with_their_true_index(clip):
    allf = read_frames(clip, "all")
    keys = read_frames(clip, "keyframes")
    assert [f.index for f in keys] == list(range(0, N, GOP))
    assert all(f.key for f in keys)
    assert [f.index for f in allf if f.key] == [f.index for f in keys]
    for k in keys:  # the I-frame decoded alone is the same picture as in full decoding
        diff = np.abs(k.image.astype(int) - allf[k.index].image.astype(int)).mean()
        assert diff < 1.0
        assert k.time == pytest.approx(k.index / FPS)


def test_max_side_downscales(clip):
    (f,) = read_frames(clip, "first", 1, max_side=64)
    assert f.image.shape == (64, 64, 3)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animated_images_are_videos(tmp_path, fmt):
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for _ in range(5)]
    p = tmp_path / f"anim.{fmt}"
    kw = {"lossless": True} if fmt == "webp" else {"loop": 0}
    ims[0].save(p, save_all=True, append_images=ims[1:], duration=[100, 200, 100, 100, 100], **kw)
    assert is_animated_image(p)
    assert count_frames(p) == 5
    fs = read_frames(p, "all")
    assert [f.index for f in fs] == [0, 1, 2, 3, 4]
    assert [f.time for f in fs] == pytest.approx([0.0, 0.1, 0.3, 0.4, 0.5])
    assert fs[2].image.shape == (24, 32, 3)
    if fmt == "webp":  # lossless: frames come back exactly
        assert np.array_equal(fs[3].image, np.asarray(ims[3]))
    assert [f.index for f in read_frames(p, "even", 3)] == [0, 2, 4]


def test_still_image_is_not_animated(tmp_path):
    p = tmp_path / "still.gif"
    Image.fromarray(data.camera()).save(p)
    assert not is_animated_image(p)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_zero_frame_video_is_a_clear_input_error(tmp_path, ext):
    p = tmp_path / f"empty.{ext}"
    with av.open(str(p), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()  # write the header, then no frame at all
    assert p.stat().st_size > 0
    for mode in ("even", "all", "first", "keyframes"):
        with pytest.raises(InputError, match="no decodable frames|no video stream|truncated"):
            read_frames(p, mode, 4)


def test_corrupt_and_truncated_videos(tmp_path, clip):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(InputError, match="corrupt"):
        read_frames(bad)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError):
        read_frames(text)
    raw = open(clip, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(raw[: len(raw) // 3])
    try:  # a truncated file either decodes its head or says why; never another exception
        fs = read_frames(cut, "all")
        assert 0 < len(fs) < N
    except InputError:
        pass


def test_unknown_mode(clip):
    with pytest.raises(ValueError, match="sampling mode"):
        read_frames(clip, "random")  # type: ignore[arg-type]


def test_badly_encoded_metadata_does_not_stop_the_video(tmp_path):
    """A title tag in Latin-1, not UTF-8 (old cameras and editors write them): PyAV < 19 fails
    the whole open on it unless told otherwise, 19 dropped the option; either way it plays."""
    p = tmp_path / "latin1.mp4"
    with av.open(str(p), "w") as c:
        c.metadata["title"] = "caf\u00e9 x"
        s = c.add_stream("mpeg4", rate=6)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for i in range(3):
            frame = np.full((32, 32, 3), i * 40, np.uint8)
            for pk in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    b = p.read_bytes()
    i = b.find("caf\u00e9".encode())
    assert i > 0
    p.write_bytes(b[: i + 3] + b"\xe9 " + b[i + 5 :])  # same length, now invalid UTF-8
    assert len(read_frames(p, mode="all")) == 3

