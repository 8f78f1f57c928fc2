"""Noise traces: SRM residual maps and the Siamese DnCNN's extracted noise, face beside background.

The Siamese DnCNN paper (``siamese-dncnn-face-background.md``, Section 4.5 and Fig. 6) shows
evidence as pictures: a face square and the background square furthest from it (its
Section 3.1 / Fig. 2), each with the noise the trained DnCNN extracts from it. A swapped face
carries "complicated" traces, the untouched background stays clean. This module builds the
same face/background pair and shows, for both squares on one shared scale:

* the SRM high-pass residual (the fixed filters of :mod:`noisetrace.residuals.srm`), which
  needs no model, and
* the noise returned by the ``siamese-dncnn`` model's ``noise(x)`` method, when that model
  is available (registered architecture, optionally with trained weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisetrace.errors import InputError, ModelError
from noisetrace.explain.figures import save_figure
from noisetrace.residuals.srm import srm_residual

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive), as media.crops
SIAMESE_ARCH = "siamese-dncnn"
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


# -- squares (the face-background strategy lives in media.crops; this picks the face) -------
def locate_face(img: np.ndarray, backend: str = "auto") -> Box | None:
    """Box of the most confident face in an (H, W, 3) uint8 image, or None (no face, or no
    face detection backend installed)."""
    from noisetrace.media.crops import select_faces
    from noisetrace.media.faces import FaceBackendError, get_face_detector

    try:
        faces = select_faces(get_face_detector(backend).detect(img), max_faces=1)
    except FaceBackendError:
        return None
    if not faces:
        return None
    x0, y0, x1, y1 = faces[0].box
    return (int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))


def square_pair(
    shape: tuple[int, ...], face: Box | None, scale: float = 1.3, min_side: int = 64
) -> tuple[Box, Box, bool]:
    """(face square, background square, background overlaps the face) for an image ``shape``.

    The face square is :func:`noisetrace.media.crops.face_square` of ``face`` (None: the
    centre square of side min(H, W) / 3); the background is
    :func:`noisetrace.media.crops.background_square`, the same-size square furthest from it,
    or in a close-up the largest clear corner square of at least ``min_side`` (as a face +
    background model cuts it at its 64 px input). When not even that fits (a tight face
    crop), the furthest same-size corner square is used anyway and the third value says so.
    """
    from noisetrace.media.crops import background_square, face_square

    h, w = shape[:2]
    if face is None:
        # A third of the shorter side leaves room for a corner square clear of it.
        side = max(1, min(h, w) // 3)
        x0, y0 = (w - side) // 2, (h - side) // 2
        fbox: Box = (x0, y0, x0 + side, y0 + side)
    else:
        if face[2] <= face[0] or face[3] <= face[1]:
            raise InputError(f"face box {face} has no area; give x0,y0,x1,y1 with x1>x0, y1>y0")
        fbox = face_square(face, (h, w), scale)
    bbox = background_square(fbox, (h, w), min_side=min_side)
    if bbox is not None:
        return fbox, bbox, False
    side = fbox[2] - fbox[0]
    cx, cy = (fbox[0] + fbox[2]) / 2, (fbox[1] + fbox[3]) / 2
    corners = [(0, 0), (w - side, 0), (0, h - side), (w - side, h - side)]
    bx, by = max(corners, key=lambda c: (c[0] + side / 2 - cx) ** 2 + (c[1] + side / 2 - cy) ** 2)
    return fbox, (bx, by, bx + side, by + side), True


def crop(img: np.ndarray, box: Box) -> np.ndarray:
    """(H, W, C) -> (h, w, C) contiguous copy of ``box`` (x0, y0, x1, y1)."""
    from noisetrace.media.crops import cut

    return cut(img, box)


# -- maps ----------------------------------------------------------------------------------
def srm_maps(img: np.ndarray) -> np.ndarray:
    """SRM residuals of an (H, W, 3) uint8 image: (3, H, W) float32, signed, in pixel units.

    Map k is SRM kernel k applied across the colour channels (``sum`` mode), so each map has
    the image's size and sums the colours' residuals.
    """
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return srm_residual(x, mode="sum")[0].numpy().astype(np.float32)


def srm_magnitude(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 ``sqrt(sum_k r_k^2)``: residual energy per pixel."""
    r = srm_maps(img)
    return np.sqrt((r**2).sum(axis=0)).astype(np.float32)


def load_siamese(spec: str | Path | torch.nn.Module = SIAMESE_ARCH) -> torch.nn.Module:
    """The Siamese DnCNN noise extractor, from one of:

    * a module with a ``noise(x)`` method;
    * a trained noisetrace model directory (``config.json`` + weights) of ``siamese-dncnn``;
    * a pre-trained DnCNN checkpoint file (e.g. GRIP's ``model_best.th``), loaded into the
      extractor with ``siamese_dncnn.load_dncnn``: the paper's starting point;
    * the registered architecture's name: random weights, whose "noise" means nothing; for
      tests and plumbing only.

    Raises :class:`ModelError` saying what to do when none applies.
    """
    from noisetrace import models

    if isinstance(spec, torch.nn.Module):
        model = spec
    else:
        p = Path(str(spec)).expanduser()
        available = SIAMESE_ARCH in models.list_models()
        if p.is_dir():
            from noisetrace.detector import Detector

            model = Detector.load(p, device="cpu").model
        elif p.is_file() and available:
            from noisetrace.models.siamese_dncnn import load_dncnn

            model = models.create(SIAMESE_ARCH)
            load_dncnn(p, into=model)
        elif str(spec) in models.list_models():
            model = models.create(str(spec))
        else:
            why = (
                f"{str(spec)!r} is neither a model directory, a DnCNN checkpoint file, nor a "
                "registered architecture"
                if available
                else f"this install has no {SIAMESE_ARCH!r} architecture"
            )
            raise ModelError(
                f"the Siamese DnCNN noise extractor is not available: {why}. Pass the "
                f"directory of a trained {SIAMESE_ARCH} model or a pre-trained DnCNN "
                "checkpoint; SRM traces need no model."
            )
    if not callable(getattr(model, "noise", None)):
        raise ModelError(
            f"model {getattr(model, 'arch', type(model).__name__)!r} has no noise(x) method; "
            f"noise traces need the {SIAMESE_ARCH!r} extractor"
        )
    return model.eval()


def bundled_siamese() -> Path | None:
    """The first bundled model (``noisetrace/zoo``) whose architecture is siamese-dncnn."""
    import json

    from noisetrace.zoo import ZOO_DIR, list_bundled

    for name in list_bundled():
        try:
            arch = json.loads((ZOO_DIR / name / "config.json").read_text()).get("arch")
        except (OSError, ValueError):
            continue
        if arch == SIAMESE_ARCH:
            return ZOO_DIR / name
    return None


@torch.inference_mode()
def extract_noise(model: torch.nn.Module, square: np.ndarray) -> np.ndarray:
    """The extractor's noise for an (s, s, 3) uint8 square: (n, n) float32, signed.

    The square is fed as the model's ``pretrained_cfg`` asks: normalisation, and a fixed
    ``input_size`` (n) resizes it the way training crops are cut
    (:func:`noisetrace.media.crops.cut`); the noise is shown at that size, since resizing it
    back would smooth the very trace being shown. Multi-channel noise is averaged over
    channels so face and background compare on one map.
    """
    from noisetrace.media.crops import cut

    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = cfg.get("input_size")
    s = cut(square, (0, 0, square.shape[1], square.shape[0]), size[0] if size else None)
    x = s.astype(np.float32) / 255.0
    if cfg.get("normalize") == "imagenet":
        x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
    device = next(iter(model.parameters()), torch.empty(0)).device
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(device)
    n = model.noise(t).float().cpu()
    if n.ndim == 4:
        n = n[0]
    if n.ndim == 3:
        n = n.mean(dim=0)
    return n.numpy().astype(np.float32)


# -- the pair --------------------------------------------------------------------------------
@dataclass
class NoiseTraces:
    """Face and background squares with their traces (all (s, s) maps float32).

    ``srm_*`` are SRM residual magnitudes in pixel units (the squares' size); ``noise_*`` the
    Siamese DnCNN's extracted noise at the model's input size (None without the model).
    """

    face_box: Box
    background_box: Box
    face: np.ndarray  # (s, s, 3) uint8
    background: np.ndarray  # (s, s, 3) uint8
    srm_face: np.ndarray
    srm_background: np.ndarray
    noise_face: np.ndarray | None = None
    noise_background: np.ndarray | None = None
    face_source: str = "given"  # "given", "detected" or "centre" (no face box, none found)
    background_overlaps: bool = False

    def stats(self) -> dict[str, Any]:
        """RMS of each trace and face/background ratios (> 1: the face is noisier)."""

        def rms(a: np.ndarray) -> float:
            return float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))

        out: dict[str, Any] = {
            "face_box": list(self.face_box), "background_box": list(self.background_box),
            "face_source": self.face_source, "background_overlaps": self.background_overlaps,
            "srm_rms_face": rms(self.srm_face), "srm_rms_background": rms(self.srm_background),
        }  # fmt: skip
        out["srm_ratio"] = out["srm_rms_face"] / max(out["srm_rms_background"], 1e-12)
        if self.noise_face is not None and self.noise_background is not None:
            out["noise_rms_face"] = rms(self.noise_face)
            out["noise_rms_background"] = rms(self.noise_background)
            out["noise_ratio"] = out["noise_rms_face"] / max(out["noise_rms_background"], 1e-12)
        return out


def noise_traces(
    img: np.ndarray,
    face: Box | None = None,
    siamese: torch.nn.Module | None = None,
    *,
    detect: str | None = "auto",
    scale: float = 1.3,
    background: Box | None = None,
) -> NoiseTraces:
    """Face/background squares of an (H, W, 3) uint8 image with their SRM (and DnCNN) traces.

    ``face``: (x0, y0, x1, y1) face box; without one, a face is looked for with the ``detect``
    backend of :mod:`noisetrace.media.faces` (None: don't look), else the centre square is used.
    ``scale``: margin of the face square, as in :func:`noisetrace.media.crops.face_square`.
    ``background``: the background square to use (the one a model scored), else
    :func:`square_pair` chooses it.
    """
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise InputError("expected an (H, W, 3) uint8 RGB array")
    source = "given"
    if face is None and detect:
        face = locate_face(img, detect)
        source = "detected"
    if face is None:
        source = "centre"
    fbox, bbox, overlaps = square_pair(img.shape, face, scale)
    if background is not None:
        bbox, overlaps = background, False
    fsq, bsq = crop(img, fbox), crop(img, bbox)
    tr = NoiseTraces(
        fbox, bbox, fsq, bsq, srm_magnitude(fsq), srm_magnitude(bsq),
        face_source=source, background_overlaps=overlaps,
    )  # fmt: skip
    if siamese is not None:
        tr.noise_face = extract_noise(siamese, fsq)
        tr.noise_background = extract_noise(siamese, bsq)
    return tr


def _shared_scale(a: np.ndarray, b: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale two maps by one 99th percentile so their brightness compares: -> [0, 1] each
    (signed maps: 0.5 is zero)."""
    both = np.concatenate([np.abs(a).ravel(), np.abs(b).ravel()])
    s = float(np.percentile(both, 99)) or float(both.max()) or 1.0
    if signed:
        return np.clip(0.5 + a / (2 * s), 0, 1), np.clip(0.5 + b / (2 * s), 0, 1)
    return np.clip(a / s, 0, 1), np.clip(b / s, 0, 1)


def plot_traces(
    img: np.ndarray, tr: NoiseTraces, path: str | Path, title: str = ""
) -> Path:
    """Write the traces figure (PNG): rows image / SRM residual / DnCNN noise, columns
    whole image / face / background; face and background maps share one scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    rows = 3 if tr.noise_face is not None else 2
    fig, ax = plt.subplots(rows, 3, figsize=(10, 3.3 * rows), dpi=100)
    for a in ax.ravel():
        a.set_axis_off()
    face_label = {
        "given": "face square", "detected": "face square (detected)",
        "centre": "centre square (no face found)",
    }[tr.face_source]  # fmt: skip
    ax[0, 0].imshow(img)
    for box, colour in ((tr.face_box, "red"), (tr.background_box, "cyan")):
        x0, y0, x1, y1 = box
        ax[0, 0].add_patch(
            mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5)
        )
    ax[0, 0].set_title("image (red: face, cyan: background)", fontsize=9)
    ax[0, 1].imshow(tr.face)
    ax[0, 1].set_title(face_label, fontsize=9)
    ax[0, 2].imshow(tr.background)
    bg_label = "furthest background square"
    bg_label += " (overlaps face)" if tr.background_overlaps else ""
    ax[0, 2].set_title(bg_label, fontsize=9)
    whole = srm_magnitude(img)
    ax[1, 0].imshow(np.clip(whole / (np.percentile(whole, 99) or 1.0), 0, 1), cmap="gray")
    ax[1, 0].set_title("SRM residual, whole image", fontsize=9)
    f, b = _shared_scale(tr.srm_face, tr.srm_background, signed=False)
    st = tr.stats()
    ax[1, 1].imshow(f, cmap="gray", vmin=0, vmax=1)
    ax[1, 1].set_title(f"SRM residual (rms {st['srm_rms_face']:.2f})", fontsize=9)
    ax[1, 2].imshow(b, cmap="gray", vmin=0, vmax=1)
    ax[1, 2].set_title(f"SRM residual (rms {st['srm_rms_background']:.2f})", fontsize=9)
    if rows == 3:
        f, b = _shared_scale(tr.noise_face, tr.noise_background, signed=True)
        ax[2, 1].imshow(f, cmap="gray", vmin=0, vmax=1)
        ax[2, 1].set_title(f"Siamese DnCNN noise (rms {st['noise_rms_face']:.3g})", fontsize=9)
        ax[2, 2].imshow(b, cmap="gray", vmin=0, vmax=1)
        ax[2, 2].set_title(
            f"Siamese DnCNN noise (rms {st['noise_rms_background']:.3g})", fontsize=9
        )
        ax[2, 0].text(
            0.0, 0.5,
            f"face / background rms\nSRM: {st['srm_ratio']:.2f}\nDnCNN: {st['noise_ratio']:.2f}",
            fontsize=10, va="center",
        )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
