"""The web service: a REST API and a web page on top of the same scan code the CLI uses.

``create_app()`` builds a FastAPI app with

* ``POST /v1/scan``: multipart upload (field ``file``) of an image or a video -> the CLI's
  JSONL record (``ScanResult.to_record(frame_scores=True)``) plus the upload's ``sha256``;
* ``POST /v1/explain``: the same upload -> PNG of the local fake-probability heatmap over the
  image (the middle sampled frame for a video);
* ``GET /v1/models``, ``GET /healthz``, the OpenAPI spec at ``/openapi.json`` and the page at
  ``/``.

Both POSTs take an optional ``model`` (query parameter or form field): one of the names the
server offers (:class:`ModelSet`: the start-up model, the bundled ones, ``<start-up>+faces``
and any the operator added). Only names: a client never makes the server open a path.

Limits a public deployment needs are enforced here rather than left to a proxy: the upload is
streamed into a private temporary directory under a server-chosen name (the client's file name
is only echoed back as a label, never used as a path), refused with 413 as soon as it passes
``max_upload_mb``, identified by its content bytes (415 when it is neither image nor video),
scored in a bounded thread pool behind a bounded queue (503 when both are full, so load waits
on disk instead of exhausting memory), given ``timeout_s`` seconds in all (408 while uploading,
504 while scoring) and deleted when its work ends. Upload folders that a killed server left
behind are removed when the next one starts. Requests must name the server by an allowed host
(``allowed_hosts``; by default the bound address and localhost), so a web page that rebinds its
DNS name to 127.0.0.1 cannot reach it. There is no ``/docs`` page: Swagger UI would load its
scripts from a CDN, which the page's Content-Security-Policy blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from python_multipart.multipart import MultipartParser, parse_options_header

import noisetrace
from noisetrace.detector import Detector, DetectorConfig, read_config
from noisetrace.errors import InputError, ModelError
from noisetrace.media.formats import sniff

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Suffix given to a stored upload, from the format its bytes were sniffed as.
_SUFFIX = {
    "jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp", "tiff": ".tif",
    "bmp": ".bmp", "mp4": ".mp4", "avi": ".avi", "matroska": ".mkv", "avif": ".avif",
}  # fmt: skip
#: Host names a server answers to by default, besides the address it is bound to.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Upload roots are named after the server's process id, so a later start can tell the roots
#: of servers that were killed (-9 leaves them behind) from those of servers still running.
_ROOT_PREFIX = "noisetrace-serve-"
_ROOT_NAME = re.compile(rf"^{_ROOT_PREFIX}(\d+)-")
#: Roots without a process id (older versions) are removed once this old.
_STALE_UNKNOWN_S = 24 * 3600
#: Room in a request body for the multipart framing and small fields around the file.
_BODY_SLACK = 64 * 1024
#: Longest side of the PNG /v1/explain returns; the map itself is computed at full resolution.
_EXPLAIN_MAX_SIDE = 1600
#: Most frames a client may ask to be sampled from one video.
_MAX_FRAMES = 64
#: Small text fields read from the multipart body beside ``file`` (others are dropped), and
#: the most bytes one may hold: model names are short, a longer value is no name we offer.
_FORM_FIELDS = (b"model",)
_MAX_FIELD = 256
#: What a model judges, in words for people choosing one (by its input kind).
_PURPOSE = {"image": "whole image", "face": "faces only", "image+face": "whole image + faces"}

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "an image or a video; its type is read from its bytes",
                    },
                    "model": {
                        "type": "string",
                        "description": "a model name from GET /v1/models (default: the "
                        "server's start-up model); same as the query parameter",
                    },
                },
            }
        }
    },
}

_MODEL_PARAM = (
    "a model name from GET /v1/models `offered` (default: the start-up model); also accepted "
    "as the form field `model`"
)

T = TypeVar("T")


class UploadError(Exception):
    """A request that cannot be served, with the HTTP status and a message for the user."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


@dataclass
class Upload:
    """An upload stored in its private directory: ``path`` has a server-chosen name."""

    directory: Path
    path: Path
    label: str  # the client's file name, cleaned; shown to people, never opened
    kind: str
    size: int
    sha256: str
    fields: dict[str, str]  # the small text fields of _FORM_FIELDS that came with the file
    pixels: int = 0  # what decoding it may hold in memory at once (see ScanService.reserve)


def display_name(name: str | None) -> str:
    """The client's file name reduced to a harmless label (last component, printable, short)."""
    if not name:
        return "upload"
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return (base or "upload")[:200]


class _FilePart:
    """python-multipart callbacks that stream the part named ``file`` into an open file."""

    def __init__(self, out: io.BufferedWriter, limit: int) -> None:
        self.out, self.limit = out, limit
        self.size = 0
        self.filename: str | None = None
        self.found = False
        self._hash = hashlib.sha256()
        self._field, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._active = False
        self._done = False
        self.fields: dict[str, str] = {}
        self._text: bytes | None = None  # value of the _FORM_FIELDS part being read
        self._text_name = ""

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._field, self._value = {}, b"", b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        # Only the first part named "file" is kept; other fields are read and dropped.
        name = opts.get(b"name")
        self._active = name == b"file" and not self._done
        self._text = b"" if name in _FORM_FIELDS else None
        self._text_name = name.decode() if self._text is not None else ""
        if self._active:
            self.found = True
            raw = opts.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._text is not None:
            self._text += data[start:end]
            if len(self._text) > _MAX_FIELD:
                raise UploadError(422, f"the form field {self._text_name!r} is longer than "
                                  "any model name; send a name from GET /v1/models")  # fmt: skip
            return
        if not self._active:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadError(413, _too_large(self.limit))
        self._hash.update(chunk)
        self.out.write(chunk)

    def _part_end(self) -> None:
        if self._text is not None:
            self.fields[self._text_name] = self._text.decode("utf-8", "replace").strip()
            self._text = None
        if self._active:
            self._active, self._done = False, True


def _too_large(limit: int) -> str:
    return (
        f"upload is larger than this server's limit of {limit / 2**20:g} MB; send a smaller "
        "file (for a long video, a shorter clip) or ask the operator to raise --max-upload-mb"
    )


class ModelSet:
    """The models this server offers by name, each loaded on first use and then kept.

    Offered: the start-up model (under its own name; loaded before the server starts), the
    bundled models (``bundled``), the operator's ``offer`` (name -> model directory or
    Detector) and ``<start-up>+faces``, the start-up model with the face model named
    ``faces`` beside it (:mod:`noisetrace.combined`), when there is one and the start-up model
    judges whole images. Clients choose by name only: every name maps to a model the operator
    installed or configured, so no request can make the server open a directory it picks.
    The start-up model's name wins over a bundled or offered model of the same name.
    """

    def __init__(
        self,
        start: Detector,
        *,
        bundled: bool = True,
        offer: Mapping[str, str | Path | Detector] | None = None,
        device: str | None = "auto",
    ) -> None:
        from noisetrace.combined import WholeAndFaces
        from noisetrace.zoo import ZOO_DIR, list_bundled

        self.default = start.name
        self.device = device
        self._loaded: dict[str, Detector] = {}
        self._dirs: dict[str, Path] = {}  # offered, not loaded yet
        self._configs: dict[str, DetectorConfig] = {}
        for name in list_bundled() if bundled else []:
            try:
                self._configs[name] = read_config(ZOO_DIR / name)
                self._dirs[name] = ZOO_DIR / name
            except ModelError:  # a damaged bundled model is not offered; the rest still is
                continue
        for name, src in (offer or {}).items():
            self._dirs.pop(name, None)
            if isinstance(src, Detector):
                self._loaded[name] = src
            else:  # config.json only (cheap): a bad directory fails at start, not on a request
                self._configs[name] = read_config(Path(src))
                self._dirs[name] = Path(src)
        self._dirs.pop(self.default, None)
        self._loaded[self.default] = start
        faces = self._config("faces") if "faces" in self._names() else None
        self.combined: str | None = None
        if (faces is not None and faces.input == "face" and start.config.input != "face"
                and not isinstance(start, WholeAndFaces)):  # fmt: skip
            self.combined = f"{self.default}+faces"
        # One lock per name, made here: loads of different models do not wait for each other,
        # and two requests for the same unloaded model load it once.
        self._locks = {n: threading.Lock() for n in self.names()}

    def _names(self) -> set[str]:
        return set(self._loaded) | set(self._dirs)

    def names(self) -> list[str]:
        """Offered names: the start-up model, the combined one, then the rest sorted."""
        first = [self.default] + ([self.combined] if self.combined else [])
        return first + sorted(self._names() - set(first))

    def _config(self, name: str) -> DetectorConfig:
        det = self._loaded.get(name)
        return det.config if det is not None else self._configs[name]

    def check(self, name: str | None) -> str:
        """The offered name ``name`` means (the start-up model when empty); 422 otherwise."""
        if not name:
            return self.default
        if name in self._locks:
            return name
        if name.replace(" ", "+") in self._locks:  # ?model=default+faces: "+" reads as a space
            return name.replace(" ", "+")
        hint = (
            "a path cannot be chosen by a client; the operator can add a model directory "
            "with --offer NAME=DIR"
            if "/" in name or "\\" in name or name.startswith(".")
            else "see GET /v1/models"
        )
        raise UploadError(
            422,
            f"unknown model {name[:80]!r}: this server offers {', '.join(self.names())} "
            f"({hint})",
        )

    def get(self, name: str) -> Detector:
        """The loaded model ``name`` (an offered name), loading it the first time."""
        det = self._loaded.get(name)
        if det is not None:
            return det
        with self._locks[name]:
            det = self._loaded.get(name)
            if det is None:
                det = self._loaded[name] = self._load(name)
        return det

    def _load(self, name: str) -> Detector:
        from noisetrace.combined import WholeAndFaces

        try:
            if name == self.combined:
                return WholeAndFaces(self.get(self.default), self.get("faces"))
            return Detector.load(self._dirs[name], device=self.device)
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client gets the reason, the server lives
            raise UploadError(
                500,
                f"model {name!r} could not be loaded on this server ({exc}); choose another "
                "model or ask the operator to check its installation",
            ) from None

    def info(self, name: str) -> dict[str, Any]:
        """What /v1/models says about ``name``, without loading it."""
        det = self._loaded.get(name)
        start = self._loaded[self.default]
        if name == self.combined:
            cfg, face_cfg = start.config, self._config("faces")
            inp, explain = "image+face", _draws_map(start)
        else:
            cfg = self._config(name)
            whole_faces = getattr(det, "faces", None) if det is not None else None
            face_cfg = whole_faces.config if isinstance(whole_faces, Detector) else None
            inp = "image+face" if face_cfg is not None else cfg.input
            explain = _draws_map(det) if det is not None else None
        return {
            "name": name,
            "default": name == self.default,
            "purpose": _PURPOSE.get(inp, inp),
            "input": inp,
            "arch": "whole+faces" if name == self.combined else cfg.arch,
            "threshold": cfg.threshold,
            "face_threshold": face_cfg.threshold if face_cfg is not None else None,
            "video_frames": cfg.video_frames,
            "explain": explain,  # None: not known until the model is loaded
            "loaded": det is not None,
        }


class ScanService:
    """Holds the models, the worker pool, the admission count and the upload directory.

    Uploads: at most ``max_uploads`` bodies arrive at once, ``uploads_per_client`` from one
    address (429 beyond), and a body that sends nothing for ``idle_s`` seconds ends with 408;
    an arriving body holds no scoring slot, so slow or stalled clients cannot starve others.
    Memory: a file reserves the pixels its header declares before it is decoded, and the
    reservations of all workers together stay under ``max_pixels_at_once`` (a file waits for
    room), so ``--workers N`` cannot multiply the peak memory of one large file by N.
    Admission to scoring: at most ``workers + queue`` complete uploads are waiting or being
    scored at once; the next one gets 503 with Retry-After. A slot is freed only when the
    request's work has really ended: a scoring thread cannot be interrupted, so after a
    timeout the slot (and the upload on disk) stays taken until the thread finishes. That keeps
    the bounds true even when clients give up.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        models: ModelSet | None = None,
        max_upload_mb: float,
        workers: int,
        queue: int,
        timeout_s: float,
        max_uploads: int = 32,
        uploads_per_client: int = 4,
        idle_s: float = 15.0,
        max_pixels_at_once: int | None = None,
    ) -> None:
        if max_upload_mb <= 0:
            raise ValueError("max_upload_mb must be positive")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if queue < 0:
            raise ValueError("queue must be 0 or more")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.detector = detector  # the start-up model
        self.models = models if models is not None else ModelSet(detector, bundled=False)
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.workers, self.queue, self.timeout_s = workers, queue, timeout_s
        self.capacity = workers + queue
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="noisetrace-scan")
        self.stale_removed = remove_stale_upload_roots()
        # mkdtemp makes the directory mode 0700: other local users cannot read uploads.
        self.upload_root = Path(tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{os.getpid()}-"))
        self._lock = threading.Lock()
        self.inflight = 0
        self.running = 0
        self.served = 0
        # Uploads are admitted separately from scoring: a body still arriving holds an
        # upload slot, never a scoring slot, so stalled clients cannot starve good ones.
        self.max_uploads, self.uploads_per_client = max_uploads, uploads_per_client
        self.idle_s = idle_s  # longest wait for the next chunk of a body
        self.uploading: dict[str, int] = {}
        # Memory ceiling across workers: the pixels being decoded at once, summed over the
        # workers (each file reserves what its header declares before it is decoded).
        from noisetrace.media.image import pixel_budget

        self.max_pixels_at_once = max_pixels_at_once or pixel_budget()
        self.pixels_reserved = 0
        self._pixels_free = threading.Condition(self._lock)

    # -- admission -------------------------------------------------------------------------
    def admit(self) -> None:
        with self._lock:
            if self.inflight >= self.capacity:
                raise UploadError(
                    503,
                    f"server is busy ({self.inflight} requests in progress, limit "
                    f"{self.capacity}); retry in a few seconds",
                    headers={"Retry-After": "5"},
                )
            self.inflight += 1

    def admit_upload(self, client: str) -> None:
        """An upload slot for ``client`` (its address): 429 past the per-client cap, 503
        past the server's."""
        with self._lock:
            if self.uploading.get(client, 0) >= self.uploads_per_client:
                raise UploadError(
                    429,
                    f"too many uploads from your address at once (limit "
                    f"{self.uploads_per_client}); wait for one to finish",
                    headers={"Retry-After": "5"},
                )
            if sum(self.uploading.values()) >= self.max_uploads:
                raise UploadError(
                    503,
                    f"server is receiving {self.max_uploads} uploads already; retry in a few "
                    "seconds",
                    headers={"Retry-After": "5"},
                )
            self.uploading[client] = self.uploading.get(client, 0) + 1

    def release_upload(self, client: str) -> None:
        with self._lock:
            n = self.uploading.get(client, 0) - 1
            if n > 0:
                self.uploading[client] = n
            else:
                self.uploading.pop(client, None)

    @contextmanager
    def reserve(self, pixels: int, deadline: float) -> Iterator[None]:
        """Hold ``pixels`` of the memory ceiling while decoding and scoring (in a worker
        thread): waits while the other workers hold too much, 504 at the deadline. A file
        larger than the whole ceiling runs alone."""
        need = min(max(0, pixels), self.max_pixels_at_once)
        with self._pixels_free:
            while self.pixels_reserved + need > self.max_pixels_at_once:
                left = deadline - time.monotonic()
                if left <= 0 or not self._pixels_free.wait(left):
                    raise UploadError(504, "the server's memory was taken by other files for "
                                      f"the whole {self.timeout_s:g} s limit; retry later")
            self.pixels_reserved += need
        try:
            yield
        finally:
            with self._pixels_free:
                self.pixels_reserved -= need
                self._pixels_free.notify_all()

    def release(self, upload: Upload | None) -> None:
        if upload is not None:
            shutil.rmtree(upload.directory, ignore_errors=True)
        with self._lock:
            self.inflight -= 1
            self.served += 1

    # -- upload ----------------------------------------------------------------------------
    async def receive(self, request: Request) -> Upload:
        """Stream the multipart field ``file`` to disk, sniff it and give it a safe name."""
        ctype = request.headers.get("content-type", "")
        mime, opts = parse_options_header(ctype)
        if mime != b"multipart/form-data" or not opts.get(b"boundary"):
            raise UploadError(
                415,
                "send the file as multipart/form-data in a field named 'file' "
                f"(got Content-Type {ctype or 'none'!r}), e.g. "
                "curl -F file=@photo.jpg http://HOST/v1/scan",
            )
        body_limit = self.max_upload_bytes + _BODY_SLACK
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > body_limit:
            raise UploadError(413, _too_large(self.max_upload_bytes))

        directory = Path(tempfile.mkdtemp(dir=self.upload_root))
        try:
            part_path = directory / "upload.part"
            with open(part_path, "wb") as out:
                part = _FilePart(out, self.max_upload_bytes)
                parser = MultipartParser(opts[b"boundary"], part.callbacks())
                received = 0
                chunks = request.stream().__aiter__()
                try:
                    while True:
                        try:  # a per-connection read deadline: a stalled body ends here
                            chunk = await asyncio.wait_for(anext(chunks), self.idle_s)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            raise UploadError(
                                408, f"the upload stalled: no data for {self.idle_s:g} s"
                            ) from None
                        received += len(chunk)
                        if received > body_limit:
                            raise UploadError(413, _too_large(self.max_upload_bytes))
                        parser.write(chunk)
                    parser.finalize()
                except UploadError:
                    raise
                except Exception as exc:  # python-multipart raises its own error types
                    raise UploadError(400, f"the multipart body is malformed ({exc})") from None
            if not part.found:
                raise UploadError(
                    422, "no file in the request: send it in a multipart field named 'file'"
                )
            try:
                kind, fmt = sniff(part_path)
            except InputError as exc:
                raise UploadError(415, str(exc)) from None
            from noisetrace.media.image import MAX_FRAME_PIXELS, check_budget

            pixels = MAX_FRAME_PIXELS  # a video: one frame's budget at a time per batch row
            if kind == "image":  # over the decoding budget: refused before it takes a worker
                try:
                    pixels = await asyncio.to_thread(check_budget, part_path)
                except InputError as exc:
                    raise UploadError(413, str(exc)) from None
            path = directory / ("upload" + _SUFFIX.get(fmt, ".bin"))
            part_path.rename(path)
            return Upload(
                directory, path, display_name(part.filename), kind, part.size, part.sha256,
                part.fields, pixels,
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    # -- work ------------------------------------------------------------------------------
    async def run(self, fn: Callable[[], T], deadline: float) -> T:
        """Run ``fn`` in the pool; 504 when it does not finish before ``deadline``."""
        loop = asyncio.get_running_loop()

        def counted() -> T:
            with self._lock:
                self.running += 1
            try:
                return fn()
            finally:
                with self._lock:
                    self.running -= 1

        fut = loop.run_in_executor(self.pool, counted)
        try:
            left = max(0.0, deadline - time.monotonic())
            return await asyncio.wait_for(asyncio.shield(fut), left)
        except TimeoutError:
            raise _Late(fut) from None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": self.workers,
                "running": self.running,
                "in_progress": self.inflight,
                "capacity": self.capacity,
                "uploading": sum(self.uploading.values()),
                "pixels_reserved": self.pixels_reserved,
                "max_pixels_at_once": self.max_pixels_at_once,
                "served": self.served,
            }

    def limits(self) -> dict[str, Any]:
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "timeout_s": self.timeout_s,
            "max_frames": _MAX_FRAMES,
        }

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.upload_root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return False
    return True


def remove_stale_upload_roots(parent: str | Path | None = None) -> list[Path]:
    """Delete upload folders (``upload.part`` files and all) that servers killed without
    clean-up left in ``parent`` (the temporary directory): those of this user whose server
    process no longer runs. Returns what was removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        if not e.name.startswith(_ROOT_PREFIX):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not e.is_dir(follow_symlinks=False) or st.st_uid != os.getuid():
                continue
        except OSError:
            continue
        m = _ROOT_NAME.match(e.name)
        stale = not _alive(int(m.group(1))) if m else now - st.st_mtime > _STALE_UNKNOWN_S
        if stale:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def _host_name(header: str) -> str:
    """The host part of a Host header: ``[::1]:8000`` -> ``::1``, ``Example.org.:80`` ->
    ``example.org``."""
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1 : h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def allowed_host_set(hosts: Iterable[str] | None) -> frozenset[str] | None:
    """Normalised allow-list for the Host header; None (no check) when it holds ``*``."""
    names = {_host_name(h) for h in (hosts or ())} | set(LOCAL_HOSTS)
    return None if "*" in names else frozenset(names)


class _Late(Exception):
    """The work did not finish in time; ``future`` is still running in the pool."""

    def __init__(self, future: asyncio.Future) -> None:
        super().__init__("timed out")
        self.future = future


def _draws_map(det: Any) -> bool:
    """Whether /v1/explain draws a picture for this model: a heatmap (spatial features), an
    occlusion map (models fitted on frozen features) or a face + background model's noise
    traces."""
    from noisetrace.heads.detector import has_network

    return (not has_network(det) or hasattr(det.model, "forward_features")
            or bool(getattr(det, "pairs", False)))  # fmt: skip


def _explain_png(det: Detector, upload: Upload, alpha: float, window: int, view: str,
                 frame: dict[str, Any] | None = None) -> bytes:  # fmt: skip
    """(H, W) heatmap of the upload blended over it (or alone), as PNG bytes. For a video,
    the frame `noisetrace explain` shows (the most suspicious sampled one); ``frame`` gets
    what it is (index, time, scores)."""
    from PIL import Image

    from noisetrace.explain.heatmap import colormap, overlay
    from noisetrace.explain.report import explained_frame, region_map, resolve_method
    from noisetrace.media.image import load_image

    if upload.kind == "image":
        img = load_image(upload.path)
    else:
        img, info, _ = explained_frame(det, upload.path)
        if frame is not None:
            frame.update(info)
    if det.pairs:  # a face + background model: the face vs background noise figure
        from noisetrace.explain.report import pair_traces

        return pair_traces(det, img, "face vs background noise")[0]
    method = resolve_method(det, "heatmap")  # `noisetrace explain`'s choice for this model
    if method not in ("heatmap", "occlusion"):  # IG takes minutes: not served (501)
        raise ModelError(f"model {det.config.arch!r} has no spatial features to map")
    prob, _ = region_map(det, img, method, window=window)
    if frame is not None and method != "heatmap":
        frame["method"] = method
    out = overlay(img, prob, alpha=alpha) if view == "overlay" else colormap(prob)
    im = Image.fromarray(out)
    if max(im.size) > _EXPLAIN_MAX_SIDE:  # the PNG is for eyes; the map was full resolution
        im.thumbnail((_EXPLAIN_MAX_SIDE, _EXPLAIN_MAX_SIDE), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _security_headers(response: Response) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )


def create_app(
    model: str | Path | Detector = "default",
    max_upload_mb: float = 200,
    workers: int = 2,
    timeout_s: float = 120,
    *,
    queue: int = 8,
    device: str | None = "auto",
    allowed_hosts: Iterable[str] | None = None,
    bundled: bool = True,
    offer: Mapping[str, str | Path | Detector] | None = None,
    max_uploads: int = 32,
    uploads_per_client: int = 4,
    idle_s: float = 15.0,
    max_pixels_at_once: int | None = None,
) -> FastAPI:
    """Build the service for ``model`` (a bundled name, a model directory or a Detector).

    ``max_upload_mb``: largest accepted file; ``workers``: files scored at once; ``queue``:
    requests allowed to wait beyond those; ``timeout_s``: limit per request, upload included;
    ``max_uploads``, ``uploads_per_client``, ``idle_s``: upload limits; ``max_pixels_at_once``:
    the memory ceiling across workers (default: the decoding budget, --max-pixels); see
    :class:`ScanService`.
    ``allowed_hosts``: names the Host header may carry besides 127.0.0.1, localhost and ::1
    (``serve`` adds the address it listens on and ``--allowed-host``); any other is refused
    with 400, so a web page that rebinds its DNS name to this machine cannot use the service.
    ``"*"`` turns the check off.
    Clients may choose another model by name (:class:`ModelSet`): the bundled ones unless
    ``bundled`` is False, ``offer``'s (name -> model directory or Detector) and
    ``<model>+faces``.
    Raises :class:`~noisetrace.errors.ModelError` when the model cannot be loaded, so a bad
    ``--model`` fails at start-up rather than on the first request.
    """
    hosts = allowed_host_set(allowed_hosts)
    if isinstance(model, Detector):
        det = model
    else:
        from noisetrace.zoo import load_detector

        det = load_detector(model, device=device)
    models = ModelSet(det, bundled=bundled, offer=offer, device=device)
    svc = ScanService(
        det, models=models, max_upload_mb=max_upload_mb, workers=workers, queue=queue,
        timeout_s=timeout_s, max_uploads=max_uploads, uploads_per_client=uploads_per_client,
        idle_s=idle_s, max_pixels_at_once=max_pixels_at_once,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(
        title="noisetrace",
        version=noisetrace.__version__,
        description=(
            "Tell real images and videos from deepfakes and AI-generated ones by their noise "
            "residuals. Upload a file as multipart field `file`."
        ),
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN, which the page's CSP (rightly)
        # blocks: the spec stays at /openapi.json for any OpenAPI viewer.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = svc
    app.state.allowed_hosts = hosts

    @app.middleware("http")
    async def headers(request: Request, call_next):
        host = request.headers.get("host", "")
        if hosts is not None and _host_name(host) not in hosts:
            response: Response = JSONResponse(
                {
                    "detail": f"this server does not answer to the host name {host!r} (a "
                    "guard against DNS rebinding); use one of "
                    f"{', '.join(sorted(hosts))}, or restart it with --allowed-host NAME"
                },
                status_code=400,
            )
        else:
            response = await call_next(request)
        _security_headers(response)
        return response

    async def guarded(
        request: Request, model: str | None, work: Callable[[Upload, Detector], T]
    ) -> T:
        """Receive (an upload slot: per-client and server caps, a read deadline per chunk),
        then admit the complete body to scoring and run ``work(upload, detector)`` in the pool
        with the model chosen by the query (``model``) or the form field; free everything
        when it ends."""
        deadline = time.monotonic() + svc.timeout_s
        name = svc.models.check(model)  # before admission: a bad name costs no upload
        client = request.client.host if request.client else "unknown"
        svc.admit_upload(client)
        try:
            try:
                upload = await asyncio.wait_for(
                    svc.receive(request), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise UploadError(
                    408, f"the upload did not arrive within the {svc.timeout_s:g} s limit"
                ) from None
        finally:
            svc.release_upload(client)
        # Only a complete body takes a scoring slot (503 when they are all taken).
        try:
            svc.admit()
        except UploadError:
            shutil.rmtree(upload.directory, ignore_errors=True)
            raise
        try:
            form = upload.fields.get("model")
            if form and model and form != model:
                raise UploadError(
                    422, f"two models asked for: {model!r} (query) and {form!r} (form); send one"
                )
            if form:
                name = svc.models.check(form)
            # Loading a model the first time runs in the pool too, under the same deadline.
            def reserved() -> T:
                with svc.reserve(upload.pixels, deadline):
                    return work(upload, svc.models.get(name))

            result = await svc.run(reserved, deadline)
        except _Late as late:
            # The thread runs on; its slot and upload are freed when it really ends.
            late.future.add_done_callback(lambda _f, u=upload: svc.release(u))
            raise UploadError(
                504,
                f"scanning took longer than this server's {svc.timeout_s:g} s limit; try a "
                "shorter video or a smaller image, or ask the operator to raise --timeout",
            ) from None
        except BaseException:
            svc.release(upload)
            raise
        svc.release(upload)
        return result

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status == 413:
            # The rest of the body is not read: say so, so clients do not reuse the socket.
            headers["Connection"] = "close"
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.post(
        "/v1/scan",
        summary="Scan an image or a video",
        openapi_extra={"requestBody": _UPLOAD_BODY},
        responses={
            200: {"description": "the scan record (verdict real or fake)"},
            400: {"description": "malformed multipart body"},
            413: {"description": "upload larger than --max-upload-mb, or an image declaring "
                  "more pixels than the decoding budget"},
            415: {"description": "not multipart, or the content is not an image or video"},
            422: {"description": "the file could not be decoded (the record says why), or "
                  "`model` is not a name this server offers (the message lists them)"},
            503: {"description": "server busy; retry after the Retry-After header"},
            504: {"description": "scanning exceeded --timeout"},
        },
    )
    async def scan(
        request: Request,
        frames: int | None = Query(
            None, ge=1, le=_MAX_FRAMES, description="frames sampled per video (model default)"
        ),
        model: str | None = Query(None, description=_MODEL_PARAM),
    ) -> JSONResponse:
        """Scan one upload; the JSON has the fields of `noisetrace scan --jsonl` records plus
        `frame_scores` (per sampled frame, videos) and `sha256` of the upload. A file that
        looks like media but cannot be decoded gets status 422 with the same record, whose
        `error` says why."""
        from noisetrace.scan import scan_paths

        def work(upload: Upload, det: Detector) -> dict[str, Any]:
            (res,) = list(scan_paths(det, [str(upload.path)], video_frames=frames))
            res.path = upload.label  # never echo the server's temporary path
            rec = res.to_record(frame_scores=True)
            rec["sha256"] = upload.sha256
            return rec

        rec = await guarded(request, model, work)
        if rec["verdict"] == "error":
            return JSONResponse({**rec, "detail": rec["error"]}, status_code=422)
        return JSONResponse(rec)

    @app.post(
        "/v1/explain",
        summary="Heatmap of where the detector sees fake noise",
        openapi_extra={"requestBody": _UPLOAD_BODY},
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "PNG heatmap"},
            413: {"description": "upload larger than --max-upload-mb"},
            415: {"description": "not multipart, or the content is not an image or video"},
            422: {"description": "the file could not be decoded, or an unknown `model`"},
            501: {"description": "the model's network has no spatial features to map"},
        },
    )
    async def explain(
        request: Request,
        alpha: float = Query(0.45, ge=0.0, le=1.0, description="heatmap opacity over the image"),
        window: int = Query(64, ge=8, le=1024, description="side of each local window, pixels"),
        view: str = Query("overlay", pattern="^(overlay|map)$", description="overlay or map"),
        model: str | None = Query(None, description=_MODEL_PARAM),
    ) -> Response:
        """PNG of local fake probabilities (blue real, yellow 0.5, red fake) over the image;
        for a video, over its most suspicious sampled frame, as `noisetrace explain` shows it
        (headers ``X-Explained-Frame`` and ``X-Explained-Time`` name it). Models fitted on
        frozen features get the occlusion map of `noisetrace explain` instead (header
        ``X-Explain-Method``: ``heatmap`` or ``occlusion``). Long sides above
        1600 px are shrunk.
        With a whole image + faces model, the whole-image model's map."""
        from noisetrace.combined import WholeAndFaces

        frame: dict[str, Any] = {}

        def work(upload: Upload, det: Detector) -> bytes:
            # Whole image + faces: the map is the whole-image model's (faces have no map).
            whole = det.whole if isinstance(det, WholeAndFaces) else det
            return _explain_png(whole, upload, alpha, window, view, frame)

        try:
            png = await guarded(request, model, work)
        except InputError as exc:
            raise UploadError(422, str(exc)) from None
        except ModelError as exc:
            raise UploadError(501, f"{exc}; /v1/scan still works with this model") from None
        headers = {"Cache-Control": "no-store",
                   "X-Explain-Method": frame.pop("method", "heatmap")}  # fmt: skip
        if frame:  # which frame of a video the map shows (the page names it)
            headers["X-Explained-Frame"] = str(frame["index"])
            if frame.get("time") is not None:
                headers["X-Explained-Time"] = f"{frame['time']:.3f}"
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/v1/models", summary="The models a client may choose, and the start-up one")
    def list_models() -> dict[str, Any]:
        """`offered`: every name `model` may take, with what it judges (`purpose`, `input`),
        its threshold(s) and whether it draws a heatmap (`explain`; null until loaded);
        `active`: the start-up model, used when no `model` is sent."""
        from noisetrace import models
        from noisetrace.zoo import list_bundled

        d = svc.detector
        return {
            "active": {
                "name": d.name,
                "arch": d.config.arch,
                "threshold": d.threshold,
                "calibration": d.config.calibration,
                "video_frames": d.config.video_frames,
                "input": d.cfg.get("input"),
                "explain": _draws_map(d),
            },
            "default_model": svc.models.default,
            "offered": [svc.models.info(n) for n in svc.models.names()],
            "bundled": list_bundled(),
            "architectures": models.list_models(),
            "limits": svc.limits(),
        }

    @app.get("/healthz", summary="Liveness and load")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": svc.detector.name, **svc.status()}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests and benchmarks)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])

