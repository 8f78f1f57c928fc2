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
import threading
import time
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

from noisetrace import models  # noqa: E402
from noisetrace.detector import Detector, DetectorConfig  # noqa: E402
from noisetrace.media.image import decode_image  # noqa: E402
from noisetrace.media.video import write_video  # noqa: E402
from noisetrace.serve.app import create_app, free_port  # noqa: E402

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
def server(model_dir: Path) -> Iterator[str]:
    app = create_app(str(model_dir), max_upload_mb=5, workers=2, timeout_s=60, device="cpu")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


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


def _video(tmp_path: Path) -> bytes:
    from skimage import data

    base = data.astronaut()[::2, ::2][:, :, :3]  # (256, 256, 3)
    rng = np.random.default_rng(0)
    frames = [np.roll(base, 6 * i, axis=1) for i in range(24)]
    frames = [np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8) for f in frames]
    p = tmp_path / "v.mp4"
    write_video(p, frames, fps=12)
    return p.read_bytes()


def _upload(page, name: str, mime: str, data: bytes, n_rows: int) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.wait_for_function(
        "n => document.querySelectorAll('#history tbody tr').length >= n", arg=n_rows,
        timeout=30_000,
    )


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

    # 2. a text file named like a photo: the server's message is shown, nothing crashes
    _upload(page, "notes.jpg", "image/jpeg", b"not a picture\n" * 20, 2)
    assert page.get_attribute("#verdict", "data-verdict") == "error"
    assert "not a supported image or video" in page.text_content("#error")

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
    assert page.get_attribute("#verdict", "data-verdict") == "error"
    assert "accepts up to 5.0 MB" in page.text_content("#error")

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
    # the heatmap beside the image, at the image's size
    page.wait_for_selector("#heatmap[src^='blob:']", timeout=30_000)
    page.wait_for_function("() => document.getElementById('heatmap').naturalWidth > 0")
    nat = page.eval_on_selector("#heatmap", "e => [e.naturalWidth, e.naturalHeight]")
    assert nat == [451, 300]
    assert page.eval_on_selector("#preview", "e => e.naturalWidth") == 451

    # the visit's list: newest first, every file
    names = page.locator("#history tbody tr td:first-child").all_text_contents()
    assert names == ["chelsea.jpg", "big.jpg", "dropped.png", "notes.jpg", "clip.mp4"]
    # clicking an earlier entry shows it again
    page.click("#history tbody tr:nth-child(5) button")
    assert page.text_content("#result-name") == "clip.mp4"
    assert page.is_visible("#frames-plot")
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
