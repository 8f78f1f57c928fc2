"""Detector architectures behind one registry: ``create(name, **config)`` and ``list_models()``.

Importing this package imports every architecture module so each registers itself.
"""

from noisetrace.models import (
    cffn,  # noqa: F401  (registers "cffn")
    corvi,  # noqa: F401  (registers "corvi-resnet50")
    mesonet,  # noqa: F401  (registers "mesonet4", "mesoinception4")
    siamese_dncnn,  # noqa: F401  (registers "siamese-dncnn")
    srm_cnn,  # noqa: F401  (registers "srm-cnn")
    srnet,  # noqa: F401  (registers "djin")
    xception,  # noqa: F401  (xception-rgb/-srm and their -lstm)
)
from noisetrace.models.registry import create, list_models, register_model

__all__ = ["create", "list_models", "register_model"]
