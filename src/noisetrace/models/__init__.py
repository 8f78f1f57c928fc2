"""Detector architectures behind one registry: ``create(name, **config)`` and ``list_models()``.

Importing this package imports every architecture module so each registers itself.
"""

from noisetrace.models import srm_cnn  # noqa: F401  (registers "srm-cnn")
from noisetrace.models.registry import create, list_models, register_model

__all__ = ["create", "list_models", "register_model"]
