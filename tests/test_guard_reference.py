"""The output guard's compiled kernel against its algorithm written plainly, bit for bit.

The kernel takes shortcuts (intervals whose taps are too quiet to reach the ceiling skip the interpolation, a
tighter bound before the exact sums, the seven phases summed side by side, the gain scan skipped where nothing
was limited); none may change a bit of the output. The reference below computes every interval's exact
true-peak estimate, phase by phase with the taps in order, and the limiter's gain sample by sample
(engine/signal_chain.py module doc).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.signal_chain import ATTACK, CEILING, HALF_TAPS, LOOKAHEAD, RELEASE_S, TAPS, OutputGuard

FS = 48000


def reference_guard(x: np.ndarray, limit: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(output, counts) of a fresh guard fed x (channels, samples) float32 in one stream."""
    channels, n = x.shape
    finite = np.isfinite(x)
    v = np.where(finite, x, np.float32(0.0)).astype(np.float32)
    counts = np.zeros(4)
    counts[0] = np.count_nonzero(~finite)
    counts[2] = float(np.abs(v).max(initial=0.0))
    counts[3] = 1.0
    if not limit:
        return v, counts
    width = 2 * HALF_TAPS
    # interval m = pos - HALF_TAPS for pos = 0 .. n - 1 uses samples m - HALF_TAPS + 1 .. m + HALF_TAPS (zeros before 0)
    history = np.concatenate([np.zeros((channels, width - 1), np.float32), v], axis=1)
    intervals = np.arange(n) - HALF_TAPS
    peak = np.zeros(n)
    for c in range(channels):
        for p in range(TAPS.shape[0]):
            acc = np.zeros(n)
            for i in range(width):
                acc = acc + history[c, intervals + HALF_TAPS + i].astype(np.float64) * TAPS[p, i]
            peak = np.maximum(peak, np.abs(acc))
    previous = np.concatenate([[0.0], peak[:-1]])  # the interval before m (none before the first)
    at_m = np.abs(history[:, intervals + width - 1].astype(np.float64)).max(axis=0)
    local = np.maximum(np.maximum(peak, previous), at_m)
    over = local > CEILING
    ratio = np.where(over, CEILING / np.where(over, local, 1.0), 1.0)
    counts[1] = np.count_nonzero(over)
    # gain each leaving sample o = pos - LOOKAHEAD needs: ratios of intervals o - HALF_TAPS - ATTACK .. pos - HALF_TAPS,
    # full within HALF_TAPS of o, ramping linearly to 1 over ATTACK samples beyond that
    span = LOOKAHEAD + ATTACK + 1
    padded = np.concatenate([np.ones(span), ratio])  # ratio of interval j at padded[j + HALF_TAPS + span]
    needed = np.ones(n)
    for q in range(span):
        j = np.arange(n) - LOOKAHEAD - HALF_TAPS - ATTACK + q
        r = padded[j + HALF_TAPS + span]
        d = abs(q - HALF_TAPS - ATTACK)
        if d > HALF_TAPS:
            r = r + (1.0 - r) * (d - HALF_TAPS) / ATTACK
        needed = np.minimum(needed, r)
    release_coef = 1.0 - math.exp(-1.0 / (RELEASE_S * FS))
    delayed = np.concatenate([np.zeros((channels, LOOKAHEAD), np.float32), v], axis=1)
    out = np.zeros_like(v)
    g = 1.0
    for pos in range(n):
        if g < 1.0:
            g = g + (1.0 - g) * release_coef
            if g > 1.0 - 1e-7:
                g = 1.0
        g = min(g, float(needed[pos]))
        for c in range(channels):
            out[c, pos] = np.float32(min(max(float(delayed[c, pos]) * g, -CEILING), CEILING))
    counts[3] = g
    return out, counts


def guarded(x: np.ndarray, calls: list[int], limit: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(output, counts) of OutputGuard fed x in calls of the given lengths, cycled."""
    guard = OutputGuard(limit)
    guard.prepare(FS)
    y = x.copy()
    start, k = 0, 0
    while start < x.shape[1]:
        stop = min(start + calls[k % len(calls)], x.shape[1])
        guard.process(y[:, start:stop])
        start, k = stop, k + 1
    return y, guard.counts.copy()


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 6000
    t = np.arange(n) / FS
    tone = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)])
    clicks = tone.copy()
    clicks[0, 1000], clicks[1, 3000], clicks[:, 4500:4503] = 3e4, -1e6, 0.95  # far over, then quiet at once
    chord = sum(np.sin(2 * np.pi * f * t + f) for f in (110.0, 277.0, 415.0, 1234.0)) / 4
    near = np.stack([chord, chord[::-1]]) * np.linspace(0.5, 1.6, n)  # from quiet through the ceiling
    sharp = np.stack([np.sin(2 * np.pi * 11025 * t + 0.4), np.sin(2 * np.pi * 3000 * t)]) * 0.86  # peaks between samples
    burst = rng.normal(0, 1, (2, n)) * np.exp(-np.arange(n) / 1200) * 1.5
    bad = near.copy()
    bad[0, 100], bad[1, 2000], bad[0, 2001] = np.nan, np.inf, -np.inf
    named = {"quiet tone with huge clicks": clicks, "chord rising through the ceiling": near,
             "tones near the ceiling, peaks between samples": sharp, "decaying noise burst": burst,
             "non-finite samples": bad}
    return {name: s.astype(np.float32) for name, s in named.items()}


@pytest.mark.parametrize("calls", [[64], [1, 37, 4096], [128, 5]], ids=["64", "1-37-4096", "128-5"])
@pytest.mark.parametrize("name", list(signals()))
def test_guard_equals_the_plain_algorithm_bit_for_bit(name, calls):
    x = signals()[name]
    want, want_counts = reference_guard(x)
    got, got_counts = guarded(x, calls)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_counts, want_counts)


def test_guard_without_limit_equals_the_plain_algorithm():
    x = signals()["non-finite samples"]
    want, want_counts = reference_guard(x, limit=False)
    got, got_counts = guarded(x, [37], limit=False)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_counts, want_counts)
