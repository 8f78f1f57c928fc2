"""Model registry: one decorated factory per architecture, one ``create(name)`` entry.

Contract every registered model follows, so that scanning, training, explanation and export
treat them alike:

* ``forward(x)`` takes a float batch (B, C, H, W) (or (B, T, C, H, W) for sequence models)
  and returns the *fake* logit, shape (B,). Two-class heads expose ``logit_fake - logit_real``.
* ``model.pretrained_cfg`` (a dict) says how to feed it: ``input_size`` (None = any size,
  the model is fully convolutional), ``normalize`` ("unit": x/255, or "imagenet"),
  ``sequence_length`` (None for single images) and ``input`` ("image" or "face").
* Fully convolutional models also expose ``forward_features(x) -> (B, F, h, w)`` and
  ``forward_head(pooled: (B, F)) -> (B,)`` so large images can be scored tile by tile with
  bounded memory and give the same answer as one pass with global average pooling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DEFAULT_CFG: dict[str, Any] = {
    "input_size": None,
    "normalize": "unit",
    "sequence_length": None,
    "input": "image",
}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn(**config) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(_REGISTRY)


def create(name: str, **config: Any) -> nn.Module:
    """Build the architecture ``name`` with its keyword ``config`` (random weights).

    The returned module carries ``arch`` (the name), ``arch_config`` (the keywords, so a
    checkpoint can rebuild it) and a complete ``pretrained_cfg``.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _REGISTRY[name](**config)
    model.arch = name
    # Weights are saved with the model, so a rebuild must never fetch pretrained ones again.
    model.arch_config = {k: v for k, v in config.items() if k != "pretrained"}
    model.pretrained_cfg = {**_DEFAULT_CFG, **getattr(model, "pretrained_cfg", {})}
    return model
