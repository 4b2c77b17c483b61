"""The pitch scoring of ``eigentone bench families``: an honest f0 measurement of a model's note.

``pitch_errors`` tracks the recording's fundamental without help, then the model's with the recording's
pitch as a hint. The hint must pick the right partial through an attack click, and must never hide a model
that plays the wrong octave.
"""

import numpy as np
import pytest

from training.families.recordings import pitch_errors
from training.modal_analysis import fundamental_trajectory

FS = 16000.0
T = np.arange(int(0.5 * FS)) / FS


def harmonic_note(f0: float, amps: list[float]) -> np.ndarray:
    """(samples,) decaying harmonics k f0 with amplitudes ``amps`` (k = 1, 2, ...)."""
    return sum(a * np.exp(-(1.0 + k) * T) * np.sin(2 * np.pi * k * f0 * T + k) for k, a in enumerate(amps, 1))


def test_an_attack_click_louder_than_the_note_does_not_move_the_track_to_a_harmonic():
    # the fundamental is weaker than its second harmonic and 1/40 of a click that dies within the first frame
    note = harmonic_note(246.9, [1.0, 4.0, 2.5, 1.0])
    click = 40.0 * np.exp(-1500.0 * T) * np.sin(2 * np.pi * 1200.0 * T)
    _, f0 = fundamental_trajectory(note + click, FS, f0_hint=246.9, skip_attack=True)
    assert np.isnan(f0[0]) and np.all(np.isfinite(f0[1:]))  # the click's frame has no reading
    np.testing.assert_allclose(1200 * np.log2(f0[1:] / 246.9), 0.0, atol=2.0)  # cents, every other frame
    fundamental, glide = pitch_errors(note + click, note, FS)  # as the bench scores a model with a click
    assert fundamental < 2.0 and glide < 2.0


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_a_note_played_an_octave_off_scores_an_octave_off(ratio):
    ref = harmonic_note(246.9, [1.0, 2.0, 1.0, 0.5])
    pred = harmonic_note(246.9 * ratio, [1.0, 2.0, 1.0, 0.5])  # its harmonics include the reference's pitch
    fundamental, glide = pitch_errors(pred, ref, FS)
    assert fundamental == pytest.approx(1200.0, abs=5.0)
    assert glide >= fundamental - 5.0


def test_the_right_octave_with_a_weak_fundamental_scores_the_right_pitch():
    ref = harmonic_note(116.5, [2.0, 3.0, 1.0, 0.5])
    pred = harmonic_note(116.5 * 2 ** (3 / 1200), [1.0, 3.0, 1.5, 0.5])
    fundamental, glide = pitch_errors(pred, ref, FS)
    assert fundamental == pytest.approx(3.0, abs=0.5)
    assert glide == pytest.approx(3.0, abs=0.5)
