"""Voice slots of one instrument: allocation, stealing and the per-voice key/pedal/release flags.

Stealing order when every slot sounds: a releasing voice first (the quietest of them), else
the quietest held voice; ties go to the oldest. Loudness is the modal bank's per-voice level
bound (``ModalBank.level``, updated at every block end and at note-on).

A stolen voice is not cut (a click): it is marked ``fading`` (the synth gives it a fast decay)
and keeps its slot until it is silent, while the new note starts in a free slot; the pool has
``fade_slots`` spare slots beyond ``max_voices`` for this. Fading voices do not count against
``max_voices`` and are never stolen again; only when more than ``fade_slots`` voices fade at
once is the quietest (then oldest) fading voice cut to make room.

The list of sounding slots (``active[:count]``) is what the modal bank's kernels iterate over;
it is kept in preallocated arrays (a freed slot is swapped with the last entry).
"""

from __future__ import annotations

import numpy as np


class VoicePool:
    """``max_voices`` playing voices in ``max_voices + fade_slots`` slots. Per slot: note (MIDI), channel
    (0-15), key_down, sustained (note-off arrived while the pedal was down), releasing, fading (stolen,
    dying away), born (start order, for oldest-first ties)."""

    def __init__(self, max_voices: int, fade_slots: int = 0):
        self.max_voices = max_voices
        self.slots = slots = max_voices + fade_slots
        self.sounding = np.zeros(slots, np.bool_)
        self.note = np.zeros(slots, np.int16)
        self.channel = np.zeros(slots, np.int8)
        self.key_down = np.zeros(slots, np.bool_)
        self.sustained = np.zeros(slots, np.bool_)
        self.releasing = np.zeros(slots, np.bool_)
        self.fading = np.zeros(slots, np.bool_)
        self.born = np.zeros(slots, np.int64)
        self.active = np.zeros(slots, np.int32)
        self.count = 0
        self._position = np.zeros(slots, np.int32)  # index of each sounding slot in ``active``
        self._births = 0

    def allocate(self, level: np.ndarray) -> tuple[int, int]:
        """A free slot for a new voice, and the slot of the voice stolen for it (now ``fading``; -1 if none
        was stolen or it had to be cut). ``level``: (slots,) amplitude bounds. See the module doc."""
        playing = 0
        best, best_key = -1, None
        for j in range(self.count):
            slot = int(self.active[j])
            if self.fading[slot]:
                continue
            playing += 1
            key = (not self.releasing[slot], float(level[slot]), int(self.born[slot]))
            if best_key is None or key < best_key:
                best, best_key = slot, key
        stolen = -1
        if playing >= self.max_voices:
            stolen = best
            self.key_down[stolen] = False
            self.sustained[stolen] = False
            self.releasing[stolen] = True
            self.fading[stolen] = True
        if self.count == self.slots:  # no room left: cut the quietest (then oldest) fading voice
            cut, cut_key = -1, None
            for j in range(self.count):
                slot = int(self.active[j])
                key = (float(level[slot]), int(self.born[slot]))
                if self.fading[slot] and (cut_key is None or key < cut_key):
                    cut, cut_key = slot, key
            self.free(cut)
            return cut, -1 if cut == stolen else stolen
        return int(np.argmin(self.sounding)), stolen  # the first free slot (count < slots here)

    def start(self, slot: int, note: int, channel: int) -> None:
        """Mark ``slot`` sounding with a key held down."""
        self.sounding[slot] = True
        self.note[slot] = note
        self.channel[slot] = channel
        self.key_down[slot] = True
        self.sustained[slot] = False
        self.releasing[slot] = False
        self.fading[slot] = False
        self.born[slot] = self._births
        self._births += 1
        self._position[slot] = self.count
        self.active[self.count] = slot
        self.count += 1

    def free(self, slot: int) -> None:
        """Stop ``slot`` (it no longer sounds or takes part in any kernel)."""
        if not self.sounding[slot]:
            return
        self.sounding[slot] = False
        self.key_down[slot] = False
        self.sustained[slot] = False
        self.releasing[slot] = False
        self.fading[slot] = False
        j = self._position[slot]
        last = self.active[self.count - 1]
        self.active[j] = last
        self._position[last] = j
        self.count -= 1

    def on_channel(self, channel: int, out: np.ndarray) -> int:
        """Write the sounding slots of ``channel`` into ``out``; return how many."""
        n = 0
        for j in range(self.count):
            slot = self.active[j]
            if self.channel[slot] == channel:
                out[n] = slot
                n += 1
        return n
