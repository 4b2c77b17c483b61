"""Player options of the synth against the float64 contract: release_time, decay_scale, brightness, position
(parameter and MIDI CC1, in effect at each note-on's own offset), and internal blocks independent of the host's."""

from __future__ import annotations

import numpy as np
import pytest

from eigentone.contract.reference import ModalVoices, complex_to_pairs, discrete_poles, midi_to_hz, render_modal
from engine.instrument import Instrument
from engine.synth import Synth
from export.modal_bundle import write_modal_bundle

FS = 48000


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Instrument]:
    folder = tmp_path_factory.mktemp("options")
    write_modal_bundle(folder / "plain.etone", modes=40, release_time=0.3)
    write_modal_bundle(folder / "readout.etone", modes=24, readout=True, name="readout")
    write_modal_bundle(folder / "both.etone", modes=24, readout=True, modulation=True, glide=0.5, name="both")
    return {name: Instrument.load(folder / f"{name}.etone") for name in ("plain", "readout", "both")}


def play(synth: Synth, events: list[tuple[int, int, int, int]], n_samples: int, host_block: int | list[int] = 64,
         max_voices: int = 16) -> np.ndarray:
    """Render (frame, status, d1, d2) events (absolute frames) in host calls of ``host_block`` samples (a list
    cycles through irregular sizes); returns (n_samples,) float32."""
    sizes = host_block if isinstance(host_block, list) else [host_block]
    synth.prepare(FS, max(sizes), max_voices)
    out = np.zeros(n_samples, np.float32)
    start, call = 0, 0
    while start < n_samples:
        n = min(sizes[call % len(sizes)], n_samples - start)
        block = [(f - start, s, d1, d2) for f, s, d1, d2 in sorted(events, key=lambda e: e[0]) if start <= f < start + n]
        out[start : start + n] = synth.process(block, n)
        start, call = start + n, call + 1
    return out


def reference(instrument: Instrument, note: int, velocity: int, n_samples: int, *, position: float = 0.2,
              sigma_divisor: float = 1.0, tilt: np.ndarray | None = None) -> np.ndarray:
    """One held note by the contract's float64 recurrence, times the instrument's output gain, with the decay
    rates divided by ``sigma_divisor`` and the readout multiplied by ``tilt`` (modes,)."""
    voices = instrument.excite(np.array([[note, velocity / 127, position, 0.37]], np.float32))
    voices.sigma = voices.sigma / sigma_divisor
    if tilt is not None:
        voices.c = voices.c * tilt
    return instrument.output_gain * render_modal(voices, FS, n_samples)[0]


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


def expected_tilt(instrument: Instrument, note: int, brightness: float) -> np.ndarray:
    """The spec's tilt, written out here: clamp((omega0_n / omega_note) ** brightness, 1/16, 16)."""
    omega0 = instrument.excite(np.array([[note, 0.8, 0.2, 0.37]], np.float32)).omega[0]
    return np.clip((omega0 / (2 * np.pi * midi_to_hz(note))) ** brightness, 1 / 16, 16)


def test_defaults_reproduce_the_bundle(bundles):
    note = [(0, 0x90, 57, 100), (3000, 0x80, 57, 0)]
    default = play(Synth(bundles["plain"], limiter=False), note, 9600)
    explicit = play(Synth(bundles["plain"], limiter=False, release_time=0.3, decay_scale=1.0, brightness=0.0), note, 9600)
    assert default.tobytes() == explicit.tobytes()
    assert rel_error(default[:3000], reference(bundles["plain"], 57, 100, 3000)) < 1e-4


@pytest.mark.parametrize("decay_scale", [0.25, 2.0, 4.0])
def test_decay_scale_multiplies_every_modes_t60(bundles, decay_scale):
    held = play(Synth(bundles["plain"], limiter=False, decay_scale=decay_scale), [(0, 0x90, 45, 110)], FS // 2)
    expected = reference(bundles["plain"], 45, 110, FS // 2, sigma_divisor=decay_scale)
    unscaled = reference(bundles["plain"], 45, 110, FS // 2)
    assert rel_error(held, expected) < 1e-4
    assert rel_error(unscaled, expected) > 1e-2  # the option makes an audible difference


@pytest.mark.parametrize("release_time", [None, 0.1, 0.6])
def test_release_time_sets_the_decay_after_note_off(bundles, release_time):
    """From the note-off on every mode decays at max(sigma / decay_scale, ln(1000) / release_time): the release
    floor is not scaled by decay_scale."""
    instrument, off, n, decay_scale = bundles["plain"], 4811, 4811 + FS // 10, 4.0
    audio = play(Synth(instrument, limiter=False, release_time=release_time, decay_scale=decay_scale),
                 [(0, 0x90, 40, 120), (off, 0x80, 40, 0)], n)
    voices = instrument.excite(np.array([[40, 120 / 127, 0.2, 0.37]], np.float32))
    voices.sigma = voices.sigma / decay_scale
    before = render_modal(voices, FS, off)[0]
    voices.z0 = voices.z0 * discrete_poles(voices.sigma, voices.omega, FS) ** off
    voices.sigma = np.maximum(voices.sigma, np.log(1000.0) / (release_time or 0.3))
    after = render_modal(voices, FS, n - off)[0]
    expected = instrument.output_gain * np.concatenate([before, after])
    assert rel_error(audio, expected) < 1e-4
    assert rel_error(audio[off:], expected[off:]) < 1e-4
    assert np.abs(audio[-480:]).max() < 10 ** (-60 * 0.09 / (release_time or 0.3) / 20 + 0.5) * np.abs(audio).max()


@pytest.mark.parametrize("brightness", [-1.0, 0.5, 1.0])
def test_brightness_tilts_the_readout(bundles, brightness):
    held = play(Synth(bundles["plain"], limiter=False, brightness=brightness), [(0, 0x90, 52, 100)], FS // 4)
    tilt = expected_tilt(bundles["plain"], 52, brightness)
    assert rel_error(held, reference(bundles["plain"], 52, 100, FS // 4, tilt=tilt)) < 1e-4
    assert tilt.min() < 0.9 or tilt.max() > 1.1  # the tilt is not trivial for this note


def test_brightness_multiplies_the_readout_graph_every_block(bundles):
    """With a readout graph the tilt multiplies the graph's c, re-evaluated each 64-sample block."""
    instrument, note, brightness, n = bundles["readout"], 50, 0.7, 64 * 40
    out = play(Synth(instrument, limiter=False, brightness=brightness), [(0, 0x90, note, 100)], n)
    voices = instrument.excite(np.array([[note, 100 / 127, 0.2, 0.37]], np.float32))
    tilt = expected_tilt(instrument, note, brightness)
    poles = discrete_poles(voices.sigma, voices.omega, FS)[0]
    z, c = voices.z0[0], voices.c[0]
    expected = np.zeros(n)
    for start in range(0, n, 64):
        if start:
            pairs = instrument.readout(complex_to_pairs(z)[None])[0].astype(np.float64)
            c = pairs[:, 0] + 1j * pairs[:, 1]
        expected[start : start + 64] = np.real((c * tilt * z)[:, None] * poles[:, None] ** np.arange(64)).sum(axis=0)
        z = z * poles**64
    assert rel_error(out, instrument.output_gain * expected) < 1e-4
    plain = play(Synth(instrument, limiter=False), [(0, 0x90, note, 100)], n)
    assert rel_error(plain, out) > 1e-2


def test_mod_wheel_sets_the_position_of_later_note_ons_in_the_same_block(bundles):
    """A note-on uses the controls in effect at its own offset: CC1 at sample 10 moves the note at 20, not the
    note at 0 (same block)."""
    instrument = bundles["plain"]
    events = [(0, 0x90, 48, 100), (10, 0xB1, 1, 76), (20, 0x90, 55, 100)]  # CC1 on any channel
    both = play(Synth(instrument, limiter=False), events, 4800).astype(np.float64)
    first = play(Synth(instrument, limiter=False), [events[0]], 4800)
    second = play(Synth(instrument, limiter=False, position=76 / 127), [events[2]], 4800)
    np.testing.assert_allclose(both, first + second, atol=1e-6 * np.abs(both).max())
    stale = play(Synth(instrument, limiter=False), [events[2]], 4800)
    assert rel_error(stale, second) > 1e-2  # the position change is audible


def test_position_parameter_and_mod_wheel_last_writer_wins(bundles):
    synth = Synth(bundles["plain"], limiter=False)
    play(synth, [(0, 0xB0, 1, 127)], 64)
    assert synth.position == 1.0
    synth.position = 0.3  # the parameter written after the CC
    assert synth.position == 0.3


@pytest.mark.parametrize("host_block", [128, 100, [37, 64, 5, 200, 1]])
def test_internal_blocks_do_not_depend_on_the_host_block(bundles, host_block):
    """Readout graph and pole modulation run every 64 samples of the stream whatever the host's call sizes.
    Calls that are whole multiples of 64 give the same samples; other cuts split blocks, which changes only
    the float32 rounding of output sums (the state moves only at anchors, so the difference does not grow)."""
    events = [(0, 0x90, 50, 120), (70, 0x90, 57, 100), (200, 0xE0, 0, 80), (333, 0x80, 50, 0), (640, 0xB0, 1, 20),
              (700, 0x90, 62, 90)]
    n = 64 * 200
    at_64 = play(Synth(bundles["both"], limiter=False), events, n)
    other = play(Synth(bundles["both"], limiter=False), events, n, host_block=host_block)
    if host_block == 128:
        np.testing.assert_array_equal(other, at_64)
    error = np.abs(other - at_64).reshape(-1, 64).max(axis=1) / np.abs(at_64).max()
    assert error.max() < 1e-6, error.max()


def test_options_out_of_range_are_refused(bundles):
    for bad in ({"decay_scale": 0.2}, {"decay_scale": 4.5}, {"brightness": 1.5}, {"release_time": 0.0},
                {"position": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Synth(bundles["plain"], **bad)


def test_cli_exposes_the_options():
    import argparse

    from eigentone.errors import EigentoneError
    from engine.render_cli import add_synth_arguments, synth_options

    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    options = synth_options(parser.parse_args(["--release-time", "0.5", "--decay-scale", "2", "--brightness", "-0.5",
                                               "--position", "0.4", "--position-y", "0.6"]))
    assert {k: options[k] for k in ("release_time", "decay_scale", "brightness", "position", "position_y")} == {
        "release_time": 0.5, "decay_scale": 2.0, "brightness": -0.5, "position": 0.4, "position_y": 0.6}
    with pytest.raises(EigentoneError, match="--decay-scale"):
        synth_options(parser.parse_args(["--decay-scale", "8"]))


def test_modal_voices_helper_is_unchanged():
    """render_modal (the reference used above) is the contract's: a single undamped mode is a cosine."""
    voices = ModalVoices(np.zeros((1, 1)), np.full((1, 1), 2 * np.pi * 1000.0), np.ones((1, 1), complex),
                         np.ones((1, 1), complex))
    np.testing.assert_allclose(render_modal(voices, FS, 48)[0], np.cos(2 * np.pi * 1000.0 * np.arange(48) / FS),
                               atol=1e-12)
