"""The web service's API through FastAPI's TestClient, with a tiny random srm-cnn model."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")
from conftest import save_tiny_model  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from noisetrace import models  # noqa: E402
from noisetrace.detector import Detector, DetectorConfig  # noqa: E402
from noisetrace.media.video import write_video  # noqa: E402
from noisetrace.serve.app import create_app, display_name  # noqa: E402

#: TestClient's default host name ("testserver") is not one the server answers to.
LOCAL = "http://127.0.0.1"

RECORD_FIELDS = {
    "path", "kind", "score", "verdict", "threshold", "model", "frames", "seconds", "error",
    "width", "height", "frame_scores",
}  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    det = Detector(models.create("srm-cnn"), DetectorConfig(name="test", arch="srm-cnn"))
    det.config.video_frames = 4
    det.save(d)
    return d


@pytest.fixture(scope="module")
def client(model_dir: Path):
    app = create_app(str(model_dir), max_upload_mb=1, workers=2, timeout_s=60, device="cpu")
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def _jpeg(h: int = 96, w: int = 128, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _mp4(tmp_path: Path, n: int = 6) -> bytes:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(n)]
    p = tmp_path / "clip.mp4"
    write_video(p, frames, fps=5)
    return p.read_bytes()


def _upload_dir_empty(client: TestClient) -> bool:
    return not any(client.app.state.service.upload_root.iterdir())


def test_scan_image_returns_cli_record(client: TestClient, model_dir: Path) -> None:
    data = _jpeg()
    r = client.post("/v1/scan", files={"file": ("holiday.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert RECORD_FIELDS <= set(rec)
    assert rec["kind"] == "image" and rec["verdict"] in ("real", "fake")
    assert (rec["width"], rec["height"]) == (128, 96)
    assert rec["path"] == "holiday.jpg" and rec["model"] == "test"
    # Same score as the detector gives the same bytes directly (same scan code).
    det = Detector.load(model_dir, device="cpu")
    from noisetrace.media.image import decode_image

    assert rec["score"] == pytest.approx(det.score(decode_image(data)), abs=1e-6)
    assert rec["verdict"] == ("fake" if rec["score"] >= rec["threshold"] else "real")
    assert len(rec["sha256"]) == 64
    assert _upload_dir_empty(client)


def test_scan_video_has_frame_scores(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/v1/scan", files={"file": ("clip.mp4", _mp4(tmp_path), "video/mp4")})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["kind"] == "video" and rec["frames"] == 4
    assert len(rec["frame_scores"]) == 4
    assert all(0.0 <= s <= 1.0 for s in rec["frame_scores"])
    assert rec["score"] == pytest.approx(np.mean(rec["frame_scores"]), abs=1e-5)
    r = client.post(
        "/v1/scan?frames=2", files={"file": ("clip.mp4", _mp4(tmp_path), "video/mp4")}
    )
    assert r.status_code == 200 and len(r.json()["frame_scores"]) == 2


def test_content_is_sniffed_not_the_name_or_type(client: TestClient) -> None:
    # A JPEG sent as "notes.txt" with a text type is still scanned as an image.
    r = client.post("/v1/scan", files={"file": ("notes.txt", _jpeg(), "text/plain")})
    assert r.status_code == 200 and r.json()["kind"] == "image"


def test_corrupt_file_is_422_with_reason(client: TestClient) -> None:
    data = _jpeg()[:400]  # JPEG magic bytes, truncated body
    r = client.post("/v1/scan", files={"file": ("broken.jpg", data, "image/jpeg")})
    assert r.status_code == 422
    rec = r.json()
    assert rec["verdict"] == "error" and rec["kind"] == "image" and rec["score"] is None
    assert "corrupt" in rec["detail"] or "truncated" in rec["detail"]
    assert _upload_dir_empty(client)


def test_oversize_upload_is_413(client: TestClient) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (1 << 20)  # 1 MiB + 3 bytes against a 1 MiB limit
    r = client.post("/v1/scan", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413
    assert "--max-upload-mb" in r.json()["detail"]
    assert _upload_dir_empty(client)


def test_oversize_without_content_length_is_413(client: TestClient) -> None:
    # A chunked body has no Content-Length: the limit is enforced while streaming.
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def body():
        yield head + b"\xff\xd8\xff"
        for _ in range(20):
            yield b"\0" * 65536  # 1.25 MiB in all
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/v1/scan",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413
    assert _upload_dir_empty(client)


def test_wrong_type_is_415_with_message(client: TestClient) -> None:
    r = client.post("/v1/scan", files={"file": ("photo.jpg", b"hello, world\n" * 10, "image/jpeg")})
    assert r.status_code == 415
    assert "not a supported image or video" in r.json()["detail"]
    assert "text file" in r.json()["detail"]
    # Not multipart at all: the message says how to send it.
    r = client.post("/v1/scan", content=_jpeg(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    # Multipart without the field.
    r = client.post("/v1/scan", files={"other": ("a.jpg", _jpeg(), "image/jpeg")})
    assert r.status_code == 422 and "'file'" in r.json()["detail"]
    assert _upload_dir_empty(client)


def test_client_file_name_is_never_a_path(client: TestClient) -> None:
    r = client.post("/v1/scan", files={"file": ("../../../tmp/evil.jpg", _jpeg(), "image/jpeg")})
    assert r.status_code == 200
    assert r.json()["path"] == "evil.jpg"
    assert not Path("/tmp/evil.jpg").exists()
    assert display_name("..\\..\\x\n\x00.png") == "x.png" and display_name("") == "upload"
    assert _upload_dir_empty(client)


def test_explain_returns_png_heatmap(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/v1/explain", files={"file": ("a.jpg", _jpeg(), "image/jpeg")})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (128, 96) and im.mode == "RGB"
    # map view is the colormap alone: its pixels lie on the blue-yellow-red ramp, not the photo
    r2 = client.post("/v1/explain?view=map", files={"file": ("a.jpg", _jpeg(), "image/jpeg")})
    assert r2.status_code == 200 and r2.content != r.content
    r3 = client.post("/v1/explain", files={"file": ("c.mp4", _mp4(tmp_path), "video/mp4")})
    assert r3.status_code == 200
    assert Image.open(io.BytesIO(r3.content)).size == (80, 64)
    # The frame explained is the scan's most suspicious one, as `noisetrace explain` picks it.
    rec = client.post("/v1/scan", files={"file": ("c.mp4", _mp4(tmp_path), "video/mp4")}).json()
    best = int(np.argmax(rec["frame_scores"]))
    from noisetrace.media.video import iter_frames

    p = tmp_path / "c_again.mp4"
    p.write_bytes(_mp4(tmp_path))
    idx = [f.index for f in iter_frames(p, mode="even", n=rec["frames"])]
    assert int(r3.headers["x-explained-frame"]) == idx[best]
    r4 = client.post("/v1/explain", files={"file": ("b.jpg", _jpeg()[:300], "image/jpeg")})
    assert r4.status_code == 422
    assert _upload_dir_empty(client)


def test_models_healthz_openapi_and_page(client: TestClient) -> None:
    m = client.get("/v1/models").json()
    assert m["active"]["name"] == "test" and m["active"]["arch"] == "srm-cnn"
    assert "srm-cnn" in m["architectures"]
    assert m["limits"]["max_upload_bytes"] == 1 << 20
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["in_progress"] == 0 and h["capacity"] == 2 + 8
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/scan"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert {"/v1/explain", "/v1/models", "/healthz"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "noisetrace" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def _slow_detector(model_dir: Path, delay: float, gate: threading.Event | None = None) -> Detector:
    det = Detector.load(model_dir, device="cpu")
    real_scan = det.scan

    def slow_scan(path, **kw):
        if gate is not None:
            gate.wait(10)
        else:
            time.sleep(delay)
        return real_scan(path, **kw)

    det.scan = slow_scan  # type: ignore[method-assign]
    return det


def test_timeout_is_504_and_upload_removed_when_work_ends(model_dir: Path) -> None:
    det = _slow_detector(model_dir, delay=1.0)
    app = create_app(det, max_upload_mb=1, workers=1, timeout_s=0.3)
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/v1/scan", files={"file": ("a.jpg", _jpeg(), "image/jpeg")})
        assert r.status_code == 504 and "--timeout" in r.json()["detail"]
        svc = app.state.service
        assert svc.status()["in_progress"] == 1  # still scoring: the slot stays taken
        for _ in range(100):
            if svc.status()["in_progress"] == 0:
                break
            time.sleep(0.05)
        assert svc.status()["in_progress"] == 0
        assert not any(svc.upload_root.iterdir())


def _post_in_threads(
    c: TestClient, n: int, url: str = "/v1/scan"
) -> tuple[list[int], list[threading.Thread]]:
    """Start ``n`` concurrent uploads of one JPEG; ``codes`` fills as they answer (join the
    threads before reading it)."""
    codes: list[int] = []

    def post() -> None:
        r = c.post(url, files={"file": ("a.jpg", _jpeg(), "image/jpeg")})
        codes.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    return codes, threads


def test_full_queue_is_503_not_unbounded(model_dir: Path) -> None:
    gate = threading.Event()
    det = _slow_detector(model_dir, delay=0, gate=gate)
    app = create_app(det, max_upload_mb=1, workers=1, queue=1, timeout_s=30)
    with TestClient(app, base_url=LOCAL) as c:
        codes, threads = _post_in_threads(c, 2)
        svc = app.state.service
        for _ in range(200):
            if svc.status()["in_progress"] == 2:
                break
            time.sleep(0.02)
        r = c.post("/v1/scan", files={"file": ("a.jpg", _jpeg(), "image/jpeg")})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        gate.set()
        for t in threads:
            t.join(20)
        assert sorted(codes) == [200, 200]
        assert json.loads(c.get("/healthz").text)["in_progress"] == 0


# -- issue 18: Host allow-list, no CDN docs, stale uploads of killed servers -----------------
def test_host_header_must_be_an_allowed_name(client: TestClient, model_dir: Path) -> None:
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST.:8000", "[::1]:8000"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
        r = client.get("/healthz", headers={"host": host})
        assert r.status_code == 400 and "--allowed-host" in r.json()["detail"], host
        assert r.headers["x-frame-options"] == "DENY"
    r = client.post("/v1/scan", headers={"host": "evil.example"},
                    files={"file": ("a.jpg", _jpeg(), "image/jpeg")})  # fmt: skip
    assert r.status_code == 400 and _upload_dir_empty(client)
    det = Detector.load(model_dir, device="cpu")
    app = create_app(det, allowed_hosts=["scan.example"])
    with TestClient(app, base_url="http://scan.example") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz", headers={"host": "other.example"}).status_code == 400
    with TestClient(create_app(det, allowed_hosts=["*"])) as c:
        assert c.get("/healthz").status_code == 200


def test_serve_command_allows_its_bound_address() -> None:
    from noisetrace.serve.command import allowed_hosts

    assert allowed_hosts("10.0.0.5", []) == ["10.0.0.5"]
    assert allowed_hosts("0.0.0.0", []) == ["*"]  # every address: names unknown
    assert allowed_hosts("0.0.0.0", ["scan.lan"]) == ["0.0.0.0", "scan.lan"]


def test_docs_page_that_needs_a_cdn_is_not_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_uploads_left_by_a_killed_server_are_removed_at_start(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f"noisetrace-serve-{dead.pid}-abc123"
    running = tmp_path / f"noisetrace-serve-{os.getpid()}-def456"
    old = tmp_path / "noisetrace-serve-xyz789"  # an older version's root, days old
    other = tmp_path / "unrelated"
    for d in (killed, running, old, other):
        (d / "tmp1").mkdir(parents=True)
        (d / "tmp1" / "upload.part").write_bytes(b"half an upload")
    os.utime(old, (0, 0))
    app = create_app(Detector.load(model_dir, device="cpu"))
    with TestClient(app, base_url=LOCAL):
        assert not killed.exists() and not old.exists()
        assert running.exists() and other.exists()
        assert app.state.service.upload_root.parent == tmp_path
    assert not app.state.service.upload_root.exists()  # its own root goes at shutdown


def test_image_over_the_decoding_budget_is_refused_before_a_worker(client: TestClient) -> None:
    import struct

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 15000, 15000)  # 632 bytes, 225 Mpixels
    served = client.get("/healthz").json()["served"]
    r = client.post("/v1/scan", files={"file": ("bomb.jpg", bytes(data), "image/jpeg")})
    assert r.status_code == 413 and "declares 15000x15000 pixels" in r.json()["detail"]
    assert _upload_dir_empty(client)
    st = client.app.state.service.status()
    # Refused while uploading: it never took a scoring slot, and its upload slot is free.
    assert st["served"] == served and st["in_progress"] == 0 and st["uploading"] == 0


# -- issue 20: the client chooses among the models the server offers ------------------------
FACE_CENTER = (222, 115)  # the astronaut's face in skimage.data.astronaut()


@pytest.fixture(scope="module")
def face_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # threshold 0: every face found is "fake", so the combined verdict is known in advance
    return save_tiny_model(tmp_path_factory.mktemp("faces"), "faces", 1, input="face",
                           threshold=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("other"), "other", 2)


@pytest.fixture(scope="module")
def choice(model_dir: Path, face_model_dir: Path, other_model_dir: Path):
    """A server started with "test" that also offers "other" and its own "faces" (replacing
    the bundled one, so "test+faces" pairs the tiny models)."""
    app = create_app(
        str(model_dir), max_upload_mb=1, workers=2, timeout_s=60, device="cpu",
        offer={"faces": face_model_dir, "other": other_model_dir},
    )  # fmt: skip
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def _astronaut_jpeg() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_models_lists_the_offered_names(choice: TestClient) -> None:
    from noisetrace.zoo import list_bundled

    m = choice.get("/v1/models").json()
    names = [o["name"] for o in m["offered"]]
    # the start-up model first (the default), then the combined one, then the rest
    assert names[:2] == ["test", "test+faces"] and m["default_model"] == "test"
    assert set(names) == {"test", "test+faces", "other", *list_bundled()}
    info = {o["name"]: o for o in m["offered"]}
    assert info["test"]["default"] and info["test"]["loaded"] and info["test"]["explain"]
    assert info["test"]["purpose"] == "whole image" and info["test"]["threshold"] == 0.5
    assert info["faces"]["input"] == "face" and info["faces"]["purpose"] == "faces only"
    combo = info["test+faces"]
    assert combo["purpose"] == "whole image + faces" and combo["input"] == "image+face"
    assert combo["threshold"] == 0.5 and combo["face_threshold"] == 0.0
    # offered but not loaded: nothing is loaded to answer /v1/models
    assert not info["other"]["loaded"] and info["other"]["explain"] is None
    assert m["active"]["name"] == "test"  # unchanged: the start-up model


def test_scan_with_a_chosen_model(choice: TestClient) -> None:
    data = _jpeg()
    plain = choice.post("/v1/scan", files={"file": ("a.jpg", data, "image/jpeg")}).json()
    assert plain["model"] == "test"
    by_query = choice.post("/v1/scan?model=other", files={"file": ("a.jpg", data, "image/jpeg")})
    assert by_query.status_code == 200, by_query.text
    assert by_query.json()["model"] == "other" and by_query.json()["score"] != plain["score"]
    by_form = choice.post(
        "/v1/scan", data={"model": "other"}, files={"file": ("a.jpg", data, "image/jpeg")}
    )
    assert by_form.status_code == 200 and by_form.json()["score"] == by_query.json()["score"]
    same = choice.post(
        "/v1/scan?model=test", data={"model": "test"}, files={"file": ("a.jpg", data, "i/j")}
    )
    assert same.status_code == 200 and same.json()["score"] == plain["score"]
    clash = choice.post(
        "/v1/scan?model=test", data={"model": "other"}, files={"file": ("a.jpg", data, "i/j")}
    )
    assert clash.status_code == 422 and "send one" in clash.json()["detail"]
    info = {o["name"]: o for o in choice.get("/v1/models").json()["offered"]}
    assert info["other"]["loaded"] and info["other"]["explain"] is True
    r = choice.post("/v1/explain?model=other", files={"file": ("a.jpg", data, "image/jpeg")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert _upload_dir_empty(choice)


def test_unknown_model_or_a_path_is_422_with_the_list(
    choice: TestClient, other_model_dir: Path
) -> None:
    files = {"file": ("a.jpg", _jpeg(), "image/jpeg")}
    served = choice.get("/healthz").json()["served"]
    r = choice.post("/v1/scan?model=nope", files=files)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "unknown model 'nope'" in detail and "test, test+faces" in detail
    assert "other" in detail and "GET /v1/models" in detail
    # refused before the upload is admitted: nothing counted, nothing stored
    assert choice.get("/healthz").json()["served"] == served
    # a real model directory is still only a name the server does not offer
    for path in (str(other_model_dir), "../zoo/default", "default/../fast"):
        for kw in ({"params": {"model": path}}, {"data": {"model": path}}):
            r = choice.post("/v1/scan", files=files, **kw)
            assert r.status_code == 422, (path, kw)
            assert "cannot be chosen by a client" in r.json()["detail"]
    r = choice.post("/v1/explain?model=nope", files=files)
    assert r.status_code == 422 and "this server offers" in r.json()["detail"]
    r = choice.post("/v1/scan", data={"model": "x" * 300}, files=files)
    assert r.status_code == 422 and "GET /v1/models" in r.json()["detail"]
    assert _upload_dir_empty(choice)


def test_combined_scan_returns_face_fields(choice: TestClient, model_dir: Path) -> None:
    data = _astronaut_jpeg()
    r = choice.post("/v1/scan", params={"model": "test+faces"},
                    files={"file": ("astro.jpg", data, "image/jpeg")})  # fmt: skip
    assert r.status_code == 200, r.text
    # "+" unescaped in a query string is a space: understood all the same
    r2 = choice.post("/v1/scan?model=test+faces", files={"file": ("astro.jpg", data, "i/j")})
    assert r2.status_code == 200 and r2.json()["face_boxes"] == r.json()["face_boxes"]
    rec = r.json()
    assert rec["model"] == "test+faces" and rec["face_threshold"] == 0.0
    assert rec["face_score"] is not None and rec["faces"] >= 1
    box = rec["face_boxes"][0]
    assert box["frame"] == 0 and box["kind"] == "face" and 0.0 <= box["score"] <= 1.0
    x0, y0, x1, y1 = box["box"]
    assert abs((x0 + x1) / 2 - FACE_CENTER[0]) < 40 and abs((y0 + y1) / 2 - FACE_CENTER[1]) < 45
    assert rec["verdict"] == "fake"  # the face threshold is 0: the face model calls it fake
    # the whole-image score is the start-up model's own
    plain = choice.post("/v1/scan", files={"file": ("astro.jpg", data, "image/jpeg")}).json()
    assert rec["score"] == pytest.approx(plain["score"], abs=1e-9)
    assert plain["face_score"] is None and plain["face_boxes"] is None
    # no face in the picture: the face fields say so
    r = choice.post("/v1/scan", params={"model": "test+faces"},
                    files={"file": ("noise.jpg", _jpeg(), "image/jpeg")})  # fmt: skip
    rec = r.json()
    assert rec["face_score"] is None and rec["faces"] == 0 and rec["face_boxes"] == []
    assert "provenance" in rec and rec["provenance"]["claims"] == []
    # the heatmap of the combined mode is the whole-image model's
    files = {"file": ("astro.jpg", data, "image/jpeg")}
    r = choice.post("/v1/explain", params={"model": "test+faces"}, files=files)
    assert r.status_code == 200, r.text
    assert r.content == choice.post("/v1/explain", files=files).content


def test_models_are_loaded_once_on_first_use(
    model_dir: Path, other_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = Detector.load

    def slow_load(directory, *a, **kw):
        loads.append(Path(directory).name)
        time.sleep(0.3)  # long enough for the requests below to overlap
        return real_load(directory, *a, **kw)

    start = real_load(model_dir, device="cpu")
    monkeypatch.setattr(Detector, "load", staticmethod(slow_load))
    app = create_app(start, workers=3, bundled=False, offer={"other": other_model_dir})
    with TestClient(app, base_url=LOCAL) as c:
        assert [o["name"] for o in c.get("/v1/models").json()["offered"]] == ["test", "other"]
        assert loads == []  # offered is not loaded
        codes, threads = _post_in_threads(c, 3, "/v1/scan?model=other")
        for t in threads:
            t.join(30)
        assert codes == [200, 200, 200] and loads == [other_model_dir.name]
        # no bundled models and no face model offered: no combined mode either
        r = c.post("/v1/scan?model=default", files={"file": ("a.jpg", _jpeg(), "image/jpeg")})
        assert r.status_code == 422 and "offers test, other" in r.json()["detail"]


def test_a_face_start_up_model_offers_no_combined_mode(face_model_dir: Path) -> None:
    app = create_app(str(face_model_dir), device="cpu", bundled=False)
    with TestClient(app, base_url=LOCAL) as c:
        m = c.get("/v1/models").json()
        assert [o["name"] for o in m["offered"]] == ["faces"]
        assert m["offered"][0]["input"] == "face"


def test_serve_command_offer_must_be_name_equals_dir(capsys: pytest.CaptureFixture) -> None:
    from noisetrace.cli import main

    assert main(["serve", "--offer", "runs/mine/best"]) == 2
    assert "write NAME=DIR" in capsys.readouterr().err


# -- issue 18, item 7: slow uploads do not hold the server ------------------------------------
def test_upload_slots_are_capped_per_client_and_in_all(model_dir: Path) -> None:
    from noisetrace.serve.app import UploadError

    app = create_app(model_dir, bundled=False, max_uploads=3, uploads_per_client=2)
    svc = app.state.service
    svc.admit_upload("10.0.0.1")
    svc.admit_upload("10.0.0.1")
    with pytest.raises(UploadError) as e:
        svc.admit_upload("10.0.0.1")
    assert e.value.status == 429 and "your address" in e.value.detail
    svc.admit_upload("10.0.0.2")
    with pytest.raises(UploadError) as e:
        svc.admit_upload("10.0.0.3")
    assert e.value.status == 503
    for c in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        svc.release_upload(c)
    assert svc.status()["uploading"] == 0 and svc.uploading == {}
    svc.close()


def test_stalled_uploads_do_not_hold_scoring_slots(model_dir: Path) -> None:
    """Ten clients that send headers and a few bytes, then nothing: a good request is still
    scored at once (one scoring slot in all), and the stalled ones end with 408."""
    import socket

    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from conftest import live_server

    app = create_app(model_dir, bundled=False, workers=1, queue=0, timeout_s=60,
                     uploads_per_client=11, idle_s=2.0)  # fmt: skip
    svc = app.state.service
    socks = []
    with live_server(app) as port:
        try:
            head = (b"POST /v1/scan HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
                    b"Content-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
                    b"\xff\xd8")  # fmt: skip
            for _ in range(10):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(head)
                socks.append(s)
            for _ in range(200):
                if svc.status()["uploading"] == 10:
                    break
                time.sleep(0.02)
            assert svc.status()["uploading"] == 10
            files = {"file": ("a.jpg", _jpeg(), "image/jpeg")}
            r = httpx.post(f"http://127.0.0.1:{port}/v1/scan", files=files, timeout=30)
            assert r.status_code == 200, r.text
            for s in socks:
                s.settimeout(15)
                assert b" 408 " in s.recv(4096).split(b"\r\n")[0]
            for _ in range(100):
                if svc.status()["uploading"] == 0 and not any(svc.upload_root.iterdir()):
                    break
                time.sleep(0.05)
            assert svc.status()["uploading"] == 0 and not any(svc.upload_root.iterdir())
        finally:
            for s in socks:
                s.close()


# -- issue 18, item 1: a memory ceiling that holds for --workers N at once -----------------------
def test_memory_ceiling_holds_across_workers(model_dir: Path) -> None:
    """Two workers, two images of 96x128 each, a ceiling of 1.5 images' pixels: the second
    file waits until the first has finished; a small one fits beside a big one."""
    gate = threading.Event()
    det = _slow_detector(model_dir, delay=0, gate=gate)
    starts: list[float] = []
    slow_scan = det.scan

    def timed(path, **kw):
        starts.append(time.monotonic())
        return slow_scan(path, **kw)

    det.scan = timed  # type: ignore[method-assign]
    app = create_app(det, bundled=False, workers=2, queue=2, timeout_s=30,
                     max_pixels_at_once=int(96 * 128 * 1.5))  # fmt: skip
    with TestClient(app, base_url=LOCAL) as c:
        svc = app.state.service
        codes, threads = _post_in_threads(c, 2)
        for _ in range(200):
            if svc.status()["in_progress"] == 2 and svc.status()["pixels_reserved"]:
                break
            time.sleep(0.02)
        time.sleep(0.3)
        st = svc.status()
        assert st["pixels_reserved"] == 96 * 128 and len(starts) == 1  # the second waits
        gate.set()
        for t in threads:
            t.join(20)
        assert codes == [200, 200] and len(starts) == 2
        assert svc.status()["pixels_reserved"] == 0


def test_explain_without_spatial_features_is_501_and_scan_still_works(tmp_path: Path) -> None:
    """A network with no spatial features (MesoNet) has no heatmap, and Integrated Gradients
    is too slow to serve: /v1/explain says so (501) and /v1/scan still scores the file."""
    d = tmp_path / "meso"
    det = Detector(models.create("mesonet4"), DetectorConfig(name="meso", arch="mesonet4"))
    det.save(d)
    app = create_app(str(d), max_upload_mb=1, workers=1, timeout_s=60, device="cpu")
    with TestClient(app, base_url=LOCAL) as c:
        files = {"file": ("a.jpg", _jpeg(), "image/jpeg")}
        r = c.post("/v1/explain", files=files)
        assert r.status_code == 501, r.text
        assert "no spatial features" in r.json()["detail"] and "/v1/scan" in r.json()["detail"]
        assert c.post("/v1/scan", files=files).status_code == 200
