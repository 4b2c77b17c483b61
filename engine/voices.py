"""Voice slots of one instrument: allocation, stealing and the per-voice key/pedal/release flags.

Stealing order when every slot sounds: a releasing voice first (the quietest of them), else
the quietest held voice; ties go to the oldest. Loudness is the modal bank's per-voice level
bound (``ModalBank.level``, updated at every block end and at note-on).

A stolen voice is not cut (a click): it is marked ``fading`` (the synth gives it a fast decay)
and keeps its slot until it is silent, while the new note starts in a free slot; the pool has
``fade_slots`` spare slots beyond ``max_voices`` for this. Fading voices do not count against
``max_voices`` and are never stolen again; only when more than ``fade_slots`` voices fade at
once is the quietest (then oldest) fading voice cut to make room.

The list of sounding slots (``active[:count]``) is what the modal bank's kernels iterate over.
Everything lives in preallocated arrays that the compiled functions below change in place (the
synth's per-block kernel calls them; see engine/synth_kernel.py): ``flags`` (FIELDS, slots) int64
holds one row per field (NOTE, CHANNEL, ...), ``active`` (slots,) int64 the sounding slots, and
``counts`` [COUNT, BIRTHS] int64.
"""

from __future__ import annotations

import numba
import numpy as np

from engine.buffers import prefaulted

NOTE, CHANNEL, KEY_DOWN, SUSTAINED, RELEASING, FADING, SOUNDING, BORN, INDEX = range(9)
"""Rows of ``VoicePool.flags``: MIDI note, channel (0-15), key held down, note-off arrived while the pedal was
down, releasing, fading (stolen, dying away), sounding, start order (oldest-first ties), index in ``active``."""
FIELDS = 9

COUNT, BIRTHS = range(2)
"""Entries of ``VoicePool.counts``: sounding slots, voices started so far."""


class VoicePool:
    """``max_voices`` playing voices in ``max_voices + fade_slots`` slots (see the module doc).

    Read-only views for inspection: ``note``, ``channel``, ``key_down``, ``sustained``, ``releasing``,
    ``fading``, ``sounding`` (slots,), ``active`` and ``count``.
    """

    def __init__(self, max_voices: int, fade_slots: int = 0):
        self.max_voices = max_voices
        self.slots = max_voices + fade_slots
        self.flags = prefaulted((FIELDS, self.slots), np.int64)
        self.active = prefaulted(self.slots, np.int64)
        self.counts = np.zeros(2, np.int64)

    @property
    def count(self) -> int:
        return int(self.counts[COUNT])

    note = property(lambda self: self.flags[NOTE])
    channel = property(lambda self: self.flags[CHANNEL])
    key_down = property(lambda self: self.flags[KEY_DOWN].astype(bool))
    sustained = property(lambda self: self.flags[SUSTAINED].astype(bool))
    releasing = property(lambda self: self.flags[RELEASING].astype(bool))
    fading = property(lambda self: self.flags[FADING].astype(bool))
    sounding = property(lambda self: self.flags[SOUNDING].astype(bool))


@numba.njit(cache=True)
def allocate(flags, active, counts, max_voices, level):  # pragma: no cover - compiled
    """A free slot for a new voice, and the slot of the voice stolen for it (now ``fading``; -1 if none
    was stolen or it had to be cut). ``level``: (slots,) amplitude bounds. See the module doc."""
    count = counts[COUNT]
    playing = 0
    best = -1
    for j in range(count):
        slot = active[j]
        if flags[FADING, slot]:
            continue
        playing += 1
        if best < 0 or _quieter(flags, level, slot, best):
            best = slot
    stolen = -1
    if playing >= max_voices:
        stolen = best
        flags[KEY_DOWN, stolen] = 0
        flags[SUSTAINED, stolen] = 0
        flags[RELEASING, stolen] = 1
        flags[FADING, stolen] = 1
    if count == active.shape[0]:  # no room left: cut the quietest (then oldest) fading voice
        cut = -1
        for j in range(count):
            slot = active[j]
            if flags[FADING, slot] and (cut < 0 or level[slot] < level[cut]
                                        or (level[slot] == level[cut] and flags[BORN, slot] < flags[BORN, cut])):
                cut = slot
        free(flags, active, counts, cut)
        return cut, -1 if cut == stolen else stolen
    for slot in range(active.shape[0]):  # the first free slot (count < slots here)
        if not flags[SOUNDING, slot]:
            return slot, stolen
    return -1, stolen


@numba.njit(cache=True)
def _quieter(flags, level, a, b):  # pragma: no cover - compiled
    """Stealing order: is slot ``a`` a better victim than ``b``? Releasing first, then quieter, then older."""
    if flags[RELEASING, a] != flags[RELEASING, b]:
        return flags[RELEASING, a] > flags[RELEASING, b]
    if level[a] != level[b]:
        return level[a] < level[b]
    return flags[BORN, a] < flags[BORN, b]


@numba.njit(cache=True)
def start(flags, active, counts, slot, note, channel):  # pragma: no cover - compiled
    """Mark ``slot`` sounding with a key held down."""
    flags[SOUNDING, slot] = 1
    flags[NOTE, slot] = note
    flags[CHANNEL, slot] = channel
    flags[KEY_DOWN, slot] = 1
    flags[SUSTAINED, slot] = 0
    flags[RELEASING, slot] = 0
    flags[FADING, slot] = 0
    flags[BORN, slot] = counts[BIRTHS]
    counts[BIRTHS] += 1
    flags[INDEX, slot] = counts[COUNT]
    active[counts[COUNT]] = slot
    counts[COUNT] += 1


@numba.njit(cache=True)
def free(flags, active, counts, slot):  # pragma: no cover - compiled
    """Stop ``slot`` (it no longer sounds or takes part in any kernel)."""
    if not flags[SOUNDING, slot]:
        return
    flags[SOUNDING, slot] = 0
    flags[KEY_DOWN, slot] = 0
    flags[SUSTAINED, slot] = 0
    flags[RELEASING, slot] = 0
    flags[FADING, slot] = 0
    j = flags[INDEX, slot]
    last = active[counts[COUNT] - 1]
    active[j] = last
    flags[INDEX, last] = j
    counts[COUNT] -= 1


@numba.njit(cache=True)
def on_channel(flags, active, counts, channel, out):  # pragma: no cover - compiled
    """Write the sounding slots of ``channel`` into ``out``; return how many."""
    n = 0
    for j in range(counts[COUNT]):
        slot = active[j]
        if flags[CHANNEL, slot] == channel:
            out[n] = slot
            n += 1
    return n
