"""Integrated Gradients (Sundararajan et al. 2017) for any registered detector.

DJIN (``djin-srnet-noise-residual-detector.md``, Section 4.3) explains its decisions with IG;
this module gives the same attribution for every model in the registry. The attributed output
is the model's *fake logit* (the registry contract), so attributions are in logit units and,
by IG's completeness axiom, sum to ``logit(image) - logit(baseline)`` up to the integration
error reported as ``delta``.

Two paths, both exact for the function the :class:`~noisetrace.detector.Detector` scores:

* images within one tile: captum's ``IntegratedGradients`` on ``model.forward``, with
  ``internal_batch_size`` bounding how many path points are in memory at once;
* larger images on fully convolutional models: the detector scores them tile by tile
  (``head(area-weighted mean of tile features)``), so IG is computed tile by tile too, using
  the chain rule through the pooled features. Memory is bounded by ``internal_batch_size``
  path points of one tile, whatever the image size; the integration nodes and weights are
  captum's own, so both paths integrate the same way.

IG is invariant to per-channel affine input maps, so attributions taken on the normalised
tensor (``unit`` or ``imagenet``) are the attributions of the 0..255 pixels as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from noisetrace.detector import Detector
from noisetrace.errors import InputError, ModelError

Baseline = Literal["black", "blurred", "noise"]
Progress = Callable[[int, int], None]  # (work done, total work), in path-point passes
BASELINES: tuple[str, ...] = ("black", "blurred", "noise")


@dataclass
class IGResult:
    """Integrated Gradients of one image.

    ``attributions`` is (H, W, 3) float32, signed, in fake-logit units, aligned with
    ``image`` (the (H, W, 3) uint8 image the model saw, i.e. after any fixed-size resize).
    """

    attributions: np.ndarray
    image: np.ndarray
    logit: float  # fake logit of the image
    baseline_logit: float  # fake logit of the baseline
    delta: float  # sum(attributions) - (logit - baseline_logit): integration error
    baseline: str
    steps: int
    tiled: bool

    def pixel_map(self) -> np.ndarray:
        """(H, W) float32 signed attribution per pixel (sum over colour channels)."""
        return self.attributions.sum(axis=2)

    def influence(self) -> np.ndarray:
        """(H, W) float32 ``|pixel_map|``: how much each pixel moved the decision, either way.

        Summing channels before the absolute value is captum's own convention
        (``visualize_image_attr`` with ``sign="absolute_value"``).
        """
        return np.abs(self.pixel_map())

    def normalized_influence(self, percentile: float = 99.0) -> np.ndarray:
        """(H, W) float32 in [0, 1]: influence divided by its ``percentile`` and clipped.

        IG maps are spiky; scaling by a high percentile rather than the maximum keeps more
        than a handful of pixels visible in an overlay.
        """
        return normalize_map(self.influence(), percentile)


def normalize_map(values: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """(H, W) non-negative map -> (H, W) float32 in [0, 1], scaled by its ``percentile``."""
    v = np.asarray(values, dtype=np.float32)
    scale = float(np.percentile(v, percentile)) if v.size else 0.0
    if not math.isfinite(scale) or scale <= 0:
        scale = float(v.max()) if v.size and v.max() > 0 else 1.0
    return np.clip(v / scale, 0.0, 1.0).astype(np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 3) float32 -> same, separable Gaussian blur with reflect padding (float, no
    rounding, so the baseline carries no quantisation noise of its own)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    k = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)  # (3, 1, 1, K)
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    h, w = x.shape[2:]
    mode = "reflect" if min(h, w) > radius else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), k, groups=3)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), k.transpose(2, 3), groups=3)
    return x[0].permute(1, 2, 0).numpy()


def make_baseline(
    img: np.ndarray, kind: Baseline = "black", *, sigma: float = 4.0, seed: int = 0
) -> np.ndarray:
    """The IG starting point for an (H, W, 3) uint8 image: (H, W, 3) float32 in 0..255.

    ``black``: all zeros (IG's usual baseline, and captum's default).
    ``blurred``: the image Gaussian-blurred with ``sigma`` pixels; it keeps the content and
    removes the high-frequency noise, so attributions isolate what the noise contributes.
    ``noise``: uniform random pixels (fixed ``seed``, so runs are repeatable).
    """
    if kind == "black":
        return np.zeros(img.shape, dtype=np.float32)
    if kind == "blurred":
        return gaussian_blur(img.astype(np.float32), sigma)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return rng.uniform(0.0, 255.0, size=img.shape).astype(np.float32)
    raise InputError(f"unknown IG baseline {kind!r}; use one of {', '.join(BASELINES)}")


def integrated_gradients(
    det: Detector,
    img: np.ndarray,
    *,
    baseline: Baseline = "black",
    steps: int = 32,
    internal_batch_size: int = 4,
    method: str = "gausslegendre",
    tile: int | None = None,
    sigma: float = 4.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> IGResult:
    """Attribute the detector's fake logit for an (H, W, 3) uint8 image to its pixels.

    Args:
        det: the detector (its model follows the registry contract).
        img: (H, W, 3) uint8 RGB image, full resolution.
        baseline: ``black``, ``blurred`` or ``noise`` (see :func:`make_baseline`).
        steps: integration points on the path from baseline to image; more steps, smaller
            ``delta``.
        internal_batch_size: path points evaluated at once (bounds memory).
        method: captum's approximation method (``gausslegendre``, ``riemann_trapezoid``...).
        tile: tile side for large images; defaults to the detector's own ``config.tile``, so
            the function explained is exactly the one ``Detector.logit`` computes.
        progress: called as ``progress(done, total)`` after each batch of path points (a large
            image takes tens of seconds); ``done`` reaches ``total`` at the end. It only
            observes: the attributions are the same with or without it.
    """
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise InputError("expected an (H, W, 3) uint8 RGB array")
    if steps < 1 or internal_batch_size < 1:
        raise InputError("steps and internal_batch_size must be at least 1")
    img = det.fit_size(img)
    base = make_baseline(img, baseline, sigma=sigma, seed=seed)
    model = det.model.eval()
    t = tile or det.config.tile
    h, w = img.shape[:2]
    x = det.to_tensor(img)  # (1, 3, H, W)
    b = det.to_tensor(base)
    if max(h, w) <= t or not hasattr(model, "forward_features"):
        attr, fx, fb = _captum_ig(model, x, b, steps, internal_batch_size, method, progress)
        tiled = False
    else:
        attr, fx, fb = _tiled_ig(model, x, b, steps, internal_batch_size, method, t, progress)
        tiled = True
    a = attr[0].permute(1, 2, 0).float().cpu().numpy()
    delta = float(a.astype(np.float64).sum() - (fx - fb))
    return IGResult(a, img, fx, fb, delta, baseline, steps, tiled)


def _captum_ig(
    model: torch.nn.Module,
    x: torch.Tensor,
    b: torch.Tensor,
    steps: int,
    ibs: int,
    method: str,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, float, float]:
    """(1, C, H, W) image and baseline -> ((1, C, H, W) attributions, f(x), f(b)).

    Progress: captum has no callback, but it calls ``fwd`` once per batch of path points, so
    counting there reports each batch without changing how captum integrates. Units: a
    forward and backward pass per path point counts 2, the final forward of image and
    baseline 1 each.
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError:  # pragma: no cover - depends on the install
        raise ModelError(
            "Integrated Gradients needs captum: pip install 'noisetrace[explain]'"
        ) from None

    total = 2 * steps + 2
    done = 0

    def fwd(inp: torch.Tensor) -> torch.Tensor:
        nonlocal done
        out = model(inp)
        if out.ndim != 1:
            raise ModelError(
                f"model returned shape {tuple(out.shape)}; the registry contract is (B,) fake "
                "logits"
            )
        if progress is not None and torch.is_grad_enabled():
            done = min(total - 2, done + 2 * inp.shape[0])
            progress(done, total)
        return out

    ig = IntegratedGradients(fwd)
    attr = ig.attribute(
        x, baselines=b, n_steps=steps, method=method, internal_batch_size=ibs
    )
    with torch.no_grad():
        fx, fb = (float(v) for v in fwd(torch.cat([x, b])).float().cpu())
    if progress is not None:
        progress(total, total)
    return attr.detach(), fx, fb


def _tiles(h: int, w: int, t: int) -> list[tuple[int, int]]:
    """Tile origins as ``Detector.logit`` uses them (slivers under 8 pixels are skipped)."""
    out = []
    for y in range(0, h, t):
        for x in range(0, w, t):
            if min(min(t, h - y), min(t, w - x)) >= 8:
                out.append((y, x))
    return out


def _tiled_ig(
    model: torch.nn.Module,
    x: torch.Tensor,
    b: torch.Tensor,
    steps: int,
    ibs: int,
    method: str,
    t: int,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, float, float]:
    """IG of ``head(sum_tiles sum_hw features(tile) / area)`` with one tile in memory.

    d logit / d tile = (d head / d pooled) . (d sum_hw features(tile) / d tile) / area, so
    each path point needs the pooled features first (pass 1, no graph), then the head
    gradient (cheap, (S, F)), then one vector-Jacobian product per tile (pass 2).
    ``progress`` counts a forward of one tile's path point 1 and a forward and backward 2.
    """
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes_fn, alphas_fn = approximation_parameters(method)
    alphas = torch.tensor(alphas_fn(steps), dtype=x.dtype, device=x.device)  # (S,)
    weights = torch.tensor(step_sizes_fn(steps), dtype=x.dtype, device=x.device)  # (S,)
    h, w = x.shape[2:]
    origins = _tiles(h, w, t)
    diff = x - b
    total = len(origins) * (steps + 2 + 2 * steps)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def path(y0: int, x0: int, a: torch.Tensor) -> torch.Tensor:
        """Points ``b + a (x - b)`` of one tile: (k, C, th, tw)."""
        bt = b[:, :, y0 : y0 + t, x0 : x0 + t]
        dt = diff[:, :, y0 : y0 + t, x0 : x0 + t]
        return bt + a.view(-1, 1, 1, 1) * dt

    # Pass 1: pooled features at every path point, plus at the image and the baseline.
    ends = torch.tensor([1.0, 0.0], dtype=x.dtype, device=x.device)
    all_alphas = torch.cat([alphas, ends])
    sums: torch.Tensor | None = None
    area = 0
    with torch.no_grad():
        for y0, x0 in origins:
            parts = []
            for i in range(0, len(all_alphas), ibs):
                f = model.forward_features(path(y0, x0, all_alphas[i : i + ibs])).float()
                parts.append(f.sum(dim=(2, 3)))
                advance(f.shape[0])
            s = torch.cat(parts)  # (S + 2, F)
            sums = s if sums is None else sums + s
            area += f.shape[2] * f.shape[3]
    if sums is None:
        raise InputError(f"image of {w}x{h} pixels is too small to explain")
    pooled = (sums / area).detach().requires_grad_(True)
    with torch.enable_grad():
        out = model.forward_head(pooled)  # (S + 2,)
        (g,) = torch.autograd.grad(out.sum(), pooled)  # (S + 2, F)
    fx, fb = float(out[-2].detach()), float(out[-1].detach())
    g = g[:steps] / area

    # Pass 2: one vector-Jacobian product per tile and chunk of path points.
    grads = torch.zeros_like(x)
    for y0, x0 in origins:
        acc = None
        for i in range(0, steps, ibs):
            with torch.enable_grad():
                pts = path(y0, x0, alphas[i : i + ibs]).detach().requires_grad_(True)
                f = model.forward_features(pts).float().sum(dim=(2, 3))  # (k, F)
                (gx,) = torch.autograd.grad((f * g[i : i + ibs]).sum(), pts)
            contrib = (gx * weights[i : i + ibs].view(-1, 1, 1, 1)).sum(0, keepdim=True)
            acc = contrib if acc is None else acc + contrib
            advance(2 * pts.shape[0])
        grads[:, :, y0 : y0 + t, x0 : x0 + t] = acc
    return grads * diff, fx, fb
