"""``noisetrace prepare``: a dataset -> a cache of face (or whole-frame) crops + a manifest.

The one preprocessing path: :func:`extract_crops` turns one image or video into crops with
the settings of a :class:`PrepareConfig` (frame sampling, face backend, margin, size, no-face
policy, background squares, face tracks); :func:`prepare` runs it over a dataset read by
:mod:`noisetrace.data.adapters`, splits it without leakage (:mod:`noisetrace.data.splits`)
and writes ``<out>/<key>/`` where ``key`` hashes the settings and the dataset location, so
the same settings give the same cache:

- ``settings.json``: the settings that made the cache;
- ``crops/<xx>/<file-hash>/<frame>_<track>_<kind>.png``: lossless crops;
- ``records.jsonl``: one line per source file, appended as each finishes (resume point);
- ``manifest.tsv``: one row per crop (``path, label, generator, group, dataset, split,
  identity, video, source_path, frame, time, track, kind, box, score``), readable by
  :func:`noisetrace.data.manifest.read_manifest`.

An interrupted run continues where it stopped when started again with the same settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from noisetrace.errors import InputError, NoisetraceError
from noisetrace.io import atomic_path

if TYPE_CHECKING:  # imported where used, so `noisetrace prepare --help` starts at once
    import numpy as np

    from noisetrace.data.manifest import Sample

CACHE_VERSION = 1
MANIFEST_FIELDS = (
    "path", "label", "generator", "group", "dataset", "split", "identity", "video",
    "source_path", "frame", "time", "track", "kind", "box", "score",
)  # fmt: skip


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that decides the content of a crop cache (and so its key).

    ``size`` 0 keeps crops at native resolution (no resampling of the noise); ``faces``
    ``"none"`` crops whole frames (for image datasets such as Synthbuster).
    """

    dataset: str = "auto"
    frames: str = "even"
    n: int = 16
    faces: str = "auto"
    margin: float = 1.3
    size: int = 256
    no_face: str = "skip"
    background: bool = False
    max_faces: int = 1
    track: bool = True
    max_side: int = 0
    split: str = "auto"
    ratios: tuple[float, float, float] = (0.75, 0.10, 0.15)
    seed: int = 0
    dataset_options: dict = field(default_factory=dict)

    def resolved(self) -> PrepareConfig:
        """The same config with ``faces="auto"`` replaced by the backend it stands for here."""
        if self.faces in ("auto",):
            from noisetrace.media.faces import resolve_backend

            return dataclasses.replace(self, faces=resolve_backend("auto"))
        return self


def cache_key(cfg: PrepareConfig, root: str | Path) -> str:
    """16 hex digits of SHA-256 over the resolved settings, the dataset location and the cache
    format version."""
    payload = {"v": CACHE_VERSION, "root": str(Path(root).resolve()), **asdict(cfg.resolved())}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class CropRecord:
    """One crop of a source file: (S, S, 3) uint8 ``image`` and where it came from."""

    image: np.ndarray
    frame: int
    time: float | None
    kind: str  # face | background | whole
    track: int  # face track id within the video (-1 for whole frames)
    box: tuple[int, int, int, int]
    score: float | None


def _frames_of(path: str, cfg: PrepareConfig) -> Iterator[tuple[int, float | None, np.ndarray]]:
    from noisetrace.media.formats import sniff
    from noisetrace.media.image import load_image
    from noisetrace.media.video import is_animated_image, iter_frames

    kind, _ = sniff(path)
    if kind == "image" and not is_animated_image(path):
        yield 0, None, load_image(path)
        return
    for fr in iter_frames(path, mode=cfg.frames, n=cfg.n, max_side=cfg.max_side or None):  # type: ignore[arg-type]
        yield fr.index, fr.time, fr.image


def extract_crops(path: str | Path, cfg: PrepareConfig, detector=None) -> list[CropRecord]:
    """Crops of the image or video at ``path`` under ``cfg`` (see :class:`PrepareConfig`).

    ``detector``: a :class:`~noisetrace.media.faces.FaceDetector` (made from ``cfg.faces``
    when None; ignored for ``faces="none"``). Faces of successive video frames are linked into
    tracks so the crops of one person carry one ``track`` id. Raises :class:`InputError` for
    unreadable files and :class:`~noisetrace.media.faces.NoFaceError` under
    ``no_face="error"`` when a frame has no face.
    """
    from noisetrace.media.crops import crop_faces, cut, select_faces, whole_square
    from noisetrace.media.faces import Face, get_face_detector
    from noisetrace.media.tracks import track_faces

    size = cfg.size or None
    frames = list(_frames_of(str(path), cfg))
    out: list[CropRecord] = []
    if cfg.faces == "none":
        for idx, t, img in frames:
            box = whole_square(img.shape[:2]) if size else (0, 0, img.shape[1], img.shape[0])
            out.append(CropRecord(cut(img, box, size), idx, t, "whole", -1, box, None))
        return out
    det = detector if detector is not None else get_face_detector(cfg.faces)
    dets = [(idx, t, select_faces(det.detect(img), cfg.max_faces)) for idx, t, img in frames]
    # Track id per (frame, face box); single images are a track of one.
    track_of: dict[tuple[int, tuple], int] = {}
    if cfg.track and len(frames) > 1:
        for tr in track_faces(dets):
            for item in tr.items:
                track_of[(item.frame, item.face.box)] = tr.id
    for (idx, t, img), (_, _, faces) in zip(frames, dets, strict=True):
        crops = crop_faces(img, faces, scale=cfg.margin, size=size, background=cfg.background,
                           no_face=cfg.no_face, max_faces=cfg.max_faces)  # type: ignore[arg-type]  # fmt: skip
        for c in crops:
            f: Face | None = c.face
            tid = -1 if f is None else track_of.get((idx, f.box), faces.index(f))
            out.append(CropRecord(c.image, idx, t, c.kind, tid, c.box,
                                  None if f is None else round(f.score, 4)))  # fmt: skip
    return out


# -- the cache ---------------------------------------------------------------------------------
def _file_id(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def _read_records(path: Path) -> dict[str, dict]:
    """Finished source files of a previous run (a torn last line is dropped)."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    for line in data.decode("utf-8").splitlines():
        try:
            rec = json.loads(line)
            done[rec["source_path"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def _process(sample: Sample, cfg: PrepareConfig, crops_dir: Path, get_det: Callable) -> dict:
    """Crop one source file into its own folder (written under a temporary name, then
    renamed, so a crash never leaves a half-written folder that looks finished)."""
    from PIL import Image

    from noisetrace.media.faces import NoFaceError

    fid = _file_id(sample.path)
    final = crops_dir / fid[:2] / fid
    rec: dict = {"source_path": sample.path, "sample": asdict(sample), "crops": [],
                 "status": "ok", "error": None}  # fmt: skip
    t0 = time.perf_counter()
    try:
        crops = extract_crops(sample.path, cfg, None if cfg.faces == "none" else get_det())
    except (InputError, NoFaceError) as exc:
        rec.update(status="error", error=str(exc))
        return rec
    tmp = final.with_name(f".{fid}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    tmp.mkdir(parents=True)
    for c in crops:
        name = f"{c.frame:06d}_{c.track}_{c.kind}.png"
        Image.fromarray(c.image).save(tmp / name, compress_level=1)
        rec["crops"].append({"file": f"crops/{fid[:2]}/{fid}/{name}", "frame": c.frame,
                             "time": None if c.time is None else round(c.time, 4),
                             "track": c.track, "kind": c.kind, "box": list(c.box),
                             "score": c.score})  # fmt: skip
    os.replace(tmp, final)
    if not crops:
        rec["status"] = "noface"
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def write_manifest(cache: Path, records: dict[str, dict], splits: dict[str, str]) -> Path:
    """``manifest.tsv`` with one row per crop (atomic write); returns its path."""
    rows = []
    for src in sorted(records):
        rec = records[src]
        s = rec["sample"]
        for c in rec["crops"]:
            rows.append({
                "path": c["file"], "label": "fake" if s["label"] else "real",
                "generator": s["generator"], "group": s["group"] or src, "dataset": s["dataset"],
                "split": splits.get(src, s.get("split", "")), "identity": s.get("identity", ""),
                "video": s.get("video", ""), "source_path": src, "frame": c["frame"],
                "time": "" if c["time"] is None else c["time"], "track": c["track"],
                "kind": c["kind"], "box": ",".join(map(str, c["box"])),
                "score": "" if c["score"] is None else c["score"],
            })  # fmt: skip
    out = cache / "manifest.tsv"
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(MANIFEST_FIELDS) + "\n")
        for r in rows:
            fh.write("\t".join(str(r[k]).replace("\t", " ") for k in MANIFEST_FIELDS) + "\n")
    return out


@dataclass
class PrepareResult:
    """What :func:`prepare` did: the cache folder, its manifest and counts."""

    cache: Path
    manifest: Path
    files: int = 0
    skipped_done: int = 0
    processed: int = 0
    errors: int = 0
    no_face: int = 0
    crops: int = 0
    interrupted: bool = False
    error_examples: list[tuple[str, str]] = field(default_factory=list)
    # split -> {"real": crops, "fake": crops} of the manifest (empty with --split none)
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def split_problems(self) -> list[str]:
        """Why `noisetrace train` on this cache would fail or mislead, in words."""
        if not self.split_counts:
            return []
        out = []
        for name in ("train", "val"):
            c = self.split_counts.get(name, {"real": 0, "fake": 0})
            lacking = [k for k in ("real", "fake") if not c[k]]
            if lacking:
                out.append(f"the {name} split has no {' and no '.join(lacking)} crops")
        return out


def _assign_splits(samples: list[Sample], cfg: PrepareConfig) -> dict[str, str]:
    from noisetrace.data.splits import has_official_split, split_samples

    if cfg.split == "none":
        return {}
    if cfg.split == "official" and not has_official_split(samples):
        raise NoisetraceError(
            "this dataset has no official split for every file; use --split ratios"
        )
    official = {"auto": None, "official": True, "ratios": False}.get(cfg.split)
    if cfg.split not in ("auto", "official", "ratios"):
        raise NoisetraceError(f"unknown --split {cfg.split!r}: use auto, official, ratios, none")
    parts = split_samples(samples, cfg.ratios, seed=cfg.seed, official=official)
    return {s.path: name for name, ss in parts.items() for s in ss}


def prepare(
    root: str | Path,
    out: str | Path,
    cfg: PrepareConfig = PrepareConfig(),  # noqa: B008 (frozen, immutable default)
    workers: int = 2,
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PrepareResult:
    """Crop every file of the dataset at ``root`` into ``out/<cache_key>/`` (see module doc).

    Resumable: files already in ``records.jsonl`` are not redone. ``workers`` files are
    processed at once (threads, each with its own face detector: PyAV, OpenCV and Pillow
    release the GIL). ``limit`` processes at most that many new files (the manifest lists
    all finished ones). Bad files are recorded as errors and never stop the run.
    """
    from noisetrace.data.adapters import load_dataset
    from noisetrace.media.faces import get_face_detector

    cfg = cfg.resolved()
    samples = load_dataset(root, cfg.dataset, **cfg.dataset_options)
    if not samples:
        raise NoisetraceError(f"{root}: the dataset has no image or video files")
    splits = _assign_splits(samples, cfg)
    key = cache_key(cfg, root)
    cache = Path(out) / key
    (cache / "crops").mkdir(parents=True, exist_ok=True)
    settings = {"cache_version": CACHE_VERSION, "root": str(Path(root).resolve()), **asdict(cfg)}
    (cache / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    rec_path = cache / "records.jsonl"
    done = _read_records(rec_path)
    todo = [s for s in samples if s.path not in done]
    if limit is not None:
        todo = todo[: max(0, limit)]
    n_done = sum(s.path in done for s in samples)
    res = PrepareResult(cache, cache / "manifest.tsv", files=len(samples), skipped_done=n_done)

    local = threading.local()

    def get_det():
        if not hasattr(local, "det"):
            local.det = get_face_detector(cfg.faces)
        return local.det

    if cfg.faces != "none":
        get_face_detector(cfg.faces)  # fail early, in the caller's thread, if it is missing
    total = len(todo)
    with open(rec_path, "a", encoding="utf-8") as log_fh:

        def finish(rec: dict) -> None:
            log_fh.write(json.dumps(rec) + "\n")
            log_fh.flush()
            done[rec["source_path"]] = rec
            res.processed += 1
            res.crops += len(rec["crops"])
            if rec["status"] == "error":
                res.errors += 1
                if len(res.error_examples) < 10:
                    res.error_examples.append((rec["source_path"], rec["error"]))
            elif rec["status"] == "noface":
                res.no_face += 1
            if on_progress:
                on_progress(res.processed, total)

        try:
            if workers <= 1:
                for s in todo:
                    finish(_process(s, cfg, cache / "crops", get_det))
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    pending: set[Future] = set()
                    it = iter(todo)
                    for s in it:
                        pending.add(pool.submit(_process, s, cfg, cache / "crops", get_det))
                        if len(pending) >= 2 * workers:  # bounded: memory stays flat
                            fin, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for fut in fin:
                                finish(fut.result())
                    for fut in pending:
                        finish(fut.result())
        except KeyboardInterrupt:
            res.interrupted = True
    write_manifest(cache, done, splits)
    if cfg.split != "none":
        for src, rec in done.items():
            name = splits.get(src) or rec["sample"].get("split") or "none"
            c = res.split_counts.setdefault(name, {"real": 0, "fake": 0})
            c["fake" if rec["sample"]["label"] else "real"] += len(rec["crops"])
    return res


# -- command line -----------------------------------------------------------------------------
def _ratios(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.replace("/", ",").split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("--ratios needs three numbers: train,val,test (75,10,15)")
    return parts[0], parts[1], parts[2]


# Face backends -> (module, what to install); `auto` picks one that is installed.
_FACE_BACKENDS = {
    "opencv": ("cv2", "noisetrace[faces]"),
    "mediapipe": ("mediapipe", "noisetrace[mediapipe]"),
    "skimage": ("skimage", "scikit-image"),
    "dlib": ("dlib", "dlib-bin"),
    "mtcnn": ("facenet_pytorch", "facenet-pytorch"),
}


def needs(args: argparse.Namespace) -> dict[str, str]:
    """The module of an explicitly chosen face backend (checked before any work)."""
    module, requirement = _FACE_BACKENDS.get(args.faces, (None, None))
    return {module: requirement} if module and requirement else {}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace prepare`` (registered in ``noisetrace.cli.COMMANDS``)."""
    p.description = ("Read a dataset in its official layout, sample video frames, detect and "
                     "crop faces, and write a cache of crops plus manifest.tsv keyed by the "
                     "settings; train on it with `noisetrace train --data CACHE/manifest.tsv`.")
    p.epilog = """examples:
  noisetrace prepare ../FaceForensics++ --out cache/prepare
  noisetrace prepare DATASET --margin 20% --size 224 --frames first --n 120   # tracks
  noisetrace prepare DATASET --background --size 64                          # pairs
  noisetrace prepare my_images/ --faces none --size 0                        # whole images"""
    p.add_argument("root", type=Path, help="dataset folder (or manifest file)")
    p.add_argument("--out", type=Path, default=Path("cache/prepare"), help="cache folder")
    p.add_argument(
        "--dataset",
        default="auto",
        help="auto, ffpp, celebdf, dfdc, deeperforensics, synthbuster, folder, manifest",
    )
    p.add_argument("--compression", default=None,
                   help="FF++ compression: c0, c23, c40, raw (default: c23)")
    p.add_argument("--methods", default=None, help="FF++ methods, comma-separated (default all)")
    p.add_argument(
        "--frames",
        default="even",
        choices=["even", "all", "every", "first", "keyframes"],
        help="video frame sampling (first 120 as the Xception paper; keyframes = I-frames)",
    )
    p.add_argument("--n", type=int, default=16, help="frames for even/first, step for every")
    p.add_argument(
        "--faces",
        default="auto",
        help="face backend: auto, mediapipe, opencv, mtcnn, dlib, skimage, none",
    )
    p.add_argument(
        "--margin", default="1.3", help="face box scale: 1.3 (DeepfakeBench), 20%% (Xception)"
    )
    p.add_argument("--size", type=int, default=256, help="crop side in pixels (0: native size)")
    p.add_argument(
        "--no-face",
        default="skip",
        choices=["skip", "whole", "error"],
        help="frames without a face: skip them, crop the whole frame, or fail the file",
    )
    p.add_argument(
        "--background",
        action="store_true",
        help="also crop the background square furthest from the face (Siamese DnCNN)",
    )
    p.add_argument("--max-faces", type=int, default=1, help="faces per frame")
    p.add_argument("--no-track", action="store_true", help="do not link faces into tracks")
    p.add_argument("--max-side", type=int, default=0, help="downscale frames above this side")
    p.add_argument(
        "--split",
        default="auto",
        choices=["auto", "official", "ratios", "none"],
        help="auto: the official split when every file has one, else ratios",
    )
    p.add_argument("--ratios", type=_ratios, default=(0.75, 0.10, 0.15),
                   help="train,val,test shares (default: 75,10,15)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ratio split")
    p.add_argument("--workers", type=int, default=2, help="files processed at once")
    p.add_argument("--limit", type=int, default=None,
                   help="process at most N new files (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run, needs=needs)  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape  # paths and messages may hold [brackets]
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from noisetrace.media.crops import parse_margin

    err = Console(stderr=True)
    opts: dict = {}
    if args.compression:
        opts["compression"] = args.compression
    if args.methods:
        opts["methods"] = tuple(m.strip() for m in args.methods.split(","))
    try:
        margin = parse_margin(args.margin)
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        return 2
    cfg = PrepareConfig(
        dataset=args.dataset, frames=args.frames, n=args.n, faces=args.faces, margin=margin,
        size=args.size, no_face=args.no_face, background=args.background,
        max_faces=args.max_faces, track=not args.no_track, max_side=args.max_side,
        split=args.split, ratios=args.ratios, seed=args.seed, dataset_options=opts,
    )  # fmt: skip
    progress = Progress(
        TextColumn("[bold]preparing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=args.quiet or not err.is_terminal,
    )  # fmt: skip
    t0 = time.perf_counter()
    with progress:
        task = progress.add_task("prepare", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        res = prepare(args.root, args.out, cfg, workers=args.workers, limit=args.limit,
                      on_progress=tick)  # fmt: skip
    dt = time.perf_counter() - t0
    for path, msg in res.error_examples:
        err.print(f"[yellow]error[/yellow] {escape(path)}: {escape(msg)}")
    err.print(
        f"{res.processed} file(s) in {dt:.1f}s ({res.skipped_done} already done), "
        f"{res.crops} crop(s), {res.no_face} without a face, {res.errors} error(s)"
    )
    if res.split_counts:
        err.print("crops per split: " + ", ".join(
            f"{name} {c['real']} real / {c['fake']} fake"
            for name, c in sorted(res.split_counts.items())))  # fmt: skip
    for problem in res.split_problems():
        err.print(f"[yellow]warning: {problem}:[/yellow] `noisetrace train` needs real and "
                  "fake crops in train and val; add source files (crops of one video never "
                  "split) or prepare again with --ratios 60,20,20")  # fmt: skip
    print(res.manifest)
    if res.interrupted:
        err.print("[yellow]interrupted: run the same command again to continue[/yellow]")
        return 130
    return 0
