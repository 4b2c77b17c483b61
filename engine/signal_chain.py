"""Synth -> channel copy -> effects: the per-block signal path shared by real time and offline rendering."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.synth import Event, Synth
from plugins.effects import EffectsChain


class SignalChain:
    """``process(events, n_frames)`` -> (channels, n_frames) float32: the synth's mono block copied to
    ``channels`` and run through the effects chain (if any).

    The returned array is a preallocated buffer (no effects) or pedalboard's output (effects);
    valid until the next call.
    """

    def __init__(self, synth: Synth, effects: EffectsChain | None = None, channels: int = 2):
        self.synth = synth
        self.effects = effects
        self.channels = channels

    def prepare(self, sample_rate: float, block_size: int, max_voices: int) -> None:
        """Prepare the synth and allocate the channel buffer; clear effect tails."""
        self.synth.prepare(sample_rate, block_size, max_voices)
        self.sample_rate = float(sample_rate)
        self._out = np.zeros((self.channels, block_size), np.float32)
        if self.effects is not None:  # one block through the board (first-call costs), then a clean start
            self.effects.process(self._out, self.sample_rate)
            self.effects.reset()

    def process(self, events: Sequence[Event], n_frames: int) -> np.ndarray:
        mono = self.synth.process(events, n_frames)
        out = self._out[:, :n_frames]
        out[:] = mono
        if self.effects is not None and len(self.effects):
            return self.effects.process(out, self.sample_rate)
        return out

    def release(self) -> None:
        self.synth.release()
