"""Voice behaviour of the synth: stealing order, pedal, bend, velocity, channels, mono, panic CCs, NaN guard."""

from __future__ import annotations

import numpy as np
import pytest

from engine.instrument import Instrument
from engine.synth import Synth
from export.modal_bundle import write_modal_bundle

FS = 48000
BLOCK = 64


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Instrument]:
    folder = tmp_path_factory.mktemp("voices")
    write_modal_bundle(folder / "a.etone", modes=32, nan_notes=(61,))
    write_modal_bundle(folder / "b.etone", modes=16, name="other", inharmonicity=1e-3, pickup=0.31)
    return {"a": Instrument.load(folder / "a.etone"), "b": Instrument.load(folder / "b.etone")}


def play(synth: Synth, events: list[tuple[int, int, int, int]], n_samples: int, max_voices: int = 16,
         prepared: bool = False) -> np.ndarray:
    """Render (frame, status, d1, d2) events (absolute frames) for n_samples; returns (n_samples,) float32."""
    if not prepared:
        synth.prepare(FS, BLOCK, max_voices)
    events = sorted(events, key=lambda e: e[0])
    out = np.zeros(n_samples, np.float32)
    for start in range(0, n_samples, BLOCK):
        n = min(BLOCK, n_samples - start)
        block = [(f - start, s, d1, d2) for f, s, d1, d2 in events if start <= f < start + n]
        out[start : start + n] = synth.process(block, n)
    return out


def sounding(synth: Synth, part: int = 0) -> list[tuple[int, int]]:
    """(channel, note) of the voices playing, stolen voices still fading out left out."""
    pool = synth.parts[part].pool
    return sorted((int(pool.channel[s]), int(pool.note[s])) for s in pool.active[: pool.count] if not pool.fading[s])


def fading(synth: Synth, part: int = 0) -> list[tuple[int, int]]:
    """(channel, note) of the stolen voices still fading out."""
    pool = synth.parts[part].pool
    return sorted((int(pool.channel[s]), int(pool.note[s])) for s in pool.active[: pool.count] if pool.fading[s])


def test_stealing_takes_a_released_voice_first(bundles):
    synth = Synth(bundles["a"], limiter=False)
    play(synth, [(0, 0x90, 48, 127), (0, 0x90, 55, 20), (640, 0x80, 48, 0), (1280, 0x90, 67, 100)], 1400,
         max_voices=2)
    assert sounding(synth) == [(0, 55), (0, 67)]  # 48 was released (though louder), so it went first
    assert fading(synth) == [(0, 48)]


def test_stealing_takes_the_quietest_held_voice(bundles):
    synth = Synth(bundles["a"], limiter=False)
    play(synth, [(0, 0x90, 48, 30), (640, 0x90, 55, 120), (1280, 0x90, 67, 100)], 1400, max_voices=2)
    assert sounding(synth) == [(0, 55), (0, 67)]  # 48 is older and quieter
    synth = Synth(bundles["a"], limiter=False)
    play(synth, [(0, 0x90, 48, 120), (640, 0x90, 55, 20), (1280, 0x90, 67, 100)], 1400, max_voices=2)
    assert sounding(synth) == [(0, 48), (0, 67)]  # quieter beats older


def test_stealing_ties_go_to_the_oldest(bundles):
    synth = Synth(bundles["a"], limiter=False)
    play(synth, [(0, 0x90, 60, 100), (0, 0x91, 60, 100), (640, 0x90, 67, 100)], 800, max_voices=2)
    assert sounding(synth) == [(0, 67), (1, 60)]  # equal levels: channel 0's note started first


STEAL = 1000  # the third note's frame, inside a block


def _stolen_voice(instrument: Instrument, steal_fade: bool) -> tuple[np.ndarray, Synth]:
    """With max_voices=2 the note at STEAL steals the quiet 48: the stolen voice's own signal (the render
    minus the same render without note 48; voices add linearly with the limiter off), and the synth."""
    survivors = [(640, 0x90, 55, 120), (STEAL, 0x90, 67, 100)]
    synth = Synth(instrument, limiter=False, steal_fade=steal_fade)
    full = play(synth, [(0, 0x90, 48, 30), *survivors], STEAL + 640, max_voices=2)
    without = play(Synth(instrument, limiter=False), survivors, STEAL + 640, max_voices=2)
    return full.astype(np.float64) - without, synth


def test_a_stolen_voice_fades_instead_of_clicking(bundles):
    faded, synth = _stolen_voice(bundles["a"], steal_fade=True)
    cut, _ = _stolen_voice(bundles["a"], steal_fade=False)
    around = slice(STEAL - 64, STEAL + 640)
    before = np.abs(np.diff(faded[STEAL - 640 : STEAL])).max()  # the voice's own largest step before the steal
    fade_jump = np.abs(np.diff(faded[around])).max()
    cut_jump = np.abs(np.diff(cut[around])).max()
    print(f"\nlargest step: {before:.2e} before the steal, {fade_jump:.2e} fading, {cut_jump:.2e} cut")
    np.testing.assert_array_equal(cut[STEAL:], 0.0)  # cut: gone at the steal's sample
    assert cut_jump > 3 * before  # the cut is a click: a step several times the voice's own
    assert fade_jump <= before * 1.01  # the fade adds no step larger than the voice already made
    assert fade_jump < cut_jump / 10  # measured here: 7.1e-4 fading vs 1.4e-2 cut
    assert np.abs(faded[STEAL + 480 :]).max() < 1e-3 * np.abs(faded[:STEAL]).max()  # -60 dB within 10 ms
    assert fading(synth) == [] and sounding(synth) == [(0, 55), (0, 67)]  # the faded voice was freed


def test_steals_beyond_the_spare_slots_cut_the_quietest_fading_voice(bundles):
    synth = Synth(bundles["a"], limiter=False)
    chord = [(0, 0x90, 40 + k, 60 + k) for k in range(2)]
    burst = [(320, 0x90, 60 + k, 100) for k in range(8)]  # 8 steals at once, 4 spare slots (fade_slots(2))
    play(synth, [*chord, *burst], 384, max_voices=2)
    pool = synth.parts[0].pool
    assert pool.count == pool.slots == 6 and len(fading(synth)) == 4
    assert sounding(synth) == [(0, 66), (0, 67)]


def test_sustain_pedal_holds_notes_past_note_off(bundles):
    events = [(0, 0x90, 60, 100), (4800, 0x80, 60, 0)]
    free = play(Synth(bundles["a"], limiter=False), events, FS)
    pedal = Synth(bundles["a"], limiter=False)
    held = play(pedal, [(0, 0xB0, 64, 127), *events], FS)
    late = slice(FS // 2, FS)
    assert np.sqrt(np.mean(held[late] ** 2)) > 100 * np.sqrt(np.mean(free[late] ** 2))
    pool = pedal.parts[0].pool
    assert pedal.voices == 1 and pool.sustained[pool.active[0]] and not pool.releasing[pool.active[0]]
    play(pedal, [(0, 0xB0, 64, 0)], FS, prepared=True)  # pedal up: the held note releases and dies away
    assert pedal.voices == 0


def _fundamental_hz(audio: np.ndarray) -> float:
    window = audio * np.hanning(len(audio))
    spectrum = np.abs(np.fft.rfft(window, 16 * len(window)))
    k = int(np.argmax(spectrum[: len(spectrum) // 8]))
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * FS / (16 * len(window))


@pytest.mark.parametrize(("bend_range", "cents"), [(2.0, 100.0), (12.0, 600.0)])
def test_pitch_bend_shifts_the_fundamental(bundles, bend_range, cents):
    note = [(0, 0x90, 57, 100)]
    plain = play(Synth(bundles["b"], limiter=False), note, FS // 2)
    up = play(Synth(bundles["b"], limiter=False, bend_range=bend_range), [(0, 0xE0, 0, 96), *note], FS // 2)
    measured = 1200 * np.log2(_fundamental_hz(up) / _fundamental_hz(plain))
    assert abs(measured - cents) < 1.0, measured  # 0x60 << 7 = 12288 = centre + 4096: half the range


def test_pitch_bend_applies_to_sounding_notes(bundles):
    synth = Synth(bundles["b"], limiter=False)
    play(synth, [(0, 0x90, 57, 100), (3200, 0xE0, 0, 96)], 3300)
    assert synth.parts[0].bank.scale[synth.parts[0].pool.active[0]] == pytest.approx(2 ** (1 / 12))


def test_velocity_scales_the_amplitude(bundles):
    loud = play(Synth(bundles["a"], limiter=False), [(0, 0x90, 60, 100)], 4800)
    soft = play(Synth(bundles["a"], limiter=False), [(0, 0x90, 60, 50)], 4800)
    np.testing.assert_allclose(loud, 2 * soft, atol=1e-6 * np.abs(loud).max())


def test_channels_route_to_their_instruments(bundles):
    both = Synth({0: bundles["a"], 1: bundles["b"]}, limiter=False)
    routed = play(both, [(0, 0x91, 60, 100)], 4800)
    alone = play(Synth(bundles["b"], limiter=False), [(0, 0x90, 60, 100)], 4800)
    np.testing.assert_array_equal(routed, alone)
    assert sounding(both, part=1) == [(1, 60)] and sounding(both, part=0) == []
    unmapped = play(both, [(0, 0x92, 60, 100)], 4800)
    assert not unmapped.any()


def test_events_are_sample_accurate(bundles):
    out = play(Synth(bundles["a"], limiter=False), [(17, 0x90, 60, 100), (100, 0xB0, 120, 0)], 256)
    assert not out[:17].any() and out[17] != 0
    assert out[17:100].all() and not out[100:].any()  # all sound off at sample 100 exactly


def test_mono_mode_keeps_one_voice_per_channel(bundles):
    synth = Synth(bundles["a"], limiter=False, mono=True)
    play(synth, [(0, 0x90, 60, 100), (640, 0x90, 64, 100), (640, 0x91, 67, 100)], 640 + FS // 10)
    assert sounding(synth) == [(0, 64), (1, 67)]  # the first note was faded out in 5 ms


def test_mono_mode_returns_to_the_held_key(bundles):
    synth = Synth(bundles["a"], limiter=False, mono=True)
    play(synth, [(0, 0x90, 60, 100), (640, 0x90, 64, 100), (1280, 0x80, 64, 0)], 1280 + FS // 10)
    assert sounding(synth) == [(0, 60)]  # 64 was released, 60 (still held) struck again
    pool = synth.parts[0].pool
    assert pool.key_down[pool.active[0]]
    play(synth, [(0, 0x80, 60, 0)], FS, prepared=True)
    assert synth.voices == 0


def test_all_notes_off_releases_every_voice_of_the_channel(bundles):
    synth = Synth(bundles["a"], limiter=False)
    play(synth, [(0, 0x90, 60, 100), (0, 0x90, 64, 100), (0, 0x91, 67, 100), (640, 0xB0, 123, 0)], 700)
    pool = synth.parts[0].pool
    released = {int(pool.note[s]): bool(pool.releasing[s]) for s in pool.active[: pool.count]}
    assert released == {60: True, 64: True, 67: False}
    play(synth, [], FS, prepared=True)
    assert sounding(synth) == [(1, 67)]  # released voices fell below -100 dBFS and were freed


def test_nan_voice_is_muted_and_reported_once(bundles):
    chord = [(0, 0x90, 57, 100), (0, 0x90, 64, 100)]
    clean = play(Synth(bundles["a"], limiter=False), chord, 4800)
    synth = Synth(bundles["a"], limiter=False)
    with_nan = play(synth, [*chord, (0, 0x90, 61, 100), (2432, 0x90, 61, 90)], 4800)  # at block starts
    np.testing.assert_array_equal(with_nan, clean)
    assert list(synth.faults) == [("non-finite excite output", "modal-string", 0, 61)]


def test_limiter_keeps_peaks_below_the_ceiling(bundles):
    chord = [(0, 0x90, n, 127) for n in (48, 52, 55, 60, 64, 67)]
    out = play(Synth(bundles["a"], gain=20.0), chord, FS // 4)
    raw = play(Synth(bundles["a"], gain=20.0, limiter=False), chord, FS // 4)
    assert np.abs(raw).max() > 2.0 and np.abs(out).max() <= 0.977 + 1e-6


def test_same_events_render_the_same_samples(bundles):
    events = [(0, 0x90, 60, 100), (100, 0xE0, 0, 80), (2000, 0x80, 60, 0), (2100, 0x90, 72, 90)]
    first = play(Synth(bundles["a"]), events, 9600)
    second = play(Synth(bundles["a"]), events, 9600)
    assert first.tobytes() == second.tobytes()
