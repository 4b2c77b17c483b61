"""A bounded cache of excite rows: a note-on whose controls were seen recently skips the excite graph.

The excite graph is a pure function of its controls row (note, velocity, position, position_y), evaluated
one row at a time or in a batch that gives each row the same bits as alone (the synth checks this per
instrument, ``Instrument.excite_batch_invariant``, and runs the graph per row when it fails). So a row kept
from an earlier call is bit for bit the row the graph would compute again: a hit changes no sample.

Keys are the exact bits of the four float32 controls (two int64 words), so 0.0 and -0.0 are different keys
and nothing is ever matched approximately. ``rows`` entries (at most ``CACHE_BYTES`` of excite outputs per
instrument, see :func:`cache_rows`) are preallocated; a miss takes the least recently used entry that no
note-on of the same call uses, or, when every entry is in use by the call, bypasses the cache (its row is
read from the graph's own output buffer as without a cache). Lookups scan the keys linearly (a few hundred
int64 pairs, well under a microsecond); nothing is allocated after construction.

How a call uses it (engine/synth.py): :func:`lookup` maps each note-on row of the call to an entry or a
bypass row and moves the controls of the misses to the front of the graph's input rows; the graph runs on
the misses only; the kernel (engine/synth_kernel.py) copies a miss's output row into its entry
(:func:`take`) when the note starts, and loads every voice from ``source``.
"""

from __future__ import annotations

import numba
import numpy as np

from engine.buffers import batch_rows, prefaulted

CACHE_ROWS = 256
"""Most excite rows kept per instrument."""

CACHE_BYTES = 8 << 20
"""Most bytes of excite outputs kept per instrument (fewer rows for bundles with many modes or long attacks)."""

HITS, MISSES, BYPASSED, CALL = range(4)
"""Entries of ``ExciteCache.stats``: note-ons served from the cache, note-ons that ran the graph (bypassed ones
included), note-ons that ran the graph but found no entry to keep their row in, calls so far."""


def cache_rows(row_bytes: int, rows: int | None = None, max_bytes: int | None = None) -> int:
    """Entries of a cache whose excite row takes ``row_bytes``: ``CACHE_ROWS``, fewer if they would take more
    than ``CACHE_BYTES``."""
    rows = CACHE_ROWS if rows is None else rows
    max_bytes = CACHE_BYTES if max_bytes is None else max_bytes
    return max(0, min(rows, max_bytes // max(row_bytes, 1)))


class ExciteCache:
    """Cached excite rows of one instrument.

    ``outputs``: the excite graph's output buffers (sigma, omega, z0, c, mod_alpha, mod_beta, attack), each
    (rows, ...) float32 or an empty (0, 0) placeholder; ``capacity``: graph rows per call (size of ``source``);
    ``entries``: cache rows (0 disables the cache: every note-on bypasses it).

    Arrays: ``rows`` (the outputs' shapes with ``entries`` rows), ``keys`` (entries, 2) int64 control bits,
    ``used`` (entries,) int64 the call that last used an entry (-1: empty), ``pending`` (entries,) int64 the graph
    row to copy in when its note starts (-1: none; rows not copied by the next lookup are dropped), ``source`` (capacity,) int64 per note-on row of the call:
    the entry it plays (>= 0) or ``-1 - r`` for graph output row r, ``stats`` (see HITS ...).
    """

    def __init__(self, outputs: tuple[np.ndarray, ...], capacity: int, entries: int):
        self.entries = entries
        self.rows = tuple(prefaulted((entries, *array.shape[1:])) if array.shape[0] else array for array in outputs)
        self.keys = prefaulted((entries, 2), np.int64)
        self.used = np.full(entries, -1, np.int64)
        self.pending = np.full(entries, -1, np.int64)
        self.source = prefaulted(capacity, np.int64)
        self.stats = np.zeros(4, np.int64)

    @staticmethod
    def bytes(row_bytes: int, capacity: int, entries: int) -> int:
        """Bytes the cache allocates for ``entries`` rows of ``row_bytes`` and ``capacity`` graph rows per call."""
        return entries * (row_bytes + 4 * 8) + capacity * 8

    @property
    def hit_rate(self) -> float:
        """Share of note-ons served from the cache since ``prepare`` (0 before any)."""
        total = int(self.stats[HITS] + self.stats[MISSES])
        return int(self.stats[HITS]) / total if total else 0.0


@numba.njit(cache=True)
def lookup(controls, bits, n, keys, used, pending, source, stats):  # pragma: no cover - compiled
    """Map the call's ``n`` note-on rows to cache entries; returns how many rows the graph must compute.

    controls: (>= n, 4) float32 this instrument's graph input rows, in event order; bits: the same memory as
    (>= n, 2) int64. Hits get ``source[r]`` = their entry; misses are moved to the front of ``controls`` (in
    order; rows up to the next batch size repeat the first, see ``buffers.batch_rows``) and get a free or
    least recently used entry not used by this call (``pending`` = their graph row), else ``source[r] = -1 - row``.
    """
    call = stats[CALL] + 1
    stats[CALL] = call
    entries = keys.shape[0]
    for e in range(entries):  # a row the last call did not copy in (no note-on took it) is not kept
        if pending[e] >= 0:
            pending[e] = -1
            used[e] = -1
    misses = 0
    for r in range(n):
        k0, k1 = bits[r, 0], bits[r, 1]
        found = -1
        for e in range(entries):
            if keys[e, 0] == k0 and keys[e, 1] == k1 and used[e] >= 0:
                found = e
                break
        if found >= 0:
            used[found] = call
            source[r] = found
            stats[HITS] += 1
            continue
        if misses != r:
            controls[misses] = controls[r]
        victim, oldest = -1, call
        for e in range(entries):  # the least recently used entry (empty ones first) not used by this call
            if used[e] < oldest:
                victim, oldest = e, used[e]
        if victim >= 0:
            keys[victim, 0] = k0
            keys[victim, 1] = k1
            used[victim] = call
            pending[victim] = misses
            source[r] = victim
        else:
            source[r] = -1 - misses
            stats[BYPASSED] += 1
        stats[MISSES] += 1
        misses += 1
    if misses:
        for r in range(misses, min(batch_rows(misses), controls.shape[0])):
            controls[r] = controls[0]
    return misses


@numba.njit(cache=True)
def take(outputs, cache, row):  # pragma: no cover - compiled
    """The excite rows and row index note-on ``row`` of the call starts from: its cache entry (after copying the
    graph's output into it, the first time in a call) or, bypassing the cache, the graph's output row.
    outputs: (sigma, omega, z0, c, mod_alpha, mod_beta, attack); cache: (source, pending, rows)."""
    source, pending, rows = cache
    entry = source[row]
    if entry < 0:
        return outputs, -1 - entry
    r = pending[entry]
    if r >= 0:
        pending[entry] = -1
        _copy_row(outputs[0], rows[0], r, entry)
        _copy_row(outputs[1], rows[1], r, entry)
        _copy_row(outputs[2], rows[2], r, entry)
        _copy_row(outputs[3], rows[3], r, entry)
        _copy_row(outputs[4], rows[4], r, entry)
        _copy_row(outputs[5], rows[5], r, entry)
        _copy_row(outputs[6], rows[6], r, entry)
    return rows, entry


@numba.njit(cache=True)
def _copy_row(source, target, r, e):  # pragma: no cover - compiled
    """target[e] = source[r] (optional outputs are empty arrays: nothing to copy)."""
    if source.shape[0] > r and target.shape[0] > e:
        target[e] = source[r]
