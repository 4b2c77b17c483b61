"""Preallocated arrays for the audio thread.

``np.zeros`` of a large array maps its memory lazily: each page is faulted in (and zeroed by the
kernel, 2 MB at a time with transparent huge pages) the first time it is written. If that first
write happens on the audio thread, a note-on can cost milliseconds (measured: ~0.5 s for the first
note of a 200,000-voice synth). Arrays made here are written once when they are allocated.
"""

from __future__ import annotations

import numpy as np


def prefaulted(shape: int | tuple[int, ...], dtype=np.float32, value: float = 0) -> np.ndarray:
    """An array of ``shape`` filled with ``value`` whose every page has been written (mapped) already."""
    array = np.empty(shape, dtype)
    array.fill(value)
    return array
