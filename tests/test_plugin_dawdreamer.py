"""The VST3 plugin in DawDreamer (a JUCE host): the test clip matches the Python engine by >= 80 dB at host
buffer sizes 1, 32, 128 and 1000 and at 44.1, 48 and 96 kHz.

DawDreamer delivers notes sample-accurately but CC64 and pitch bend at frame 0 of their host block, so the
Python engine gets the same quantised controller events (tests/plugin_helpers.clip(block_quantum=...)).
Run with -s to see the figures.
"""

from __future__ import annotations

import time

import pytest
from plugin_helpers import (
    CLIP_SECONDS,
    FLOOR_DB,
    ROOT,
    TAIL,
    VST3,
    aligned,
    build_plugin,
    clip,
    error_db,
    instrument_home,
    python_render,
    write_midi_file,
)

daw = pytest.importorskip("dawdreamer", reason="dawdreamer is in the dev extra: pip install -e '.[dev]'")

BUFFER_SIZES = (1, 32, 128, 1000)


@pytest.fixture(scope="module")
def song_file(tmp_path_factory):
    build_plugin()
    return write_midi_file(tmp_path_factory.mktemp("midi") / "clip.mid")


@pytest.mark.parametrize("rate", [44100, 48000, 96000])
def test_dawdreamer_matches_the_python_engine(song_file, rate, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(instrument_home(tmp_path)))
    nylon = ROOT / "assets" / "models" / "nylon-string.etone"
    for buffer_size in BUFFER_SIZES:
        engine = daw.RenderEngine(rate, buffer_size)
        started = time.perf_counter()
        synth = engine.make_plugin_processor("eigentone", str(VST3))
        loaded = time.perf_counter() - started
        synth.load_midi(str(song_file), clear_previous=True, beats=False, all_events=True)
        engine.load_graph([(synth, [])])
        engine.render(CLIP_SECONDS + TAIL / rate)
        audio = engine.get_audio()
        song = clip(rate, block_quantum=buffer_size)
        reference = python_render(song, nylon)
        db = error_db(reference, aligned(audio[0], synth.get_latency_samples(), song.frames))
        print(f"DawDreamer {rate} Hz, buffer {buffer_size:4d}: error {db:6.1f} dB below the signal "
              f"(latency {synth.get_latency_samples()}, plugin load {loaded:.2f} s)")
        assert (audio[0] == audio[1]).all()
        assert db >= FLOOR_DB, f"{rate} Hz, buffer {buffer_size}: {db:.1f} dB"
