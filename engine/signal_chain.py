"""Synth -> channel copy -> effects -> output guard: the per-block signal path of real time and offline rendering.

The output guard is the last stage of every output path, after the effects: whatever the
synth, an effect or a hosted plugin produced, only sound leaves it.

* Non-finite samples (NaN, +-Inf) are replaced by 0.
* A stereo-linked true-peak limiter keeps the reconstructed waveform at or below ``CEILING``
  (-1 dBTP) and every sample below it. The true peak is estimated as BS.1770-4 meters do, by
  oversampling (``PHASES`` = 8x): windowed-sinc interpolators (2 x ``HALF_TAPS`` taps) give the
  waveform at 7 points between samples. The gain needed at each sample
  (ceiling / local true peak) is applied ``HALF_TAPS`` samples either side and approached over
  ``ATTACK`` samples before that (a linear ramp, no click), then recovers with a 50 ms release.
  Seeing those peaks in time needs ``LOOKAHEAD`` = 2 ``HALF_TAPS`` + ``ATTACK`` = 32 samples of delay
  (0.67 ms at 48 kHz): live output is that much later; offline rendering removes it
  (engine/render.py), so a render is sample-aligned with the MIDI file, and below the ceiling the
  guard changes nothing but the delay.
* ``limit=False`` (``--no-limit``, float WAVs only) skips the limiter and its delay; non-finite samples
  are still zeroed.

The guard counts what it did in preallocated arrays (non-finite samples, sample frames whose true peak
was over the ceiling, the largest finite sample before it), on the audio thread without allocating;
the caller reports the counts off the audio thread (``describe_guard``).
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
"""Largest true-peak (and sample) magnitude the guard lets through: -1 dBTP."""

RELEASE_S = 0.05
"""Time constant (s) of the limiter's return to unity gain."""

HALF_TAPS = 12
"""Samples each side of an interval used to interpolate the waveform inside it (24 taps per phase)."""

PHASES = 8
"""Oversampling factor of the true-peak estimate (7 points between samples)."""

ATTACK = 8
"""Samples over which the gain ramps down before the samples that must be reduced."""

LOOKAHEAD = 2 * HALF_TAPS + ATTACK
"""Delay of the limited output, samples: HALF_TAPS to see an interval's peak, HALF_TAPS + ATTACK to ramp before it."""

RING = 128
"""Ring-buffer length (a power of two > LOOKAHEAD + 2 * (HALF_TAPS + ATTACK))."""

NONFINITE, LIMITED, PEAK, GAIN = range(4)
"""Slots of ``OutputGuard.counts``: non-finite samples zeroed, sample frames whose true peak was over the
ceiling, largest finite |x| seen before the guard, the limiter's current gain."""


def interpolation_taps(half: int = HALF_TAPS, phases: int = PHASES, beta: float = 7.0) -> np.ndarray:
    """(phases - 1, 2 half) float64: Kaiser-windowed sinc taps giving x(m + p / phases), p = 1 .. phases - 1,
    from x[m - half + 1 .. m + half]. Each phase is normalised to unit DC gain."""
    taps = np.zeros((phases - 1, 2 * half))
    offsets = np.arange(-half + 1, half + 1)
    for p in range(1, phases):
        t = p / phases - offsets  # distance from each sample to the point wanted
        window = np.i0(beta * np.sqrt(np.clip(1 - (t / half) ** 2, 0, None))) / np.i0(beta)
        taps[p - 1] = np.sinc(t) * window
        taps[p - 1] /= taps[p - 1].sum()
    return taps


TAPS = interpolation_taps()

WIDEST = np.abs(TAPS).max(axis=0)
"""(2 HALF_TAPS,) float64: the largest |tap| of any phase at each tap position (a bound of every phase's weights)."""


NEXT, LOUD, LIMITED_AT = range(3)
"""Slots of ``OutputGuard.position`` (int64 absolute sample indices): the next input sample, the last sample loud
enough that an interval around it may peak over the ceiling, the last interval given a gain below 1."""

NEVER = -(1 << 62)
"""Index of an event that has not happened (LOUD and LIMITED_AT of a fresh stream)."""


@numba.njit(cache=True)
def guard_block(x, n, hist, seg, ratio, position, counts, taps, widest, ceiling, release_coef,
                limit):  # pragma: no cover
    """In place on x[:, :n] (channels, samples) float32; see the module doc.

    hist: (channels, RING) float32 ring of input samples; seg: (RING,) float64 ring, peak of the interpolated
    waveform in the interval after each sample where it may exceed the ceiling (else a value <= ceiling, see
    below); ratio: (RING,) float64 ring, gain each sample needs; position: (3,) int64 (NEXT, LOUD, LIMITED_AT);
    counts: (4,) float64 (NONFINITE, LIMITED, PEAK running totals, GAIN limiter state); taps: (7, 2 HALF_TAPS)
    float64 (PHASES = 8); widest: (2 HALF_TAPS,) float64, max_p |taps[p, i]|. Rings are indexed by absolute
    sample index & (RING - 1). With ``limit`` the output is the input LOOKAHEAD samples earlier, limited.

    Only a local peak over the ceiling sets a ratio below 1, and then values <= ceiling do not decide the max: an
    interval shown not to reach the ceiling stores any value <= ceiling in seg, and the ratios (so the output)
    are those of the exact peaks. |interpolated sample| <= max |x| over its taps x the largest L1 norm of a phase
    (with a margin for the float64 rounding of the sums), so an interval whose taps are all at most ``quiet``
    cannot reach the ceiling: LOUD, the last sample above ``quiet``, decides that without looking at the taps.
    """
    mask = hist.shape[1] - 1
    channels = x.shape[0]
    width = taps.shape[1]
    half = width // 2
    attack = LOOKAHEAD - 2 * half
    pos, loud, limited_at = position[NEXT], position[LOUD], position[LIMITED_AT]
    g = counts[GAIN]
    norm = 0.0
    for p in range(taps.shape[0]):
        total = 0.0
        for i in range(width):
            total += abs(taps[p, i])
        norm = max(norm, total)
    quiet = ceiling / (norm * (1.0 + 1e-9))
    for k in range(n):
        slot = pos & mask
        for c in range(channels):
            v = x[c, k]
            if not np.isfinite(v):
                v = np.float32(0.0)
                counts[NONFINITE] += 1.0
            hist[c, slot] = v
            counts[PEAK] = max(counts[PEAK], abs(v))
            if abs(v) > quiet:
                loud = pos
        if not limit:
            for c in range(channels):
                x[c, k] = hist[c, slot]
            pos += 1
            continue
        m = pos - half  # the interval (m, m + 1) is now fully known
        first = m - half + 1  # its first tap's sample
        peak = 0.0
        if loud >= first:
            peak = _interval_peak(hist, first, mask, taps, widest, ceiling)
        seg[m & mask] = peak
        local = max(peak, seg[(m - 1) & mask])
        for c in range(channels):
            local = max(local, abs(hist[c, m & mask]))
        if local > ceiling:
            ratio[m & mask] = ceiling / local
            counts[LIMITED] += 1.0
            limited_at = m
        else:
            ratio[m & mask] = 1.0
        o = pos - LOOKAHEAD  # the sample leaving now
        needed = 1.0
        if limited_at >= o - half - attack:  # else every ratio in the window is 1
            for j in range(o - half - attack, m + 1):
                r = ratio[j & mask]
                if r < needed:
                    d = abs(o - j)
                    if d > half:
                        r = r + (1.0 - r) * (d - half) / attack
                    needed = min(needed, r)
        if g < 1.0:
            g = g + (1.0 - g) * release_coef
            if g > 1.0 - 1e-7:
                g = 1.0
        g = min(g, needed)
        for c in range(channels):
            y = hist[c, o & mask] * g
            x[c, k] = np.float32(min(max(y, -ceiling), ceiling))
        pos += 1
    position[NEXT], position[LOUD], position[LIMITED_AT] = pos, loud, limited_at
    counts[GAIN] = g


@numba.njit(cache=True)
def _interval_peak(hist, first, mask, taps, widest, ceiling):  # pragma: no cover
    """Peak of the waveform interpolated at the PHASES - 1 points after sample first + HALF_TAPS - 1 (both
    channels), or a bound of it when that bound is <= ceiling.

    hist: (channels, RING) float32 ring; first: absolute index of the first tap's sample; taps: (7, 24) float64;
    widest: (24,) float64, max_p |taps[p, i]|: sum_i |x_i| widest_i bounds every phase's |sum_i x_i taps[p, i]|.
    Each phase's sum runs over the taps in order (i = 0, 1, ...): the seven phases accumulate side by side, in
    seven independent chains, each with the same operations in the same order as one phase alone.
    """
    bound = 0.0
    for c in range(hist.shape[0]):
        total = 0.0
        for i in range(taps.shape[1]):
            total += abs(hist[c, (first + i) & mask]) * widest[i]
        bound = max(bound, total)
    bound *= 1.0 + 1e-9
    if bound <= ceiling:
        return bound
    peak = 0.0
    for c in range(hist.shape[0]):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = 0.0
        for i in range(taps.shape[1]):
            v = float(hist[c, (first + i) & mask])
            a0 += v * taps[0, i]
            a1 += v * taps[1, i]
            a2 += v * taps[2, i]
            a3 += v * taps[3, i]
            a4 += v * taps[4, i]
            a5 += v * taps[5, i]
            a6 += v * taps[6, i]
        peak = max(peak, abs(a0), abs(a1), abs(a2), abs(a3), abs(a4), abs(a5), abs(a6))
    return peak


class OutputGuard:
    """The last stage of every output path; see the module doc. ``process(block)`` works in place.

    ``latency``: samples by which the output trails the input (LOOKAHEAD with the limiter, else 0).
    """

    def __init__(self, limit: bool = True, ceiling: float = CEILING, channels: int = 2):
        self.limit = limit
        self.ceiling = ceiling
        self.latency = LOOKAHEAD if limit else 0
        self.counts = np.zeros(4)
        self.hist = np.zeros((channels, RING), np.float32)
        self.seg = np.zeros(RING)
        self.ratio = np.ones(RING)
        self.position = np.zeros(3, np.int64)
        self._release_coef = 0.0
        self.reset()

    def reset(self) -> None:
        """Clear the delay line, the limiter and the counts."""
        self.counts[:] = 0.0
        self.counts[GAIN] = 1.0
        self.hist[:] = 0.0
        self.seg[:] = 0.0
        self.ratio[:] = 1.0
        self.position[:] = (0, NEVER, NEVER)

    def prepare(self, sample_rate: float) -> None:
        """Reset for a new stream at ``sample_rate`` Hz; compile/load the kernel here, not on the audio thread."""
        self._release_coef = 1.0 - math.exp(-1.0 / (RELEASE_S * sample_rate))
        self.process(np.zeros((self.hist.shape[0], 1), np.float32))
        self.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        """Guard a (channels, samples) float32 block in place and return it."""
        guard_block(block, block.shape[1], self.hist, self.seg, self.ratio, self.position, self.counts, TAPS,
                    WIDEST, self.ceiling, self._release_coef, self.limit)
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
        parts.append(f"limited {guard.limited:,} sample frames over -1 dBTP (samples up to {over:+.1f} dB over)")
    return f"output guard: {' and '.join(parts)} in {what}; lower --gain-db or the effects' gain"


class SignalChain:
    """``process(events, n_frames)`` -> (channels, n_frames) float32: the synth's mono block copied to
    ``channels``, run through the effects chain (if any) and the output guard.

    ``limit=False`` turns off the guard's limiter (float output only); non-finite samples are zeroed
    always. The output trails the events by ``latency`` samples (the synth's look-ahead, then the guard's). The
    returned array is a preallocated buffer, valid until the next call.
    """

    def __init__(self, synth: Synth, effects: EffectsChain | None = None, channels: int = 2, limit: bool = True):
        self.synth = synth
        self.effects = effects
        self.channels = channels
        self.guard = OutputGuard(limit, channels=channels)
        self.latency = getattr(synth, "lookahead", 0) + self.guard.latency
        """Samples by which the output trails the events (the synth's look-ahead plus the guard's)."""
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

    Memory: every instrument's voices for ``max_voices`` plus its stolen-voice fade slots (``Synth.part_bytes``
    when the synth offers it, else eigentone/limits.py ``synth_bytes``). Time: the warm-up's graph calls times the slowest probe call
    measured when the bundle loaded.
    """
    from engine.bundle import check_load_time
    from engine.synth import fade_slots

    limits.check("voices", max_voices, "--voices")
    slots = max_voices + fade_slots(max_voices)
    instruments = {id(inst): inst for inst in synth.channel_map.values()}.values()
    total = channels * block_size * 4 * 4
    measured = getattr(synth, "part_bytes", None)  # the synth's own account of what prepare allocates, if it has one
    for instrument in instruments:
        if callable(measured):
            total += int(measured(instrument, slots))
            continue
        attack = instrument.manifest.get("attack") or {}
        total += limits.synth_bytes(slots, instrument.modes, instrument.has_readout, int(attack.get("samples", 0)))
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
