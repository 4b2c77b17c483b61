"""Preallocated arrays for the audio thread, and the batch sizes graphs run their rows in.

``np.zeros`` of a large array maps its memory lazily: each page is faulted in (and zeroed by the
kernel, 2 MB at a time with transparent huge pages) the first time it is written. If that first
write happens on the audio thread, a note-on can cost milliseconds (measured: ~0.5 s for the first
note of a 200,000-voice synth). Arrays made here are written once when they are allocated.
"""

from __future__ import annotations

import numba
import numpy as np

ALIGN = 64
"""Byte alignment of preallocated arrays: one cache line, one AVX-512 register. numpy's large arrays start 16 bytes
into a page, so every 64-byte vector load of them straddled two cache lines (the modal bank's per-sample loop,
engine/modal_bank.py, loads 16 floats at a time)."""


def prefaulted(shape: int | tuple[int, ...], dtype=np.float32, value: float = 0) -> np.ndarray:
    """An array of ``shape`` filled with ``value`` whose every page has been written (mapped) already, starting at a
    multiple of ALIGN bytes (C order)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    array = raw[start : start + size].view(dtype).reshape(shape)
    array.fill(value)
    return array


@numba.njit(cache=True)
def batch_rows(rows):  # pragma: no cover - compiled
    """Batch size a graph runs with for ``rows`` rows: the next power of two, at least 8. Few distinct shapes
    (onnxruntime's first run of a new shape is slow), and in onnxruntime's CPU kernels a row's result does
    not depend on the batch size from 4 rows up (measured), so results do not depend on how notes group."""
    size = 8
    while size < rows:
        size *= 2
    return size
