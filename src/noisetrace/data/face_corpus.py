"""The face model's corpus: face crops with one family per face-swap source (issue 17).

``python -m noisetrace.data.face_corpus --out DIR SOURCE...`` reads each SOURCE (a folder
with a ``MANIFEST.tsv``, optionally named ``tag=folder``), samples a few frames of every
video, finds the largest face with the detector a face model scans with and cuts it with the
same policy (:func:`noisetrace.media.crops.crop_faces`: square of ``margin`` x the face box,
resized to ``size``), and writes lossless PNG crops plus ``DIR/MANIFEST.tsv``.

Why a corpus of its own rather than ``noisetrace prepare``: validation must leave one
face-swap *source* out, so every crop's generator is ``face:<tag> ...`` and
:func:`noisetrace.data.families.family_of` makes the family ``face-<tag>`` (fakes) and the
real kind ``face-real-<tag>`` (reals, so false positives are reported per source). It also
reads what ``prepare`` does not: DeepFaceLive's side-by-side clips (label ``pair``: left
half real, right half the swap, docs/data.md) and one panel of a demo video that shows
several side by side (column ``panel``, ``k/n``: AniPortrait's reference | output | driving
video), and it makes Self-Blended Images
(:mod:`noisetrace.data.sbi`) from real frames only, a family of their own (``face-sbi``),
and with ``--xray`` cross-blended fakes (:mod:`noisetrace.data.xray`: another real person's
face blended into a real frame, Face X-ray's blended images), family ``face-xray``.

Groups: a crop keeps its source's ``group`` column (DeepFaceLive: the face model; styletalk:
the identity), else the video it came from (DFDC crops ``<video>-NNN-NN.png`` -> the video),
else the file; an SBI fake keeps the group of the real frame it was made from, so a fake and
its real never straddle two folds. A cross-blended fake keeps its target frame's group; its
donor is a real frame of another group (and identity), which may sit in another fold: that
can only make the donor's own real crops look more fake, never flatter a held-out score.

``--background`` (pairs for ``siamese-dncnn``): each face crop is followed by the background
square furthest from it (``kind`` ``background``, same ``source_path`` and ``frame``, which
``noisetrace train`` pairs them by); faces without room for one are left out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisetrace.data.manifest import FAKE, REAL, parse_label
from noisetrace.errors import InputError

#: Short family tags of the known source folders (docs/data.md); others use the folder name.
KNOWN_TAGS: dict[str, str] = {
    "dfdc_sample_facecrops_aaronchong888": "dfdc-crops",
    "icpr2020dfdc_ffpp_dfdc_videos": "dfdc-videos",
    "deepfacelive": "deepfacelive",
    "face-swapper": "inswapper",
    "styletalk": "styletalk",
}
FIELDS = ("path", "label", "generator", "group", "dataset", "identity", "video", "source",
          "frame", "kind", "box", "source_path")  # fmt: skip
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
_DFDC_CROP = re.compile(r"^([a-z]{10})-\d+-\d+$")  # DFDC crop names: <video id>-<frame>-<face>


@dataclass(frozen=True)
class CorpusConfig:
    """Crop policy (match it in the recipe's ``face:`` block) and corpus size."""

    frames: int = 4  # frames sampled evenly from each video
    margin: float = 1.3  # face square = margin x the face box (DetectorConfig.face scale)
    size: int = 256  # crop side in pixels (DetectorConfig.face size)
    backend: str = "opencv"  # face detector (DetectorConfig.face backend)
    max_per_class: int = 250  # images per (source, label), drawn at random; 0: all
    sbi: int = 240  # self-blended fakes made from the real frames; 0: none
    landmarks: str = "auto"  # FaceShapeDetector backend for SBI (dlib68 when importable)
    seed: int = 0
    background: bool = False  # also the background square of each face (Siamese DnCNN pairs)
    # "crop": a frame whose face square is larger than `size` is first scaled down so that it
    # is `size` (as SBI blends face crops at its working size, and as the model looks), then
    # blended; "native": blended at the frame's own size (corpora v1-v3), which shrinks the
    # blend's traces with the crop for large faces (CelebA-HQ: about 3.4x).
    sbi_scale: str = "native"
    # cross-blended fakes (Face X-ray's blended images, noisetrace.data.xray): a real frame
    # (at the crop's scale, as `sbi_scale: crop`) with the face of another real person of the
    # corpus blended in, the donor with the nearest landmarks among `xray_candidates` drawn
    # from the other groups; 0: none. Needs 68-point landmarks (dlib68).
    xray: int = 0
    xray_candidates: int = 100


@dataclass
class Item:
    """One frame (or image, or half of a side-by-side frame) before cropping."""

    image: np.ndarray
    label: int
    tag: str
    generator: str
    group: str
    identity: str
    video: str
    source: str
    frame: int
    part: str  # "" | "left" | "right" | "panel<k>of<n>"


def source_tag(folder: Path) -> str:
    return KNOWN_TAGS.get(folder.name, re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name))


def _rows(folder: Path) -> list[dict[str, str]]:
    text = (folder / "MANIFEST.tsv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def _group(row: dict[str, str], tag: str) -> str:
    if (row.get("group") or "").strip():
        return row["group"].strip()
    stem = Path(row["path"]).stem
    m = _DFDC_CROP.match(stem)
    return f"{tag}/{m.group(1) if m else stem}"


def _frames(path: Path, n: int) -> Iterator[tuple[int, np.ndarray]]:
    from noisetrace.media.image import load_image
    from noisetrace.media.video import iter_frames

    if path.suffix.lower() in VIDEO_EXT:
        for fr in iter_frames(path, mode="even", n=n):
            yield fr.index, fr.image
    else:
        yield 0, load_image(path)


def _pick(rows: list[dict[str, str]], cap: int, seed: int) -> list[dict[str, str]]:
    """At most ``cap`` rows per label (pairs count once), drawn reproducibly."""
    if not cap:
        return rows
    rng = np.random.default_rng(seed)
    out: list[dict[str, str]] = []
    for lab in sorted({r["label"].strip().lower() for r in rows}):
        sel = [r for r in rows if r["label"].strip().lower() == lab]
        if len(sel) > cap:
            keep = sorted(rng.choice(len(sel), cap, replace=False))
            sel = [sel[i] for i in keep]
        out += sel
    return out


def read_source(folder: Path, tag: str, cfg: CorpusConfig,
                failed: list[str] | None = None) -> Iterator[Item]:  # fmt: skip
    """Frames of one source with their labels; ``pair`` clips give a real left half and a
    fake right half of every frame; a row with a ``panel`` (``k/n``) gives that panel only.
    A file that cannot be read (missing, corrupt, truncated) gives nothing and is appended
    to ``failed`` as ``path: why``; the other files go on."""
    for row in _pick(_rows(folder), cfg.max_per_class, cfg.seed):
        lab = row["label"].strip().lower()
        path = folder / row["path"]
        group = _group(row, tag)
        ident = (row.get("identity") or "").strip()
        gen = (row.get("generator") or "").strip()
        video = str(path) if path.suffix.lower() in VIDEO_EXT else ""
        panel = parse_panel(row.get("panel") or "")  # checked by check_manifest
        try:  # all of a file's frames or none: a truncated video leaves no partial set
            frames = list(_frames(path, cfg.frames))
        except (InputError, OSError, ValueError) as exc:
            if failed is None:
                raise
            failed.append(f"{path}: {exc}")
            continue
        for idx, img in frames:
            common = dict(tag=tag, group=group, identity=ident, video=video,
                          source=str(path), frame=idx)  # fmt: skip
            if lab == "pair":
                half = img.shape[1] // 2
                yield Item(np.ascontiguousarray(img[:, :half]), REAL,
                           generator=f"face:{tag} real (left half of {gen})", part="left",
                           **common)  # type: ignore[arg-type]  # fmt: skip
                yield Item(np.ascontiguousarray(img[:, half: 2 * half]), FAKE,
                           generator=f"face:{tag} fake (right half of {gen})", part="right",
                           **common)  # type: ignore[arg-type]  # fmt: skip
            else:
                label = parse_label(lab)
                part = ""
                if panel:
                    k, n = panel
                    img, part = _panel(img, k, n), f"panel{k}of{n}"
                yield Item(img, label, generator=f"face:{tag} {lab} ({gen})", part=part,
                           **common)  # type: ignore[arg-type]  # fmt: skip


def parse_panel(text: str) -> tuple[int, int] | None:
    """A manifest's ``panel`` column: ``k/n``, the k-th (from 1, left to right) of n
    side-by-side panels of equal width (a demo video that shows the reference picture, the
    generated video and the driving video in one frame); empty: the whole frame."""
    text = (text or "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"panel {text!r}: write k/n, the k-th of n side-by-side panels "
                         f"(1 <= k <= n), e.g. 2/3")  # fmt: skip
    return int(m.group(1)), int(m.group(2))


class ManifestError(ValueError):
    """A source's MANIFEST.tsv cannot be read or has a bad row; the message names both."""


def check_manifest(folder: Path) -> None:
    """Raise :class:`ManifestError` naming ``folder``'s MANIFEST.tsv and the row when a row has
    no path or label, or a ``panel`` that :func:`parse_panel` refuses or a ``pair`` clip
    cannot take, or when the manifest cannot be read."""
    try:
        rows = _rows(folder)
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{folder / 'MANIFEST.tsv'}: cannot be read ({exc})") from None
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{folder / 'MANIFEST.tsv'}, line {i}"
        if not (row.get("path") or "").strip() or not (row.get("label") or "").strip():
            raise ManifestError(f"{where}: every row needs a path and a label")
        try:
            panel = parse_panel(row.get("panel") or "")
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        if panel and row["label"].strip().lower() == "pair":
            raise ManifestError(f"{where}: a pair clip is already split in halves; leave its "
                             f"panel empty")  # fmt: skip


def _panel(img: np.ndarray, k: int, n: int) -> np.ndarray:
    """The k-th of n equal-width panels of ``img`` (H, W, C) -> (H, W // n, C)."""
    w = img.shape[1] // n
    return np.ascontiguousarray(img[:, (k - 1) * w : k * w])


class Cropper:
    """The scan-time crop (largest face, ``margin``, ``size``); whole-frame square when a
    picture has no detectable face (as DetectorConfig's ``no_face: whole``), nothing for a
    video frame without one."""

    def __init__(self, cfg: CorpusConfig) -> None:
        from noisetrace.media.faces import get_face_detector

        self.cfg = cfg
        self.det = get_face_detector(cfg.backend)
        self.no_room = 0  # faces left out: no background square beside them (reported)

    def __call__(self, img: np.ndarray, is_video: bool) -> list[tuple[np.ndarray, str, tuple]]:
        """[(crop, kind, box)]: the face (or whole-frame square), then its background square
        when the corpus asks for one and the frame has room (a face without one is dropped:
        a pair model could not use it)."""
        from noisetrace.media.crops import crop_faces

        crops = crop_faces(img, self.det.detect(img), scale=self.cfg.margin, size=self.cfg.size,
                           background=self.cfg.background,
                           no_face="skip" if is_video else "whole", max_faces=1)  # fmt: skip
        if self.cfg.background and [c.kind for c in crops] != ["face", "background"]:
            self.no_room += bool(crops) and crops[0].kind == "face"
            return []
        return [(c.image, c.kind, tuple(int(v) for v in c.box)) for c in crops[:2]]


def _sbi_quota(reals: list[Item], n: int, seed: int) -> list[Item]:
    """``n`` real frames spread evenly over the sources (round-robin), drawn reproducibly."""
    rng = np.random.default_rng(seed + 1)
    by_tag: dict[str, list[Item]] = {}
    for it in reals:
        by_tag.setdefault(it.tag, []).append(it)
    pools = {t: [v[i] for i in rng.permutation(len(v))] for t, v in sorted(by_tag.items())}
    out: list[Item] = []
    while len(out) < n and any(pools.values()):
        for t in list(pools):
            if pools[t] and len(out) < n:
                out.append(pools[t].pop())
    return out


def _scale_to_crop(img: np.ndarray, box: tuple, cfg: CorpusConfig) -> np.ndarray:
    """``img`` scaled down so that the square of the face ``box`` (``margin`` x the box) is
    ``size`` px, when it is larger (else ``img`` itself). Area interpolation, as a downscale."""
    from noisetrace.media.faces import import_cv2

    x0, y0, x1, y1 = box
    side = cfg.margin * max(x1 - x0, y1 - y0)
    if side <= cfg.size:
        return img
    f = cfg.size / side
    h, w = img.shape[:2]
    cv2 = import_cv2()
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA)  # fmt: skip


def _at_crop_scale(img: np.ndarray, shapes: object, cfg: CorpusConfig) -> np.ndarray | None:
    """``img`` scaled so that its largest face's square is at most ``size`` px
    (:func:`_scale_to_crop`); None: no face."""
    face = shapes(img)  # type: ignore[operator]
    return None if face is None else _scale_to_crop(img, face.box, cfg)


def _shape_at_crop_scale(
    img: np.ndarray, shapes: object, cfg: CorpusConfig
) -> tuple[np.ndarray, object] | None:
    """``(image, face)``: ``img`` scaled as :func:`_at_crop_scale` scales it, and its largest
    face with the box and landmarks scaled alike (one detection); None: no face or no
    landmarks."""
    from noisetrace.data.sbi import FaceShape

    face = shapes(img)  # type: ignore[operator]
    if face is None or face.landmarks is None:
        return None
    small = _scale_to_crop(img, face.box, cfg)
    if small is img:
        return img, face
    f = np.array([small.shape[1] / img.shape[1], small.shape[0] / img.shape[0]], np.float32)
    x0, y0, x1, y1 = face.box
    box = (x0 * f[0], y0 * f[1], x1 * f[0], y1 * f[1])
    return small, FaceShape(tuple(float(v) for v in box), face.landmarks * f)


def _cross_blends(reals: list[Item], cfg: CorpusConfig, shapes: object, verbose: bool,
                  left_out: Counter[str]) -> Iterator[tuple[Item, np.ndarray, str]]:  # fmt: skip
    """``(target item, fake, donor tag)`` for ``cfg.xray`` targets drawn over the sources as
    the self-blended ones are (another draw); each donor is the real frame of another group
    (and identity, where known) with the nearest landmarks among ``cfg.xray_candidates``
    drawn from a pool of three times as many real frames. A target that gives no fake is
    counted in ``left_out`` by why."""
    from noisetrace.data.xray import cross_blend, nearest_donor

    rng = np.random.default_rng(cfg.seed + 2)
    targets = _sbi_quota(reals, cfg.xray, cfg.seed + 2)
    donors = _sbi_quota(reals, 3 * cfg.xray, cfg.seed + 3)
    pool = [shapes(d.image) for d in donors]  # type: ignore[operator]
    marks = [None if f is None else f.landmarks for f in pool]
    if verbose:
        print(f"xray: {sum(m is not None for m in marks)} donors with landmarks of "
              f"{len(donors)}", flush=True)  # fmt: skip
    for it in targets:
        found = _shape_at_crop_scale(it.image, shapes, cfg)
        if found is None:
            left_out["no face landmarks"] += 1
            continue
        img, face = found
        allowed = [d.group != it.group and d.source != it.source
                   and not (it.identity and d.identity == it.identity) for d in donors]  # fmt: skip
        k = nearest_donor(face.landmarks, marks, rng, cfg.xray_candidates, allowed)  # type: ignore[attr-defined]
        if k is None:
            left_out["no donor of another group"] += 1
            continue
        try:
            fake = cross_blend(img, face.landmarks, donors[k].image, marks[k], rng)  # type: ignore[attr-defined,arg-type]
        except ValueError as exc:  # e.g. landmarks off the frame: this target, not the corpus
            left_out[str(exc)[:80]] += 1
            continue
        yield it, fake.image, donors[k].tag


def _left_out(counts: Counter[str]) -> str:
    """", 5 frames left out (no face: 4, ...)" for a report line, "" when none were."""
    if not counts:
        return ""
    why = ", ".join(f"{k}: {n}" for k, n in counts.most_common())
    return f", {sum(counts.values())} frames left out ({why})"


def build(sources: list[str], out: str | Path, cfg: CorpusConfig = CorpusConfig(),
          verbose: bool = True) -> Path:  # fmt: skip
    """Write the crops and ``out/MANIFEST.tsv`` (see module docstring); returns the manifest."""
    from PIL import Image

    for spec in sources:  # a bad manifest stops the build before any work, not halfway
        check_manifest(Path(spec.rpartition("=")[2]))
    out = Path(out)
    (out / "crops").mkdir(parents=True, exist_ok=True)
    crop = Cropper(cfg)
    rows: list[dict[str, str]] = []
    reals: list[Item] = []

    def save(it: Item, img: np.ndarray, generator: str, kind_prefix: str = "") -> None:
        label = FAKE if (kind_prefix or it.label == FAKE) else REAL
        source = it.source + (f"#{it.part}" if it.part else "")
        pair_key = source + (f"#{kind_prefix}" if kind_prefix else "")
        h = hashlib.sha1(f"{it.source}|{it.frame}|{it.part}|{kind_prefix}".encode()).hexdigest()
        for c, kind, box in crop(img, bool(it.video)):
            suffix = "_bg" if kind == "background" else ""
            name = f"{Path(it.source).stem}_{it.frame:05d}_{h[:8]}{suffix}.png"
            rel = Path("crops") / (kind_prefix or it.tag) / name
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(c).save(out / rel, compress_level=1)
            # source_path keys a face and its background square into one pair (a self-blended
            # fake and the real frame it was made from are two pairs).
            rows.append({"path": str(rel), "label": "fake" if label == FAKE else "real",
                         "generator": generator, "group": it.group,
                         "dataset": kind_prefix or it.tag, "identity": it.identity,
                         "video": it.video, "source": source, "frame": str(it.frame),
                         "kind": kind, "box": ",".join(map(str, box)),
                         "source_path": pair_key})  # fmt: skip

    for spec in sources:
        tag, _, folder = spec.rpartition("=")
        folder_p = Path(folder)
        tag = tag or source_tag(folder_p)
        n0, lost0, failed = len(rows), crop.no_room, []
        for it in read_source(folder_p, tag, cfg, failed):
            save(it, it.image, it.generator)
            if it.label == REAL and min(it.image.shape[:2]) >= 128:  # too small to blend
                reals.append(it)
        for why in failed:  # said whether verbose or not: a file left out is never silent
            print(f"{tag}: file left out: {why}", file=sys.stderr, flush=True)
        if verbose:
            lost = (f", {crop.no_room - lost0} faces left out (no background square)"
                    if cfg.background else "")  # fmt: skip
            print(f"{tag}: {len(rows) - n0} crops{lost}", flush=True)
    if cfg.sbi:
        from noisetrace.data.sbi import FaceShapeDetector, self_blend_auto

        shapes = FaceShapeDetector(cfg.landmarks)
        rng = np.random.default_rng(cfg.seed)
        n0, left_out = len(rows), Counter[str]()
        for it in _sbi_quota(reals, cfg.sbi, cfg.seed):
            img = _at_crop_scale(it.image, shapes, cfg) if cfg.sbi_scale == "crop" else it.image
            try:
                sb = None if img is None else self_blend_auto(img, rng, shapes)
            except ValueError as exc:  # e.g. landmarks off the frame: this frame, not the corpus
                left_out[str(exc)[:80]] += 1
                continue
            if sb is None:
                left_out["no face"] += 1
                continue
            save(it, sb.image, f"face:sbi self-blended ({shapes.backend}) from {it.tag}",
                 kind_prefix="sbi")  # fmt: skip
        if verbose:
            print(f"sbi: {len(rows) - n0} crops ({shapes.backend}){_left_out(left_out)}",
                  flush=True)  # fmt: skip
    if cfg.xray:
        from noisetrace.data.sbi import FaceShapeDetector
        from noisetrace.media.faces import FaceBackendError

        shapes = FaceShapeDetector(cfg.landmarks)
        if shapes.backend != "dlib68":
            raise FaceBackendError("--xray needs 68-point landmarks: pip install dlib-bin "
                                   "face-recognition-models (or --landmarks dlib68)")  # fmt: skip
        n0, left_out = len(rows), Counter[str]()
        for it, fake, donor in _cross_blends(reals, cfg, shapes, verbose, left_out):
            save(it, fake, f"face:xray cross-blended ({shapes.backend}) from {it.tag}, "
                           f"donor from {donor}", kind_prefix="xray")  # fmt: skip
        if verbose:
            print(f"xray: {len(rows) - n0} crops ({shapes.backend}){_left_out(left_out)}",
                  flush=True)  # fmt: skip
    man = out / "MANIFEST.tsv"
    with open(man, "w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(FIELDS) + "\n")
        for r in rows:
            fh.write("\t".join(str(r[k]).replace("\t", " ") for k in FIELDS) + "\n")
    return man


def main(argv: list[str] | None = None) -> None:
    d = CorpusConfig()
    ap = argparse.ArgumentParser(prog="python -m noisetrace.data.face_corpus",
                                 description=__doc__.split("\n\n")[0])  # fmt: skip
    ap.add_argument("sources", nargs="+", help="folders with MANIFEST.tsv ([tag=]folder)")
    ap.add_argument("--out", required=True, help="output folder (crops + MANIFEST.tsv)")
    ap.add_argument("--frames", type=int, default=d.frames, help="frames per video")
    ap.add_argument("--margin", type=float, default=d.margin, help="face box scale")
    ap.add_argument("--size", type=int, default=d.size, help="crop side in pixels")
    ap.add_argument("--backend", default=d.backend, help="face detector backend")
    ap.add_argument("--max-per-class", type=int, default=d.max_per_class,
                    help="files per source and label (0: all)")  # fmt: skip
    ap.add_argument("--sbi", type=int, default=d.sbi, help="self-blended fakes to make")
    ap.add_argument("--sbi-scale", choices=("native", "crop"), default=d.sbi_scale,
                    help="blend at the frame's size, or with the face square scaled to --size")
    ap.add_argument("--xray", type=int, default=d.xray,
                    help="cross-blended fakes to make (another real face blended in; dlib68)")
    ap.add_argument("--xray-candidates", type=int, default=d.xray_candidates,
                    help="donors drawn per cross-blended fake; the nearest landmarks win")
    ap.add_argument("--landmarks", default=d.landmarks,
                    help="SBI / cross-blend landmarks: auto, dlib68, haar")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--background", action="store_true",
                    help="also cut each face's background square (pairs for siamese-dncnn; "
                         "faces without one are left out)")  # fmt: skip
    a = ap.parse_args(argv)
    cfg = CorpusConfig(a.frames, a.margin, a.size, a.backend, a.max_per_class, a.sbi,
                       a.landmarks, a.seed, a.background, a.sbi_scale, a.xray,
                       a.xray_candidates)  # fmt: skip
    try:
        print(build(a.sources, a.out, cfg))
    except ManifestError as exc:  # build checks every manifest before any work
        raise SystemExit(f"face_corpus: {exc}") from None


if __name__ == "__main__":
    main()
