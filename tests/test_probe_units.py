"""Issue 12, piece by piece: the output guard, limits, safe outputs, the MIDI reader, streaming loudness, printing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pyloudnorm
import pytest
from scipy import signal as sps

from benchmarks.probes import notes_track, smf
from eigentone import limits
from eigentone.errors import EigentoneError, first_line, printable
from eigentone.files import atomic_path, check_output, clear_inputs, register_input
from engine.loudness import LoudnessMeter
from engine.midi_file import read_midi, schedule_from_messages, write_demo_song
from engine.signal_chain import CEILING, LOOKAHEAD, OutputGuard, describe_guard

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- output guard


def _guarded(x: np.ndarray, guard: OutputGuard, block: int = 64) -> np.ndarray:
    return np.concatenate([guard.process(x[:, i : i + block].copy()) for i in range(0, x.shape[1], block)], axis=1)


def test_guard_zeroes_non_finite_samples_and_counts_them():
    guard = OutputGuard()
    guard.prepare(48000)
    x = np.full((2, 256), 0.1, np.float32)
    x[0, 3], x[1, 7], x[1, 9] = np.nan, np.inf, -np.inf
    y = _guarded(x, guard)
    assert np.all(np.isfinite(y))
    delayed = y[:, LOOKAHEAD:]
    assert delayed[0, 3] == delayed[1, 7] == delayed[1, 9] == 0.0
    assert delayed[0, 4] == pytest.approx(0.1)  # quiet finite samples pass unchanged
    assert guard.nonfinite == 3 and guard.limited == 0
    assert "zeroed 3 non-finite samples" in describe_guard(guard, 48000)


def test_guard_below_the_ceiling_only_delays():
    guard = OutputGuard()
    guard.prepare(48000)
    x = (0.8 * np.sin(np.linspace(0, 300, 2 * 4096))).astype(np.float32).reshape(2, -1)
    y = _guarded(x, guard, block=37)
    np.testing.assert_array_equal(y[:, LOOKAHEAD:], x[:, :-LOOKAHEAD])
    assert not np.any(y[:, :LOOKAHEAD]) and describe_guard(guard, 48000) is None


@pytest.mark.parametrize("kind", ["chord and noise", "clipped chord", "white noise", "tone at fs/4, 45 degrees"])
@pytest.mark.parametrize("over_db", [0, 20, 60])
def test_guard_keeps_samples_and_true_peak_under_the_ceiling(kind, over_db):
    """Samples at most -1 dBFS; 16x oversampled (true) peak at most -0.5 dBTP, away from the array's cut ends."""
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 48000
    chord = sum(np.sin(2 * np.pi * f * t) for f in (110, 277, 415, 1234)) + 0.3 * rng.standard_normal(t.size)
    signal_ = {"chord and noise": chord / 3, "clipped chord": np.clip(chord * 10, -1, 1),
               "white noise": rng.standard_normal(t.size) / 3,
               "tone at fs/4, 45 degrees": np.sin(2 * np.pi * 12000 * t + np.pi / 4)}[kind]
    x = (10 ** (over_db / 20) * np.stack([signal_, signal_[::-1]])).astype(np.float32)
    guard = OutputGuard()
    guard.prepare(48000)
    y = _guarded(x, guard)
    assert np.max(np.abs(y)) <= CEILING
    true_peak = np.max(np.abs(sps.resample_poly(y.astype(np.float64), 16, 1, axis=1)[:, 16 * 256 : -16 * 256]))
    assert 20 * np.log10(true_peak) <= -0.5, 20 * np.log10(true_peak)
    if over_db >= 20:
        assert guard.limited > 0 and "over -1 dBTP" in describe_guard(guard, 48000)


def test_guard_without_limit_zeroes_but_neither_limits_nor_delays():
    guard = OutputGuard(limit=False)
    guard.prepare(48000)
    block = np.array([[3.0, np.nan], [-2.0, 0.5]], np.float32)
    guard.process(block)
    np.testing.assert_array_equal(block, [[3.0, 0.0], [-2.0, 0.5]])
    assert guard.latency == 0


def test_render_removes_the_guard_delay(tmp_path):
    """A quiet render equals the synth's own output sample for sample: the look-ahead is compensated offline."""
    from engine.instrument import Instrument
    from engine.midi_file import read_midi
    from engine.render import render_midi
    from engine.synth import Synth

    (tmp_path / "s.mid").write_bytes(smf([notes_track([(0, 60, 480), (100, 64, 480)])]))
    instrument = Instrument.load(ROOT / "assets" / "models" / "nylon-string.etone")
    result = render_midi(tmp_path / "s.mid", instrument, tail_s=0.5)
    schedule = read_midi(tmp_path / "s.mid", 48000)
    synth = Synth(instrument)
    synth.prepare(48000, 64, 64)
    mono = np.concatenate([synth.process(schedule.block_events(f, 64), 64).copy()
                           for f in range(0, result.frames, 64)])
    np.testing.assert_array_equal(result.audio[0], mono[: result.frames])
    assert result.guard.limited == 0


# ---------------------------------------------------------------- limits and printing


def test_limits_are_raised_by_name_and_bad_entries_are_refused():
    try:
        limits.configure(["voices=4096"])
        assert limits.value("voices") == 4096
        limits.check("voices", 4000, "--voices")
        for bad in ("voices", "nope=3", "voices=-1", "voices=nan", "voices=x"):
            with pytest.raises(EigentoneError, match="--limit"):
                limits.configure([bad])
    finally:
        limits.configure(None)
    with pytest.raises(EigentoneError, match=r"--voices: 4,000 voice slots .* --limit voices=4000"):
        limits.check("voices", 4000, "--voices")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "3", True, None, [1]])
def test_finite_number_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(EigentoneError, match="expected a finite number"):
        limits.finite_number("--gain-db", value)


def test_printable_defuses_escape_sequences_and_bidi_overrides():
    text = printable("a\x1b]0;title\x07\x1b[2Jb\u202ec\nd\x9b")
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\n" not in text
    assert text == "a\\x1b]0;title\\x07\\x1b[2Jb\\u202ec d\\x9b"
    assert len(printable("x" * 1000, 50)) == 50


def test_first_line_drops_pybind_listings():
    exc = TypeError("__init__(): incompatible\n    1. Gain(gain_db: float)\n\nInvoked with: kwargs: gain_db='x'")
    assert first_line(exc) == "__init__(): incompatible"


# ---------------------------------------------------------------- safe outputs


def test_atomic_outputs_get_the_umask_mode_not_0600(tmp_path):
    previous = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    (tmp_path / "b.txt").write_text("old")
    (tmp_path / "b.txt").chmod(0o604)
    with atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o604  # a replaced file keeps its mode


def test_an_input_cannot_be_replaced_by_name_symlink_or_hard_link(tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(b"MThd")
    os.symlink(song, tmp_path / "soft.wav")
    os.link(song, tmp_path / "hard.wav")
    clear_inputs()
    try:
        register_input(song)
        for name in ("song.mid", "soft.wav", "hard.wav"):
            with pytest.raises(EigentoneError, match="input of this command"), atomic_path(tmp_path / name) as tmp:
                tmp.write_text("wav")
        assert song.read_bytes() == b"MThd" and not list(tmp_path.glob(".*"))
    finally:
        clear_inputs()
    with pytest.raises(EigentoneError, match="is a directory"):
        check_output(tmp_path)


def test_sigterm_removes_the_temporary_file(tmp_path):
    script = (f"import time, sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from eigentone import cli\n"
              "from eigentone.files import atomic_path\n"
              "def run(args):\n"
              f"    with atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:\n"
              "        tmp.write_bytes(b'x' * 1000); print('ready', flush=True); time.sleep(30)\n"
              "import types; cli._load = lambda name: types.SimpleNamespace(HELP='', EXAMPLE='', add_arguments=lambda p: None, run=run)\n"
              "raise SystemExit(cli.main(['list']))\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    assert len(list(tmp_path.glob(".out.bin.*"))) == 1
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM and "terminated" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- MIDI reader


def _with_mido(path: Path, rate: float):
    song = mido.MidiFile(path)
    timed, now = [], 0.0
    for msg in song:
        now += msg.time
        timed.append((now, msg))
    return schedule_from_messages(timed, rate, now)


def test_midi_reader_matches_mido_on_tempo_maps_and_running_status(tmp_path):
    paths = [ROOT / "assets" / "demo" / "demo.mid", write_demo_song(tmp_path / "demo.mid", 20, 8, pedal=True)]
    song = mido.MidiFile(type=1, ticks_per_beat=96)
    song.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=400000),
                                       mido.MetaMessage("set_tempo", tempo=700000, time=150),
                                       mido.MetaMessage("set_tempo", tempo=300001, time=77)]))
    song.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=10),
                                       mido.Message("note_off", note=60, time=200),
                                       mido.Message("pitchwheel", pitch=300, time=33),
                                       mido.Message("program_change", program=3, time=1),
                                       mido.Message("note_on", note=62, velocity=64),
                                       mido.Message("control_change", control=64, value=100, time=500)]))
    song.save(tmp_path / "tempo.mid")
    paths.append(tmp_path / "tempo.mid")
    for path in paths:
        for rate in (44100, 48000):
            ours, theirs = read_midi(path, rate), _with_mido(path, rate)
            np.testing.assert_array_equal(ours.frames, theirs.frames)
            np.testing.assert_array_equal(ours.messages, theirs.messages)
            assert ours.length == theirs.length


def test_smpte_division_is_timed_by_frames(tmp_path):
    (tmp_path / "s.mid").write_bytes(smf([notes_track([(0, 60, 500), (500, 64, 500)])], division=0xE728))  # 25 fps x 40
    schedule = read_midi(tmp_path / "s.mid", 48000)
    assert schedule.frames.tolist() == [0, 24000, 48000, 72000]  # 500 ticks = 0.5 s
    assert schedule.length == 72000


@pytest.mark.parametrize("data, fragment", [
    (smf([notes_track([(0, 60, 10)])], division=0), "0 ticks per beat"),
    (smf([notes_track([(0, 60, 10)], tempo=0)]), "0 µs per beat"),
    (smf([notes_track([(0, 60, 10)], tempo=1)]), "midi-bpm"),
    (smf([notes_track([(0, 60, 1)], tempo=0xFFFFFF, end_delta=5000)], division=1), "song-seconds"),
    (smf([notes_track([(0, 60, 10)])])[:-5], "truncated"),
    (b"MThd\x00\x00\x00\x06\x00\x02\x00\x01\x01\xe0", "type 2"),
    (smf([b"\x00\x3c\x40\x00\xff\x2f\x00"]), "without a status"),
])
def test_malformed_or_absurd_midi_is_refused_in_one_line(tmp_path, data, fragment):
    (tmp_path / "bad.mid").write_bytes(data)
    with pytest.raises(EigentoneError) as info:
        read_midi(tmp_path / "bad.mid", 48000)
    assert fragment in str(info.value) and "bad.mid" in str(info.value) and "\n" not in str(info.value)


def test_midi_event_limit_stops_parsing_early(tmp_path):
    (tmp_path / "many.mid").write_bytes(smf([notes_track([(1, 60, 1)] * 3000)]))
    try:
        limits.configure(["midi-events=1000"])
        started = time.perf_counter()
        with pytest.raises(EigentoneError, match="more than 1,000 events"):
            read_midi(tmp_path / "many.mid", 48000)
        assert time.perf_counter() - started < 1.0
    finally:
        limits.configure(None)
    assert len(read_midi(tmp_path / "many.mid", 48000).frames) == 6000


# ---------------------------------------------------------------- loudness


def test_streaming_loudness_equals_pyloudnorm():
    rng = np.random.default_rng(1)
    rate = 44100
    t = np.arange(3 * rate + 777) / rate
    low = 0.5 * np.sin(2 * np.pi * 40 * t)  # near the K-weighting high-pass: wrong filter state shows
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) + low, 0.1 * rng.standard_normal(t.size) * (t > 1)])
    meter = LoudnessMeter(rate, 2)
    start = 0
    while start < t.size:
        step = int(rng.integers(1, 200))  # blocks as small as the engine's: the filters' state must carry over
        meter.add(x[:, start : start + step].astype(np.float32))
        start += step
    expected = pyloudnorm.Meter(rate).integrated_loudness(x.T.astype(np.float32).astype(np.float64))
    assert meter.integrated() == pytest.approx(expected, abs=0.01)
    assert LoudnessMeter(rate).integrated() == float("-inf")


# ---------------------------------------------------------------- native stderr noise


@pytest.mark.parametrize("fails", [False, True])
def test_native_stderr_noise_is_hidden_unless_the_command_crashes(fails):
    script = (f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from eigentone.cli import _native_stderr_hidden\n"
              "with _native_stderr_hidden(True):\n"
              "    os.write(2, b'ALSA lib pcm.c:2664: Unknown PCM default\\n')\n"
              "    print('eigentone: warning: from Python', file=sys.stderr)\n"
              f"    if {fails}: raise RuntimeError('crash')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert "eigentone: warning: from Python" in result.stderr
    assert ("ALSA lib" in result.stderr) == fails  # shown only with the traceback of an unexpected error
