"""Synth -> channel copy -> effects -> output guard: the per-block signal path of real time and offline rendering.

The output guard is the last stage of every output path, after the effects: whatever the
synth, an effect or a hosted plugin produced, only sound leaves it.

* Non-finite samples (NaN, +-Inf) are replaced by 0.
* A stereo-linked peak limiter (instant attack, 50 ms release, no look-ahead so live output gets
  no extra latency and stays sample-identical to offline renders) keeps every sample at or below
  ``CEILING`` = -1 dBFS. The 1 dB of headroom is for inter-sample (true) peaks: the reconstructed
  waveform of ordinary material overshoots its samples by well under 1 dB (BS.1770-4 true-peak
  meters measure it by 4x oversampling; the tests do the same). Pathological signals (a full-scale
  tone near fs/4 at 45 degrees of phase) can overshoot by up to 3 dB.
* ``limit=False`` (``--no-limit``, float WAVs only) skips the limiter; non-finite samples are still zeroed.

The guard counts what it did in a preallocated array (``counts``: non-finite samples, limited samples,
the largest finite magnitude before it), on the audio thread without allocating; the caller reports
the counts off the audio thread (``describe_guard``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from eigentone import limits
from engine.synth import Event, Synth
from plugins.effects import EffectsChain

CEILING = 10 ** (-1.0 / 20)
"""Largest sample magnitude the guard lets through: -1 dBFS."""

RELEASE_S = 0.05
"""Time constant (s) of the limiter's return to unity gain."""

NONFINITE, LIMITED, PEAK, GAIN = range(4)
"""Slots of ``OutputGuard.counts``: non-finite samples zeroed, sample frames that arrived over the ceiling,
largest finite |x| seen before the guard, the limiter's current gain."""


@numba.njit(cache=True)
def guard_block(x, n, counts, ceiling, release_coef, limit):  # pragma: no cover - compiled
    """In place on x[:, :n] (channels, samples) float32: zero non-finite samples, then (if ``limit``) apply a
    stereo-linked peak limiter keeping |x| <= ceiling. ``counts`` (4,) float64 as described by the slots
    NONFINITE, LIMITED, PEAK (running totals) and GAIN (limiter state carried across blocks)."""
    g = counts[GAIN]
    channels = x.shape[0]
    for k in range(n):
        peak = 0.0
        for c in range(channels):
            v = x[c, k]
            if not np.isfinite(v):
                x[c, k] = 0.0
                counts[NONFINITE] += 1.0
            else:
                a = abs(v)
                if a > peak:
                    peak = a
        if peak > counts[PEAK]:
            counts[PEAK] = peak
        if not limit:
            continue
        if peak > ceiling:
            counts[LIMITED] += 1.0
        if g < 1.0:
            g = g + (1.0 - g) * release_coef
            if g > 1.0 - 1e-7:
                g = 1.0
        if peak * g > ceiling:
            g = ceiling / peak
        if g < 1.0:
            for c in range(channels):
                y = np.float32(x[c, k] * g)
                x[c, k] = min(max(y, -ceiling), ceiling)  # float32 rounding may not exceed the ceiling
    counts[GAIN] = g


class OutputGuard:
    """The last stage of every output path; see the module doc. ``process(block)`` works in place."""

    def __init__(self, limit: bool = True, ceiling: float = CEILING):
        self.limit = limit
        self.ceiling = ceiling
        self.counts = np.zeros(4)
        self.counts[GAIN] = 1.0
        self._release_coef = 0.0

    def prepare(self, sample_rate: float) -> None:
        """Reset the counts and the limiter for a new stream at ``sample_rate`` Hz; compile the kernel here."""
        self.counts[:] = 0.0
        self.counts[GAIN] = 1.0
        self._release_coef = 1.0 - math.exp(-1.0 / (RELEASE_S * sample_rate))
        guard_block(np.zeros((2, 1), np.float32), 1, np.array([0.0, 0.0, 0.0, 1.0]), self.ceiling, 0.5, self.limit)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Guard a (channels, samples) float32 block in place and return it."""
        guard_block(block, block.shape[1], self.counts, self.ceiling, self._release_coef, self.limit)
        return block

    @property
    def nonfinite(self) -> int:
        return int(self.counts[NONFINITE])

    @property
    def limited(self) -> int:
        return int(self.counts[LIMITED])

    @property
    def peak_in(self) -> float:
        """Largest finite sample magnitude that reached the guard (before limiting)."""
        return float(self.counts[PEAK])


def describe_guard(guard: OutputGuard, sample_rate: float, what: str = "the output") -> str | None:
    """One warning line when the guard acted (None when it did not): counts, and what to change."""
    if not guard.nonfinite and not guard.limited:
        return None
    parts = []
    if guard.nonfinite:
        parts.append(f"zeroed {guard.nonfinite:,} non-finite samples")
    if guard.limited:
        over = 20 * math.log10(guard.peak_in / guard.ceiling) if guard.peak_in > 0 else 0.0
        parts.append(f"limited {guard.limited:,} sample frames over -1 dBFS (up to {over:+.1f} dB over)")
    return f"output guard: {' and '.join(parts)} in {what}; lower --gain-db or the effects' gain"


class SignalChain:
    """``process(events, n_frames)`` -> (channels, n_frames) float32: the synth's mono block copied to
    ``channels``, run through the effects chain (if any) and the output guard.

    ``limit=False`` turns off the guard's limiter (float output only); non-finite samples are zeroed
    always. The returned array is a preallocated buffer, valid until the next call.
    """

    def __init__(self, synth: Synth, effects: EffectsChain | None = None, channels: int = 2, limit: bool = True):
        self.synth = synth
        self.effects = effects
        self.channels = channels
        self.guard = OutputGuard(limit)
        self.length_faults = 0
        """Blocks an effect returned with another length than it was given (padded with zeros or cut)."""

    def prepare(self, sample_rate: float, block_size: int, max_voices: int) -> None:
        """Check the job against the limits (before allocating), prepare the synth, allocate the channel
        buffers, clear effect tails."""
        check_job(self.synth, max_voices, block_size, self.channels)
        if self.effects is not None:
            self.effects.check_rate(sample_rate)
        self.synth.prepare(sample_rate, block_size, max_voices)
        self.sample_rate = float(sample_rate)
        self._out = np.zeros((self.channels, block_size), np.float32)
        self._post = np.zeros((self.channels, block_size), np.float32)
        self.guard.prepare(sample_rate)
        self.length_faults = 0
        if self.effects is not None:  # one block through the board (first-call costs), then a clean start
            self.effects.process(self._out, self.sample_rate)
            self.effects.reset()

    def process(self, events: Sequence[Event], n_frames: int) -> np.ndarray:
        mono = self.synth.process(events, n_frames)
        out = self._out[:, :n_frames]
        out[:] = mono
        if self.effects is not None and len(self.effects):
            processed = self.effects.process(out, self.sample_rate)
            out = self._post[:, :n_frames]
            if processed.shape == out.shape:
                out[:] = processed
            else:  # an effect buffered or added samples: keep the block length, count it
                self.length_faults += 1
                kept = min(processed.shape[-1], n_frames) if processed.ndim == 2 else 0
                out[:, :kept] = processed[: self.channels, :kept] if kept else 0.0
                out[:, kept:] = 0.0
        return self.guard.process(out)

    def release(self) -> None:
        self.synth.release()


def check_job(synth: Synth, max_voices: int, block_size: int, channels: int) -> None:
    """Refuse, before anything is allocated, a synth whose voices, memory or warm-up time exceed the limits.

    Memory: every instrument's modal bank for ``max_voices`` plus its stolen-voice fade slots (see
    eigentone/limits.py ``synth_bytes``). Time: the warm-up's graph calls times the slowest probe call
    measured when the bundle loaded.
    """
    from engine.bundle import check_load_time
    from engine.synth import fade_slots

    limits.check("voices", max_voices, "--voices")
    slots = max_voices + fade_slots(max_voices)
    instruments = {id(inst): inst for inst in synth.channel_map.values()}.values()
    total = channels * block_size * 4 * 4
    for instrument in instruments:
        total += limits.synth_bytes(slots, instrument.modes, instrument.has_readout)
    names = ", ".join(sorted({inst.name for inst in instruments}))
    limits.check_memory(f"{max_voices} voices of {names}", total)
    for instrument in instruments:
        calls = warm_up_calls(synth, instrument, slots)
        check_load_time(instrument.bundle, calls)


def warm_up_calls(synth: Synth, instrument, slots: int) -> int:
    """Graph calls the synth's warm-up makes for one instrument (the synth's own count when it offers one)."""
    counter = getattr(synth, "warm_up_calls", None)
    if callable(counter):
        return int(counter(instrument, slots))
    return 32 + (slots if instrument.has_readout else 0)
