"""noisetrace: tell real images and videos from deepfakes by their noise residuals."""

from noisetrace.detector import Detector, ScanResult
from noisetrace.errors import InputError, ModelError, NoisetraceError
from noisetrace.zoo import list_bundled, load_detector

__version__ = "0.1.0"

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
