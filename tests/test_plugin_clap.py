"""The CLAP plugin in a minimal C++ host (loaded through clap_entry): it renders the test clip like the Python
engine (error energy >= 80 dB below the signal), sample-accurately, with any host block size."""

from __future__ import annotations

import pytest
from plugin_helpers import (
    CLIP_MS,
    FLOOR_DB,
    ROOT,
    TAIL,
    WAIT_FRAMES,
    aligned,
    build_plugin,
    clip,
    error_db,
    instrument_home,
    instrument_list,
    latency_of,
    midi_lines,
    python_render,
    run_clap,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    build_plugin()
    return instrument_home(tmp_path_factory.mktemp("xdg"))



@pytest.mark.parametrize("model, rate, blocks", [
    ("hard-pluck", 48000, "blocks 128"),
    ("nylon-string", 44100, "blocks random 7 1 700"),
])
def test_clap_render_matches_the_python_engine(home, tmp_path, model, rate, blocks):
    song = clip(rate)
    index = instrument_list(home).index(model)
    run = run_clap(tmp_path, [f'param "Instrument" {index}', f"activate {rate}", blocks,
                              f'render_until "Playing instrument" {index} {WAIT_FRAMES}', f"activate {rate}",
                              *midi_lines(song), f"render {song.frames + TAIL}"], home)
    latency = latency_of(run.stdout)
    rendered = run.audio[-(song.frames + TAIL) :]
    assert (rendered[:, 0] == rendered[:, 1]).all()
    reference = python_render(song, ROOT / "assets" / "models" / f"{model}.etone")
    db = error_db(reference, aligned(rendered[:, 0], latency, song.frames))
    print(f"CLAP {model} {rate} Hz {blocks}: error {db:.1f} dB below the signal (latency {latency})")
    assert db >= FLOOR_DB


def test_clap_player_options_and_mod_wheel_match_the_python_engine(home, tmp_path):
    """Every automatable parameter away from its default, and CC1 moving the position before a note."""
    model, rate = "small-plate", 48000
    song = clip(rate, events_ms=[*CLIP_MS, (1550, (0xB0, 1, 100))])
    index = instrument_list(home).index(model)
    settings = ['param "Output gain" -6', 'param "Max voices" 3', 'param "Pitch-bend range" 7',
                'param "Release time" 0.7', 'param "Decay scale" 0.5', 'param "Brightness" 0.4',
                'param "Position" 0.6']
    run = run_clap(tmp_path, [*settings, f'param "Instrument" {index}', f"activate {rate}", "blocks 100",
                              f'render_until "Playing instrument" {index} {WAIT_FRAMES}', f"activate {rate}",
                              *midi_lines(song), f"render {song.frames + TAIL}"], home)
    rendered = run.audio[-(song.frames + TAIL) :, 0]
    reference = python_render(song, ROOT / "assets" / "models" / f"{model}.etone", gain=10 ** (-6 / 20),
                              max_voices=3, bend_range=7.0, release_time=0.7, decay_scale=0.5, brightness=0.4,
                              position=0.6)
    db = error_db(reference, aligned(rendered, latency_of(run.stdout), song.frames))
    print(f"CLAP {model} {rate} Hz with every option set and CC1: error {db:.1f} dB below the signal")
    assert db >= FLOOR_DB
