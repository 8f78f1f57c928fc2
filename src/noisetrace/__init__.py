"""noisetrace: tell real images and videos from deepfakes by their noise residuals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from noisetrace.errors import InputError, ModelError, NoisetraceError

__version__ = "0.1.0"

# The detector pulls in torch (seconds): import it on first use, so that `noisetrace --help`
# and anything else that only needs a submodule (the CLI, errors) starts at once.
_LAZY = {
    "Detector": "noisetrace.detector",
    "ScanResult": "noisetrace.detector",
    "list_bundled": "noisetrace.zoo",
    "load_detector": "noisetrace.zoo",
}

if TYPE_CHECKING:
    from noisetrace.detector import Detector, ScanResult
    from noisetrace.zoo import list_bundled, load_detector

__all__ = [
    "Detector",
    "InputError",
    "ModelError",
    "NoisetraceError",
    "ScanResult",
    "__version__",
    "list_bundled",
    "load_detector",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
