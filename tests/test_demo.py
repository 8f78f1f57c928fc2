"""The README's first command: the demo scans generated samples with the bundled model."""

import json

import noisetrace
from noisetrace import demo


def test_bundled_default_model_loads_with_verified_hashes():
    from noisetrace.semantic.backbones import SAHU_SHA256

    assert {"default", "fast"} <= set(noisetrace.list_bundled())
    det = noisetrace.load_detector("default", device="cpu")
    # The fused default: a CLIP head and a SPAM head, each checked against its recorded hash,
    # the encoder against the shipped file's.
    assert det.config.arch == "fusion" and set(det.branches) == {"semantic", "noise"}
    assert all(b.config.extra["head_sha256"] for b in det.branches.values())
    assert det.branches["semantic"].extractor.encoder.sha256 == SAHU_SHA256
    assert 0.5 <= det.threshold < 1
    fast = noisetrace.load_detector("fast", device="cpu")
    assert fast.config.weights_sha256 and fast.backend in ("onnx", "torch")
    assert set(fast.config.calibration) == {"a", "b"}


def test_demo_scans_every_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.run() == 0
    recs = [json.loads(x) for x in (tmp_path / "demo-out" / "scan.jsonl").read_text().splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in recs}
    assert set(by_name) == {"astronaut.jpg", "coffee.jpg", "coffee.png", "chelsea.jpg",
                            "rocket.jpg", "astronaut_pan.mp4", "broken.jpg"}  # fmt: skip
    assert by_name["broken.jpg"]["verdict"] == "error"
    assert by_name["astronaut_pan.mp4"]["frames"] == 16
    for name, r in by_name.items():
        if name != "broken.jpg":
            assert r["model"] == "default" and 0 <= r["score"] <= 1, name
    assert "uncertain" in capsys.readouterr().out
