"""ctypes binding of the native core's C API (plugins/native/core/c_api.h), for tests, benches and tools.

``build()`` runs ``make -C plugins/native core`` (a no-op when up to date); the classes below own the C objects
and free them when garbage-collected.

>>> graph = NativeGraph(onnx_bytes, max_batch=4)
>>> outputs = graph.run(controls)                     # {name: float32 array}, controls (batch, 4) float32
>>> synth = NativeSynth(NativeInstrument("assets/models/gong.etone"), 48000.0)
>>> audio = synth.process([(0, 0x90, 60, 100)], 64)   # (64,) float32
"""

from __future__ import annotations

import ctypes
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

NATIVE_DIR = Path(__file__).resolve().parent
BUILD_DIR = NATIVE_DIR / "build"
LIBRARY = BUILD_DIR / "libeigentone_core.so"


class NativeBuildError(RuntimeError):
    """The core could not be built (missing compiler or headers: the message says which)."""


class NativeError(RuntimeError):
    """A call into the core failed; the message is the core's one-line reason."""


def build() -> Path:
    """Build the core with make (no-op when up to date); returns the shared library's path."""
    try:
        result = subprocess.run(["make", "-s", "-C", str(NATIVE_DIR), "core"], capture_output=True, text=True,
                                check=False)
    except FileNotFoundError:
        raise NativeBuildError("native core: make not found (apt-get install make g++)") from None
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith("native core:")), lines[0] if lines else "make failed")
        raise NativeBuildError(first)
    return LIBRARY


class _Event(ctypes.Structure):
    _fields_ = [("frame", ctypes.c_uint32), ("status", ctypes.c_uint8), ("data1", ctypes.c_uint8),
                ("data2", ctypes.c_uint8)]


class _Options(ctypes.Structure):
    _fields_ = [("gain", ctypes.c_double), ("max_voices", ctypes.c_int), ("bend_range", ctypes.c_double),
                ("release_time", ctypes.c_double), ("decay_scale", ctypes.c_double), ("brightness", ctypes.c_double),
                ("position", ctypes.c_double), ("position_y", ctypes.c_double), ("limiter", ctypes.c_int),
                ("steal_fade", ctypes.c_int)]


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """The loaded core (built first if needed), with argument types declared."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(str(build()))
    p, i, d, s, u8p = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint8)
    f32p = ctypes.POINTER(ctypes.c_float)
    signatures = {
        "et_graph_load": (p, [u8p, ctypes.c_size_t, i, s, i]),
        "et_graph_free": (None, [p]),
        "et_graph_run": (i, [p, f32p, i]),
        "et_graph_error": (s, [p]),
        "et_graph_outputs": (i, [p]),
        "et_graph_output_name": (s, [p, i]),
        "et_graph_output_shape": (i, [p, i, ctypes.POINTER(ctypes.c_int64)]),
        "et_graph_output_data": (f32p, [p, i]),
        "et_check_graph": (i, [u8p, ctypes.c_size_t, s, i]),
        "et_supported_ops": (s, []),
        "et_instrument_load": (p, [s, s, i]),
        "et_instrument_free": (None, [p]),
        "et_instrument_info": (i, [p, s, i]),
        "et_options_default": (None, [ctypes.POINTER(_Options)]),
        "et_synth_new": (p, [p, d, i, i]),
        "et_synth_free": (None, [p]),
        "et_synth_set_options": (None, [p, ctypes.POINTER(_Options)]),
        "et_synth_process": (None, [p, ctypes.POINTER(_Event), i, f32p, i]),
        "et_synth_reset": (None, [p]),
        "et_bench_blocks": (i, [p, i, ctypes.POINTER(ctypes.c_int), i, i, i, i, ctypes.POINTER(ctypes.c_double)]),
        "et_synth_render": (None, [p, ctypes.POINTER(_Event), i, f32p, ctypes.c_int64, i]),
        "et_synth_latency": (i, [p]),
        "et_synth_voices": (i, [p]),
        "et_synth_muted": (ctypes.c_uint64, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name, None)
        if function is None:
            continue
        function.restype = restype
        function.argtypes = argtypes
    _lib = lib
    return lib


def _bytes_pointer(data: bytes):
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    return buffer, len(data)


class NativeGraph:
    """One ONNX graph compiled by the core's evaluator, planned for batches of 1..max_batch rows."""

    def __init__(self, onnx_bytes: bytes, max_batch: int = 16):
        lib = library()
        err = ctypes.create_string_buffer(1024)
        buffer, size = _bytes_pointer(onnx_bytes)
        handle = lib.et_graph_load(buffer, size, max_batch, err, len(err))
        if not handle:
            raise NativeError(err.value.decode())
        self._lib, self._handle, self.max_batch = lib, handle, max_batch

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.et_graph_free(self._handle)
            self._handle = None

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """inputs (batch, ...) float32 -> {output name: float32 array (copied)}."""
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        ok = self._lib.et_graph_run(self._handle, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), x.shape[0])
        if not ok:
            raise NativeError(self._lib.et_graph_error(self._handle).decode())
        outputs = {}
        dims = (ctypes.c_int64 * 8)()
        for k in range(self._lib.et_graph_outputs(self._handle)):
            name = self._lib.et_graph_output_name(self._handle, k).decode()
            rank = self._lib.et_graph_output_shape(self._handle, k, dims)
            shape = tuple(dims[j] for j in range(rank))
            count = int(np.prod(shape)) if shape else 1
            data = self._lib.et_graph_output_data(self._handle, k)
            outputs[name] = np.ctypeslib.as_array(data, shape=(count,)).reshape(shape).copy()
        return outputs


def check_graph(onnx_bytes: bytes) -> list[str]:
    """The core's problems with a graph (empty when it can evaluate it)."""
    lib = library()
    out = ctypes.create_string_buffer(16384)
    buffer, size = _bytes_pointer(onnx_bytes)
    count = lib.et_check_graph(buffer, size, out, len(out))
    text = out.value.decode()
    if count < 0:
        return [f"not a decodable ONNX model ({text})"]
    return [line for line in text.splitlines() if line]


def supported_ops() -> dict:
    """The core's op table (JSON from et_supported_ops)."""
    return json.loads(library().et_supported_ops().decode())


class NativeInstrument:
    """A bundle loaded and validated by the core (same rules as engine/bundle.py)."""

    def __init__(self, path: str | Path):
        lib = library()
        err = ctypes.create_string_buffer(2048)
        handle = lib.et_instrument_load(str(path).encode(), err, len(err))
        if not handle:
            raise NativeError(err.value.decode())
        self._lib, self._handle = lib, handle
        out = ctypes.create_string_buffer(65536)
        lib.et_instrument_info(handle, out, len(out))
        self.info: dict = json.loads(out.value.decode())

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.et_instrument_free(self._handle)
            self._handle = None


class NativeSynth:
    """The core's Synth: ``process(events, n_frames)`` -> (n_frames,) float32, delayed by ``latency`` frames.

    ``events``: (frame, status, data1, data2) tuples sorted by frame, 0 <= frame < n_frames. Options as in
    eigentone_core.hpp (gain, max_voices, bend_range, release_time, decay_scale, brightness, position,
    position_y, limiter, steal_fade).
    """

    def __init__(self, instrument: NativeInstrument, sample_rate: float, capacity: int = 64, block_size: int = 64,
                 **options):
        lib = library()
        self._lib, self.instrument = lib, instrument
        self._handle = lib.et_synth_new(instrument._handle, float(sample_rate), capacity, block_size)
        self.latency = lib.et_synth_latency(self._handle)
        if options:
            self.set_options(**options)

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.et_synth_free(self._handle)
            self._handle = None

    def set_options(self, **options) -> None:
        values = _Options()
        self._lib.et_options_default(ctypes.byref(values))
        for name, value in options.items():
            if not hasattr(values, name):
                raise TypeError(f"unknown synth option {name!r}")
            setattr(values, name, type(getattr(values, name))(value))
        self._lib.et_synth_set_options(self._handle, ctypes.byref(values))

    def process(self, events: Sequence[tuple[int, int, int, int]], n_frames: int) -> np.ndarray:
        out = np.zeros(n_frames, np.float32)
        array = (_Event * max(len(events), 1))()
        for k, (frame, status, data1, data2) in enumerate(events):
            array[k] = _Event(frame, status, data1, data2)
        self._lib.et_synth_process(self._handle, array, len(events), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                   n_frames)
        return out

    def render(self, frames: np.ndarray, messages: np.ndarray, n_frames: int, host_block: int = 64) -> np.ndarray:
        """A whole stream in one call: events at absolute ``frames`` (sorted, (events,) int) with ``messages``
        ((events, 3) status, data1, data2), cut into host buffers of ``host_block`` frames -> (n_frames,) float32."""
        out = np.zeros(n_frames, np.float32)
        count = len(frames)
        array = (_Event * max(count, 1))()
        for k in range(count):
            array[k] = _Event(int(frames[k]), int(messages[k][0]), int(messages[k][1]), int(messages[k][2]))
        self._lib.et_synth_render(self._handle, array, count, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                  n_frames, host_block)
        return out

    def bench_blocks(self, voices: int, notes: Sequence[int], block: int, blocks: int, paced: bool = True
                     ) -> tuple[np.ndarray, int]:
        """(blocks,) process() durations in s with ``voices`` notes held (struck again when they decay), and the
        number of re-strikes; paced at the block period like an audio callback (see c_api.h)."""
        seconds = np.zeros(blocks)
        note_array = (ctypes.c_int * len(notes))(*[int(n) for n in notes])
        restrikes = self._lib.et_bench_blocks(self._handle, voices, note_array, len(notes), block, blocks, int(paced),
                                              seconds.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        return seconds, restrikes

    def reset(self) -> None:
        self._lib.et_synth_reset(self._handle)

    @property
    def voices(self) -> int:
        return self._lib.et_synth_voices(self._handle)

    @property
    def muted(self) -> int:
        return self._lib.et_synth_muted(self._handle)
