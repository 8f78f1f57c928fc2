"""The local engine: files listed by :func:`noisetrace.scan.iter_inputs` and scanned by
:func:`noisetrace.scan.scan_paths` in a small thread pool of this process."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from noisetrace.detector import Detector, ScanResult
from noisetrace.engines import EngineOptions
from noisetrace.scan import InputListing, iter_inputs, scan_paths


class LocalEngine:
    name = "local"

    def __init__(self, detector: Detector, options: EngineOptions) -> None:
        self.detector, self.options = detector, options

    def list_inputs(self, paths: Iterable[str]) -> tuple[InputListing, list[str]]:
        listing = iter_inputs(paths)
        return listing, listing.files

    def results(self, files: Iterable[str]) -> Iterator[ScanResult]:
        return scan_paths(self.detector, files, video_frames=self.options.video_frames,
                          workers=self.options.workers)  # fmt: skip
