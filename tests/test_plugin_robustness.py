"""Host robustness, the checks pluginval runs, on the CLAP build in the headless C++ host: random block sizes,
sample-rate changes, state save -> restore, all-notes-off, instrument swaps while notes sound, corrupt bundles,
the NaN guard, and no allocation or lock inside process()."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from plugin_helpers import (
    FLOOR_DB,
    ROOT,
    SHIPPED,
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
    process_counts,
    python_render,
    run_clap,
)

from export.modal_bundle import write_modal_bundle

RATE = 48000
MODELS = ROOT / "assets" / "models"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    build_plugin()
    return instrument_home(tmp_path_factory.mktemp("xdg"))


def select(index: int, rate: int = RATE) -> list[str]:
    """Script lines: load instrument `index`, wait until it plays, then restart the stream at frame 0."""
    return [f'param "Instrument" {index}', f"activate {rate}", "blocks 64",
            f'render_until "Playing instrument" {index} {WAIT_FRAMES}', f"activate {rate}"]




def test_random_block_sizes_within_one_render_change_nothing(home, tmp_path):
    song = clip(RATE)
    fixed = run_clap(tmp_path, ["activate 48000", "blocks 64", *midi_lines(song), f"render {song.frames}"], home, "a")
    varied = run_clap(tmp_path, ["activate 48000", "blocks random 11 1 1000", *midi_lines(song),
                                 f"render {song.frames}"], home, "b")
    assert np.abs(fixed.audio).max() > 0.01
    assert np.array_equal(fixed.audio, varied.audio)
    assert process_counts(varied.stdout) == (0, 0)


def test_sample_rate_change_between_renders(home, tmp_path):
    low, high = clip(44100), clip(96000)
    both = run_clap(tmp_path, ["activate 44100", *midi_lines(low), f"render {low.frames + TAIL}",
                               "activate 96000", *midi_lines(high), f"render {high.frames + TAIL}"], home, "both")
    fresh = run_clap(tmp_path, ["activate 96000", *midi_lines(high), f"render {high.frames + TAIL}"], home, "fresh")
    assert np.array_equal(both.audio[low.frames + TAIL :], fresh.audio)
    reference = python_render(high, MODELS / "nylon-string.etone")
    assert error_db(reference, aligned(fresh.audio[:, 0], latency_of(fresh.stdout), high.frames)) >= FLOOR_DB


def test_state_save_restore_gives_identical_output(home, tmp_path):
    names = instrument_list(home)
    gong = names.index("gong")
    song = clip(RATE)
    settings = ['param "Output gain" -6', 'param "Max voices" 3', 'param "Release time" 0.7',
                'param "Decay scale" 0.5', 'param "Position" 0.6', 'param "Pitch-bend range" 7']
    saved = tmp_path / "state.bin"
    first = run_clap(tmp_path, [*settings, *select(gong), f"save {saved}", "activate 48000", *midi_lines(song),
                                f"render {song.frames}"], home, "first")
    restored = run_clap(tmp_path, [f"load {saved}", "activate 48000", *midi_lines(song), f"render {song.frames}",
                                   'print "Instrument"', 'print "Max voices"'], home, "restored")
    assert f"Instrument = {gong}" in restored.stdout and "Max voices = 3" in restored.stdout
    rendered = first.audio[-song.frames :]
    assert np.abs(rendered).max() > 0.01
    assert np.array_equal(rendered, restored.audio)

    # Another machine: an extra bundle sorts first, so the saved "Instrument" index now names another bundle;
    # the sha256 in the state finds gong anyway.
    moved = instrument_home(tmp_path / "moved", shipped=[*SHIPPED])
    (moved / "eigentone" / "shipped" / "aaa.etone").write_bytes((MODELS / "steel-string.etone").read_bytes())
    elsewhere = run_clap(tmp_path, [f"load {saved}", "activate 48000", *midi_lines(song), f"render {song.frames}",
                                    'print "Playing instrument"'], moved, "elsewhere")
    assert f"Playing instrument = {gong + 1}" in elsewhere.stdout
    assert np.array_equal(rendered, elsewhere.audio)


def test_restore_finds_a_renamed_bundle_and_reports_a_missing_one(home, tmp_path):
    saved = tmp_path / "state.bin"
    run_clap(tmp_path, [*select(instrument_list(home).index("gong")), f"save {saved}"], home, "save")
    renamed = instrument_home(tmp_path / "renamed", shipped=[p for p in SHIPPED if p.stem != "gong"],
                              user={"my-gong.etone": (MODELS / "gong.etone").read_bytes()})
    run = run_clap(tmp_path, [f"load {saved}", "activate 48000", "render 64", 'print "Playing instrument"'],
                   renamed, "renamed")
    assert f"Playing instrument = {instrument_list(renamed).index('my-gong')}" in run.stdout
    assert "eigentone:" not in run.stderr

    impostor = instrument_home(tmp_path / "impostor", shipped=[p for p in SHIPPED if p.stem != "gong"],
                               user={"gong.etone": (MODELS / "small-plate.etone").read_bytes()})
    run = run_clap(tmp_path, [f"load {saved}", "activate 48000", "render 64", 'print "Playing instrument"'],
                   impostor, "impostor")
    assert "saved instrument 'gong'" in run.stderr and "instead (same name" in run.stderr
    assert f"Playing instrument = {instrument_list(impostor).index('gong')}" in run.stdout

    missing = instrument_home(tmp_path / "missing", shipped=[p for p in SHIPPED if p.stem != "gong"])
    run = run_clap(tmp_path, [f"load {saved}", "activate 48000", "render 64", 'print "Playing instrument"'],
                   missing, "missing")
    assert "saved instrument 'gong'" in run.stderr and "is missing from" in run.stderr
    assert f"Playing instrument = {instrument_list(missing).index('nylon-string')}" in run.stdout  # the default


def test_all_notes_off_and_all_sound_off_match_the_python_engine(home, tmp_path):
    events = [(0, (0x90, 48, 100)), (50, (0x90, 52, 90)), (100, (0xB0, 64, 127)), (150, (0x91, 60, 100)),
              (300, (0x80, 48, 0)), (800, (0xB0, 123, 0)), (1000, (0xB1, 120, 0)), (1400, (0x90, 55, 80))]
    song = clip(RATE, events_ms=events, seconds=2.5)
    run = run_clap(tmp_path, ["activate 48000", *midi_lines(song), f"render {song.frames + TAIL}"], home)
    out = aligned(run.audio[:, 0], latency_of(run.stdout), song.frames)
    reference = python_render(song, MODELS / "nylon-string.etone")
    assert error_db(reference, out) >= FLOOR_DB
    # Channel 1's note stops dead at CC120; channel 0 released at CC123 (pedal down) has decayed before 1.4 s.
    quiet = out[int(1.3 * RATE) : int(1.4 * RATE)]
    assert np.abs(quiet).max() < 1e-4 * np.abs(out).max()


def test_instrument_swap_while_notes_sound(home, tmp_path):
    gong = instrument_list(home).index("gong")
    late = 3 * RATE  # a note this long after the swap: the old instrument's ring-out (<= 2 s) is over
    chord = [f"midi {frame} 0x90 {note} 100" for frame, note in ((0, 48), (100, 55), (200, 60))]
    swap = run_clap(tmp_path, ["activate 48000", "blocks 64", *chord, "render 12800", f'param "Instrument" {gong}',
                               f'render_until "Playing instrument" {gong} {WAIT_FRAMES}', f"midi +{late} 0x90 50 100",
                               f"render {late + RATE}"], home, "swap")
    swapped_at = int(re.search(r"^reached .* at (\d+)$", swap.stdout, re.MULTILINE).group(1))
    fresh = run_clap(tmp_path, [*select(gong), f"midi {late} 0x90 50 100", f"render {late + RATE}"], home, "fresh")
    fresh_out = fresh.audio[-(late + RATE) :, 0]
    out = swap.audio[:, 0]
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    # The old notes ring out after the swap instead of stopping dead, and are gone two seconds later.
    assert np.sqrt(np.mean(out[swapped_at : swapped_at + 480] ** 2)) > 1e-4
    assert np.abs(out[swapped_at + int(2.1 * RATE) : swapped_at + late]).max() == 0.0
    # The new instrument plays the late note exactly as a fresh instance of it does (both on the same 64-grid).
    assert np.abs(fresh_out[late:]).max() > 0.01
    assert error_db(fresh_out[late:], out[swapped_at + late :]) >= 100.0
    assert process_counts(swap.stdout) == (0, 0)


def test_corrupt_bundles_are_refused_and_the_instrument_keeps_playing(home, tmp_path):
    nylon = (MODELS / "nylon-string.etone").read_bytes()
    fake = tmp_path / "fake.etone"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("manifest.json", '{"format": "eigentone-bundle"}')
    broken_home = instrument_home(tmp_path / "broken", user={"broken.etone": nylon[: len(nylon) // 2],
                                                             "fake.etone": fake.read_bytes()})
    names = instrument_list(broken_home)
    song = clip(RATE)
    nylon_index = names.index("nylon-string")
    plain = run_clap(tmp_path, ["activate 48000", *midi_lines(song), f"render {song.frames}"], broken_home, "plain")
    # After a refusal the Instrument parameter reads the playing instrument again: wait for that each time.
    tried = run_clap(tmp_path, ["activate 48000", *midi_lines(song), "render 24000",
                                f'param "Instrument" {names.index("broken")}',
                                f'render_until "Instrument" {nylon_index} {WAIT_FRAMES}',
                                f'param "Instrument" {names.index("fake")}',
                                f'render_until "Instrument" {nylon_index} {WAIT_FRAMES}', f"render {song.frames}",
                                'print "Playing instrument"'], broken_home, "tried")
    refusals = [line for line in tried.stderr.splitlines() if line.startswith("eigentone: refused")]
    assert len(refusals) == 2 and "broken.etone" in refusals[0] and "fake.etone" in refusals[1]
    assert f"Playing instrument = {nylon_index}" in tried.stdout
    assert np.array_equal(plain.audio, tried.audio[: song.frames])


def test_nan_guard_mutes_the_bad_notes_only(home, tmp_path):
    # An analytic bundle with a readout graph, pole modulation and an attack table: note 61's modal state and
    # note 63's attack come out NaN. At 44.1 kHz the attack (24 kHz table) is resampled too.
    bundle = tmp_path / "nan-notes.etone"
    write_modal_bundle(bundle, modes=16, readout=True, modulation=True, attack_samples=240, nan_notes=(61,),
                       nan_attack_notes=(63,))
    nan_home = instrument_home(tmp_path / "nan", user={"nan-notes.etone": bundle.read_bytes()})
    index = instrument_list(nan_home).index("nan-notes")
    rate = 44100
    notes = [(0, (0x90, 60, 100)), (100, (0x90, 61, 100)), (200, (0x90, 62, 100)), (300, (0x90, 63, 100))]
    song = clip(rate, events_ms=notes, seconds=1.0)
    run = run_clap(tmp_path, [*select(index, rate), *midi_lines(song), f"render {song.frames + TAIL}"], nan_home)
    out = aligned(run.audio[-(song.frames + TAIL) :, 0], latency_of(run.stdout), song.frames)
    assert np.isfinite(out).all()
    assert error_db(python_render(song, bundle), out) >= FLOOR_DB
    for bad in (61, 63):
        alone = clip(rate, events_ms=[(0, (0x90, bad, 100))], seconds=0.5)
        run = run_clap(tmp_path, [*select(index, rate), *midi_lines(alone), f"render {alone.frames}"], nan_home,
                       f"alone{bad}")
        assert np.array_equal(run.audio[-alone.frames :], np.zeros((alone.frames, 2), np.float32))
