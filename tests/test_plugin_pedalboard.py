"""The VST3 plugin in pedalboard (load_plugin): it loads in well under a second (DPF's 2080 emulated MIDI-CC
parameters carry JUCE's names, which pedalboard skips), starts every render clean although pedalboard plays a
probe note into it at load, and renders the test clip like the Python engine."""

from __future__ import annotations

import time

import mido
import numpy as np
import pytest
from plugin_helpers import (
    CLIP_MS,
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
)

pedalboard = pytest.importorskip("pedalboard")

RATE, BUFFER = 48000, 512
OUR_PARAMETERS = {"instrument", "output_gain_db", "max_voices", "pitch_bend_range_st", "release_time_s",
                  "decay_scale_x", "brightness", "position", "playing_instrument"}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    build_plugin()
    home = instrument_home(tmp_path_factory.mktemp("xdg"))
    # For the whole module: pedalboard makes new plugin instances (restoring the state into them) later on.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(home))
        started = time.perf_counter()
        loaded = pedalboard.load_plugin(str(VST3))
        print(f"pedalboard.load_plugin: {time.perf_counter() - started:.2f} s")
        yield loaded


def messages() -> list[mido.Message]:
    return [mido.Message.from_bytes(list(message), time=ms / 1000) for ms, message in CLIP_MS]


def test_loads_as_an_instrument_with_only_its_own_parameters(plugin):
    assert plugin.is_instrument
    assert OUR_PARAMETERS <= set(plugin.parameters) and not any("midi" in name for name in plugin.parameters)
    assert plugin.parameters["instrument"].string_value == "nylon-string"


def test_every_render_starts_clean(plugin):
    silent = plugin([], duration=0.5, sample_rate=RATE, buffer_size=BUFFER)  # right after the probe note at load
    assert np.abs(silent).max() == 0.0
    plugin(messages(), duration=1.0, sample_rate=RATE, buffer_size=BUFFER)  # stopped while notes sound
    assert np.abs(plugin([], duration=0.5, sample_rate=44100, buffer_size=BUFFER)).max() == 0.0
    assert np.abs(plugin([], duration=0.5, sample_rate=RATE, buffer_size=BUFFER)).max() == 0.0


def test_renders_the_clip_like_the_python_engine(plugin):
    duration = CLIP_SECONDS + TAIL / RATE
    audio = plugin(messages(), duration=duration, sample_rate=RATE, buffer_size=BUFFER)
    again = plugin(messages(), duration=duration, sample_rate=RATE, buffer_size=BUFFER)
    assert np.array_equal(audio, again)
    song = clip(RATE, block_quantum=BUFFER)
    reference = python_render(song, ROOT / "assets" / "models" / "nylon-string.etone")
    db = error_db(reference, aligned(audio[0], plugin.reported_latency_samples, song.frames))
    print(f"pedalboard {RATE} Hz, buffer {BUFFER}: error {db:.1f} dB below the signal")
    assert db >= FLOOR_DB
