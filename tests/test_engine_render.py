"""Offline rendering: `eigentone render` end to end, determinism, the Python API, the generated test song."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from engine.midi_file import read_midi, write_demo_song
from engine.render import render_midi, render_note
from export.modal_bundle import write_modal_bundle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("render")
    write_modal_bundle(folder / "a.etone", modes=64)
    write_modal_bundle(folder / "b.etone", modes=32, name="b", inharmonicity=1e-3, readout=True, modulation=True)
    song = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track += [
        mido.Message("note_on", channel=0, note=60, velocity=100, time=0),
        mido.Message("note_on", channel=1, note=67, velocity=80, time=120),
        mido.Message("control_change", channel=0, control=64, value=127, time=120),
        mido.Message("note_off", channel=0, note=60, velocity=0, time=240),
        mido.Message("pitchwheel", channel=1, pitch=2048, time=100),
        mido.Message("control_change", channel=0, control=64, value=0, time=300),
        mido.Message("note_off", channel=1, note=67, velocity=0, time=200),
    ]
    song.tracks.append(track)
    song.save(folder / "tiny.mid")
    return {"a": folder / "a.etone", "b": folder / "b.etone", "song": folder / "tiny.mid", "dir": folder}


def _render(files, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "eigentone", "render", str(files["song"]), "--model", str(files["a"]),
               "--model-for-channel", f"2={files['b']}", "--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)


def test_render_cli_writes_wav_and_spectrogram_deterministically(files):
    first, second = files["dir"] / "one.wav", files["dir"] / "two.wav"
    png = files["dir"] / "one.png"
    result = _render(files, first, "--effects", str(ROOT / "assets/effects/default.json"), "--spectrogram", str(png))
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"rendered {files['song']}") and "x real time" in summary and "0 muted voices" in summary
    again = _render(files, second, "--effects", str(ROOT / "assets/effects/default.json"))
    assert again.returncode == 0, again.stderr
    assert first.read_bytes() == second.read_bytes()
    audio, rate = sf.read(first)
    assert rate == 48000 and audio.shape[1] == 2 and np.abs(audio).max() > 0.05
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_channels_play_their_models(files):
    schedule = read_midi(files["song"], 48000)
    both = render_midi(schedule, {0: _load(files["a"]), 1: _load(files["b"])}, tail_s=1.0)
    only_a = render_midi(schedule, {0: _load(files["a"])}, tail_s=1.0)
    only_b = render_midi(schedule, {1: _load(files["b"])}, tail_s=1.0)
    n = min(both.audio.shape[1], only_a.audio.shape[1], only_b.audio.shape[1])
    assert np.abs(only_a.audio[:, :n]).max() > 0 and np.abs(only_b.audio[:, :n]).max() > 0
    mix = only_a.audio[:, :n] + only_b.audio[:, :n]  # quiet enough that the limiter stays out of the way
    np.testing.assert_allclose(both.audio[:, :n], mix, atol=1e-6)


def _load(path: Path):
    from engine.instrument import Instrument

    return Instrument.load(path)


def test_render_note_length_and_level(files):
    audio = render_note(files["a"], 64.0, 0.8, 0.25, sample_rate=44100)
    assert audio.shape == (round(0.25 * 44100),) and audio.dtype == np.float32
    assert 0.05 < np.abs(audio).max() < 1.0


def test_render_stops_after_the_voices_die(files):
    result = render_midi(files["song"], files["a"], tail_s=10.0)
    length_s = read_midi(files["song"], 48000).length / 48000
    assert result.audio.shape[1] / 48000 < length_s + 1.0  # tails end at -100 dBFS, well before the 10 s cap
    assert result.max_voices_used == 2


def test_demo_song_has_the_requested_polyphony(tmp_path):
    schedule = read_midi(write_demo_song(tmp_path / "demo.mid", seconds=12, polyphony=16), 48000)
    held, most = set(), 0
    for frame, (status, note, velocity) in zip(schedule.frames, schedule.messages):
        if status & 0xF0 == 0x90 and velocity:
            held.add((int(frame), int(note)))
            most = max(most, len(held))
        elif status & 0xF0 in (0x80, 0x90):
            held.discard(min((h for h in held if h[1] == note), default=None))
    assert most == 16 and schedule.length / 48000 == pytest.approx(12, abs=0.1)


def test_instruments_are_levelled_whatever_their_raw_scale(tmp_path):
    """Two bundles whose raw outputs differ 1000x (metres vs a normalised recording) play at one level."""
    from engine.instrument import LEVEL, Instrument
    from engine.synth import Synth

    quiet = write_modal_bundle(tmp_path / "quiet.etone", modes=32, height=0.0005, name="quiet")
    loud = write_modal_bundle(tmp_path / "loud.etone", modes=32, height=0.5, name="loud")
    peaks, raw = [], []
    for bundle in (quiet, loud):
        instrument = Instrument.load(tmp_path / f"{bundle['name']}.etone")
        raw.append(np.max(np.abs(render_note(instrument, 64, 1.0, 0.2))))
        synth = Synth(instrument, limiter=False)
        synth.prepare(48000, 64, 8)
        blocks = [synth.process([(0, 0x90, 64, 127)] if k == 0 else [], 64).copy() for k in range(150)]
        synth.release()
        peaks.append(np.max(np.abs(np.concatenate(blocks))))
    assert raw[1] / raw[0] > 500  # the models really differ in scale
    assert peaks[0] == pytest.approx(peaks[1], rel=0.05)
    assert 0.5 * LEVEL < peaks[0] < 1.5 * LEVEL  # the probe note is 64.5, this one 64
