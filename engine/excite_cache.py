"""A bounded cache of excite rows: a note-on whose controls were seen recently skips the excite graph.

The excite graph is a pure function of its controls row (note, velocity, position, position_y), evaluated
one row at a time or in a batch that gives each row the same bits as alone (the synth checks this per
instrument, ``Instrument.excite_batch_invariant``, and runs the graph per row when it fails). So a row kept
from an earlier call is bit for bit the row the graph would compute again: a hit changes no sample.

Keys are the exact bits of the four float32 controls (two int64 words), so 0.0 and -0.0 are different keys
and nothing is ever matched approximately. ``rows`` entries (at most ``CACHE_BYTES`` of excite outputs per
instrument, see :func:`cache_rows`) are preallocated; a miss takes the least recently used entry that no
note-on still waiting to sound holds (``pins``) and no note-on of the same call uses, or, when there is none,
bypasses the cache: that note-on gets no row at reception and runs the graph alone when it sounds. Lookups scan
the keys linearly (a few hundred int64 pairs, well under a microsecond); nothing is allocated after construction.

How a call uses it (engine/synth.py): :func:`lookup` maps each note-on row received in the call to an entry (or
a bypass) and moves the controls of the misses to the front of the graph's input rows; the graph runs on the
misses only; :func:`stage` copies each miss's output row into its entry and pins the entry for each note-on
that will start from it (the synth's look-ahead: a note-on sounds after it was received, and its row must stay
until then); the kernel (engine/synth_kernel.py) unpins it when the note starts.
"""

from __future__ import annotations

import numba
import numpy as np

from engine import buffers
from engine.buffers import batch_rows, prefaulted
from engine.kernel_cache import drop_stale_kernels

CACHE_ROWS = 256
"""Most excite rows kept per instrument."""

CACHE_BYTES = 8 << 20
"""Most bytes of excite outputs kept per instrument (fewer rows for bundles with many modes or long attacks)."""

HITS, MISSES, BYPASSED, CALL = range(4)
"""Entries of ``ExciteCache.stats``: note-ons served from the cache, note-ons not found in it (bypassed ones
included), note-ons that found no entry to keep their row in (they run the graph when they sound), calls so far."""


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
    ``entries``: cache rows (0 disables the cache: every note-on bypasses it); ``spare``: rows after the entries
    that are no cache entries (the audio thread's late rows with the excite worker, engine/excite_worker.py).

    Arrays: ``rows`` (the outputs' shapes with ``entries`` rows), ``keys`` (entries, 2) int64 control bits,
    ``used`` (entries,) int64 the call that last used an entry (-1: empty), ``pins`` (entries,) int64 note-ons
    received but not started that will start from the entry (never replaced while > 0), ``pending`` (entries,)
    int64 the graph row :func:`stage` copies in (-1: none), ``source`` (capacity,) int64 per note-on row of the
    call: its entry, or -1 (bypassed), ``stats`` (see HITS ...).
    """

    def __init__(self, outputs: tuple[np.ndarray, ...], capacity: int, entries: int, spare: int = 0):
        self.entries = entries
        self.rows = tuple(prefaulted((entries + spare, *array.shape[1:])) if array.shape[0] else array
                          for array in outputs)
        self.keys = prefaulted((entries, 2), np.int64)
        self.used = np.full(entries, -1, np.int64)
        self.pins = np.zeros(entries, np.int64)
        self.pending = np.full(entries, -1, np.int64)
        self.source = prefaulted(capacity, np.int64)
        self.stats = np.zeros(4, np.int64)

    @staticmethod
    def bytes(row_bytes: int, capacity: int, entries: int, spare: int = 0) -> int:
        """Bytes the cache allocates for ``entries`` rows of ``row_bytes`` (and ``spare`` rows) and ``capacity``
        graph rows per call."""
        return entries * (row_bytes + 5 * 8) + spare * row_bytes + capacity * 8

    @property
    def hit_rate(self) -> float:
        """Share of note-ons served from the cache since ``prepare`` (0 before any)."""
        total = int(self.stats[HITS] + self.stats[MISSES])
        return int(self.stats[HITS]) / total if total else 0.0


@numba.njit(cache=True)
def lookup(controls, bits, n, keys, used, pins, pending, source, stats):  # pragma: no cover - compiled
    """Map the call's ``n`` note-on rows to cache entries; returns how many rows the graph must compute.

    controls: (>= n, 4) float32 this instrument's graph input rows, in event order; bits: the same memory as
    (>= n, 2) int64. Hits get ``source[r]`` = their entry; misses get a free or least recently used entry that is
    neither pinned nor used by this call (``pending`` = their graph row) and are moved to the front of ``controls``
    (in order; rows up to the next batch size repeat the first, see ``buffers.batch_rows``); a miss that finds no
    such entry gets ``source[r] = -1`` and no graph row.
    """
    call = stats[CALL] + 1
    stats[CALL] = call
    entries = keys.shape[0]
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
        stats[MISSES] += 1
        victim, oldest = -1, call
        for e in range(entries):  # the least recently used entry (empty ones first) neither pinned nor used now
            if used[e] < oldest and pins[e] == 0:
                victim, oldest = e, used[e]
        if victim < 0:
            source[r] = -1
            stats[BYPASSED] += 1
            continue
        if misses != r:
            controls[misses] = controls[r]
        keys[victim, 0] = k0
        keys[victim, 1] = k1
        used[victim] = call
        pending[victim] = misses
        source[r] = victim
        misses += 1
    if misses:
        for r in range(misses, min(batch_rows(misses), controls.shape[0])):
            controls[r] = controls[0]
    return misses


@numba.njit(cache=True)
def stage(outputs, rows, pending, pins, source, n, entry_of, row_event):  # pragma: no cover - compiled
    """After the graph ran on the misses of :func:`lookup`: copy each miss's output row into its entry, and give
    each of the call's ``n`` note-on rows its entry: ``entry_of[row_event[r]] = source[r]``, pinning the entry.

    outputs: the graph's output buffers (sigma, omega, z0, c, mod_alpha, mod_beta, attack); rows: the cache's
    entries of the same; entry_of: (queue,) int64, where the synth keeps each waiting note-on's entry;
    row_event: (>= n,) int64 the queue index of note-on row r.
    """
    copy_pending(outputs, rows, pending)
    for r in range(n):
        entry = source[r]
        entry_of[row_event[r]] = entry
        if entry >= 0:
            pins[entry] += 1


@numba.njit(cache=True)
def copy_pending(outputs, rows, pending):  # pragma: no cover - compiled
    """Copy the graph's output row of each entry :func:`lookup` gave a graph row (``pending``) into the entry."""
    for e in range(pending.shape[0]):
        r = pending[e]
        if r >= 0:
            pending[e] = -1
            _copy_row(outputs[0], rows[0], r, e)
            _copy_row(outputs[1], rows[1], r, e)
            _copy_row(outputs[2], rows[2], r, e)
            _copy_row(outputs[3], rows[3], r, e)
            _copy_row(outputs[4], rows[4], r, e)
            _copy_row(outputs[5], rows[5], r, e)
            _copy_row(outputs[6], rows[6], r, e)


@numba.njit(cache=True)
def _copy_row(source, target, r, e):  # pragma: no cover - compiled
    """target[e] = source[r] (optional outputs are empty arrays: nothing to copy)."""
    if source.shape[0] > r and target.shape[0] > e:
        target[e] = source[r]


drop_stale_kernels(lookup, __file__, (buffers,))  # lookup compiles in buffers.batch_rows
