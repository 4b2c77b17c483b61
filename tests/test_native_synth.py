"""The native synth against engine/synth.py: the demo song, stealing, controllers, NaN guard, host buffers."""

from __future__ import annotations

import numpy as np
import pytest
from native_helpers import build_native, write_modal

from engine.instrument import Instrument
from engine.midi_file import MidiSchedule, read_midi, write_demo_song
from engine.render import render_midi

FLOOR_DB = -80.0

@pytest.fixture(scope="module", autouse=True)
def native_core():
    return build_native()



def _schedule(events: list[tuple[int, int, int, int]], sample_rate: float, length: int) -> MidiSchedule:
    events = sorted(events, key=lambda e: e[0])
    return MidiSchedule(np.array([e[0] for e in events], np.int64), np.array([e[1:] for e in events], np.int32).reshape(-1, 3),
                        length, float(sample_rate))


def _native(path, schedule, n_frames, host_block=64, **options):
    from plugins.native.binding import NativeInstrument, NativeSynth

    synth = NativeSynth(NativeInstrument(path), schedule.sample_rate, 64, 64, **options)
    out = synth.render(schedule.frames, schedule.messages, n_frames + synth.latency, host_block)
    return out[synth.latency :], synth


def _compare(path, schedule, **options):
    """(error dB, engine render, native render, native synth). The engine renders through render_midi without
    the output guard's limiter (limit=False): the guard is the last stage of `eigentone render`'s output path,
    after the synth; the plugin is the synth (in a DAW the master bus comes after it)."""
    from plugins.native.parity import error_db

    engine_options = {k: v for k, v in options.items() if k not in ("max_voices",)}
    reference = render_midi(schedule, Instrument.load(path), sample_rate=schedule.sample_rate, limit=False,
                            max_voices=options.get("max_voices", 64), **engine_options).audio[0]
    native, synth = _native(path, schedule, reference.shape[0], **options)
    return error_db(reference, native), reference, native, synth


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
def test_demo_song_matches_the_engine(sample_rate):
    """assets/demo/demo.mid with its five instruments, one native synth per instrument (see parity.py)."""
    from plugins.native.parity import demo_parity

    db, reference, _native_audio = demo_parity(sample_rate)
    print(f"demo at {sample_rate} Hz: native vs engine error {db:.1f} dB ({reference.shape[0] / sample_rate:.1f} s)")
    assert np.max(np.abs(reference)) > 0.1
    assert db <= FLOOR_DB


@pytest.fixture(scope="module")
def dense_song(tmp_path_factory):
    return write_demo_song(tmp_path_factory.mktemp("native-song") / "dense.mid", seconds=6.0, polyphony=12, seed=3,
                           pedal=True)


@pytest.mark.parametrize("steal_fade", [True, False])
def test_stealing_matches_the_engine(dense_song, steal_fade):
    """Twelve overlapping lanes on six voices: steals every few blocks, fading (or cut) in spare slots."""
    path = "assets/models/nylon-string.etone"
    schedule = read_midi(dense_song, 48000)
    held, most = 0, 0
    for status, _, velocity in schedule.messages:   # the song holds more notes than the six voices
        held += 1 if status & 0xF0 == 0x90 and velocity else -1 if status & 0xF0 in (0x80, 0x90) else 0
        most = max(most, held)
    assert most > 6
    db, _, _, _ = _compare(path, schedule, max_voices=6, steal_fade=steal_fade)
    print(f"stealing (fade={steal_fade}): {db:.1f} dB")
    assert db <= FLOOR_DB


def test_controllers_and_mid_block_events_match_the_engine(tmp_path):
    """Bend, sustain, reset controllers, all notes off and all sound off at offsets inside blocks (the
    per-segment path), on a bundle with a readout graph and pole modulation."""
    path = write_modal(tmp_path / "mod.etone", modes=48, readout=True, modulation=True, note_range=(36, 84))
    fs = 48000
    events = [(0, 0x90, 48, 100), (100, 0x90, 55, 80), (1000, 0xE0, 0, 90), (5030, 0xB0, 64, 127),
              (5031, 0x80, 48, 0), (9000, 0x91, 60, 70), (12001, 0xE0, 127, 20), (15000, 0xB0, 64, 0),
              (20017, 0x90, 64, 127), (20017, 0x90, 67, 127), (26000, 0xB1, 121, 0), (30000, 0xB0, 123, 0),
              (33333, 0x90, 72, 90), (40001, 0xB0, 120, 0), (40001, 0xB1, 120, 0), (45000, 0x90, 50, 110), (60000, 0x80, 50, 0)]
    schedule = _schedule(events, fs, 62000)
    db, reference, native, _synth = _compare(path, schedule)
    print(f"controllers: {db:.1f} dB")
    assert db <= FLOOR_DB
    silent = slice(40001 + 64, 45000)   # CC120 cut every voice (64: one block of limiter/segment slack)
    assert not np.any(native[silent]) and not np.any(reference[silent])


def test_nan_guard_mutes_the_bad_voice_only(tmp_path):
    path = write_modal(tmp_path / "nan.etone", modes=16, nan_notes=(61,))
    events = [(0, 0x90, 60, 100), (64 * 10, 0x90, 61, 100), (64 * 20 + 5, 0x90, 62, 100)]
    schedule = _schedule(events, 48000, 48000)
    db, _reference, native, synth = _compare(path, schedule)
    assert db <= FLOOR_DB and np.all(np.isfinite(native)) and np.max(np.abs(native)) > 0.01
    assert synth.muted == 1


def test_options_match_the_engine():
    schedule = _schedule([(0, 0x90, 60, 127), (10, 0x90, 64, 127), (5000, 0xE0, 0, 127), (20000, 0x80, 60, 0)],
                         48000, 30000)
    path = "assets/models/hard-pluck.etone"
    db, *_ = _compare(path, schedule, gain=3.0, bend_range=12.0, limiter=False)
    assert db <= FLOOR_DB
    db_limited, _reference, native, _ = _compare(path, schedule, gain=8.0)
    assert db_limited <= FLOOR_DB and np.max(np.abs(native)) <= 0.977 + 1e-6


def test_no_latency_a_note_sounds_from_its_own_sample():
    schedule = _schedule([(100, 0x90, 60, 100)], 48000, 4800)
    reference = render_midi(schedule, Instrument.load("assets/models/gong.etone"), sample_rate=48000).audio[0]
    from plugins.native.binding import NativeInstrument, NativeSynth

    synth = NativeSynth(NativeInstrument("assets/models/gong.etone"), 48000)
    raw = synth.render(schedule.frames, schedule.messages, 4800)
    assert synth.latency == 0
    assert np.flatnonzero(raw)[0] == np.flatnonzero(reference)[0] == 100


@pytest.mark.parametrize("host_block", [1, 7, 1000])
def test_host_buffer_size_does_not_change_a_sample(host_block):
    schedule = read_midi("assets/demo/demo.mid", 48000)
    keep = schedule.frames < 48000 * 8
    schedule = MidiSchedule(schedule.frames[keep], schedule.messages[keep] & np.array([0xF0, 0xFF, 0xFF]), 48000 * 8,
                            48000.0)   # every note on channel 1: one busy instrument
    for path in ("assets/models/steel-string.etone", "assets/models/hard-pluck.etone"):
        expected, _ = _native(path, schedule, 48000 * 8)
        got, _ = _native(path, schedule, 48000 * 8, host_block=host_block)
        assert np.any(expected) and np.array_equal(got, expected), path


PLATE, NYLON = "assets/models/small-plate.etone", "assets/models/nylon-string.etone"
OPTION_CASES = {   # the plate takes position and position_y; the nylon string's modes decay within the score
    "release time": (NYLON, {"release_time": 0.05}),
    "decay x0.5": (NYLON, {"decay_scale": 0.5}),
    "decay x3": (NYLON, {"decay_scale": 3.0}),
    "brighter": (PLATE, {"brightness": 0.7}),
    "darker": (PLATE, {"brightness": -0.5}),
    "position": (PLATE, {"position": 0.6, "position_y": 0.1}),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_player_options_match_the_engine(case):
    """docs/engine-semantics.md player options, the mod wheel (CC1 -> position) included."""
    from plugins.native.parity import error_db

    events = [(0, 0x90, 60, 110), (3000, 0x90, 67, 90), (3000, 0xB0, 1, 100), (3001, 0x90, 72, 90),
              (20000, 0x80, 60, 0), (26000, 0x80, 67, 0), (40000, 0x80, 72, 0)]
    schedule = _schedule(events, 48000, 60000)
    path, options = OPTION_CASES[case]
    db, reference, _, _ = _compare(path, schedule, **options)
    _, default, _, _ = _compare(path, schedule)
    print(f"{case}: {db:.1f} dB")
    assert db <= FLOOR_DB
    n = min(default.shape[0], reference.shape[0])
    assert error_db(default[:n], reference[:n]) > -30   # the option changes the sound: the comparison is not vacuous


def test_attack_component_matches_the_engine(tmp_path):
    """Attack tables (docs/engine-semantics.md): release envelope, pedal, CC120, a NaN attack muted, and a
    voice that lives as long as its attack although its modes died within a block."""
    common = {"modes": 24, "release_time": 0.05}
    attack = write_modal(tmp_path / "attack.etone", attack_samples=240, attack_rate=24000.0, nan_attack_notes=(61,),
                         **common)
    short = write_modal(tmp_path / "short.etone", modes=8, b1=3000.0, attack_samples=12000, attack_rate=24000.0,
                        name="short")
    events = [(0, 0x90, 60, 120), (70, 0x80, 60, 0), (500, 0x90, 61, 100), (1000, 0xB0, 64, 127),
              (1003, 0x90, 64, 90), (1100, 0x80, 64, 0), (3000, 0xB0, 64, 0), (5000, 0x90, 67, 127),
              (5100, 0xB0, 120, 0), (6000, 0x90, 69, 127)]
    schedule = _schedule(events, 48000, 20000)
    db, _, _, synth = _compare(attack, schedule)
    print(f"attack: {db:.1f} dB")
    assert db <= FLOOR_DB and synth.muted == 1
    db_short, _reference, native, _ = _compare(short, _schedule([(10, 0x90, 60, 127)], 48000, 30000))
    assert db_short <= FLOOR_DB and np.any(native[12000:20000])
