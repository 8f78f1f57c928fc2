import io

import numpy as np
import pytest
from PIL import Image

from noisetrace.errors import InputError
from noisetrace.media import decode_image, load_image, sniff


@pytest.mark.parametrize("name", ["a.jpg", "b.png", "c.webp", "d.tiff", "e.bmp", "f.gif"])
def test_reads_every_supported_format(media_dir, name):
    img = load_image(media_dir / name)
    assert img.dtype == np.uint8 and img.shape == (200, 240, 3)
    assert sniff(media_dir / name)[0] == "image"


def test_lossless_formats_are_exact(media_dir, photo):
    for name in ("b.png", "d.tiff", "e.bmp"):
        np.testing.assert_array_equal(load_image(media_dir / name), photo[:200, :240])


def test_video_is_sniffed_as_video(media_dir):
    assert sniff(media_dir / "clip.mp4") == ("video", "mp4")


@pytest.mark.parametrize(
    "name, words",
    [("empty.jpg", "empty"), ("truncated.jpg", "truncated"), ("text.jpg", "text file")],
)
def test_bad_files_give_clear_errors(media_dir, name, words):
    with pytest.raises(InputError, match=words):
        path = media_dir / name
        sniff(path)
        load_image(path)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_odd_colour_modes_become_rgb():
    g = np.linspace(0, 65535, 64 * 32, dtype=np.uint16).reshape(32, 64)
    cases = {
        "grey": _encode(Image.fromarray(g.astype(np.uint8)), "PNG"),
        "16bit": _encode(Image.frombytes("I;16", (64, 32), g.astype("<u2").tobytes()), "PNG"),
        "rgba": _encode(Image.new("RGBA", (64, 32), (255, 0, 0, 0)), "PNG"),
        "palette": _encode(Image.new("RGB", (64, 32), (10, 200, 30)).quantize(colors=4), "PNG"),
        "cmyk": _encode(Image.new("CMYK", (64, 32), (0, 255, 255, 0)), "JPEG"),
    }
    out = {k: decode_image(v) for k, v in cases.items()}
    for k, img in out.items():
        assert img.shape == (32, 64, 3) and img.dtype == np.uint8, k
    # 16-bit is scaled, not clipped: the brightest pixel stays bright.
    assert out["16bit"].max() == 255 and out["16bit"].min() == 0
    # fully transparent pixels are shown on white, as a viewer shows them
    assert (out["rgba"] == 255).all()
    assert tuple(out["palette"][0, 0]) == (10, 200, 30)
    assert out["cmyk"][0, 0, 0] > 200 and out["cmyk"][0, 0, 1] < 60


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(im, "JPEG", exif=exif.tobytes())
    assert decode_image(data).shape == (40, 20, 3)


def test_decompression_bomb_is_refused():
    data = _encode(Image.new("L", (4000, 4000)), "PNG")
    with pytest.raises(InputError, match="too large"):
        decode_image(data, max_pixels=1_000_000)


def test_one_pixel_image():
    assert decode_image(_encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG")).shape == (1, 1, 3)
