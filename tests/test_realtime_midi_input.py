"""Live MIDI input: raw bytes from python-rtmidi to the engine's (status, data1, data2) messages.

The JACK MIDI path end to end (a port, notes sent, each sounding one block after its arrival) is tested in
tests/test_realtime_jack.py; here the parsing, against mido's reading of the same bytes.
"""

from __future__ import annotations

import itertools

import mido
import pytest

from engine.realtime import MidiInput, channel_message

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
    """What MidiInput uses of rtmidi.MidiIn: a callback called with ((bytes, delta time), user data)."""

    def __init__(self):
        self.callback = None
        self.calls: list[str] = []

    def set_callback(self, callback):
        self.callback = callback

    def cancel_callback(self):
        self.calls.append("cancel_callback")

    def close_port(self):
        self.calls.append("close_port")

    def delete(self):
        self.calls.append("delete")


def test_midi_input_passes_channel_messages_in_order_and_closes_its_port():
    received = []
    midi = _FakeRtMidi()
    port = MidiInput(midi, "keys", lambda *message: received.append(message))
    for data in ([0x90, 60, 100], [0xF8], [0xB0, 64, 127], [0x90, 61], [0xD3, 40], [0x80, 60, 0]):
        midi.callback((data, 0.001), None)
    assert received == [(0x90, 60, 100), (0xB0, 64, 127), (0xD3, 40, 0), (0x80, 60, 0)]
    assert port.name == "keys"
    port.close()
    assert midi.calls == ["cancel_callback", "close_port", "delete"]
