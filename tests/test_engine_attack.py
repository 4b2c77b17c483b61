"""The attack component (non-modal excitation played from a table per voice): playback against the formula of
docs/engine-semantics.md, the release envelope, the pedal, voice lifetime, the NaN guard, CC120, bundle checks."""

from __future__ import annotations

import numpy as np
import pytest

from eigentone.errors import EigentoneError
from engine.bundle import load_bundle
from engine.instrument import Instrument
from engine.synth import Synth
from export.bundle_writer import write_bundle
from export.modal_bundle import excite_graph, write_modal_bundle

ATTACK_RATE = 24000.0
ATTACK_SAMPLES = 240  # 10 ms


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Instrument]:
    folder = tmp_path_factory.mktemp("attack")
    common = {"modes": 24, "release_time": 0.05}
    write_modal_bundle(folder / "plain.etone", **common)
    write_modal_bundle(folder / "attack.etone", attack_samples=ATTACK_SAMPLES, attack_rate=ATTACK_RATE,
                       nan_attack_notes=(61,), **common)
    # modes gone within a block, attack of 0.5 s: the voice must live as long as its attack
    write_modal_bundle(folder / "short.etone", modes=8, b1=3000.0, attack_samples=12000, attack_rate=ATTACK_RATE,
                       name="short")
    return {name: Instrument.load(folder / f"{name}.etone") for name in ("plain", "attack", "short")}


def play(synth: Synth, events: list[tuple[int, int, int, int]], n_samples: int, fs: int = 48000) -> np.ndarray:
    synth.prepare(fs, 64, 8)
    out = np.zeros(n_samples, np.float32)
    for start in range(0, n_samples, 64):
        n = min(64, n_samples - start)
        out[start : start + n] = synth.process([(f - start, s, a, b) for f, s, a, b in events if start <= f < start + n], n)
    return out


def expected_attack(instrument: Instrument, note: int, velocity: int, n_samples: int, fs: float, start: int,
                    release_at: int | None = None) -> np.ndarray:
    """The spec's playback, written out in float64: a voice started at ``start`` adds, ``k`` samples later,
    output_gain * env_k * a(k * fs_a / fs) (linear interpolation, a[L] = 0, silent once past the table);
    env_k = 1 until the release sample r, then exp(-sigma_release / fs) ** (k - r)."""
    table = instrument.excite_raw(np.array([[note, velocity / 127, 0.2, 0.37]], np.float32))["attack"][0]
    padded = np.append(table.astype(np.float64), 0.0)
    k = np.arange(n_samples - start)
    t = k * (instrument.attack_rate / fs)
    i = np.minimum(np.floor(t).astype(int), len(table) - 1)
    f = t - i
    a = np.where(t < len(table), padded[i] * (1 - f) + padded[i + 1] * f, 0.0)
    env = np.ones_like(t)
    if release_at is not None:
        decay = np.exp(-np.log(1000.0) / instrument.release_time / fs)
        env = decay ** np.maximum(k - (release_at - start), 0)
    out = np.zeros(n_samples)
    out[start:] = instrument.output_gain * env * a
    return out


@pytest.mark.parametrize("fs", [48000, 44100])
def test_attack_plays_the_table_at_its_own_rate(bundles, fs):
    note = [(37, 0x90, 55, 100)]
    with_attack = play(Synth(bundles["attack"], limiter=False), note, 1200, fs)
    modes_only = play(Synth(bundles["plain"], limiter=False), note, 1200, fs)
    assert bundles["attack"].output_gain == bundles["plain"].output_gain  # levelling looks at the modes only
    expected = expected_attack(bundles["attack"], 55, 100, 1200, fs, start=37)
    assert np.abs(expected).max() > 0.05 * np.abs(modes_only).max()  # audible next to the modes
    np.testing.assert_allclose(with_attack - modes_only.astype(np.float64), expected,
                               atol=1e-6 * np.abs(with_attack).max())


def test_attack_decays_with_the_release_from_the_note_off(bundles):
    events = [(10, 0x90, 60, 120), (75, 0x80, 60, 0)]  # note-off 65 samples (130 table samples) in
    with_attack = play(Synth(bundles["attack"], limiter=False), events, 1200)
    modes_only = play(Synth(bundles["plain"], limiter=False), events, 1200)
    expected = expected_attack(bundles["attack"], 60, 120, 1200, 48000, start=10, release_at=75)
    np.testing.assert_allclose(with_attack - modes_only.astype(np.float64), expected,
                               atol=1e-6 * np.abs(with_attack).max())
    held = expected_attack(bundles["attack"], 60, 120, 1200, 48000, start=10)
    assert np.abs(held - expected).max() > 0.05 * np.abs(held).max()  # the release really shortens it


def test_sustain_pedal_keeps_the_attack_unreleased(bundles):
    events = [(0, 0xB0, 64, 127), (10, 0x90, 60, 120), (75, 0x80, 60, 0)]
    with_attack = play(Synth(bundles["attack"], limiter=False), events, 1200)
    modes_only = play(Synth(bundles["plain"], limiter=False), events, 1200)
    expected = expected_attack(bundles["attack"], 60, 120, 1200, 48000, start=10)
    np.testing.assert_allclose(with_attack - modes_only.astype(np.float64), expected,
                               atol=1e-6 * np.abs(with_attack).max())


def test_a_voice_lives_until_its_attack_has_played(bundles):
    synth = Synth(bundles["short"], limiter=False)
    out = play(synth, [(0, 0x90, 60, 127)], int(0.45 * 48000))
    assert np.abs(out[-4800:]).max() < 1e-9  # modes and (decayed) attack inaudible for a while ...
    assert synth.voices == 1  # ... but the attack table (0.5 s) has not ended yet
    for _ in range(int(0.1 * 48000) // 64):
        synth.process([], 64)
    assert synth.voices == 0


def test_non_finite_attack_mutes_the_voice(bundles):
    clean = play(Synth(bundles["attack"], limiter=False), [(0, 0x90, 60, 100)], 640)
    synth = Synth(bundles["attack"], limiter=False)
    out = play(synth, [(0, 0x90, 60, 100), (0, 0x90, 61, 100)], 640)
    np.testing.assert_array_equal(out, clean)
    assert list(synth.faults) == [("non-finite excite output", "modal-string", 0, 61)]


def test_all_sound_off_stops_the_attack_at_once(bundles):
    out = play(Synth(bundles["attack"], limiter=False), [(0, 0x90, 60, 100), (100, 0xB0, 120, 0)], 640)
    assert np.abs(out[:100]).max() > 0 and not out[100:].any()


def _bundle_with(tmp_path, attack: dict, table_samples: int = 240) -> str:
    path = tmp_path / "bad.etone"
    graph = excite_graph(8, attack=np.zeros(table_samples, np.float32) + 0.1)
    write_bundle(path, name="bad", family="modal", modes=8, graphs={"excite": graph}, note_range=(40, 80),
                 trained_sample_rate=48000.0, extra={"attack": attack})
    return str(path)


@pytest.mark.parametrize(("attack", "message"), [
    ({"samples": 0, "sample_rate": 24000.0}, "'samples' must be an integer >= 1"),
    ({"samples": 240, "sample_rate": -1}, "'sample_rate' must be a number > 0"),
    ({"samples": 240, "sample_rate": 200.0}, "lasts 1.2 s, at most 1.0 s"),
    ({"samples": 240}, "manifest 'attack' must be"),
    ({"samples": 100, "sample_rate": 24000.0}, "output 'attack' is declared ['voices', 240]"),
])
def test_bad_attack_manifests_are_refused_with_one_line(tmp_path, attack, message):
    path = _bundle_with(tmp_path, attack)
    with pytest.raises(EigentoneError) as error:
        load_bundle(path)
    assert message in str(error.value) and "\n" not in str(error.value) and str(error.value).startswith(path)


def test_an_attack_output_without_the_manifest_entry_is_ignored(tmp_path):
    path = tmp_path / "plain.etone"
    write_bundle(path, name="plain", family="modal", modes=8, graphs={"excite": excite_graph(8, attack=np.ones(4))},
                 note_range=(40, 80), trained_sample_rate=48000.0)
    assert Instrument.load(path).attack_samples == 0
