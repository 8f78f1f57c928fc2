"""Errors with messages meant for the person running the scan."""


class NoisetraceError(Exception):
    """Base class for errors noisetrace raises on purpose."""


class InputError(NoisetraceError):
    """A file cannot be scanned; the message says why in plain words. Other files go on."""


class ModelError(NoisetraceError):
    """A model cannot be loaded or built (unknown name, bad or tampered weights)."""
