"""``noisetrace scan --engine ray``: the same scan, spread over every core of a Ray cluster.

Pipeline (Ray Data, streaming, one window of the listing at a time)::

    listing (driver, lazy) -> read objects (tasks; object storage only) -> scan (actor pool)
                                                                            -> records (driver)

- The listing is a stream: local folders are expanded by :func:`noisetrace.scan.iter_inputs`
  (the local engine's rules, same errors); object-storage prefixes (``s3://``, ``gs://``,
  ``file://``, anything ``pyarrow.fs`` understands, credentials from the usual environment)
  are walked one directory level at a time. Paths go to Ray ``window`` at a time.
- Read tasks fetch the bytes of remote objects (I/O bound; they reserve no CPU). Local files
  are passed by path: on a cluster they must be on a filesystem every node mounts.
- Each scan actor loads the detector once and calls :meth:`Detector.scan` on every file
  (a remote object is first written to a local temporary file), so decoding, scoring and the
  error records are exactly those of the local engine. Decoding happens in the actor on
  purpose: ``Detector.scan`` is the single reference for error handling, and on CPU moving
  decoded pixels through the object store would cost more than it saves.
- Back-pressure: Ray Data's streaming executor keeps a bounded number of blocks in flight, so a
  folder of 100,000 files is never decoded, or held as bytes, all at once.
- Fault tolerance: pool actors have ``max_restarts=-1`` and ``max_task_retries=-1`` (Ray
  Data's defaults), read tasks ``max_retries=-1`` (likewise): a worker or node
  lost mid-batch is replaced and the batch runs again. Records carry their listing index
  and the driver drops any index seen before, so nothing is written twice.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from noisetrace.detector import Detector, ScanResult
from noisetrace.engines import EngineOptions
from noisetrace.errors import NoisetraceError
from noisetrace.media.formats import MEDIA_EXTENSIONS, sniff_bytes
from noisetrace.outputs.records import is_uri, result_from_record
from noisetrace.scan import InputListing, iter_inputs

NOT_FOUND = "file not found (it may have been moved or deleted)"  # Detector.scan's wording


def require_ray() -> Any:
    """Import Ray (with Ray Data) or say how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise NoisetraceError(
            "--engine ray needs Ray: pip install 'noisetrace[ray]' (or run without --engine ray "
            "to scan on this machine)"
        ) from None
    return ray


# -- listing ---------------------------------------------------------------------------------
def _split_uri(uri: str) -> tuple[str, str]:
    scheme, _, rest = uri.partition("://")
    return scheme, rest


_PLAIN_SCHEMES = ("s3", "gs", "gcs", "file")


def _filesystem(uri: str, cache: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for ``uri``; one filesystem per bucket is cached."""
    from pyarrow import fs as pafs

    scheme, rest = _split_uri(uri)
    # For these schemes the path inside the filesystem is the URI without its scheme, so one
    # filesystem per bucket serves every key (building an S3 client per object is slow).
    key = f"{scheme}://{rest.split('/', 1)[0]}" if scheme in _PLAIN_SCHEMES else None
    if cache is not None and key in cache:
        return cache[key], rest
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid etc.
        raise OSError(f"cannot open {scheme}:// storage: {exc}") from None
    if cache is not None and key is not None:
        cache[key] = filesystem
    return filesystem, path


def iter_remote(uri: str, listing: InputListing) -> Iterator[str]:
    """Yield the media objects under ``uri`` (an object or a prefix), sorted, lazily.

    Mirrors :func:`iter_inputs`: objects with a media extension are scanned, others only if
    their first bytes are an image or video (one small read each); the rest are added to
    ``listing.skipped_non_media``. A missing URI becomes an error record in ``listing.errors``.
    """
    from pyarrow import fs as pafs

    scheme = _split_uri(uri)[0]
    try:
        filesystem, root = _filesystem(uri)
        info = filesystem.get_file_info(root)
    except OSError as exc:
        listing.errors.append(ScanResult(path=uri, error=f"cannot list this location: {exc}"))
        return
    if info.type == pafs.FileType.NotFound:
        listing.errors.append(ScanResult(path=uri, error="no such file or folder"))
        return
    if info.type != pafs.FileType.Directory:
        yield uri  # named explicitly: always scanned, like a local file
        return
    stack = [root]
    while stack:  # one directory level at a time: memory holds one level, not the bucket
        d = stack.pop()
        try:
            entries = filesystem.get_file_info(pafs.FileSelector(d, recursive=False))
        except OSError as exc:
            listing.errors.append(
                ScanResult(path=f"{scheme}://{d}", error=f"cannot list this folder: {exc}")
            )
            continue
        entries.sort(key=lambda e: e.path)
        for e in entries:
            if e.type == pafs.FileType.File:
                u = f"{scheme}://{e.path}"
                if Path(e.base_name).suffix.lower() in MEDIA_EXTENSIONS or _remote_is_media(
                    filesystem, e.path
                ):
                    yield u
                else:
                    listing.skipped_non_media.append(u)
        # Reversed onto the stack so sub-folders come out in sorted order.
        stack.extend(e.path for e in reversed(entries) if e.type == pafs.FileType.Directory)


def _remote_is_media(filesystem: Any, path: str) -> bool:
    try:
        with filesystem.open_input_stream(path) as fh:
            return sniff_bytes(fh.read(64)) is not None
    except OSError:
        return True  # let the scan itself report why it cannot be read


def list_inputs(paths: Iterable[str | Path]) -> tuple[InputListing, Iterator[str]]:
    """Listing errors/skips so far and a lazy stream of files to scan.

    Local paths are expanded by :func:`iter_inputs` (together, so a folder named twice is
    reported as the local engine reports it); URIs are walked lazily after them, and their
    errors and skipped objects are appended to the returned listing as the stream advances.
    """
    paths = [str(p) for p in paths]
    local = iter_inputs([p for p in paths if not is_uri(p)])
    listing = InputListing(errors=list(local.errors), skipped_non_media=local.skipped_non_media)

    def stream() -> Iterator[str]:
        yield from local.files
        for p in paths:
            if is_uri(p):
                yield from iter_remote(p, listing)

    return listing, stream()


# -- reading (Ray tasks) ---------------------------------------------------------------------
def _read_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    if isinstance(exc, PermissionError):
        return "permission denied: the file cannot be read"
    return f"cannot read the object: {exc}"


def read_objects(batch: Any, max_inline_bytes: int = 64 << 20) -> dict[str, list]:
    """Ray Data task: fetch the bytes of remote objects (``data``), or why not (``read_error``).

    ``batch`` is a pyarrow.Table with ``idx`` and ``path``. Objects larger than
    ``max_inline_bytes`` are left for the scan actor to stream to disk, so a large video never
    sits whole in the object store. Local paths pass through untouched.
    """
    cols = batch.to_pydict()
    cache: dict[str, Any] = {}
    data: list[bytes | None] = []
    errors: list[str | None] = []
    for p in cols["path"]:
        blob, err = None, None
        if is_uri(p):
            try:
                filesystem, path = _filesystem(p, cache)
                with filesystem.open_input_file(path) as fh:
                    if fh.size() <= max_inline_bytes:
                        blob = fh.read()
            except Exception as exc:  # noqa: BLE001 - any storage error becomes a record
                err = _read_error(exc)
        data.append(blob)
        errors.append(err)
    return {**cols, "data": data, "read_error": errors}


# -- scoring (Ray actors) --------------------------------------------------------------------
@dataclass
class WorkerConfig:
    """What every scan actor needs to build the same detector as the driver."""

    model: str
    device: str = "cpu"
    backend: str = "auto"
    threshold: float | None = None
    video_frames: int | None = None
    frame_scores: bool = False
    threads: int = 1


def _pin_threads(det: Detector, threads: int) -> None:
    """One actor per core: keep each runtime to its share of the cores (no oversubscription)."""
    det.set_threads(max(1, threads))


class ScanWorker:
    """Ray Data actor: loads the detector once, then scans batches of files.

    Input batch columns: ``idx`` (listing index), ``path``, and for object storage ``data``
    (bytes or None) and ``read_error``. Output: ``idx`` and ``record`` (the JSON of
    :meth:`ScanResult.to_record`, frame scores included when asked for).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        from noisetrace.zoo import load_detector

        self.cfg = WorkerConfig(**config)
        self.det = load_detector(self.cfg.model, device=self.cfg.device, backend=self.cfg.backend)
        if self.cfg.threshold is not None:
            self.det.set_threshold(self.cfg.threshold)
        if self.det.device.type == "cpu":
            _pin_threads(self.det, self.cfg.threads)
        self.spool = tempfile.mkdtemp(prefix="noisetrace-ray-")
        self.fs_cache: dict[str, Any] = {}

    def scan_one(self, path: str, data: bytes | None, read_error: str | None) -> ScanResult:
        """Scan one input; never raises (like :meth:`Detector.scan`)."""
        if not is_uri(path):
            return self.det.scan(path, video_frames=self.cfg.video_frames)
        if read_error is not None:
            return ScanResult(
                path=path, threshold=self.det.threshold, model=self.det.name, error=read_error
            )
        local = os.path.join(self.spool, "object" + Path(_split_uri(path)[1]).suffix.lower())
        try:
            if data is not None:
                with open(local, "wb") as fh:
                    fh.write(data)
            else:  # too large to travel through the object store: stream it to disk here
                filesystem, p = _filesystem(path, self.fs_cache)
                with filesystem.open_input_stream(p) as src, open(local, "wb") as dst:
                    while chunk := src.read(8 << 20):
                        dst.write(chunk)
            res = self.det.scan(local, video_frames=self.cfg.video_frames)
        except Exception as exc:  # noqa: BLE001 - a storage error becomes a record
            res = ScanResult(
                path=path, threshold=self.det.threshold, model=self.det.name,
                error=_read_error(exc),
            )  # fmt: skip
        finally:
            if os.path.exists(local):
                os.unlink(local)
        res.path = path
        return res

    def __call__(self, batch: Any) -> dict[str, list]:
        """(pyarrow.Table batch) -> ``{"idx": [...], "record": [json, ...]}``."""
        cols = batch.to_pydict()  # pyarrow keeps nulls as None (numpy would make them NaN)
        n = len(cols["path"])
        data, errs = cols.get("data", [None] * n), cols.get("read_error", [None] * n)
        records = []
        for p, d, e in zip(cols["path"], data, errs, strict=True):
            r = self.scan_one(p, d, e)
            records.append(json.dumps(r.to_record(frame_scores=self.cfg.frame_scores)))
        return {"idx": cols["idx"], "record": records}


# -- driver ----------------------------------------------------------------------------------
def connect(address: str | None = None) -> Any:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``) or start a local one.

    An already initialised Ray (tests, notebooks) is used as it is.
    """
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(
                address=address, include_dashboard=False, log_to_driver=False,
                logging_level="WARNING", configure_logging=True,
            )  # fmt: skip
        except ConnectionError as exc:
            raise NoisetraceError(
                f"cannot reach a Ray cluster at {address!r} ({exc}); start one with `ray start "
                "--head`, or leave out --address to run a local Ray on this machine"
            ) from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws its own
    ctx.print_on_execution_start = False
    return ray


class _Seen:
    """Listing indices already written, as a growable bitmap (1 bit each: 125 kB a million)."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, i: int) -> bool:
        """Mark ``i``; False when it was marked before (a retried batch's duplicate)."""
        byte, bit = divmod(i, 8)
        if byte >= len(self.bits):
            # Grow at least twofold so marking a million indices reallocates ~20 times.
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
        if self.bits[byte] >> bit & 1:
            return False
        self.bits[byte] |= 1 << bit
        return True


def scan_ray(
    files: Iterable[str],
    config: WorkerConfig,
    *,
    actors: int | None = None,
    batch_size: int = 8,
    window: int = 200_000,
    worker_cls: type | None = None,
) -> Iterator[ScanResult]:
    """Scan ``files`` on the connected Ray cluster, yielding records as they finish.

    Order follows completion, not the input. ``actors`` defaults to one per CPU in the cluster
    (one per GPU when the detector runs on CUDA). ``window`` paths are handed to Ray at a time,
    so an endless listing never sits in memory whole; each window starts its actor pool anew
    (one model load per actor), which is why it is large. ``worker_cls`` (default
    :class:`ScanWorker`, looked up when called) is for tests that inject faults.
    """
    worker_cls = worker_cls or ScanWorker
    ray = require_ray()
    if not ray.is_initialized():
        connect(None)
    res = ray.cluster_resources()
    gpu = config.device.startswith("cuda") or (config.device == "auto" and res.get("GPU", 0) >= 1)
    if gpu and config.device == "auto":
        config = WorkerConfig(**{**asdict(config), "device": "cuda"})
    n = actors or max(1, int(res.get("GPU", 0) if gpu else res.get("CPU", 1)))
    if not gpu:
        config = WorkerConfig(**{**asdict(config), "threads": 1})
    seen = _Seen()
    it = iter(files)
    base = 0
    while chunk := list(islice(it, window)):
        rows = [{"idx": base + i, "path": p} for i, p in enumerate(chunk)]
        base += len(chunk)
        # Blocks of one batch: a failed worker re-runs one batch, and progress is smooth.
        ds = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / batch_size))
        if any(is_uri(p) for p in chunk):
            ds = ds.map_batches(
                read_objects, batch_size=batch_size, batch_format="pyarrow", num_cpus=0,
                compute=ray.data.TaskPoolStrategy(size=2 * n),
            )  # fmt: skip
        # Ray Data gives pool actors max_restarts=-1 and max_task_retries=-1.
        ds = ds.map_batches(
            worker_cls, fn_constructor_kwargs={"config": asdict(config)},
            batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=n),
            num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0,
        )  # fmt: skip
        for row in ds.iter_rows():
            if seen.add(int(row["idx"])):
                yield result_from_record(json.loads(row["record"]))


# -- the engine ------------------------------------------------------------------------------
class RayEngine:
    """``noisetrace scan --engine ray``: the listing of :func:`list_inputs` and the results of
    :func:`scan_ray`; the scan driver (:func:`noisetrace.scan.run_scan`) does the rest, as for
    the local engine.

    ``detector`` is the one the driver loaded (it validated the model and carries the
    threshold); actors load their own copy of the same model. Joins the cluster at
    ``options.address`` (or starts a local Ray) when built.
    """

    name = "ray"

    def __init__(self, detector: Detector, options: EngineOptions) -> None:
        from noisetrace.zoo import list_bundled, resolve

        model = str(options.model)
        if model not in list_bundled():
            model = str(resolve(model).resolve())  # a directory: the same absolute path on nodes
        self.config = WorkerConfig(
            model=model, device=options.device, threshold=detector.threshold,
            video_frames=options.video_frames, frame_scores=options.frame_scores,
        )  # fmt: skip
        connect(options.address)

    def list_inputs(self, paths: Iterable[str]) -> tuple[InputListing, Iterator[str]]:
        return list_inputs(paths)

    def results(self, files: Iterable[str]) -> Iterator[ScanResult]:
        return scan_ray(files, self.config)
