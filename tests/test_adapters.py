"""Dataset adapters on fake trees in each official layout, and leakage-free splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from noisetrace.data.adapters import detect_layout, load_dataset
from noisetrace.data.manifest import FAKE, REAL, Sample
from noisetrace.data.splits import components, leakage, leave_one_out, split_samples
from noisetrace.errors import NoisetraceError


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # adapters read layouts, not content
    return p


def make_ffpp(root: Path, ids=("000", "001", "002", "003", "004", "005")) -> None:
    pairs = [(ids[i], ids[i + 1]) for i in range(0, len(ids), 2)]
    for a, b in pairs:
        for v in (a, b):
            touch(root / f"original_sequences/youtube/c23/videos/{v}.mp4")
        for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
            touch(root / f"manipulated_sequences/{m}/c23/videos/{a}_{b}.mp4")
            touch(root / f"manipulated_sequences/{m}/c23/videos/{b}_{a}.mp4")
            touch(root / f"manipulated_sequences/{m}/c40/videos/{a}_{b}.mp4")
    (root / "splits").mkdir()
    n, k = len(pairs), len(pairs) // 3
    chunks = {"train": pairs[: n - 2 * k], "val": pairs[n - 2 * k : n - k], "test": pairs[n - k :]}
    for name, prs in chunks.items():
        (root / "splits" / f"{name}.json").write_text(json.dumps([list(p) for p in prs]))


def test_ffpp_layout_labels_groups_and_official_split(tmp_path):
    make_ffpp(tmp_path)
    assert detect_layout(tmp_path) == "ffpp"
    ss = load_dataset(tmp_path)
    assert len(ss) == 6 + 4 * 6  # c23 only by default
    by = {Path(s.path).name + s.generator: s for s in ss}
    real = by["000.mp4real"]
    assert (real.label, real.split, real.group, real.dataset) == (REAL, "train", "ffpp:000", "ffpp")
    fake = by["001_000.mp4Face2Face"]
    assert (fake.label, fake.split, fake.group, fake.identity, fake.video) == (
        FAKE, "train", "ffpp:001", "ffpp:000", "001",
    )  # fmt: skip
    assert {s.split for s in ss if "004" in Path(s.path).stem} == {"test"}
    c40 = load_dataset(tmp_path, compression="c40", methods=["Deepfakes"])
    assert {s.generator for s in c40 if s.label == FAKE} == {"Deepfakes"}
    assert all("/c40/" in s.path for s in c40)


def test_ffpp_grouped_split_keeps_pairs_and_all_methods_together(tmp_path):
    make_ffpp(tmp_path, ids=tuple(f"{i:03d}" for i in range(20)))
    ss = load_dataset(tmp_path)
    parts = split_samples(ss, (0.6, 0.2, 0.2), seed=3, official=False)
    assert leakage(parts) == {"group": [], "identity": [], "video": []}
    side = {}
    for name, part in parts.items():
        for s in part:
            side.setdefault(Path(s.path).stem.split("_")[0], set()).add(name)
    assert all(len(v) == 1 for v in side.values())  # each id's real + every fake on one side
    # 000 and 001 are linked by the fakes 000_001 / 001_000
    assert len(side["000"] | side["001"]) == 1
    assert all(parts[k] for k in parts)
    official = split_samples(ss)  # every sample has one -> the official split is used
    # 10 pairs -> 4/3/3 in the official JSONs; a pair is 2 reals + 4 methods x 2 fakes
    assert [len(official[k]) for k in ("train", "val", "test")] == [40, 30, 30]


def test_celebdf(tmp_path):
    for rel in (
        "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0003.mp4", "YouTube-real/00170.mp4",
        "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0003.mp4",
    ):  # fmt: skip
        touch(tmp_path / rel)
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id1_id0_0003.mp4\n"
    )
    assert detect_layout(tmp_path) == "celebdf"
    ss = {Path(s.path).name: s for s in load_dataset(tmp_path)}
    syn = ss["id0_id1_0000.mp4"]
    assert (syn.label, syn.generator, syn.group, syn.identity, syn.video, syn.split) == (
        FAKE, "celeb-synthesis", "celebdf:id0", "celebdf:id1", "id0_0000", "train",
    )  # fmt: skip
    assert ss["00170.mp4"].split == "test" and ss["00170.mp4"].label == REAL
    assert ss["id1_id0_0003.mp4"].split == "test"
    assert ss["id1_0003.mp4"].identity == "celebdf:id1"


def test_dfdc_metadata_and_test_labels(tmp_path):
    part = tmp_path / "dfdc_train_part_0"
    for n in ("a.mp4", "b.mp4", "c.mp4"):
        touch(part / n)
    meta = {"a.mp4": {"label": "REAL", "split": "train", "original": None},
            "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
            "c.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
            "gone.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"}}  # fmt: skip
    (part / "metadata.json").write_text(json.dumps(meta))
    touch(tmp_path / "test" / "t1.mp4")
    (tmp_path / "test" / "labels.csv").write_text("filename,label\nt1.mp4,1\n")
    assert detect_layout(tmp_path) == "dfdc"
    ss = {Path(s.path).name: s for s in load_dataset(tmp_path)}
    assert set(ss) == {"a.mp4", "b.mp4", "c.mp4", "t1.mp4"}  # missing files are skipped
    assert ss["b.mp4"].group == ss["a.mp4"].group == "dfdc:a"
    assert ss["b.mp4"].label == FAKE and ss["a.mp4"].label == REAL
    assert ss["t1.mp4"].split == "test" and ss["t1.mp4"].label == FAKE


def test_deeperforensics(tmp_path):
    touch(tmp_path / "manipulated_videos/end_to_end/000_M101.mp4")
    touch(tmp_path / "manipulated_videos/reenact_postprocess/001_W102.mp4")
    touch(tmp_path / "source_videos/M101/light_uniform/happy/camera_front/M101.mp4")
    (tmp_path / "lists/splits").mkdir(parents=True)
    (tmp_path / "lists/splits/test.txt").write_text("000_M101.mp4\n")
    assert detect_layout(tmp_path) == "deeperforensics"
    ss = {Path(s.path).name: s for s in load_dataset(tmp_path)}
    f = ss["000_M101.mp4"]
    assert (f.label, f.generator, f.group, f.identity, f.split) == (
        FAKE, "DF-VAE", "ffpp:000", "dfo:M101", "test",
    )  # fmt: skip
    assert ss["M101.mp4"].label == REAL and ss["M101.mp4"].identity == "dfo:M101"
    # the real actor and the fake with his face are connected
    comp = components(list(ss.values()))
    names = list(ss)
    assert comp[names.index("M101.mp4")] == comp[names.index("000_M101.mp4")]
    only = load_dataset(tmp_path, variants=["end_to_end"])
    assert sum(s.label == FAKE for s in only) == 1


def test_synthbuster(tmp_path):
    for gen in ("dalle3", "midjourney-v5"):
        for stem in ("r0a1", "r0b2"):
            touch(tmp_path / gen / f"{stem}.png")
    touch(tmp_path / "RAISE" / "r0a1.png")
    (tmp_path / "prompts.csv").write_text("x")
    assert detect_layout(tmp_path) == "synthbuster"
    ss = load_dataset(tmp_path)
    assert sorted({s.generator for s in ss if s.label == FAKE}) == ["dalle3", "midjourney-v5"]
    real = next(s for s in ss if s.label == REAL)
    assert real.group == "synthbuster:r0a1"
    assert sum(s.group == "synthbuster:r0a1" for s in ss) == 3


def test_folder_and_manifest(tmp_path):
    touch(tmp_path / "f" / "real" / "a.jpg")
    touch(tmp_path / "f" / "fake" / "sd" / "b.png")
    assert detect_layout(tmp_path / "f") == "folder"
    ss = load_dataset(tmp_path / "f")
    assert {(Path(s.path).name, s.label, s.generator) for s in ss} == {
        ("a.jpg", REAL, "real"), ("b.png", FAKE, "sd"),
    }  # fmt: skip
    m = tmp_path / "m.tsv"
    m.write_text("path\tlabel\tgenerator\tgroup\tsplit\nx.png\tfake\tgan\tg1\ttest\n")
    (s,) = load_dataset(m)
    assert (s.label, s.generator, s.group, s.split) == (FAKE, "gan", "g1", "test")
    with pytest.raises(NoisetraceError, match="unknown dataset layout"):
        detect_layout(tmp_path / "f" / "fake")


def test_ratio_split_is_leak_free_balanced_and_deterministic():
    ss = []
    for v in range(40):  # 40 source videos, each with 1 real + 2 fakes, identities shared by pairs
        ss.append(Sample(f"r{v}.mp4", REAL, "real", f"v{v}", "d", identity=f"p{v // 2}"))
        for g in ("A", "B"):
            ss.append(Sample(f"{g}{v}.mp4", FAKE, g, f"v{v}", "d", identity=f"p{v // 2}"))
    parts = split_samples(ss, seed=1)
    assert leakage(parts) == {"group": [], "identity": [], "video": []}
    n = {k: len(v) for k, v in parts.items()}
    assert n["train"] == pytest.approx(0.75 * len(ss), abs=6)
    assert n["val"] == pytest.approx(0.10 * len(ss), abs=6) and n["test"] >= 6
    assert all({s.label for s in v} == {REAL, FAKE} for v in parts.values())
    assert split_samples(ss, seed=1) == parts and split_samples(ss, seed=2) != parts
    leaky = {"train": [ss[0]], "test": [ss[1]]}  # same video in two splits
    assert leakage(leaky)["group"] == ["v0"]
    with pytest.raises(ValueError, match="no official split"):
        split_samples(ss, official=True)


def test_leave_one_manipulation_out():
    ss = [Sample(f"{g}{i}", FAKE if g != "R" else REAL, g if g != "R" else "real", f"v{i}", "d")
          for i in range(30) for g in ("R", "A", "B", "C")]  # fmt: skip
    parts = split_samples(ss, seed=0)
    folds = leave_one_out(parts)
    assert [f.held_out for f in folds] == ["A", "B", "C"]
    for f in folds:
        assert f.held_out not in {s.generator for s in f.train + f.val}
        assert {s.generator for s in f.test} == {"real", f.held_out}
        assert set(f.test) <= set(parts["test"])
