"""Shared fixtures: everything here is generated or shipped by installed packages."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from noisetrace import models
from noisetrace.detector import Detector, DetectorConfig
from noisetrace.media.video import write_video


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep exported ONNX graphs out of the user's cache."""
    import os

    os.environ["NOISETRACE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real camera photo shipped with scikit-image (512x512 RGB)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised srm-cnn saved as a model directory (fast, deterministic)."""
    import torch

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    Detector(models.create("srm-cnn"), DetectorConfig(name="tiny", arch="srm-cnn")).save(d)
    return d


@pytest.fixture(scope="session")
def tiny_detector(tiny_model_dir) -> Detector:
    return Detector.load(tiny_model_dir, device="cpu")


@pytest.fixture()
def media_dir(tmp_path, photo) -> Path:
    """Good images in every supported format, a video and three broken files."""
    d = tmp_path / "media"
    d.mkdir()
    im = Image.fromarray(photo[:200, :240])
    im.save(d / "a.jpg", quality=90)
    im.save(d / "b.png")
    im.save(d / "c.webp", quality=90)
    im.save(d / "d.tiff")
    im.save(d / "e.bmp")
    im.convert("P").save(d / "f.gif")
    frames = [
        np.ascontiguousarray(photo[i * 4 : i * 4 + 128, i * 4 : i * 4 + 128]) for i in range(12)
    ]
    write_video(d / "clip.mp4", frames, fps=6)
    (d / "empty.jpg").write_bytes(b"")
    good = (d / "a.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "text.jpg").write_text("hello, I am not a picture\n")
    return d


def save_tiny_model(d: Path, name: str, seed: int, **cfg: Any) -> Path:
    """A randomly initialised srm-cnn saved as a model directory; ``cfg`` goes to its
    DetectorConfig (e.g. ``input="face"`` for a face model)."""
    import torch

    torch.manual_seed(seed)
    Detector(models.create("srm-cnn"), DetectorConfig(name=name, arch="srm-cnn", **cfg)).save(d)
    return d


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[int]:
    """Run a FastAPI app under a real uvicorn server on a free local port (yields the port);
    for what the in-process test client cannot do (sockets, a browser)."""
    import uvicorn

    from noisetrace.serve.app import free_port

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    """Training data: real = photo crops with sensor-like noise, fake = the same content
    smoothed (noise-free, like many generators' outputs); 20 of each, 96 px."""
    from skimage import data

    root = tmp_path_factory.mktemp("toy")
    (root / "real").mkdir()
    (root / "fake" / "smoothgan").mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    k = 0
    for p in photos:
        for _ in range(5):
            y, x = rng.integers(0, p.shape[0] - 96), rng.integers(0, p.shape[1] - 96)
            crop = p[y : y + 96, x : x + 96]
            noisy = np.clip(crop + rng.normal(0, 6, crop.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / "real" / f"r{k}.png")
            smooth = Image.fromarray(crop).filter(ImageFilter.GaussianBlur(1.5))
            smooth.save(root / "fake" / "smoothgan" / f"f{k}.png")
            k += 1
    return root
