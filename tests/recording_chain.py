"""A stand-in for ``SignalChain`` that records what the real-time engine asks it to render (tests only)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class RecordingChain:
    """Keeps every (frame of block start, events) it is asked to render; renders silence, 1 channel."""

    channels = 1

    def __init__(self):
        self.synth = SimpleNamespace(voices=0)
        self.blocks: list[tuple[int, list[tuple[int, int, int, int]]]] = []
        self.frame = 0

    def prepare(self, sample_rate, block_size, max_voices) -> None:
        pass

    def process(self, events, n_frames) -> np.ndarray:
        self.blocks.append((self.frame, list(events)))
        self.frame += n_frames
        return np.zeros((1, n_frames), np.float32)
