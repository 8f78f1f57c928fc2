"""End to end: the web page in headless Chromium (Debian's package) against a live server.

Needs /usr/bin/chromium (``make browser`` installs it; ``.ci/run`` calls that). Set
``NOISETRACE_SCREENSHOT=docs/screenshot-scan.png`` to save the page after the scans, and
``NOISETRACE_SERVE_MODEL=<model dir>`` to use a trained model instead of the random one.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium) to run "
        "the browser test",
        allow_module_level=True,
    )
pytest.importorskip("fastapi")
playwright_sync = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from conftest import live_server, save_tiny_model  # noqa: E402

from noisetrace import models  # noqa: E402
from noisetrace.detector import Detector, DetectorConfig  # noqa: E402
from noisetrace.media.image import decode_image  # noqa: E402
from noisetrace.media.video import write_video  # noqa: E402
from noisetrace.serve.app import create_app  # noqa: E402

LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("NOISETRACE_SERVE_MODEL"):
        return Path(os.environ["NOISETRACE_SERVE_MODEL"])
    d = tmp_path_factory.mktemp("model")
    det = Detector(models.create("srm-cnn"), DetectorConfig(name="test", arch="srm-cnn"))
    det.config.video_frames = 12
    det.save(d)
    return d


@pytest.fixture(scope="module")
def face_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random face model, offered as "faces"."""
    return save_tiny_model(tmp_path_factory.mktemp("faces"), "faces", 1, input="face",
                           temporal={"frames": 3, "size": 64, "real": [-0.1, 0.0, 0.1],
                                     "combine": {"coef": [0.5, 1.0], "intercept": 0.0,
                                                 "mean": [0.0, 0.0], "scale": [1.0, 0.1],
                                                 "cut": 0.5}})  # fmt: skip


@pytest.fixture(scope="module")
def server(model_dir: Path, face_model_dir: Path) -> Iterator[str]:
    # Offering the tiny face model as "faces" makes "<start-up>+faces" pair the tiny models.
    app = create_app(str(model_dir), max_upload_mb=5, workers=2, timeout_s=60, device="cpu",
                     offer={"faces": face_model_dir})  # fmt: skip
    with live_server(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def page(server: str):
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        pg = browser.new_page(viewport={"width": 1100, "height": 1250})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.goto(server + "/")
        pg.errors = errors
        yield pg
        browser.close()


def _photo_jpeg() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _video(tmp_path: Path, webm: bool = False) -> bytes:
    """24 frames of the astronaut moving sideways; MPEG-4 part 2 in mp4 (no browser plays it:
    the page shows its results without the picture), or VP8 in WebM, which Chromium plays."""
    from skimage import data

    base = data.astronaut()[::2, ::2][:, :, :3]  # (256, 256, 3)
    rng = np.random.default_rng(0)
    frames = [np.roll(base, 6 * i, axis=1) for i in range(24)]
    frames = [np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8) for f in frames]
    p = tmp_path / ("v.webm" if webm else "v.mp4")
    write_video(p, frames, fps=12, **({"codec": "libvpx"} if webm else {}))
    return p.read_bytes()


def _upload(page, name: str, mime: str, data: bytes, n_rows: int) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.wait_for_function(
        "n => document.querySelectorAll('#history tbody tr').length >= n", arg=n_rows,
        timeout=30_000,
    )


def _one_message_only(page, text: str, just_sent: bool = True) -> None:
    """The error is on the page exactly once, alone: no result, bar or preview beside it
    (nor, ``just_sent``, a status line about the same file)."""
    shown = page.evaluate("() => document.body.innerText")  # visible text only
    assert shown.count(text) == 1, shown
    assert "cannot show this format" not in shown
    assert page.is_visible("#error")
    assert page.is_hidden("#result") and page.is_hidden("#bar") and page.is_hidden("#preview")
    assert page.is_hidden("#activity") or not just_sent


def test_page_scans_and_shows_results(page, model_dir: Path, tmp_path: Path):
    assert "noisetrace" in page.title()
    page.wait_for_function("() => document.getElementById('model-info').textContent.length > 0")

    # 1. a video: verdict plus a per-frame plot with one dot per sampled frame
    _upload(page, "clip.mp4", "video/mp4", _video(tmp_path), 1)
    assert page.text_content("#verdict") in ("real", "fake")
    assert page.is_visible("#frames-plot")
    n_frames = Detector.load(model_dir).config.video_frames
    assert page.locator("#frames-plot circle").count() == n_frames
    page.wait_for_selector("#heatmap[src^='blob:']", timeout=30_000)
    # the heatmap names the frame it shows: the scan's most suspicious, as the CLI picks it
    assert "the most suspicious sampled frame" in page.text_content("#heatmap-note")
    assert page.text_content("#heatmap-note").startswith(" (frame ")

    # 2. a text file named like a photo: the server's message, once; no score, no preview
    _upload(page, "notes.jpg", "image/jpeg", b"not a picture\n" * 20, 2)
    assert "not a supported image or video" in page.text_content("#error")
    _one_message_only(page, "not a supported image or video")
    assert page.locator("#history tbody tr:first-child td.v-error").count() == 1

    # 3. a file dropped on the zone (the drag-and-drop path, not the file input)
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(buf, format="PNG")
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "image/png" }));
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        [base64.b64encode(buf.getvalue()).decode(), "dropped.png"],
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#history tbody tr').length >= 3", timeout=30_000
    )
    assert page.text_content("#result-name") == "dropped.png"
    assert page.text_content("#verdict") in ("real", "fake")

    # 4. above the server's limit (5 MB here): refused in the page, with the limit in words
    _upload(page, "big.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(5 * 2**20 + 10), 4)
    assert "accepts up to 5.0 MB" in page.text_content("#error")
    _one_message_only(page, "accepts up to 5.0 MB")

    # 5. a photo: the verdict and score on the page are the detector's own for these bytes
    photo = _photo_jpeg()
    _upload(page, "chelsea.jpg", "image/jpeg", photo, 5)
    det = Detector.load(model_dir, device="cpu")
    expected = det.score(decode_image(photo))
    verdict = page.text_content("#verdict")
    assert verdict == ("fake" if expected >= det.threshold else "real")
    shown = float(re.search(r"fake score ([0-9.]+)", page.text_content("#score-text")).group(1))
    assert shown == pytest.approx(expected, abs=1e-3)
    # the bar is filled to the score and the threshold marker sits at the threshold
    width = page.eval_on_selector("#bar-fill", "e => e.getBoundingClientRect().width")
    total = page.eval_on_selector("#bar", "e => e.getBoundingClientRect().width")
    assert width / total == pytest.approx(expected, abs=0.01)
    assert float(page.get_attribute("#bar", "aria-valuenow")) == pytest.approx(expected)
    left = page.eval_on_selector("#bar-threshold", "e => e.style.left")
    assert float(left.rstrip("%")) == pytest.approx(det.threshold * 100, abs=0.1)
    assert page.is_hidden("#frames-figure")
    # the metadata line, apart from the score: this JPEG claims nothing
    assert page.text_content("#provenance-text") == "no provenance metadata"
    assert "does not change the score" in page.text_content("#provenance")
    assert page.is_hidden("#face-text") and page.is_hidden("#face-overlay")
    # the heatmap beside the image, at the image's size
    page.wait_for_selector("#heatmap[src^='blob:']", timeout=30_000)
    page.wait_for_function("() => document.getElementById('heatmap').naturalWidth > 0")
    nat = page.eval_on_selector("#heatmap", "e => [e.naturalWidth, e.naturalHeight]")
    assert nat == [451, 300]
    assert page.eval_on_selector("#preview", "e => e.naturalWidth") == 451

    # the visit's list: newest first, every file
    names = page.locator("#history tbody tr td:first-child").all_text_contents()
    assert names == ["chelsea.jpg", "big.jpg", "dropped.png", "notes.jpg", "clip.mp4"]
    assert set(page.locator("#history tbody tr td:nth-child(3)").all_text_contents()) == {det.name}
    # clicking an earlier entry shows it again; an error entry shows its one message again
    page.click("#history tbody tr:nth-child(5) button")
    assert page.text_content("#result-name") == "clip.mp4"
    assert page.is_visible("#frames-plot") and page.is_hidden("#error")
    page.click("#history tbody tr:nth-child(4) button")
    _one_message_only(page, "not a supported image or video", just_sent=False)
    page.click("#history tbody tr:nth-child(1) button")
    assert page.text_content("#result-name") == "chelsea.jpg"

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("NOISETRACE_SCREENSHOT"):
        page.screenshot(path=os.environ["NOISETRACE_SCREENSHOT"], full_page=True)
    # the only error the console may hold is the expected 415 of the text file
    unexpected = [e for e in page.errors if "status of 415" not in e]
    assert not unexpected, unexpected


FACE_CENTER = (222, 115)  # the astronaut's face in skimage.data.astronaut() (512 x 512)


def _astronaut_png() -> bytes:
    """The astronaut with the text chunk a Stable Diffusion web UI writes: a face to box and
    a generator claim in the metadata."""
    from PIL.PngImagePlugin import PngInfo
    from skimage import data

    info = PngInfo()
    info.add_text("parameters", "an astronaut\nSteps: 20, Sampler: Euler a, Seed: 1")
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _box_records(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#face-overlay g.face-box",
        """gs => gs.map(g => {
            const r = g.querySelector('rect').getBoundingClientRect();
            return {cls: g.getAttribute('class'), score: +g.dataset.score,
                    frame: +g.dataset.frame, label: g.querySelector('text').textContent,
                    cx: r.x + r.width / 2, cy: r.y + r.height / 2};
        })""",
    )


def test_model_choice_face_boxes_and_provenance(page, model_dir: Path, tmp_path: Path):
    start = Detector.load(model_dir).name
    combo = f"{start}+faces"
    # the select lists the offered models, the server's default chosen, the combined described
    page.wait_for_function("n => document.querySelectorAll('#model option').length > n", arg=2)
    assert page.input_value("#model") == start
    options = page.eval_on_selector_all("#model option", "os => os.map(o => [o.value, o.text])")
    assert (combo, f"{combo} · whole image + faces") in [tuple(o) for o in options]
    assert page.text_content("label[for=model]") == "Model"
    page.select_option("#model", combo)
    assert "whole image + faces" in page.text_content("#model-desc")

    # 1. an image with a face: the choice reached the server (the record names the model)
    rows = page.locator("#history tbody tr").count()
    _upload(page, "astronaut.png", "image/png", _astronaut_png(), rows + 1)
    page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
    assert page.text_content("#verdict") in ("real", "fake")
    details = page.locator("#details dd").all_text_contents()
    assert combo in details
    assert page.text_content("#history tbody tr:first-child td:nth-child(3)") == combo
    # the face score beside the main score, and one box per face over the picture
    face_text = page.text_content("#face-text")
    assert page.is_visible("#face-text")
    assert re.match(r"faces: [0-9.]+ \(1 face; threshold 0\.50\)", face_text), face_text
    assert page.is_hidden("#temporal-text")  # an image: no frames to follow
    boxes = _box_records(page)
    assert len(boxes) == 1
    b = boxes[0]
    assert b["label"] == f"{b['score']:.3f}"
    assert b["cls"] == ("face-box fake" if b["score"] >= 0.5 else "face-box real")
    assert page.eval_on_selector("#face-overlay g.face-box rect", "e => getComputedStyle(e)"
                                 ".stroke") == ("rgb(179, 38, 30)" if b["score"] >= 0.5
                                                else "rgb(27, 122, 61)")  # fmt: skip
    # drawn where the face is on screen: the picture is scaled into its box (object-fit)
    img = page.eval_on_selector(
        "#preview",
        "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }",
    )
    scale = min(img[2] / 512, img[3] / 512)
    ox, oy = img[0] + (img[2] - 512 * scale) / 2, img[1] + (img[3] - 512 * scale) / 2
    assert abs(b["cx"] - (ox + FACE_CENTER[0] * scale)) < 40 * scale
    assert abs(b["cy"] - (oy + FACE_CENTER[1] * scale)) < 45 * scale
    # provenance: what the metadata claims, apart from the score and with its caveat
    assert page.text_content("#provenance-text") == (
        "made by an AI generator; PNG text: Stable Diffusion web UI (unsigned)"
    )
    note = page.text_content("#provenance")
    assert "stripped or forged" in note and "does not change the score" in note
    assert page.eval_on_selector("#provenance", "e => !e.closest('.verdict-line')")
    # the heatmap was asked for with the same model (the whole-image model draws it)
    page.wait_for_selector("#heatmap[src^='blob:']", timeout=30_000)

    # 2. a video: faces per sampled frame in a table, boxes over the paused video
    n = Detector.load(model_dir).config.video_frames
    _upload(page, "astro.webm", "video/webm", _video(tmp_path, webm=True), rows + 2)
    assert page.is_visible("#faces-figure")
    assert page.locator("#faces-table tbody tr").count() == n
    first = page.locator("#faces-table tbody tr").first.locator("td").all_text_contents()
    assert first[0] == f"frame 1 of {n}" and int(first[2]) >= 1 and first[3] != "no face"
    assert re.search(r"\(\d+ faces in \d+ of \d+ sampled frames", page.text_content("#face-text"))
    # the face model's jitter index beside the scores, against its real videos
    assert page.is_visible("#temporal-text")
    assert re.match(r"face jitter: [+-][0-9.]+ \(\d+% of 3 real videos higher",
                    page.text_content("#temporal-text")), page.text_content("#temporal-text")
    # combined into the face score, the frames' own score shown beside it
    assert re.search(r"in the score \(the frames alone: [0-9.]+\)",
                     page.text_content("#temporal-text")), page.text_content("#temporal-text")
    # paused at the start: the first sampled frame's face is drawn
    page.wait_for_function("() => document.querySelectorAll('#face-overlay g').length > 0")
    assert {b["frame"] for b in _box_records(page)} == {0}
    # picking a frame seeks there and draws that frame's boxes
    page.click(f"#faces-table tbody tr:nth-child({n // 2 + 1}) button")
    page.wait_for_function(
        "i => [...document.querySelectorAll('#face-overlay g')].every(g => g.dataset.frame == i)"
        " && document.querySelectorAll('#face-overlay g').length > 0",
        arg=n // 2,
    )
    assert f"sampled frame {n // 2 + 1} of {n}" in page.text_content("#boxes-note")
    # while it plays, no stale boxes
    page.eval_on_selector("#preview-video", "v => v.play()")
    page.wait_for_function("() => document.getElementById('face-overlay').hasAttribute('hidden')")
    page.eval_on_selector("#preview-video", "v => v.pause()")
    page.select_option("#model", start)
    if os.environ.get("NOISETRACE_SCREENSHOT_FACES"):
        page.screenshot(path=os.environ["NOISETRACE_SCREENSHOT_FACES"], full_page=True)
    unexpected = [e for e in page.errors if "status of 415" not in e]
    assert not unexpected, unexpected
