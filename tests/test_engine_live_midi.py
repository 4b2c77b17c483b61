"""Live MIDI timing in the real-time callback: events placed by the stream's clock, one block of latency.

No audio device here: the callback is called directly with the stream times a PortAudio stream would pass
(``time_info.currentTime``, including late starts), with MIDI stamps on the same clock, and a chain that
records the events it receives. The same scheme against a real JACK server: tests/test_realtime_jack.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from recording_chain import RecordingChain

from engine.midi_file import MidiSchedule
from engine.realtime import RealtimeEngine, live_frame

FS = 48000
BLOCK = 64
ORIGIN = 5.0  # stream time (s) of frame 0


def at(frames: float) -> float:
    """Stream time (s) of a frame number."""
    return ORIGIN + frames / FS


def engine_for(schedule: MidiSchedule | None = None) -> tuple[RealtimeEngine, RecordingChain]:
    chain = RecordingChain()
    return RealtimeEngine(chain, sample_rate=FS, block_size=BLOCK, max_voices=1, schedule=schedule), chain


def run_callback(engine: RealtimeEngine, frames: int, late: float = 0.0) -> None:
    """One callback for the next ``frames`` frames, entered ``late`` frames after its nominal stream time."""
    status = SimpleNamespace(output_underflow=False, output_overflow=False)
    engine._callback(np.zeros((frames, 1), np.float32), frames, SimpleNamespace(currentTime=at(engine.frame + late)),
                     status)


def played(chain: RecordingChain) -> dict[int, int]:
    """Frame at which each event sounded, keyed by its data2 (a tag)."""
    return {event[3]: start + event[0] for start, events in chain.blocks for event in events}


def test_live_frame_is_one_latency_after_the_arrival():
    assert live_frame(at(0), ORIGIN, FS, BLOCK) == BLOCK
    assert live_frame(at(10.4), ORIGIN, FS, BLOCK) == 10 + BLOCK  # rounded to the nearest frame
    assert live_frame(at(10.6), ORIGIN, FS, BLOCK) == 11 + BLOCK
    assert live_frame(-np.inf, ORIGIN, FS, BLOCK) == -1  # stamped before the stream existed: at once


def test_events_sound_one_block_after_arrival_whatever_the_callback_jitter():
    """Callbacks start up to 40 frames late (at random); every event still sounds exactly BLOCK frames after it
    arrived on the stream clock. Placing events relative to the callback's start would move them by the jitter."""
    rng = np.random.default_rng(0)
    engine, chain = engine_for()
    lateness = np.concatenate([[0.0], rng.uniform(0, 40, 199)])
    arrivals, tag = {}, 1
    for k in range(200):
        # events arrive between the previous callback's start and this one's (the MIDI thread runs meanwhile)
        previous = (k - 1) * BLOCK + lateness[k - 1] if k else 0.0
        for arrival in np.sort(rng.uniform(previous, k * BLOCK + lateness[k], rng.integers(0, 3))):
            engine.push(0x90, 60, tag % 128, at(arrival))
            arrivals[tag % 128] = arrival
            tag += 1
        run_callback(engine, BLOCK, late=lateness[k])
        start, events = chain.blocks[-1]
        for offset, _, _, key in events:
            assert start + offset == round(arrivals.pop(key)) + BLOCK, (k, key)
    assert tag > 150 and not arrivals and engine.origin == ORIGIN


def test_late_events_sound_at_once_in_order():
    engine, chain = engine_for()
    run_callback(engine, BLOCK)  # frames [0, 64): establishes the clock
    engine.push(0x90, 62, 3, at(BLOCK + 30 - BLOCK))  # sounds at frame 94
    engine.push(0x90, 61, 1, at(-100))  # far too late (a stalled MIDI thread): at the block start
    engine.push(0x90, 63, 2, at(BLOCK + 5 - BLOCK))  # stamped before the previous one (two producers)
    run_callback(engine, BLOCK)
    assert chain.blocks[1] == (BLOCK, [(0, 0x90, 61, 1), (5, 0x90, 63, 2), (30, 0x90, 62, 3)])


def test_an_event_for_a_later_block_waits_in_the_queue():
    engine, chain = engine_for()
    run_callback(engine, BLOCK)
    engine.push(0x90, 60, 1, at(BLOCK + 10))  # arrived during a late start of the next callback: frame 138
    run_callback(engine, BLOCK, late=20)
    run_callback(engine, BLOCK)
    assert chain.blocks[1][1] == [] and chain.blocks[2] == (2 * BLOCK, [(10, 0x90, 60, 1)])


def test_the_clock_origin_follows_frames_lost_in_an_xrun():
    engine, _ = engine_for()
    for _ in range(10):
        run_callback(engine, BLOCK)
    for _ in range(1000):  # from now on the stream runs 5 blocks ahead of the frames rendered (an xrun)
        run_callback(engine, BLOCK, late=5 * BLOCK + 7)
    assert engine.origin == at(5 * BLOCK + 7)


def test_live_and_scheduled_events_merge_by_offset():
    schedule = MidiSchedule(np.array([0, 20, 40]), np.array([[0x90, 50, 90], [0x90, 51, 91], [0x90, 52, 92]]), 40, FS)
    engine, chain = engine_for(schedule)
    engine.push(0x90, 70, 1, at(20 - BLOCK))
    engine.push(0x90, 71, 2, at(33 - BLOCK))
    run_callback(engine, BLOCK)
    offsets = [(event[0], event[2]) for event in chain.blocks[0][1]]
    assert offsets == [(0, 50), (20, 70), (20, 51), (33, 71), (40, 52)]  # live first at equal offsets


def test_a_long_callback_splits_live_events_across_its_blocks():
    engine, chain = engine_for()
    for tag, frame in enumerate((3, 70, 127)):
        engine.push(0x90, 60, tag, at(frame - BLOCK))
    run_callback(engine, 2 * BLOCK)  # the host asks for two prepared blocks at once
    assert chain.blocks == [(0, [(3, 0x90, 60, 0)]), (BLOCK, [(6, 0x90, 60, 1), (63, 0x90, 60, 2)])]
    assert engine.live_events == 3 and engine.live_log[1].tolist() == [at(70 - BLOCK), 70, ORIGIN]
    assert engine.live_latencies().tolist() == [BLOCK] * 3
