"""Voice slots of one instrument: allocation, stealing and the per-voice key/pedal/release flags.

Stealing order when every slot sounds: a releasing voice first (the quietest of them), else
the quietest held voice; ties go to the oldest. Loudness is the modal bank's per-voice level
bound (``ModalBank.level``, updated at every block end and at note-on).

The list of sounding slots (``active[:count]``) is what the modal bank's kernels iterate over;
it is kept in preallocated arrays (a freed slot is swapped with the last entry).
"""

from __future__ import annotations

import numpy as np


class VoicePool:
    """``max_voices`` slots. Per slot: note (MIDI), channel (0-15), key_down, sustained (note-off
    arrived while the pedal was down), releasing, born (start order, for oldest-first ties)."""

    def __init__(self, max_voices: int):
        self.max_voices = max_voices
        self.sounding = np.zeros(max_voices, np.bool_)
        self.note = np.zeros(max_voices, np.int16)
        self.channel = np.zeros(max_voices, np.int8)
        self.key_down = np.zeros(max_voices, np.bool_)
        self.sustained = np.zeros(max_voices, np.bool_)
        self.releasing = np.zeros(max_voices, np.bool_)
        self.born = np.zeros(max_voices, np.int64)
        self.active = np.zeros(max_voices, np.int32)
        self.count = 0
        self._position = np.zeros(max_voices, np.int32)  # index of each sounding slot in ``active``
        self._births = 0

    def allocate(self, level: np.ndarray) -> tuple[int, bool]:
        """A slot for a new voice and whether a sounding voice was stolen for it (see module doc)."""
        if self.count < self.max_voices:
            for slot in range(self.max_voices):
                if not self.sounding[slot]:
                    return slot, False
        best, best_key = -1, None
        for j in range(self.count):
            slot = int(self.active[j])
            key = (not self.releasing[slot], float(level[slot]), int(self.born[slot]))
            if best_key is None or key < best_key:
                best, best_key = slot, key
        self.free(best)
        return best, True

    def start(self, slot: int, note: int, channel: int) -> None:
        """Mark ``slot`` sounding with a key held down."""
        self.sounding[slot] = True
        self.note[slot] = note
        self.channel[slot] = channel
        self.key_down[slot] = True
        self.sustained[slot] = False
        self.releasing[slot] = False
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
