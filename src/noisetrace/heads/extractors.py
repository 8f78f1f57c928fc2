"""Named feature extractors: decoded image -> dict of (V, D) float arrays.

Each extractor has an ``id`` that changes whenever its output would (the backbone file's
hash, the view policy), which keys the feature cache, and a ``spec`` (a JSON dict) that
travels in a model's ``config.json`` and rebuilds it (:func:`from_spec`).

* ``clip``: views of the image (:mod:`noisetrace.semantic.views`) through a frozen image
  encoder (:mod:`noisetrace.semantic.backbones`); arrays ``embeds``, ``cls``, ``tokens``,
  and with ``taps="blocks"`` ``block_cls`` / ``block_tokens`` (V, L, W).
* ``spam``: SPAM residual statistics (:mod:`noisetrace.residuals.spam`) of the centre
  ``max_side`` square at native resolution; array ``spam`` (1, 686).
* ``spectrum``: spectral statistics of the residual (:mod:`noisetrace.residuals.spectrum`)
  of the centre ``max_side`` square at native resolution; array ``spectrum`` (1, 3 * bins + 24).
* ``face_ring``: SPAM of a face crop's interior, of the ring around the face, and their
  difference; array ``face_ring`` (1, 3 * 686).
* ``ring_level``: the noise level (residual magnitudes) of a face crop's interior against
  the ring around it; array ``ring_level`` (1, 54).
* ``ring_profile``: a face crop's noise level by distance from its edge (concentric bands),
  at two scales; array ``ring_profile`` (1, 3 * bands + 2).
* ``noise_level``: residual strength (mean, median, 90th percentile) at three scales of the
  centre ``max_side`` square, and its spread over tiles; array ``noise_level`` (1, 30).
* ``detector``: the raw fake logit of another noisetrace model directory; array ``logit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# One view per encoder call: the INT8 export quantises activations with one scale per call,
# so a view's embedding would depend on the other views in its batch (up to 1.5 in a
# coordinate measured). Alone, the same view always gets the same embedding: a file scores
# the same in a video batch, a folder scan or the API.
CLIP_BATCH = 1


class FeatureExtractor:
    """What every extractor has: ``kind`` (its name in a recipe), ``id`` (the cache key:
    changes whenever the output would), ``spec`` (the JSON dict :func:`from_spec` rebuilds it
    from: ``kind`` plus the constructor arguments named in ``params``), ``__call__`` on one
    decoded image and ``batch`` on several (one at a time unless an extractor batches)."""

    kind: str = ""
    params: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: getattr(self, k) for k in self.params}}

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def batch(self, imgs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [self(i) for i in imgs]


def _at_least(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` edge-padded (bottom, right) so both sides are at least ``side``: tiny faces and
    images still give every statistic pixels to count."""
    h, w = img.shape[:2]
    if min(h, w) >= side:
        return img
    return np.pad(img, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="edge")


def _centre_at_most(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return img[y : y + side, x : x + side]


class ClipExtractor(FeatureExtractor):
    kind = "clip"

    def __init__(self, backbone: str = "clip-vit-b16-int8", views: str = "resize",
                 file: str | None = None, sha256: str | None = None,
                 threads: int | None = None, taps: str | None = None,
                 numerics: str | None = None, image_size: int | None = None) -> None:  # fmt: skip
        from noisetrace.semantic.backbones import NATIVE_SIZE, create_backbone
        from noisetrace.semantic.views import parse_policy

        parse_policy(views)  # fail early on a bad policy
        self.policy = views
        # None: the runtime's own INT8 kernels ("ort"), what heads fitted before numerics
        # existed were fitted on; new recipes say "float" (portable; semantic/backbones.py).
        self.encoder = create_backbone(backbone, file=file, sha256=sha256, threads=threads,
                                       taps=taps, numerics=numerics or "ort",
                                       image_size=int(image_size or NATIVE_SIZE))  # fmt: skip
        self.backbone, self.taps, self.numerics = backbone, taps, numerics
        # None: the encoder's own side (224); another side resizes its position embeddings.
        self.image_size = int(image_size) if image_size else None

    @property
    def id(self) -> str:
        taps = f":taps-{self.taps}" if self.taps else ""  # older caches keep their key
        num = f":num-{self.numerics}" if self.numerics else ""
        side = f":s{self.image_size}" if self.image_size else ""
        return (f"clip:{self.backbone}:{self.encoder.check()}:{self.policy}:b{CLIP_BATCH}"
                f"{taps}{num}{side}")  # fmt: skip

    def spec(self) -> dict[str, Any]:
        return {"kind": "clip", "backbone": self.backbone, "views": self.policy,
                "sha256": self.encoder.check(), **({"taps": self.taps} if self.taps else {}),
                **({"numerics": self.numerics} if self.numerics else {}),
                **({"image_size": self.image_size} if self.image_size else {}),
                **({"file": str(self.encoder.path)} if self.backbone == "onnx" else {})}

    def batch(self, imgs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Views of several images, encoded ``CLIP_BATCH`` views per call."""
        from noisetrace.semantic.views import views

        vs = [views(i, self.policy, self.encoder.image_size) for i in imgs]
        allv = np.concatenate(vs)
        parts = self.encoder.embed_each([allv[i : i + CLIP_BATCH]
                                         for i in range(0, len(allv), CLIP_BATCH)])  # fmt: skip
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out, at = [], 0
        for v in vs:
            out.append({k: a[at : at + len(v)] for k, a in merged.items()})
            at += len(v)
        return out

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        return self.batch([img])[0]

    def read_only(self, feature: str) -> None:
        """Run the encoder only as deep as ``feature`` reads (``block_*@i,j``: up to block
        max(i, j)); the arrays it reads do not change, the time does (by the blocks cut)."""
        key, _, layers = feature.partition("@")
        if self.taps == "blocks" and key.startswith("block_") and layers:
            self.encoder.last_block = max(int(i) for i in layers.split(","))


class SpamExtractor(FeatureExtractor):
    kind = "spam"
    params = ("max_side", "t")

    def __init__(self, max_side: int = 1024, t: int = 3) -> None:
        self.max_side, self.t = max_side, t

    @property
    def id(self) -> str:
        return f"spam:t{self.t}:centre{self.max_side}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        from noisetrace.residuals.spam import spam

        img = _centre_at_most(img, self.max_side)
        img = _at_least(img, 8)
        return {"spam": spam(img, self.t)[None]}


class FaceRingExtractor(FeatureExtractor):
    """SPAM of a face crop's interior beside SPAM of the ring around it.

    A face crop is a square ``scale`` times the face box (:class:`~noisetrace.media.crops.
    FaceCropper`), so its outer ``(1 - 1/scale) / 2`` of each side is hair, neck and
    background. A swapped or blended face is synthesised (or re-rendered) inside the face and
    pasted into a frame that was not: the two regions' noise statistics disagree, whatever
    the tool (the face vs background argument of seed 003, on the crop a face model already
    has). Array ``face_ring`` (1, 3 * 686): interior, ring (the mean of its four strips,
    the side strips transposed) and their difference.
    """

    kind = "face_ring"
    params = ("scale", "t")

    def __init__(self, scale: float = 1.3, t: int = 3) -> None:
        if scale <= 1:
            raise ValueError(f"face_ring needs a crop larger than the face (scale > 1), "
                             f"got {scale}")  # fmt: skip
        self.scale, self.t = float(scale), t

    @property
    def id(self) -> str:
        return f"face_ring:t{self.t}:s{self.scale:g}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        from noisetrace.residuals.spam import spam

        h, w = img.shape[:2]
        # The ring: outside the face box, plus a few pixels of the face's edge, where a
        # pasted face meets the frame; at least 4 px so SPAM has rows to count.
        m = max(4, round(min(h, w) * (1 - 1 / self.scale) / 2) + 4)
        img = _at_least(img, 2 * m + 4)
        h, w = img.shape[:2]
        inner = spam(img[m : h - m, m : w - m], self.t)
        strips = (img[:m], img[h - m :], img[:, :m].transpose(1, 0, 2),
                  img[:, w - m :].transpose(1, 0, 2))  # fmt: skip
        ring = np.mean([spam(s, self.t) for s in strips], axis=0)
        return {"face_ring": np.concatenate([inner, ring, inner - ring])[None].astype(np.float32)}


class RingLevelExtractor(FeatureExtractor):
    """Noise *level* of a face crop's interior against the ring around the face.

    A face a swap tool renders at its own resolution and pastes into the frame is usually
    smoother (or sharper) than the frame around it; a self-blended face mixes in a blurred
    copy. Per colour channel and residual (horizontal and vertical first differences, the
    4-neighbour Laplacian): log mean and log 90th percentile of the absolute residual inside
    the face and in the ring (the crop's outer band, as :class:`FaceRingExtractor`), and their
    differences. Array ``ring_level`` (1, 54): 3 residuals x 3 channels x 6 numbers.
    """

    kind = "ring_level"
    params = ("scale",)

    def __init__(self, scale: float = 1.3) -> None:
        if scale <= 1:
            raise ValueError(f"ring_level needs a crop larger than the face (scale > 1), "
                             f"got {scale}")  # fmt: skip
        self.scale = float(scale)

    @property
    def id(self) -> str:
        return f"ring_level:v1:s{self.scale:g}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        h, w = img.shape[:2]
        m = max(4, round(min(h, w) * (1 - 1 / self.scale) / 2) + 4)
        img = _at_least(img, 2 * m + 4)  # tiny faces: both regions get pixels
        if img.dtype == np.uint8:
            out = _ring_level_counts(img, m)
        else:
            out = _ring_level_float(img.astype(np.float32), m)
        return {"ring_level": np.array(out, np.float32)[None]}


def _level_numbers(mi: float, mr: float, qi: float, qr: float) -> list[float]:
    li, lr = np.log(mi + 1e-3), np.log(mr + 1e-3)
    qi, qr = np.log(qi + 1e-3), np.log(qr + 1e-3)
    return [li, lr, li - lr, qi, qr, qi - qr]


def _ring_level_float(x: np.ndarray, m: int) -> list[float]:
    """Reference path for float input: masks and ``np.percentile``."""
    from noisetrace.residuals.level import residuals

    out: list[float] = []
    for r in residuals(np.moveaxis(x, 2, 0)):
        rh, rw = r.shape[1:]
        inside = np.zeros((rh, rw), bool)
        inside[m : rh - m, m : rw - m] = True
        for a in np.abs(r):
            ai, ar = a[inside], a[~inside]
            out += _level_numbers(ai.mean(), ar.mean(), np.percentile(ai, 90),
                                  np.percentile(ar, 90))  # fmt: skip
    return out


def _ring_level_counts(img: np.ndarray, m: int) -> list[float]:
    """The same numbers for 8-bit input from value histograms: every residual of integer
    pixels is an integer in [0, 1020], so means and the 90th percentile (linear
    interpolation, as ``np.percentile``) come from counts, about 8x faster than masking and
    sorting (the face model scores every crop of a video with it)."""
    from noisetrace.residuals.level import hist_stats, residuals

    bins = 1021
    offset = (np.arange(3, dtype=np.int16) * bins)[:, None, None]
    out: list[float] = []
    # int16 planes, channel first and contiguous: residuals within +-1020, histogram
    # indices (with the channel offsets) below 3 * 1021.
    x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.int16)
    for r in residuals(x):
        rh, rw = r.shape[1:]
        a = np.abs(r) + offset  # one histogram for the three channels
        allc = np.bincount(a.ravel(), minlength=3 * bins).reshape(3, bins)
        inc = np.bincount(a[:, m : rh - m, m : rw - m].ravel(), minlength=3 * bins)
        inc = inc.reshape(3, bins)
        for c in range(3):
            stats = [hist_stats(inc[c], (0.9,)), hist_stats(allc[c] - inc[c], (0.9,))]
            out += _level_numbers(stats[0][0], stats[1][0], stats[0][1], stats[1][1])
    return out


class RingProfileExtractor(FeatureExtractor):
    """Noise level of a face crop by distance from its edge, at two scales.

    A swap tool blends its face into the frame inside a mask near the face box's edge; the
    blend (feathered, or mixing a blurred copy as self-blended images do) leaves a band where
    fine-scale noise dips or jumps against the frame outside and the face inside. The crop's
    square distance to its edge is cut into ``bands`` concentric bands (0 = the border, the
    last = the centre); per band, the mean absolute 4-neighbour Laplacian of the luma at full
    resolution (fine) and of a 2x2-averaged copy (coarse). Array ``ring_profile``
    (1, 3 * bands + 2): per band log fine and log coarse minus the centre band's, and log
    fine / coarse (how much detail a band has for its contrast, low where a face was
    rendered small and upscaled), then the centre's log fine and log coarse.
    """

    kind = "ring_profile"
    params = ("bands",)

    def __init__(self, bands: int = 12) -> None:
        if bands < 2:
            raise ValueError(f"ring_profile needs at least 2 bands, got {bands}")
        self.bands = int(bands)

    @property
    def id(self) -> str:
        return f"ring_profile:v1:b{self.bands}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        from noisetrace.residuals.level import laplacian

        img = _at_least(img, 4 * self.bands)  # every band at least 2 px deep
        x = img.astype(np.float32)
        y = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114 if x.ndim == 3 else x
        h, w = y.shape
        fine = np.abs(laplacian(y))
        h2, w2 = h // 2 * 2, w // 2 * 2
        half = y[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
        coarse = np.abs(laplacian(half)).repeat(2, 0).repeat(2, 1)
        coarse = np.pad(coarse, ((0, h - h2), (0, w - w2)), mode="edge")
        band = _band_map(h, w, self.bands).ravel()
        n = np.bincount(band, minlength=self.bands)
        lf = np.log(np.bincount(band, fine.ravel(), self.bands) / n + 1e-3)
        lc = np.log(np.bincount(band, coarse.ravel(), self.bands) / n + 1e-3)
        out = np.concatenate([lf - lf[-1], lc - lc[-1], lf - lc, [lf[-1], lc[-1]]])
        return {"ring_profile": out.astype(np.float32)[None]}


_BANDS: dict[tuple[int, int, int], np.ndarray] = {}


def _band_map(h: int, w: int, bands: int) -> np.ndarray:
    """(H, W) band index: the distance to the nearest edge over half the shorter side, cut
    into ``bands`` equal steps (the centre band takes what is left)."""
    key = (h, w, bands)
    if key not in _BANDS:
        if len(_BANDS) > 64:  # crops are one size; whole frames of many sizes must not pile up
            _BANDS.clear()
        yy = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None]
        xx = np.minimum(np.arange(w), np.arange(w)[::-1])[None]
        d = np.minimum(yy, xx) / (min(h, w) / 2)
        _BANDS[key] = np.minimum((d * bands).astype(np.intp), bands - 1)
    return _BANDS[key]


class NoiseLevelExtractor(FeatureExtractor):
    """Residual strength across scales (:func:`noisetrace.residuals.level.level_features`)
    of the centre ``max_side`` square at native resolution; array ``noise_level``
    (1, 30) at the default three scales."""

    kind = "noise_level"
    params = ("max_side", "scales")

    def __init__(self, max_side: int = 1024, scales: int = 3) -> None:
        self.max_side, self.scales = int(max_side), int(scales)

    @property
    def id(self) -> str:
        return f"noise_level:v1:k{self.scales}:centre{self.max_side}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        from noisetrace.residuals.level import level_features

        img = _centre_at_most(img, self.max_side)
        return {"noise_level": level_features(img, self.scales)[None]}


class SpectrumExtractor(FeatureExtractor):
    kind = "spectrum"
    params = ("max_side", "tile", "bins")

    def __init__(self, max_side: int = 1024, tile: int = 256, bins: int = 32) -> None:
        self.max_side, self.tile, self.bins = max_side, tile, bins

    @property
    def id(self) -> str:
        return f"spectrum:v1:t{self.tile}:b{self.bins}:centre{self.max_side}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        from noisetrace.residuals.spectrum import spectrum_features

        img = _centre_at_most(img, self.max_side)
        return {"spectrum": spectrum_features(img, self.tile, self.bins)[None]}


class DetectorLogitExtractor(FeatureExtractor):
    kind = "detector"
    params = ("model",)

    def __init__(self, model: str, device: str | None = "auto") -> None:
        from noisetrace.zoo import load_detector

        self.model, self.det = model, load_detector(model, device=device)

    @property
    def id(self) -> str:
        return f"detector:{self.det.config.weights_sha256 or self.model}"

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        return {"logit": np.array([[self.det.logit(img)]], np.float32)}


def select_feature(arrs: dict[str, np.ndarray], feature: str) -> np.ndarray:
    """The (V, D) array a head reads from an extractor's output.

    ``feature`` is a key (``embeds``, ``spam``, ...) or ``key@i,j,...`` for per-block arrays
    (V, L, W): blocks i, j, ... each scaled to unit length (block norms grow with depth and
    would otherwise decide the weighting), then concatenated to (V, len * W).
    """
    key, _, layers = feature.partition("@")
    if key not in arrs:
        from noisetrace.errors import ModelError

        raise ModelError(f"the extractor gives no feature {key!r} (it gives "
                         f"{', '.join(sorted(arrs))}); check the branch's `feature`")  # fmt: skip
    a = arrs[key]
    if not layers:
        return a
    sel = a[:, [int(i) for i in layers.split(",")]].astype(np.float32)
    sel /= np.maximum(np.linalg.norm(sel, axis=-1, keepdims=True), 1e-12)
    return sel.reshape(len(a), -1)


_KINDS = {"clip": ClipExtractor, "spam": SpamExtractor, "spectrum": SpectrumExtractor,
          "face_ring": FaceRingExtractor, "ring_level": RingLevelExtractor,
          "ring_profile": RingProfileExtractor, "noise_level": NoiseLevelExtractor,
          "detector": DetectorLogitExtractor}  # fmt: skip


Extractor = FeatureExtractor


def from_spec(spec: dict[str, Any], **kw: Any) -> Extractor:
    """Rebuild an extractor from the ``spec`` a model recorded."""
    from noisetrace.errors import ModelError

    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _KINDS:
        raise ModelError(f"unknown feature extractor {kind!r}; known: {', '.join(_KINDS)}")
    return _KINDS[kind](**spec, **kw)
