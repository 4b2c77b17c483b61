"""Live MIDI input: raw bytes from python-rtmidi to the engine's (status, data1, data2) messages, drained by
the audio callback and placed by rtmidi's timestamps on the stream clock.

The JACK MIDI path end to end (a port, notes sent, each sounding one block after its arrival) is tested in
tests/test_realtime_jack.py; here the parsing (against mido's reading of the same bytes) and the placement.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import mido
import numpy as np
import pytest
from recording_chain import RecordingChain

from engine.realtime import MidiInput, RealtimeEngine, channel_message

THREE_BYTES = [*range(0x80, 0xC0), *range(0xE0, 0xF0)]  # note off/on, poly pressure, control change, pitch bend
TWO_BYTES = list(range(0xC0, 0xE0))  # program change, channel pressure
DATA = (0, 1, 64, 127)


def _mido(data: list[int]) -> tuple[int, int, int]:
    """What the engine received through mido for a well-formed channel message (the previous input path)."""
    raw = mido.Message.from_bytes(data).bytes()
    return (raw[0], raw[1], raw[2] if len(raw) == 3 else 0)


@pytest.mark.parametrize("status", THREE_BYTES + TWO_BYTES)
def test_well_formed_channel_messages_read_as_mido_reads_them(status):
    length = 2 if status in TWO_BYTES else 3
    for tail in itertools.product(DATA, repeat=length - 1):
        data = [status, *tail]
        assert channel_message(data) == _mido(data), data


def test_everything_else_is_dropped():
    assert channel_message([0x90, 60]) is None  # too short
    assert channel_message([0xE0, 0, 64, 0]) is None  # too long
    assert channel_message([0xC0, 5, 0]) is None  # a two-byte message with three
    assert channel_message([0x90, 0x80, 100]) is None and channel_message([0x90, 60, 0xF7]) is None  # not data bytes
    assert channel_message([0xB0, 7, 200]) is None and channel_message([0xD0, 130]) is None
    for status in range(0xF0, 0x100):  # system messages (sysex, clock, active sensing...): not for the engine
        for length in range(1, 4):
            assert channel_message([status, *[0] * (length - 1)]) is None
    assert channel_message([0x40, 0x40, 0x40]) is None  # no status byte


class _FakeRtMidi:
    """What MidiInput uses of rtmidi.MidiIn: its queue (get_message, ((bytes, delta time)) or None)."""

    def __init__(self, queued=()):
        self.calls: list[str] = []
        self.queued = list(queued)

    def get_message(self):
        return self.queued.pop(0) if self.queued else None

    def close_port(self):
        self.calls.append("close_port")

    def delete(self):
        self.calls.append("delete")


def test_a_polled_midi_input_hands_out_rtmidis_queue_and_closes_its_port():
    midi = _FakeRtMidi([([0x90, 60, 100], 0.0), ([0x80, 60, 0], 0.25)])
    port = MidiInput(midi, "keys")
    assert port.name == "keys"
    assert [port.poll(), port.poll(), port.poll()] == [([0x90, 60, 100], 0.0), ([0x80, 60, 0], 0.25), None]
    port.close()
    assert midi.calls == ["close_port", "delete"]


# ---------------------------------------------------------------- drained by the audio callback

FS = 48000
BLOCK = 64
ORIGIN = 5.0  # stream time (s) of frame 0


class _Keyboard:
    """rtmidi's queue: messages arrive at given stream times (frames); ``poll`` hands out those that arrived by
    ``now`` as rtmidi does: (bytes, seconds since the previous message, 0.0 for the first)."""

    def __init__(self, arrivals: list[tuple[float, list[int]]]):
        self.arrivals = arrivals
        self.next = 0
        self.now = 0.0

    def poll(self):
        if self.next == len(self.arrivals) or self.arrivals[self.next][0] > self.now:
            return None
        frame, data = self.arrivals[self.next]
        delta = (frame - self.arrivals[self.next - 1][0]) / FS if self.next else 0.0
        self.next += 1
        return data, delta


def _play(arrivals: list[tuple[float, list[int]]], lateness: list[float]) -> dict[int, int]:
    """Run callbacks (the k-th entered lateness[k] frames after its nominal time) draining a keyboard; the frame
    each note-on sounded at, keyed by its velocity (a tag)."""
    chain = RecordingChain()
    engine = RealtimeEngine(chain, sample_rate=FS, block_size=BLOCK, max_voices=1)
    keys = _Keyboard(arrivals)
    engine.midi_in = keys
    status = SimpleNamespace(output_underflow=False, output_overflow=False)
    for late in lateness:
        keys.now = engine.frame + late
        engine._callback(np.zeros((BLOCK, 1), np.float32), BLOCK,
                         SimpleNamespace(currentTime=ORIGIN + keys.now / FS), status)
    return {event[3]: start + event[0] for start, events in chain.blocks for event in events}


def test_drained_messages_sound_one_block_after_their_arrival():
    """The first message arrives exactly at a callback's start, so its arrival on the stream clock is known; every
    later one is placed by rtmidi's timestamps, exactly BLOCK frames after it arrived, whenever it was drained
    and however late the callbacks started."""
    rng = np.random.default_rng(3)
    times = [float(BLOCK)] + sorted(rng.uniform(BLOCK + 1, 150 * BLOCK, 120).round(3).tolist())
    arrivals = [(t, [0x90, 60, tag + 1]) for tag, t in enumerate(times)]
    arrivals.insert(40, ((times[39] + times[40]) / 2, [0x90, 60]))  # malformed: dropped, its delta still counts
    lateness = [0.0, 0.0] + rng.uniform(0, 40, 160).tolist()
    sounded = _play(arrivals, lateness)
    assert len(sounded) == len(times)
    for tag, t in enumerate(times):
        assert sounded[tag + 1] == round(t) + BLOCK, (tag, t)


def test_the_arrival_estimate_only_improves():
    """No message arrives at a callback's start until the tenth: until then the first message's arrival is known
    only to lie before the callback that drained it (events sound up to a block late, never early); from a message
    drained at once on, every event is exact."""
    times = [BLOCK + 10.0, BLOCK + 30.0, 3 * BLOCK + 5.0, 4 * BLOCK + 50.0, 6 * BLOCK + 1.0, 7 * BLOCK + 63.0,
             8 * BLOCK + 20.0, 9 * BLOCK + 33.0, 10 * BLOCK + 2.0, 12 * BLOCK, 13 * BLOCK + 7.0, 15 * BLOCK + 40.0]
    sounded = _play([(t, [0x90, 60, tag + 1]) for tag, t in enumerate(times)], [0.0] * 20)
    early = [sounded[tag + 1] - (round(t) + BLOCK) for tag, t in enumerate(times)]
    assert all(0 <= lag <= BLOCK for lag in early[:9]) and early[0] > 0
    assert early[9:] == [0, 0, 0]
