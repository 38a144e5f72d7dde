"""mqkv: packed low-bit KV-cache snapshots (a Python layer over libmqkv).

Reading::

    import mqkv
    with mqkv.open("prefix.mqkv") as snap:
        print(snap.model.architecture, len(snap.model.tokens), "tokens")
        k0 = snap.decode(0, "k", rows=slice(0, 128), dtype="float32")   # [tokens, heads, head_dim]

Writing, converting, verifying, measuring::

    with mqkv.Writer("out.mqkv", model=snap.model) as w:
        w.add(0, "k", k0, codec="affine_seven_level_3bit_g64_meta4")
    mqkv.convert("state.bin", "prefix.mqkv", codec="turbo3")
    report = mqkv.verify("prefix.mqkv", reference="state.bin")      # mqverify --json, parsed
    q = mqkv.quantize(k0, "affine:bits=2,group=64")                  # decoded array + real bytes

Arrays are numpy arrays; they speak DLPack (``torch.from_dlpack(a)``) without this package
linking torch. Errors are :class:`mqkv.Error` subclasses. Calls that read, decode, encode or write
release the GIL. llama.cpp (llama-cpp-python) in memory: :mod:`mqkv.llama`.
"""
from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from . import _mqkv as _ext
from ._errors import ChecksumMismatch, Error, FormatError, InvalidArgument, IoError, OutOfRange, Unsupported

__all__ = [
    "__version__", "FORMAT_VERSION", "Model", "TensorInfo", "Snapshot", "open", "Writer", "convert", "verify",
    "quantize", "Quantized", "CodecSpec", "presets", "simd_archs", "active_simd_arch",
    "Error", "InvalidArgument", "OutOfRange", "FormatError", "ChecksumMismatch", "Unsupported", "IoError",
]

__version__: str = _ext.__version__
if _ext.simd_env_warning():  # MQKV_SIMD names an ISA this machine lacks (the library never prints)
    import warnings as _warnings
    _warnings.warn(_ext.simd_env_warning(), RuntimeWarning, stacklevel=2)
#: The newest (major, minor) format version this build reads and writes (spec/FORMAT.md).
FORMAT_VERSION: tuple[int, int] = tuple(_ext.FORMAT_VERSION)  # type: ignore[assignment]

#: What a snapshot records about the model and the cached prefix: architecture, n_layer, n_head,
#: n_head_kv, head_dim_k, head_dim_v, rope_type, rope_base, k_rope ("pre"/"post"/"unknown"),
#: source_engine, source_engine_version, source_format, tokens / positions / seq_ids (int32
#: arrays; assign any sequence of ints), metadata (dict of str to str). Build one with Model().
Model = _ext.Model

_KINDS = ("k", "v", "q")
_DTYPES = {"float32": "float32", "f32": "float32", "float16": "float16", "f16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a snapshot: a layer's K, V or (reference) Q rows."""

    index: int          #: position in Snapshot.tensors
    layer: int
    kind: str           #: "k", "v" or "q"
    n_tokens: int
    n_heads: int
    head_dim: int
    codec: str          #: canonical codec spec string (spec/CODECS.md)
    n_blocks: int
    source_dtype: str   #: what the rows were before encoding ("f16", "q8_0", ...; "" unknown)
    stored_bytes: int   #: every file byte the tensor owns (block headers, payload, alignment)
    positions: tuple[int, ...] = ()  #: Q tensors: the token position of each stored query row

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_tokens, n_heads, head_dim): the shape decode() returns for all rows."""
        return (self.n_tokens, self.n_heads, self.head_dim)


def _dtype_name(dtype: Any) -> str:
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in _DTYPES:
        raise InvalidArgument(f'dtype "{name}": expected float32, float16 or bfloat16')
    return _DTYPES[name]


class Snapshot:
    """An open mqkv file (or s3:// / http(s):// object). Lazy: opening reads the header, footer
    and index; each block is read and checked on first use (a local file is memory-mapped).

    Use as a context manager, or call close(). Arrays returned as zero-copy views keep the file
    mapped after close() until they are dropped.
    """

    def __init__(self, path: str, *, verify: bool = False):
        """Opens `path`; verify=True also checks every block's header and checksum now."""
        self._s = _ext.Snapshot.open(str(path), verify)
        self._tensors: list[TensorInfo] | None = None

    # context manager and lifetime
    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Releases the snapshot (zero-copy arrays already taken stay valid)."""
        self._s.close()

    @property
    def closed(self) -> bool:
        return self._s.closed

    def __repr__(self) -> str:
        if self.closed:
            return "<mqkv.Snapshot closed>"
        return f"<mqkv.Snapshot {self.path!r}: {len(self.tensors)} tensors, {self.file_bytes} bytes>"

    # facts
    @property
    def path(self) -> str:
        return self._s.path

    @property
    def file_bytes(self) -> int:
        return self._s.file_bytes

    @property
    def version(self) -> tuple[int, int]:
        """The file's format version (major, minor)."""
        return tuple(self._s.version)  # type: ignore[return-value]

    @property
    def model(self) -> Model:
        """The model facts and the cached prefix's tokens (a copy)."""
        return self._s.model

    @property
    def tensors(self) -> list[TensorInfo]:
        """Every tensor in file order (reads the block headers once, for stored_bytes)."""
        if self._tensors is None:
            stored = self._s.stored_bytes()
            self._tensors = [
                TensorInfo(i, d["layer"], d["kind"], d["n_tokens"], d["n_heads"], d["head_dim"], d["codec"],
                           d["n_blocks"], d["source_dtype"], int(stored[i]), tuple(int(p) for p in d["positions"]))
                for i, d in enumerate(self._s.tensor_infos())
            ]
        return self._tensors

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors)

    def find(self, layer: int, kind: str = "k") -> TensorInfo | None:
        """The tensor of (layer, kind), or None."""
        i = self._s.find(int(layer), kind)
        return None if i is None else self.tensors[i]

    def io_stats(self) -> dict[str, int]:
        """Requests made and bytes fetched so far (zero for local files)."""
        return self._s.io_stats()

    def default_dtype(self, t: TensorInfo) -> str:
        """The dtype decode() uses when none is given: the stored type of a raw tensor, else its
        source dtype when that is f16 or bf16, else float32."""
        base = t.codec.split(":")[0]
        for raw in (base, t.source_dtype):
            if raw in ("f32", "f16", "bf16"):
                return _DTYPES[raw]
        return "float32"

    def decode(self, layer: int, kind: str = "k", rows: slice | None = None, dtype: Any = None, *,
               copy: bool = False, backend: str = "auto", threads: int = 1) -> np.ndarray:
        """Rows of one tensor as an array [rows, heads, head_dim].

        rows: a slice of token rows (step 1; negative bounds count from the end); all rows when None.
        dtype: "float32", "float16" or "bfloat16" (numpy has no bfloat16: its bits come back as
        uint16); default: see default_dtype(). Reads only the blocks that hold the rows.
        A raw tensor (f32/f16/bf16 codec) asked for in its own type, with the rows inside one
        uncompressed block of a local file, comes back zero-copy: a read-only view of the mapped
        file that keeps it mapped (copy=True gives a decoded copy instead).
        backend: "auto", "scalar", "simd" or "cuda" (all bit-identical; spec/CODECS.md).
        threads: decode on this many threads (0: all cores; the rows are split into one range per
        thread, at least 64 rows each), for restores that want the machine's memory bandwidth;
        the result is the same for every count. The GIL is released while decoding.
        """
        t = self.find(layer, kind)
        if t is None:
            raise OutOfRange(f"{self.path}: no {kind} tensor for layer {layer}")
        r0, r1 = 0, t.n_tokens
        if rows is not None:
            if not isinstance(rows, slice):
                raise InvalidArgument("rows: expected a slice, e.g. slice(0, 128)")
            r0, r1, step = rows.indices(t.n_tokens)
            if step != 1:
                raise InvalidArgument("rows: only step 1 is supported")
            r1 = max(r0, r1)
        name = self.default_dtype(t) if dtype is None else _dtype_name(dtype)
        if threads < 0:
            raise InvalidArgument(f"threads: expected 0 (all cores) or more, got {threads}")
        arr, _view = self._s.decode(t.index, r0, r1, name, not copy, backend, threads)
        return arr

    def is_view(self, array: np.ndarray) -> bool:
        """True when `array` shares memory with this snapshot's mapping (a zero-copy decode)."""
        return not array.flags.owndata and not array.flags.writeable


def open(path: str, *, verify: bool = False) -> Snapshot:  # noqa: A001 (mirrors builtins.open)
    """Opens an mqkv snapshot (a path, or an s3:// / http(s):// URL); see Snapshot."""
    return Snapshot(path, verify=verify)


def _rows3(array: Any, name: str = "array") -> tuple[np.ndarray, tuple[int, ...]]:
    """array as C-contiguous float32 [tokens, heads, head_dim] (a 2-D [tokens, dim] is one head)."""
    a = np.asarray(array)
    shape = a.shape
    if a.ndim == 2:
        a = a.reshape(a.shape[0], 1, a.shape[1])
    if a.ndim != 3:
        raise InvalidArgument(f"{name}: expected [tokens, heads, head_dim] (or [tokens, dim]), got shape {shape}")
    if a.dtype.kind != "f":
        raise InvalidArgument(f"{name}: expected floating-point values, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32), shape


class Writer:
    """Writes an mqkv snapshot atomically: blocks stream to a temporary file beside `path`;
    finish() writes the index, fsyncs and renames. Leaving a `with` block normally finishes;
    leaving it by an exception (or abandon()) removes the temporary file, so `path` keeps its
    previous contents or gets a complete new file, never a half-written one.
    """

    def __init__(self, path: str, model: Model | None = None, *, zstd: int = 0, max_block_tokens: int = 0,
                 fsync: bool = True):
        """zstd: 0 or a level 1..22 (kept only where it saves bytes); max_block_tokens: split
        tensors into blocks of at most this many rows (0: one block per tensor)."""
        self._w = _ext.Writer(str(path), zstd, max_block_tokens, fsync)
        if model is not None:
            self._w.set_model(model)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abandon()

    @property
    def path(self) -> str:
        return self._w.path

    def set_model(self, model: Model) -> None:
        """The model facts and tokens to record (may be called any time before finish())."""
        self._w.set_model(model)

    def add(self, layer: int, kind: str, array: Any, codec: str = "f16", *, positions: Sequence[int] | None = None,
            source_dtype: str | None = None) -> None:
        """Encodes one tensor: array [tokens, heads, head_dim] (any float dtype, or anything
        numpy.asarray takes: a CPU torch tensor), kind "k", "v" or "q" (q needs positions: the
        token index of each query row), codec a spec string or preset name (spec/CODECS.md).
        source_dtype defaults to the array's dtype name when it is float16 (recorded as "f16")."""
        a, _ = _rows3(array)
        if source_dtype is None:
            dt = np.asarray(array).dtype
            source_dtype = {"float16": "f16", "float32": "f32"}.get(dt.name, "")
        self._w.add(int(layer), kind, a, codec, None if positions is None else [int(p) for p in positions], source_dtype)

    def finish(self) -> None:
        """Writes the index and tail, fsyncs and renames over the path."""
        self._w.finish()

    def abandon(self) -> None:
        """Drops everything written so far (the temporary file is removed)."""
        self._w.abandon()


def convert(src: str, dst: str, *, codec: str | None = None, k_codec: str | None = None, v_codec: str | None = None,
            tokens: tuple[int, int] | None = None, src_format: str | None = None, dst_format: str | None = None,
            zstd: int = 0, max_block_tokens: int = 0, dtype: str | None = None, llama_type_k: str | None = None,
            llama_type_v: str | None = None, head_dim_k: int = 0, head_dim_v: int = 0, threads: int = 0,
            fsync: bool = True, target_bits: float | None = None, rate_levels: Sequence[int] | None = None,
            rate_distortion: str | None = None, rate_queries: str | None = None, rope_type: str | None = None,
            rope_base: float | None = None) -> dict[str, Any]:
    """What `mqconvert SRC DST` does, with the same options (spec/INTEROP.md, spec/LLAMA.md).

    Formats: mqkv, safetensors, npy, npz, llama-session, llama-seq, llama-state, llama-seq-state
    (src from its bytes, dst from its extension, unless given). tokens=(first, end) keeps rows
    first..end-1. The default codec is lossless. target_bits: rate control (mqconvert
    --target-bits, README "Rate control"), with rate_levels / rate_distortion / rate_queries as
    --rate-levels / --rate-distortion / --rate-queries. rope_type ("norm" / "neox") and rope_base:
    the RoPE facts of an input that does not record them (llama.cpp state files), which prerope=1
    codecs need (mqconvert --rope-type / --rope-base). Returns a summary dict (formats, tensors,
    layers, tokens, k_codec, v_codec)."""
    return _ext.convert(str(src), str(dst), codec=codec, k_codec=k_codec, v_codec=v_codec, tokens=tokens,
                        src_format=src_format, dst_format=dst_format, zstd=zstd, max_block_tokens=max_block_tokens,
                        dtype=dtype, llama_type_k=llama_type_k, llama_type_v=llama_type_v, head_dim_k=head_dim_k,
                        head_dim_v=head_dim_v, threads=threads, fsync=fsync, target_bits=target_bits,
                        rate_levels=None if rate_levels is None else [int(x) for x in rate_levels],
                        rate_distortion=rate_distortion, rate_queries=rate_queries, rope_type=rope_type,
                        rope_base=rope_base)


def verify(path: str, reference: str | None = None, *, reference_format: str | None = None,
           positions: Sequence[float] | None = None, backends: str = "all", threads: int = 0,
           compare: str = "sample") -> dict[str, Any]:
    """What `mqverify --json PATH [--reference REF]` prints, as a dict (spec/MEASURE.md):
    checksums, accounting (actual bytes against modeled bits), backend agreement and, with a
    reference in any format convert() reads, fidelity. A problem found (a checksum mismatch, a
    disagreeing backend) is in the report (checksums_ok, backends_ok, accounting_ok); only a
    file that cannot be read raises. threads: as mqverify --threads (0: all cores; same report).
    compare: as mqverify --compare, "sample" (each block's first and last 64 rows compared with
    the scalar reference, every row decoded) or "all" (every row compared)."""
    text = _ext.verify_json(str(path), "" if reference is None else str(reference), reference_format or "",
                            [float(p) for p in positions] if positions else [], backends, threads, compare)
    return _json.loads(text)


class Quantized(NamedTuple):
    """What quantize() returns."""

    array: np.ndarray   #: the decoded values, the input's shape, in the asked dtype
    stored_bytes: int   #: every byte the array's blocks own in a file (headers, payload, alignment)
    bits_per_value: float  #: 8 x stored_bytes / values, the measured cost
    info: dict          #: codec (canonical), values, blocks, modeled_bits_per_value, breakdown


def quantize(array: Any, codec: str, *, dtype: Any = "float32", kind: str = "k") -> Quantized:
    """Encodes `array` ([tokens, heads, head_dim] or [tokens, dim]) with `codec` through the real
    writer into an in-memory snapshot, reads it back and decodes it: the real replacement for fake
    quantization. The bytes are measured, not modeled."""
    a, shape = _rows3(array)
    out, info = _ext.quantize(a, codec, _dtype_name(dtype), kind)
    return Quantized(out.reshape(shape), int(info["stored_bytes"]), float(info["bits_per_value"]), info)


class CodecSpec:
    """A parsed codec spec string (spec/CODECS.md, "Spec strings"): str() is its canonical form,
    which parses back to the same spec; fields are attributes (codec, bits, group, axis,
    meta_bits, rotation, seed, sinks, residual, prerope, levels, thresholds, fit)."""

    def __init__(self, text: str):
        self._canonical = _ext.parse_codec(text)
        self._fields = _ext.codec_fields(text)

    @classmethod
    def parse(cls, text: str) -> "CodecSpec":
        """Parses a spec string or preset name; InvalidArgument when it is not one."""
        return cls(text)

    @staticmethod
    def presets() -> list[str]:
        """The built-in preset names."""
        return list(_ext.presets())

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def __str__(self) -> str:
        return self._canonical

    def __repr__(self) -> str:
        return f"CodecSpec({self._canonical!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodecSpec) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._canonical)


def presets() -> list[str]:
    """The built-in codec preset names."""
    return CodecSpec.presets()


def simd_archs() -> list[str]:
    """The SIMD instruction sets this build can decode with on this machine, best first."""
    return list(_ext.simd_archs())


def active_simd_arch() -> str:
    """The instruction set decodes use now (MQKV_SIMD overrides; spec/CODECS.md)."""
    return _ext.active_simd_arch()
