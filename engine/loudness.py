"""Integrated loudness (ITU-R BS.1770-4, LUFS) measured block by block, so a long render never sits in memory.

The K-weighting filters are pyloudnorm's (same coefficients); the filtered signal's squares are summed
into a running total per channel, read at the gating-block edges pyloudnorm uses (400 ms blocks every
100 ms), and gated (-70 LUFS absolute, -10 LU relative) at the end. The result equals
``pyloudnorm.Meter(rate).integrated_loudness`` of the whole signal to rounding (tests check 0.01 LU).

>>> meter = LoudnessMeter(48000, channels=2)
>>> meter.add(block)            # (channels, n) float32, any n, in order
>>> meter.integrated()          # LUFS, -inf when silent or shorter than 400 ms
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

BLOCK_S = 0.4
STEP = 0.25
"""Gating block (s) and its step as a fraction of the block (75 % overlap)."""


class LoudnessMeter:
    """Streaming BS.1770-4 integrated loudness of (channels, samples) audio at ``sample_rate`` Hz (<= 2 channels
    are weighted 1.0 as in BS.1770)."""

    def __init__(self, sample_rate: float, channels: int = 2):
        import pyloudnorm

        self.rate = float(sample_rate)
        self.channels = channels
        stages = pyloudnorm.Meter(self.rate)._filters.values()  # K-weighting: high shelf, then high pass
        self._filters = [(np.asarray(s.b, np.float64), np.asarray(s.a, np.float64)) for s in stages]
        self._states = [np.zeros((channels, max(len(a), len(b)) - 1)) for b, a in self._filters]
        self._total = np.zeros(channels)  # running sum of squares of the K-weighted signal
        self._frames = 0
        self._lower: list[np.ndarray] = []  # running sum at the lower edge of gating block j
        self._upper: list[np.ndarray] = []  # ... and at its upper edge

    def _edge(self, j: int, upper: bool) -> int:
        """Sample index of gating block j's lower/upper edge, truncated to an integer as pyloudnorm does."""
        return int(BLOCK_S * (j * STEP + (1 if upper else 0)) * self.rate)

    def add(self, block: np.ndarray) -> None:
        """Measure the next (channels, n) samples."""
        x = np.asarray(block, np.float64)
        for i, (b, a) in enumerate(self._filters):
            x, self._states[i] = sps.lfilter(b, a, x, axis=1, zi=self._states[i])
        squares = x * x
        start, stop = self._frames, self._frames + x.shape[1]
        for edges, upper in ((self._lower, False), (self._upper, True)):
            while (edge := self._edge(len(edges), upper)) <= stop:
                edges.append(self._total + squares[:, : edge - start].sum(axis=1))
        self._total = self._total + squares.sum(axis=1)
        self._frames = stop

    def integrated(self) -> float:
        """Integrated loudness in LUFS of everything added so far (-inf if silent or under 400 ms)."""
        n = self._frames
        if n < BLOCK_S * self.rate:
            return float("-inf")
        blocks = int(np.round((n / self.rate - BLOCK_S) / (BLOCK_S * STEP))) + 1
        z = np.zeros((blocks, self.channels))
        for j in range(blocks):
            upper = self._upper[j] if j < len(self._upper) else self._total  # a last block may run past the end
            z[j] = (upper - self._lower[j]) / (BLOCK_S * self.rate)
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10 * np.log10(z.sum(axis=1))
            gated = z[loudness >= -70.0]
            if not len(gated):
                return float("-inf")
            relative = -0.691 + 10 * np.log10(gated.mean(axis=0).sum()) - 10.0
            kept = z[(loudness > relative) & (loudness > -70.0)]
            if not len(kept):
                return float("-inf")
            return float(-0.691 + 10 * np.log10(kept.mean(axis=0).sum()))
