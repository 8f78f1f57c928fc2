"""Dataset adapters: the official layouts of deepfake and AI-image datasets -> :class:`Sample`.

Every sample carries its label, generator (manipulation method), ``group`` and ``identity``
(what must stay on one side of a split), source ``video``, ``dataset`` and the official
``split`` where the dataset has one. Supported layouts (``root`` is the dataset folder):

- ``ffpp``: FaceForensics++ ``original_sequences/{youtube,actors}/<c0|c23|c40|raw>/videos``,
  ``manipulated_sequences/<method>/<compression>/videos`` (``000_003.mp4``: target video 000,
  face of 003) and the official ``splits/{train,val,test}.json`` (lists of id pairs), looked
  up in ``root/splits``, ``root/dataset/splits`` or ``splits_dir``. Frame folders
  (``.../images/<video>/*.png`` or ``frames/``) are read as well as videos.
- ``celebdf``: Celeb-DF v2 ``Celeb-real/id0_0000.mp4``, ``YouTube-real/00000.mp4``,
  ``Celeb-synthesis/id0_id16_0000.mp4`` (target id0's video 0000, face of id16) and
  ``List_of_testing_videos.txt`` (``<1 real|0 fake> <relative path>``): listed -> test,
  others -> train.
- ``dfdc``: DFDC ``metadata.json`` (``{"x.mp4": {"label": "FAKE", "split": ..., "original":
  "y.mp4"}}``) in ``root`` or in each ``dfdc_train_part_*`` folder; a ``labels.csv``
  (``filename,label``) marks the public test set.
- ``deeperforensics``: DeeperForensics-1.0 ``manipulated_videos/<variant>/000_M101.mp4``
  (FF++ target video 000, actor M101), ``source_videos/<actor>/**`` (real) and
  ``lists/splits/{train,val,test}.txt``.
- ``synthbuster``: one folder per generator, reals in ``RAISE/`` (or ``reals=``); files with
  the same name (the RAISE image a prompt came from) share a group.
- ``folder`` (``real/``, ``fake/<generator>/``) and ``manifest`` (``path, label[, generator,
  group]``): :mod:`noisetrace.data.manifest`.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from noisetrace.data.manifest import FAKE, REAL, Sample, read_folder, read_manifest
from noisetrace.errors import NoisetraceError
from noisetrace.media.formats import IMAGE_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter",
                "DeepFakeDetection")  # fmt: skip
SPLITS = ("train", "val", "test")


def _norm_split(name: str) -> str:
    n = name.strip().lower()
    return {"validation": "val", "valid": "val", "dev": "val", "testing": "test"}.get(n, n)


def _media_units(folder: Path) -> list[tuple[Path, str]]:
    """(file, video stem) for the videos in ``folder/videos`` and the frames in
    ``folder/{images,frames}/<video>/*`` (frame folders of pre-extracted datasets)."""
    out: list[tuple[Path, str]] = []
    vids = folder / "videos"
    if vids.is_dir():
        out += [(f, f.stem) for f in sorted(vids.iterdir())
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]  # fmt: skip
    for sub in ("images", "frames"):
        base = folder / sub
        if not base.is_dir():
            continue
        for vdir in sorted(d for d in base.iterdir() if d.is_dir()):
            out += [(f, vdir.name) for f in sorted(vdir.iterdir())
                    if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]  # fmt: skip
    return out


# -- FaceForensics++ ---------------------------------------------------------------------------
def _ffpp_official(root: Path, splits_dir: str | Path | None) -> dict[str, str]:
    """Video id -> official split from ``{train,val,test}.json`` (lists of [a, b] id pairs)."""
    candidates = (
        [Path(splits_dir)] if splits_dir else [root / "splits", root / "dataset" / "splits"]
    )
    for d in candidates:
        if all((d / f"{s}.json").is_file() for s in SPLITS):
            ids: dict[str, str] = {}
            for s in SPLITS:
                for pair in json.loads((d / f"{s}.json").read_text()):
                    for vid in pair:
                        ids[str(vid)] = s
            return ids
    if splits_dir:
        raise NoisetraceError(f"{splits_dir}: expected train.json, val.json and test.json there")
    return {}


def load_ffpp(
    root: str | Path,
    compression: str | Iterable[str] = "c23",
    methods: Iterable[str] | None = None,
    splits_dir: str | Path | None = None,
) -> list[Sample]:
    """FaceForensics++ videos (or frame folders) of ``compression`` (c0, c23, c40, raw).

    Groups are video ids: real ``000`` and fakes ``000_003``/``003_000`` share ids 000 and 003
    (``group`` = target id, ``identity`` = source id), so a grouped split keeps the real
    videos and every manipulation of the same people together, as the official split does.
    DeepFakeDetection (actors) videos are grouped by actor.
    """
    r = Path(root)
    comps = [compression] if isinstance(compression, str) else list(compression)
    wanted = set(methods) if methods else None
    official = _ffpp_official(r, splits_dir)
    out: list[Sample] = []
    for comp in comps:
        for src in ("youtube", "actors"):
            for f, vid in _media_units(r / "original_sequences" / src / comp):
                if src == "youtube":
                    out.append(Sample(str(f), REAL, "real", f"ffpp:{vid}", "ffpp",
                                      official.get(vid, ""), f"ffpp:{vid}", vid))  # fmt: skip
                else:  # 01__walking_down_street
                    actor = vid.split("__")[0]
                    out.append(Sample(str(f), REAL, "real", f"ffpp-actor:{actor}", "ffpp", "",
                                      f"ffpp-actor:{actor}", vid))  # fmt: skip
        mdir = r / "manipulated_sequences"
        methods_here = sorted(d.name for d in mdir.iterdir() if d.is_dir()) if mdir.is_dir() else []
        for method in methods_here:
            if wanted is not None and method not in wanted:
                continue
            for f, vid in _media_units(mdir / method / comp):
                if method == "DeepFakeDetection":  # 01_02__walking_down_street__YVGY8LOK
                    ids = vid.split("__")[0].split("_")
                    tgt, srcid = ids[0], ids[-1]
                    out.append(Sample(str(f), FAKE, method, f"ffpp-actor:{tgt}", "ffpp", "",
                                      f"ffpp-actor:{srcid}", vid))  # fmt: skip
                    continue
                tgt, _, srcid = vid.partition("_")
                srcid = srcid or tgt
                out.append(Sample(str(f), FAKE, method, f"ffpp:{tgt}", "ffpp",
                                  official.get(tgt, ""), f"ffpp:{srcid}", tgt))  # fmt: skip
    if not out:
        raise NoisetraceError(
            f"{r}: no FaceForensics++ videos for compression {', '.join(comps)} (expected "
            "original_sequences/youtube/<compression>/videos/*.mp4)"
        )
    return out


# -- Celeb-DF v2 --------------------------------------------------------------------------------
def load_celebdf(root: str | Path) -> list[Sample]:
    """Celeb-DF v2: ``Celeb-real``, ``YouTube-real``, ``Celeb-synthesis`` and its test list."""
    r = Path(root)
    listed: set[str] = set()
    test_list = r / "List_of_testing_videos.txt"
    if test_list.is_file():
        for line in test_list.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                listed.add(parts[1].replace("\\", "/"))
    split_of = (lambda rel: "test" if rel in listed else "train") if listed else (lambda rel: "")
    out: list[Sample] = []
    for sub, label in (("Celeb-real", REAL), ("YouTube-real", REAL), ("Celeb-synthesis", FAKE)):
        d = r / sub
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if not (f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS):
                continue
            rel, stem = f"{sub}/{f.name}", f.stem
            if sub == "YouTube-real":
                key = f"celebdf-yt:{stem}"
                out.append(Sample(str(f), REAL, "real", key, "celebdf", split_of(rel), key, stem))
                continue
            m = re.fullmatch(r"(id\d+)(?:_(id\d+))?_(\d+)", stem)
            tgt, src, num = (
                (m.group(1), m.group(2) or m.group(1), m.group(3)) if m else (stem, stem, "")
            )
            video = f"{tgt}_{num}" if num else stem
            gen = "real" if label == REAL else "celeb-synthesis"
            out.append(Sample(str(f), label, gen, f"celebdf:{tgt}", "celebdf", split_of(rel),
                              f"celebdf:{src}", video))  # fmt: skip
    if not out:
        raise NoisetraceError(f"{r}: no Celeb-DF videos (expected Celeb-real/, Celeb-synthesis/)")
    return out


# -- DFDC -------------------------------------------------------------------------------------
def load_dfdc(root: str | Path) -> list[Sample]:
    """DFDC: every ``metadata.json`` in ``root`` and its sub-folders; ``labels.csv`` test sets.

    Fakes are grouped with the real video they were made from (``original``).
    """
    r = Path(root)
    out: list[Sample] = []
    missing = 0
    metas = sorted(r.glob("metadata.json")) + sorted(r.glob("*/metadata.json"))
    for meta in metas:
        entries = json.loads(meta.read_text())
        for name, info in sorted(entries.items()):
            f = meta.parent / name
            if not f.is_file():
                missing += 1
                continue
            label = FAKE if str(info.get("label", "")).upper() == "FAKE" else REAL
            orig = Path(info.get("original") or name).stem if label == FAKE else Path(name).stem
            out.append(Sample(str(f), label, "dfdc" if label == FAKE else "real", f"dfdc:{orig}",
                              "dfdc", _norm_split(info.get("split", "")), "", orig))  # fmt: skip
    for labels in sorted(r.glob("labels.csv")) + sorted(r.glob("*/labels.csv")):
        with open(labels, newline="") as fh:
            for row in csv.DictReader(fh):
                f = labels.parent / row["filename"]
                if not f.is_file():
                    missing += 1
                    continue
                label = FAKE if str(row["label"]).strip() in ("1", "1.0", "FAKE") else REAL
                stem = f.stem
                out.append(Sample(str(f), label, "dfdc" if label else "real", f"dfdc:{stem}",
                                  "dfdc", "test", "", stem))  # fmt: skip
    if missing:
        log.warning("DFDC: %d file(s) listed in metadata are not on disk; skipped", missing)
    if not out:
        raise NoisetraceError(f"{r}: no DFDC metadata.json (or labels.csv) with videos on disk")
    return out


# -- DeeperForensics-1.0 -------------------------------------------------------------------------
def load_deeperforensics(root: str | Path, variants: Iterable[str] | None = None) -> list[Sample]:
    """DeeperForensics-1.0 manipulated videos (``variants``: e.g. end_to_end; None = all) and
    real source videos. Fakes are grouped with their FF++ target video (``ffpp:000``), so the
    dataset can be mixed with FaceForensics++ without leakage; identity is the actor."""
    r = Path(root)
    official: dict[str, str] = {}
    for s in SPLITS:
        lst = r / "lists" / "splits" / f"{s}.txt"
        if lst.is_file():
            for line in lst.read_text().splitlines():
                if line.strip():
                    official[Path(line.strip()).name] = s
    wanted = set(variants) if variants else None
    out: list[Sample] = []
    mdir = r / "manipulated_videos"
    for vdir in sorted(d for d in mdir.iterdir() if d.is_dir()) if mdir.is_dir() else []:
        if wanted is not None and vdir.name not in wanted:
            continue
        for f in sorted(vdir.rglob("*")):
            if not (f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS):
                continue
            tgt, _, actor = f.stem.partition("_")
            out.append(Sample(str(f), FAKE, "DF-VAE", f"ffpp:{tgt}", "deeperforensics",
                              official.get(f.name, ""), f"dfo:{actor or tgt}", tgt))  # fmt: skip
    sdir = r / "source_videos"
    for f in sorted(sdir.rglob("*")) if sdir.is_dir() else []:
        if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
            actor = f.relative_to(sdir).parts[0]
            out.append(Sample(str(f), REAL, "real", f"dfo:{actor}", "deeperforensics", "",
                              f"dfo:{actor}", f.stem))  # fmt: skip
    if not out:
        raise NoisetraceError(
            f"{r}: no DeeperForensics videos (expected manipulated_videos/<variant>/*.mp4)"
        )
    return out


# -- Synthbuster --------------------------------------------------------------------------------
_REAL_DIRS = ("raise", "raise-1k", "raise1k", "real", "reals")


def load_synthbuster(root: str | Path, reals: str | Path | None = None) -> list[Sample]:
    """Synthbuster: ``root/<generator>/*`` fakes; reals from ``root/RAISE`` or ``reals``.

    Fakes were prompted from descriptions of RAISE images; a file stem shared between a real
    and fakes puts them in one group.
    """
    r = Path(root)
    out: list[Sample] = []
    real_dirs = [Path(reals)] if reals else [d for d in sorted(r.iterdir()) if d.is_dir()
                                             and d.name.lower() in _REAL_DIRS]  # fmt: skip
    for d in sorted(x for x in r.iterdir() if x.is_dir()):
        if d.name.lower() in _REAL_DIRS:
            continue
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Sample(str(f), FAKE, d.name, f"synthbuster:{f.stem}", "synthbuster",
                                  "", "", ""))  # fmt: skip
    for d in real_dirs:
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Sample(str(f), REAL, "real", f"synthbuster:{f.stem}", "synthbuster"))
    if not any(s.label == FAKE for s in out):
        raise NoisetraceError(f"{r}: no generator folders with images (Synthbuster layout)")
    if not any(s.label == REAL for s in out):
        log.warning("Synthbuster: no RAISE reals found (put them in %s/RAISE or pass reals=)", r)
    return out


# -- dispatch ---------------------------------------------------------------------------------
ADAPTERS: dict[str, Callable[..., list[Sample]]] = {
    "ffpp": load_ffpp,
    "celebdf": load_celebdf,
    "dfdc": load_dfdc,
    "deeperforensics": load_deeperforensics,
    "synthbuster": load_synthbuster,
    "folder": lambda root, **kw: read_folder(root),
    "manifest": lambda root, **kw: read_manifest(
        Path(root) / "MANIFEST.tsv" if Path(root).is_dir() else root
    ),
}


def detect_layout(root: str | Path) -> str:
    """Which adapter reads ``root`` (see :data:`ADAPTERS`), from its files and folders."""
    r = Path(root)
    if r.is_file():
        return "manifest"
    if not r.is_dir():
        raise NoisetraceError(f"{r}: no such dataset folder or manifest")
    names = {p.name for p in r.iterdir()}
    if names & {"original_sequences", "manipulated_sequences"}:
        return "ffpp"
    if names & {"Celeb-synthesis", "Celeb-real"}:
        return "celebdf"
    if names & {"manipulated_videos", "source_videos"}:
        return "deeperforensics"
    if "metadata.json" in names or any(r.glob("*/metadata.json")):
        return "dfdc"
    if "MANIFEST.tsv" in names:
        return "manifest"
    if names & {"real", "fake"}:
        return "folder"
    if {n.lower() for n in names} & set(_REAL_DIRS[:3]):
        return "synthbuster"
    raise NoisetraceError(
        f"{r}: unknown dataset layout. Name it with --dataset "
        f"({', '.join(ADAPTERS)}), or arrange it as real/ and fake/<generator>/"
    )


def load_dataset(root: str | Path, kind: str = "auto", **options) -> list[Sample]:
    """Samples of the dataset at ``root``; ``kind`` is an :data:`ADAPTERS` name or ``auto``.

    ``options`` go to the adapter (e.g. ``compression="c40"`` for ffpp)."""
    kind = detect_layout(root) if kind == "auto" else kind
    if kind not in ADAPTERS:
        raise NoisetraceError(f"unknown dataset kind {kind!r}: use auto, {', '.join(ADAPTERS)}")
    samples = ADAPTERS[kind](root, **options)
    return [s for s in samples if Path(s.path).suffix.lower() in MEDIA_EXTENSIONS]
