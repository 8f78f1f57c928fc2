"""The jitter index on the scan path: a face model with a temporal calibration reads each
sampled frame with the run of frames after it in the same pass
(``media.video.iter_frames(context=...)``), cuts its largest face from the run
(``Detector.run_jitter``) and reports the index beside the score
(``Detector.jitter_evidence``), in every output."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image
from skimage import data

from noisetrace.cli import main
from noisetrace.detector import UNUSUAL, Detector
from noisetrace.errors import NoisetraceError
from noisetrace.media.crops import cut
from noisetrace.media.video import SampleReport, iter_frames, write_video
from noisetrace.residuals.temporal import LUMA, frame_jitter, jitter_index
from noisetrace.zoo import load_detector

N_FRAMES = 12
TEMPORAL = {"frames": 6, "size": 64, "highpass": True,
            "real": [-0.6, -0.5, -0.4, -0.35, -0.3]}  # fmt: skip


def _frames(rendered: bool, seed: int = 0) -> list[np.ndarray]:
    """The astronaut, her face turning (its middle slides one pixel a frame, a change that
    keeps going) against a still background, sensor noise in every frame; ``rendered``: the
    middle of her face re-drawn each frame with fresh texture, as a face swapped frame by
    frame is re-rendered (a change that comes and goes)."""
    rng = np.random.default_rng(seed)
    img = data.astronaut().astype(np.float32)
    out = []
    for i in range(N_FRAMES):
        f = img.copy()
        f[80:150, 190:260] = img[80:150, 190 - i : 260 - i]  # inside the ring of her face box
        if rendered:
            f[80:150, 190:260] += np.kron(rng.normal(0, 12, (35, 35, 1)), np.ones((2, 2, 3)))
        f += rng.normal(0, 1.0, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    d = save_tiny_model(tmp_path_factory.mktemp("jitter_model"), "tinyjitter", 1,
                        input="face", threshold=0.5, temporal=TEMPORAL,
                        video_frames=2)  # fmt: skip
    return Detector.load(d, device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("jitter_clips")
    for name, rendered in (("filmed", False), ("rendered", True)):
        write_video(d / f"{name}.mp4", _frames(rendered), fps=12, bit_rate=20_000_000)
    Image.fromarray(data.coffee()).save(d / "noface.png")
    write_video(d / "noface.mp4", [data.coffee()] * N_FRAMES, fps=12)
    return d


def test_sampled_frames_carry_their_runs(clips):
    every = {f.index: f.image for f in iter_frames(clips / "filmed.mp4", mode="all")}
    plain = list(iter_frames(clips / "filmed.mp4", n=3))
    report = SampleReport()
    got = list(iter_frames(clips / "filmed.mp4", n=3, context=4, report=report))
    # the same sampled frames as without runs (0, 6, 11), the last run ending at the end
    assert [f.index for f in got] == [f.index for f in plain] == [0, 6, 11]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got, plain, strict=True))
    assert all(f.run is None for f in plain)
    for f, start in zip(got, (0, 6, 8), strict=True):
        assert len(f.run) == 4 and f.luma is None
        for k, y in enumerate(f.run):  # the frames' own luma, decoded once
            rgb = every[start + k].astype(np.float32)
            assert y.shape == rgb.shape[:2] and y.dtype == np.uint8
            assert np.corrcoef(y.ravel(), (rgb @ LUMA).ravel())[0, 1] > 0.99
    assert report.decoded == 3 and report.note is None
    # a video shorter than a run: the frames, without runs
    assert all(f.run is None for f in iter_frames(clips / "filmed.mp4", n=3, context=13))
    with pytest.raises(ValueError, match="even"):
        list(iter_frames(clips / "filmed.mp4", mode="all", context=4))


def test_animated_images_carry_runs_too(tmp_path):
    frames = [Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8)) for i in range(8)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    got = list(iter_frames(tmp_path / "a.gif", n=2, context=3))
    assert [f.index for f in got] == [0, 7]
    assert [int(x[0, 0]) for x in got[1].run] == [100, 120, 140]  # grey: luma = level


def _evidence(model, frames: list[np.ndarray]) -> dict:
    runs = [frames[:6], frames[6:]]
    return model.jitter_evidence([model.run_jitter(r, r[0]) for r in runs])


def test_run_jitter_is_frame_jitter_of_its_own_face_crops(face_model):
    """Reference output: the square of the largest face the model's own search finds in the
    sampled frame, cut from every frame of the run, through frame_jitter and jitter_index."""
    frames = _frames(rendered=True)
    got = _evidence(face_model, frames)
    rows = []
    for run in (frames[:6], frames[6:]):
        crops = face_model.face_cropper.crops(run[0], no_face="skip")
        box = max((c for c in crops if c.kind == "face"),
                  key=lambda c: c.face.width * c.face.height).box  # fmt: skip
        rows.append(frame_jitter(np.stack([cut(f, box, 64) for f in run]), highpass=True))
    want = jitter_index(np.concatenate(rows))
    assert got["jitter_index"] == pytest.approx(want, abs=1e-4)
    assert got["runs"] == 2 and got["calibrated_on"] == len(TEMPORAL["real"])
    above = float(np.mean(np.array(TEMPORAL["real"]) > want))
    assert got["real_above"] == pytest.approx(above) and got["unusual"] == (above < UNUSUAL)


def test_a_face_rendered_every_frame_jitters_more_than_a_filmed_one(face_model):
    filmed, rendered = _evidence(face_model, _frames(False)), _evidence(face_model, _frames(True))
    assert rendered["jitter_index"] > filmed["jitter_index"] + 0.2
    assert rendered["unusual"] and not filmed["unusual"]


def test_no_face_gives_no_evidence(face_model):
    assert face_model.run_jitter([data.coffee()] * 3, data.coffee()) is None
    assert face_model.jitter_evidence([]) is None


def test_scan_reports_the_index_beside_the_score(face_model, clips):
    filmed, rendered = (face_model.scan(clips / f"{n}.mp4") for n in ("filmed", "rendered"))
    assert filmed.error is None and rendered.error is None
    # (MPEG-4 smooths the re-rendered texture a little: a smaller gap than on the frames)
    assert rendered.temporal["jitter_index"] > filmed.temporal["jitter_index"] + 0.1
    assert filmed.temporal["runs"] == 2 and rendered.temporal["unusual"]
    # The score is the frame model's alone, from the same sampled frames: the same with the
    # calibration taken away.
    face_model.config.temporal = None
    try:
        plain = face_model.scan(clips / "rendered.mp4")
    finally:
        face_model.config.temporal = TEMPORAL
    assert plain.temporal is None and plain.score == pytest.approx(rendered.score, abs=1e-9)
    assert plain.frame_scores == rendered.frame_scores
    # No face: no evidence, and an image never has any.
    assert face_model.scan(clips / "noface.mp4").temporal is None
    assert face_model.scan(clips / "noface.png").temporal is None


def test_a_failure_in_the_runs_is_reported_and_the_score_stands(face_model, clips,
                                                                monkeypatch):  # fmt: skip
    def broken(run, anchor):
        raise RuntimeError("boom")

    monkeypatch.setattr(face_model, "run_jitter", broken)
    r = face_model.scan(clips / "rendered.mp4")
    assert r.error is None and r.score is not None
    assert r.temporal == {"error": "RuntimeError: boom"}


def test_every_output_carries_it(face_model, clips, tmp_path, capsys):
    model_dir = tmp_path / "m"
    face_model.save(model_dir)
    out_csv, out_jsonl = tmp_path / "r.csv", tmp_path / "r.jsonl"
    rc = main(["scan", str(clips / "rendered.mp4"), str(clips / "noface.png"), "--model",
               str(model_dir), "--csv", str(out_csv), "--jsonl", str(out_jsonl)])  # fmt: skip
    assert rc == 0
    recs = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert recs[0]["temporal"]["runs"] == 2 and recs[1]["temporal"] is None
    rows = list(csv.DictReader(out_csv.open()))
    assert json.loads(rows[0]["temporal"]) == recs[0]["temporal"] and rows[1]["temporal"] == ""
    table = capsys.readouterr().out
    assert "jitter" in table and f"{recs[0]['temporal']['jitter_index']:+.3f}" in table


def test_whole_and_faces_reports_the_face_models_index(face_model, tiny_model_dir, clips,
                                                       tmp_path):  # fmt: skip
    face_model.save(tmp_path / "f")
    combo = load_detector(f"{tiny_model_dir}+{tmp_path / 'f'}", device="cpu")
    r = combo.scan(clips / "rendered.mp4")
    # from the frames the combined scan samples (the whole-image model's count)
    n = combo.config.video_frames
    assert r.temporal == face_model.scan(clips / "rendered.mp4", video_frames=n).temporal


def test_runs_reuse_the_face_search_of_the_scan(face_model, clips, monkeypatch):
    """The run of each sampled frame is cut around the face the scan found in that frame:
    measuring adds no face search, alone or beside a whole-image model."""
    from noisetrace.media import faces

    calls = {"n": 0}
    for name in ("detect", "detect_near"):
        orig = getattr(faces.FaceDetector, name)

        def counted(self, *a, _orig=orig, **kw):
            calls["n"] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(faces.FaceDetector, name, counted)
    face_model.scan(clips / "rendered.mp4", video_frames=6)
    with_runs = calls["n"]
    face_model.config.temporal, calls["n"] = None, 0
    try:
        face_model.scan(clips / "rendered.mp4", video_frames=6)
    finally:
        face_model.config.temporal = TEMPORAL
    assert with_runs == calls["n"] > 0


#: a learned combination as benchmarks/faces_flicker.py --lofo --into writes it
COMBINE = {"coef": [0.4, 1.5], "intercept": -0.8, "mean": [0.3, -0.4], "scale": [0.7, 0.2],
           "cut": 1.1, "target_fpr": 0.03}  # fmt: skip


def _expected(frame_score: float, jitter: float, threshold: float) -> float:
    """Detector.temporal_score written out: sigmoid(logit(thr) + d - cut)."""
    lg = np.log(frame_score / (1 - frame_score))
    d = COMBINE["intercept"] + 0.4 * (lg - 0.3) / 0.7 + 1.5 * (jitter + 0.4) / 0.2
    x = np.log(threshold / (1 - threshold)) + d - COMBINE["cut"]
    return float(1 / (1 + np.exp(-x)))


@pytest.fixture
def combining(face_model):
    face_model.config.temporal = {**TEMPORAL, "combine": COMBINE}
    yield face_model
    face_model.config.temporal = TEMPORAL


def test_a_learned_combination_is_the_video_score(combining, clips):
    from noisetrace.metrics import aggregate_scores

    plain_rec = combining.scan(clips / "filmed.mp4")
    t = plain_rec.temporal
    assert t["combined"] is True
    frames = np.array(plain_rec.frame_scores, float)
    # the frames' own score is kept; the video's is the combination of it and the index
    assert t["frame_score"] == pytest.approx(
        aggregate_scores(frames, combining.config.video_aggregate), abs=1e-5)
    assert plain_rec.score == pytest.approx(
        _expected(t["frame_score"], t["jitter_index"], combining.threshold), abs=1e-4)
    assert plain_rec.verdict == ("fake" if plain_rec.score >= combining.threshold else "real")
    # a higher index, the same frame score: a higher video score
    hi = combining.temporal_score(t["frame_score"], {"jitter_index": t["jitter_index"] + 0.1})
    assert hi > plain_rec.score
    # at d == cut the score sits on the threshold
    z = np.log(0.6 / 0.4)
    j = -0.4 + 0.2 * (COMBINE["cut"] - COMBINE["intercept"] - 0.4 * (z - 0.3) / 0.7) / 1.5
    assert combining.temporal_score(0.6, {"jitter_index": j}) == pytest.approx(
        combining.threshold, abs=1e-9)


def test_a_threshold_set_later_moves_the_verdict_not_the_score(combining, clips):
    combining.config.temporal["combine"] = {**COMBINE, "threshold": combining.threshold}
    before = combining.scan(clips / "filmed.mp4")
    combining.set_threshold(0.99)
    try:
        after = combining.scan(clips / "filmed.mp4")
    finally:
        combining.set_threshold(0.5)
    assert after.score == pytest.approx(before.score, abs=1e-12)
    assert after.verdict == ("fake" if after.score >= 0.99 else "real")


def test_no_index_no_combination(combining, clips):
    assert combining.temporal_score(0.7, None) is None
    assert combining.temporal_score(0.7, {"error": "boom"}) is None
    assert combining.temporal_score(float("nan"), {"jitter_index": 0.1}) is None
    r = combining.scan(clips / "noface.mp4")
    assert r.temporal is None and r.error is None  # the frame score stands
    combining.config.temporal = TEMPORAL  # a model without a combination: beside, not in
    r = combining.scan(clips / "filmed.mp4")
    assert "combined" not in r.temporal and "frame_score" not in r.temporal


def test_whole_and_faces_combines_as_the_face_model_alone(combining, tiny_model_dir, clips,
                                                          tmp_path):  # fmt: skip
    combining.save(tmp_path / "f")
    combo = load_detector(f"{tiny_model_dir}+{tmp_path / 'f'}", device="cpu")
    r = combo.scan(clips / "rendered.mp4")
    alone = load_detector(str(tmp_path / "f"), device="cpu").scan(
        clips / "rendered.mp4", video_frames=combo.config.video_frames)
    assert r.temporal["combined"] and r.face_score == pytest.approx(alone.score, abs=1e-9)
    assert r.temporal["frame_score"] == pytest.approx(alone.temporal["frame_score"], abs=1e-9)


def test_evaluate_scores_a_video_as_scan_does(combining, clips):
    """One path from a file to its score: evaluate's as-stored condition gives the scan's
    video score, the jitter index combined in."""
    from noisetrace.data.manifest import Sample
    from noisetrace.evaluate.protocols import Condition, EvalOptions, score_conditions

    paths = [clips / "filmed.mp4", clips / "rendered.mp4", clips / "noface.mp4"]
    scanned = [combining.scan(p) for p in paths]
    assert scanned[0].temporal["combined"] and scanned[2].temporal is None
    sc = score_conditions(combining, [Sample(str(p), 0) for p in paths], [Condition()],
                          EvalOptions())  # fmt: skip
    np.testing.assert_allclose(sc.probs[Condition().name], [r.score for r in scanned],
                               atol=1e-9)  # fmt: skip


def _held_out_run():
    """Rows of five video sources (three of fakes, two of reals) and the held-out frame scores
    of their crops (four a video) under three refits, one per fake family; the index
    separates the classes, the frame scores barely do."""
    rng = np.random.default_rng(0)
    rows, videos, y, frame = [], [], [], []
    for source, fam, label, n in (("deepfacelive", "face-deepfacelive", "fake", 20),
                                  ("talking-anitalker", "face-anitalker", "fake", 12),
                                  ("talking-edtalk", "face-edtalk", "fake", 10),
                                  ("styletalk", None, "real", 30),
                                  ("talking-real-mead", None, "real", 30)):  # fmt: skip
        for i in range(n):
            video = f"/data/{source}/v{i}.mp4"
            jit = rng.normal(0.05 if label == "fake" else -0.05, 0.03)
            rows.append({"source": source, "path": f"v{i}.mp4", "video": video, "label": label,
                         "family": fam, "jitter": jit})  # fmt: skip
            for _ in range(4):  # four crops a video
                videos.append(video)
                y.append(int(label == "fake"))
                frame.append(rng.uniform(0.3, 0.7) + (0.05 if label == "fake" else 0))
    videos_a, y_a, frame_a = np.array(videos), np.array(y), np.array(frame)
    held = {}
    for fam in ("face-deepfacelive", "face-anitalker", "face-edtalk"):
        s = np.clip(frame_a + rng.normal(0, 0.02, len(frame_a)), 0.01, 0.99)
        fam_of = np.array([r["family"] for r in rows for _ in range(4)], object)
        s[(y_a == 1) & (fam_of != fam)] = np.nan  # a refit scores its own family's fakes
        held[fam] = s
    return rows, videos_a, y_a, held


def test_the_combination_is_fitted_and_validated_by_source(face_model):
    from noisetrace.heads.temporal import (
        fit_combination,
        held_out_video_scores,
        learned_combination,
    )

    rows, videos, y, held = _held_out_run()
    scores = held_out_video_scores(rows, videos, y, held, "mean")
    assert len(scores["face-edtalk"]) == 10 + 60  # its fakes and every real video
    got = learned_combination(rows, scores)
    assert {r["family"] for r in got} == {"face-deepfacelive", "face-anitalker", "face-edtalk"}
    for r in got:  # the index carries the classes here, and the combination learns so
        assert r["learned"] > 0.9 and r["jitter"] > 0.9 and r["frame"] < r["learned"]
        assert r["weights"][1] > r["weights"][0]
    # A source held out is scored by combinations fitted without its fakes: moving its
    # fakes' index leaves its own row's weights alone and moves every other row's.
    moved_rows = [{**r, "jitter": r["jitter"] + 0.1}
                  if r["source"] == "talking-edtalk" else r for r in rows]  # fmt: skip
    moved = learned_combination(moved_rows, scores)
    before = {r["family"]: r["weights"] for r in got}
    for r in moved:
        assert (r["weights"] == before[r["family"]]) == (r["family"] == "face-edtalk")
    # The fitted combination, in a detector: target_fpr of the real videos reach its
    # threshold.
    comb = fit_combination(rows, scores, target_fpr=0.1, threshold=face_model.threshold,
                           transform="matched90")  # fmt: skip
    assert comb["fitted_on"] == {"fake_videos": 42, "real_videos": 60, "transform": "matched90"}
    face_model.config.temporal = {**TEMPORAL, "combine": comb}
    try:
        called = [face_model.temporal_score(scores["face-edtalk"][(r["video"], "real")],
                                            {"jitter_index": r["jitter"]}) >= face_model.threshold
                  for r in rows if r["label"] == "real"]  # fmt: skip
    finally:
        face_model.config.temporal = TEMPORAL
    assert abs(np.mean(called) - 0.1) <= 0.05  # medians over refits vs one refit: near


def test_a_sources_own_reals_never_fit_the_combination_that_scores_its_fakes():
    from noisetrace.heads.temporal import held_out_video_scores, learned_combination

    rows, videos, y, held = _held_out_run()
    scores = held_out_video_scores(rows, videos, y, held, "mean")
    base = {r["family"]: r["weights"] for r in learned_combination(rows, scores)}
    # MEAD's reals become EDTalk's own: moving them moves EDTalk's weights no more, and
    # still moves the others'.
    owned = [{**r, "family": "face-edtalk"} if r["source"] == "talking-real-mead" else r
             for r in rows]  # fmt: skip
    shifted = [{**r, "jitter": r["jitter"] - 0.2} if r["source"] == "talking-real-mead" else r
               for r in owned]  # fmt: skip
    a = {r["family"]: r["weights"] for r in learned_combination(owned, scores)}
    b = {r["family"]: r["weights"] for r in learned_combination(shifted, scores)}
    assert a["face-edtalk"] == b["face-edtalk"] != base["face-edtalk"]
    assert a["face-anitalker"] != b["face-anitalker"]


def _manifest(d, rows: list[tuple[str, str]]):
    with open(d / "MANIFEST.tsv", "w") as fh:
        fh.write("path\tlabel\n" + "".join(f"{p}\t{lab}\n" for p, lab in rows))
    return str(d / "MANIFEST.tsv")


def test_videos_are_measured_as_scan_reads_them(face_model, clips, tmp_path):
    """One path from a file to its index: the video stage of `noisetrace fit` reads each
    video as `scan` does; a side-by-side clip gives two videos; a broken file is reported
    and the others go on."""
    from noisetrace.heads.temporal import TemporalRecipe, VideoSource, measure_videos

    d = tmp_path / "vids"
    d.mkdir()
    for name in ("filmed", "rendered"):
        (d / f"{name}.mp4").write_bytes((clips / f"{name}.mp4").read_bytes())
    (d / "broken.mp4").write_bytes(b"not a video")
    pair = [np.concatenate([a, b], axis=1) for a, b in zip(_frames(False), _frames(True),
                                                            strict=True)]  # fmt: skip
    write_video(d / "pair.mp4", pair, fps=12, bit_rate=20_000_000)
    plain = _manifest(d, [("filmed.mp4", "real"), ("rendered.mp4", "fake"),
                          ("broken.mp4", "fake"), ("pair.mp4", "pair"),
                          ("", "fake")])  # fmt: skip
    sub = tmp_path / "pairs"
    sub.mkdir()
    (sub / "pair.mp4").write_bytes((d / "pair.mp4").read_bytes())
    pairs = _manifest(sub, [("pair.mp4", "pair")])
    rec = TemporalRecipe([VideoSource(plain, family="face-x"), VideoSource(pairs, pairs=True)],
                         frames=TEMPORAL["frames"], size=TEMPORAL["size"])  # fmt: skip
    before = face_model.config.temporal
    got = measure_videos(face_model, rec, log=lambda _m: None)
    assert face_model.config.temporal is before  # measuring leaves the model as it was
    by = {(r["path"], r["label"]): r for r in got.rows}
    assert set(by) == {("filmed.mp4", "real"), ("rendered.mp4", "fake"), ("pair.mp4", "real"),
                       ("pair.mp4", "fake")}  # fmt: skip
    assert len(got.failed) == 2 and "broken.mp4" in got.failed[0]
    assert "a row without a path" in got.failed[1]
    for name, label in (("filmed", "real"), ("rendered", "fake")):
        r = by[(f"{name}.mp4", label)]
        scanned = face_model.scan(d / f"{name}.mp4")
        assert r["jitter"] == pytest.approx(scanned.temporal["jitter_index"], abs=1e-9)
        assert r["score"] == pytest.approx(scanned.temporal.get("frame_score", scanned.score),
                                           abs=1e-6)  # fmt: skip
        assert r["family"] == "face-x" and r["video"] == str((d / f"{name}.mp4").resolve())
    # the swapped half of the side-by-side clip is the re-rendered one
    assert by[("pair.mp4", "fake")]["jitter"] > by[("pair.mp4", "real")]["jitter"]
    assert by[("pair.mp4", "fake")]["family"] is None


def test_a_temporal_block_is_checked_before_the_refits():
    from noisetrace.heads.fit import HeadRecipe
    from noisetrace.heads.temporal import TemporalRecipe

    with pytest.raises(ValueError, match="face model"):
        HeadRecipe(data=[], branches={}, temporal={"videos": ["m.tsv"]})
    with pytest.raises(ValueError, match="videos"):
        HeadRecipe(data=[], branches={}, input="face", temporal={"frames": 12})
    with pytest.raises(TypeError):
        TemporalRecipe.from_dict({"videos": [{"manifest": "m.tsv", "famly": "x"}]})
    r = TemporalRecipe.from_dict({"videos": ["m.tsv", {"manifest": "p.tsv", "pairs": True}]})
    assert [v.pairs for v in r.videos] == [False, True] and r.settings()["frames"] == 12
    with pytest.raises(NoisetraceError, match="m.tsv, p.tsv"):
        r.check()


def test_a_video_manifest_without_its_columns_stops_the_fit_early(tmp_path):
    from noisetrace.heads.temporal import TemporalRecipe

    good = tmp_path / "good.tsv"
    good.write_text("path\tlabel\nclip.mp4\treal\n")
    bad = tmp_path / "bad.tsv"
    bad.write_text("file\tlabel\nclip.mp4\treal\n")
    TemporalRecipe.from_dict({"videos": [str(good)]}).check()
    with pytest.raises(NoisetraceError, match="bad.tsv has no path column"):
        TemporalRecipe.from_dict({"videos": [str(good), str(bad)]}).check()


def test_fit_stops_before_the_refits_when_a_video_manifest_is_missing(tmp_path, monkeypatch):
    from noisetrace.heads.fit import HeadRecipe, fit_recipe

    recipe = HeadRecipe(data=[str(tmp_path)], branches={}, input="face",
                        temporal={"videos": [str(tmp_path / "nope.tsv")]})  # fmt: skip
    monkeypatch.setattr(HeadRecipe, "corpus", lambda self: pytest.fail("read the corpus"))
    with pytest.raises(NoisetraceError, match="nope.tsv"):
        fit_recipe(recipe, tmp_path / "out", verbose=False)


def test_the_shipped_recipe_fits_its_video_stage():
    """configs/faces.yaml names every video source of the shipped combination, each fake
    source with the corpus family that holds its crops."""
    from pathlib import Path

    from noisetrace.heads.fit import HeadRecipe
    from noisetrace.heads.temporal import TemporalRecipe

    recipe = HeadRecipe.from_yaml(Path(__file__).resolve().parents[1] / "configs" / "faces.yaml")
    tr = TemporalRecipe.from_dict(recipe.temporal)
    fams = {v.family for v in tr.videos} - {None}
    assert fams == {"face-deepfacelive", "face-dfdc-videos", "face-anitalker",
                    "face-dreamtalk", "face-edtalk"}  # fmt: skip
    shipped = load_detector("faces").config.temporal
    assert shipped["frames"] == tr.frames and shipped["size"] == tr.size
    assert shipped["combine"]["fitted_on"]["transform"] == tr.transform


def test_the_video_stage_of_fit_writes_a_combination_the_scan_uses(face_model, tmp_path):
    """`noisetrace fit`'s video stage end to end on generated clips: three fake sources of
    re-rendered faces, one of filmed ones; the calibration, the combination, its validation
    tables; a model carrying them scores a video with the index combined in."""
    from noisetrace.heads.temporal import TemporalRecipe, VideoSource, fit_temporal

    sources, videos, y = [], [], []
    for name, rendered, fam in (("a", True, "face-a"), ("b", True, "face-b"),
                                ("c", True, "face-c"), ("r", False, None)):  # fmt: skip
        d = tmp_path / name
        d.mkdir()
        n = 3 if rendered else 6
        label = "fake" if rendered else "real"
        for i in range(n):
            write_video(d / f"v{i}.mp4", _frames(rendered, seed=10 * ord(name) + i), fps=12,
                        bit_rate=20_000_000)  # fmt: skip
            videos += [str((d / f"v{i}.mp4").resolve())] * 2  # two corpus crops a video
            y += [int(rendered)] * 2
        sources.append(VideoSource(_manifest(d, [(f"v{i}.mp4", label) for i in range(n)]), fam))
    videos_a, y_a = np.array(videos), np.array(y)
    rng = np.random.default_rng(0)
    fam_of = np.repeat([s.family for s in sources for _ in range(3 if s.family else 6)], 2)
    held = {}
    for fam in ("face-a", "face-b", "face-c"):
        held[fam] = {}
        for t in ("matched90", "matched65"):
            s = rng.uniform(0.3, 0.6, len(y_a)) + 0.05 * y_a
            s[(y_a == 1) & (fam_of != fam)] = np.nan
            held[fam][t] = s
    rec = TemporalRecipe(sources, frames=TEMPORAL["frames"], size=TEMPORAL["size"])
    temporal, card = fit_temporal(face_model, rec, videos_a, y_a, held, target_fpr=0.2,
                                  log=lambda _m: None)  # fmt: skip
    assert len(temporal["real"]) == 6 and temporal["real"] == sorted(temporal["real"])
    assert temporal["frames"] == TEMPORAL["frames"] and temporal["real_sources"] == ["r"]
    comb = temporal["combine"]
    assert comb["fitted_on"] == {"fake_videos": 9, "real_videos": 6, "transform": "matched90"}
    assert comb["threshold"] == face_model.threshold and comb["coef"][1] > 0
    assert card["videos"] == {"fake": 9, "real": 6} and card["combined"] and not card["failed"]
    assert set(card["learned"]) == {"matched90", "matched65"}
    assert {r["family"] for r in card["learned"]["matched90"]} == {"face-a", "face-b", "face-c"}
    assert "(matched65)" in card["markdown"] and "The index alone" in card["markdown"]
    face_model.config.temporal = temporal
    try:
        r = face_model.scan(tmp_path / "a" / "v0.mp4")
        expected = face_model.temporal_score(r.temporal["frame_score"], r.temporal)
    finally:
        face_model.config.temporal = TEMPORAL
    assert r.temporal["combined"] and r.score == pytest.approx(expected, abs=1e-12)


def test_evaluate_judges_a_videos_stored_frames_once(combining, clips, monkeypatch):
    """The as-stored condition takes the probabilities judged while the runs were measured;
    a transformed condition judges its own views."""
    from noisetrace.data.manifest import Sample
    from noisetrace.evaluate.protocols import Condition, EvalOptions, score_conditions

    calls = {"n": 0}
    real_judge = type(combining).judge

    def counting(self, *a, **k):
        calls["n"] += 1
        return real_judge(self, *a, **k)

    monkeypatch.setattr(type(combining), "judge", counting)
    sample = [Sample(str(clips / "filmed.mp4"), 0)]
    sc = score_conditions(combining, sample, [Condition()], EvalOptions())
    assert calls["n"] == 1
    calls["n"] = 0
    both = score_conditions(combining, sample, [Condition(), Condition(quality=70)],
                            EvalOptions())  # fmt: skip
    assert calls["n"] == 2
    assert both.probs[Condition().name][0] == sc.probs[Condition().name][0]
    assert sc.probs[Condition().name][0] == pytest.approx(
        combining.scan(clips / "filmed.mp4").score, abs=1e-9)
