"""Live MIDI timing in the real-time callback: arrival stamps -> sample offsets, one block period of latency.

No audio device and no real clock: the engine's clock is replaced by a list of given times (ns), and
the callback is called directly with a chain that records the events it receives.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from engine.midi_file import MidiSchedule
from engine.realtime import RealtimeEngine, live_offset

FS = 48000
BLOCK = 64
SECOND = 1_000_000_000


def ns(samples: float) -> int:
    """A time in ns from a time in samples at FS."""
    return round(samples * SECOND / FS)


class RecordingChain:
    """Stands in for a SignalChain: keeps every (frame of block start, events) it is asked to render."""

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


def engine_with_clock(times: list[int], schedule: MidiSchedule | None = None) -> tuple[RealtimeEngine, RecordingChain]:
    chain = RecordingChain()
    engine = RealtimeEngine(chain, sample_rate=FS, block_size=BLOCK, max_voices=1, schedule=schedule)
    clock = iter(times)
    engine.clock = lambda: next(clock)
    return engine, chain


def run_callback(engine: RealtimeEngine, frames: int) -> None:
    status = SimpleNamespace(output_underflow=False, output_overflow=False)
    engine._callback(np.zeros((frames, 1), np.float32), frames, None, status)


def test_live_offset_maps_arrival_times_to_samples():
    start = 7 * SECOND  # the callback time one block earlier
    assert live_offset(start, start, FS, BLOCK) == 0
    assert live_offset(start + ns(10), start, FS, BLOCK) == 10
    assert live_offset(start + ns(10.4), start, FS, BLOCK) == 10  # rounded to the nearest sample
    assert live_offset(start + ns(10.6), start, FS, BLOCK) == 11
    assert live_offset(start + ns(63), start, FS, BLOCK) == 63
    assert live_offset(start - ns(5), start, FS, BLOCK) == 0  # too late: at the block start
    assert live_offset(start + ns(64), start, FS, BLOCK) == 63  # after the callback entry: last sample
    assert live_offset(start + 10 * SECOND, start, FS, BLOCK) == 63


def test_live_events_have_a_constant_latency_of_one_block():
    rng = np.random.default_rng(0)
    arrivals = np.sort(rng.choice(np.arange(BLOCK, 20 * BLOCK), size=60, replace=False))  # samples
    # Callback k renders frames [k * BLOCK, (k + 1) * BLOCK) and is entered exactly at (k + 1) * BLOCK samples
    # on the clock (the frame starting it then plays), so it gets the events that arrived in [k * BLOCK,
    # (k + 1) * BLOCK). The clock yields the entry time, then the end time (for the duration ring).
    engine, chain = engine_with_clock([t for k in range(20) for t in (ns((k + 1) * BLOCK), ns((k + 1) * BLOCK))])
    for k in range(20):
        for i in np.flatnonzero(arrivals // BLOCK == k):
            engine.push(0x90, 60, 1 + int(i), ns(arrivals[i]))
        run_callback(engine, BLOCK)
    played = {event[3] - 1: start + event[0] for start, events in chain.blocks for event in events}
    assert sorted(played) == list(range(len(arrivals)))
    frames = np.array([played[i] for i in range(len(arrivals))])
    # Frame f plays at clock time f + BLOCK (samples): every event sounds exactly one block after it arrived.
    np.testing.assert_array_equal(frames + BLOCK - arrivals, np.full(len(arrivals), BLOCK))


def test_late_events_land_at_zero_and_events_come_out_sorted():
    engine, chain = engine_with_clock([ns(2 * BLOCK), ns(2 * BLOCK)])
    engine.push(0x90, 62, 100, ns(BLOCK + 30))
    engine.push(0x90, 61, 100, ns(BLOCK - 20))  # arrived before the previous block start: too late
    engine.push(0x90, 63, 100, ns(BLOCK + 5))  # stamped out of order (two producers)
    run_callback(engine, BLOCK)
    assert chain.blocks == [(0, [(0, 0x90, 61, 100), (5, 0x90, 63, 100), (30, 0x90, 62, 100)])]


def test_live_and_scheduled_events_merge_by_offset():
    schedule = MidiSchedule(np.array([0, 20, 40]), np.array([[0x90, 50, 90], [0x90, 51, 90], [0x90, 52, 90]]), 40, FS)
    engine, chain = engine_with_clock([ns(BLOCK), ns(BLOCK)], schedule=schedule)
    engine.push(0x90, 70, 100, ns(20))
    engine.push(0x90, 71, 100, ns(33))
    run_callback(engine, BLOCK)
    offsets = [(event[0], event[2]) for event in chain.blocks[0][1]]
    assert offsets == [(0, 50), (20, 70), (20, 51), (33, 71), (40, 52)]  # live first at equal offsets


def test_a_long_callback_splits_live_events_across_its_blocks():
    engine, chain = engine_with_clock([ns(3 * BLOCK), ns(3 * BLOCK)])
    for note, sample in enumerate((BLOCK + 3, BLOCK + 70, BLOCK + 127)):
        engine.push(0x90, note, 100, ns(sample))
    run_callback(engine, 2 * BLOCK)  # the host asks for two prepared blocks at once
    assert chain.blocks == [(0, [(3, 0x90, 0, 100)]), (BLOCK, [(6, 0x90, 1, 100), (63, 0x90, 2, 100)])]
