"""Reference string solvers against theory: partials, decay, energy, resampling, pitch glide, errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from eigentone.errors import EigentoneError
from training.physics.modal import Excitation
from training.physics.partials import cents, matrix_pencil, zero_crossing_frequency
from training.physics.string_linear import (
    StringParams,
    modal_energy,
    params_for_f0,
    pluck_modal_state,
    simulate_string,
    strike_modal_state,
    string_modes,
    wavenumbers,
)
from training.physics.string_nonlinear import modulation_coefficients, simulate_string_nonlinear, string_energy

NYLON = StringParams()
PLUCK = Excitation("pluck", position=0.137 * NYLON.L, width=0.05 * NYLON.L, amplitude=1e-3)


def test_linear_partials_and_decays_match_analytic_modes_including_inharmonicity():
    n_modes, fs = 25, 16000.0
    res = simulate_string(NYLON, PLUCK, fs, 0.05, 101, [0.083 * NYLON.L], n_modes)
    sigma, omega = string_modes(NYLON, n_modes)
    est_sigma, est_freq = matrix_pencil(res.pickups[0, :800], fs, n_modes)
    analytic = omega / (2 * np.pi)
    error = np.abs(cents(est_freq, analytic))
    assert error.max() < 0.1, f"worst partial error {error.max():.2e} cents"
    assert np.max(np.abs(est_sigma / sigma - 1)) < 1e-6
    # stiffness makes the string audibly inharmonic: partial 25 is far above 25 f1, and the solver follows it
    assert cents(analytic[-1], 25 * analytic[0]) > 50


def test_linear_energy_never_increases():
    n_modes, fs = 25, 16000.0
    sigma, omega = string_modes(NYLON, n_modes)
    z0 = pluck_modal_state(NYLON, n_modes, PLUCK.position, PLUCK.width, PLUCK.amplitude)
    t = np.arange(8000) / fs
    modes = z0 * np.exp(np.outer(t, -sigma + 1j * omega))  # (samples, modes)
    energy = modal_energy(NYLON, modes.real, np.real((-sigma + 1j * omega) * modes))
    assert np.all(np.diff(energy) <= 1e-12 * energy[0])
    assert energy[-1] < 0.9 * energy[0]


def test_doubling_the_sample_rate_only_resamples_the_solution():
    one = simulate_string(NYLON, PLUCK, 16000.0, 0.05, 101, [0.1], 25)
    two = simulate_string(NYLON, PLUCK, 32000.0, 0.05, 101, [0.1], 25)
    assert np.array_equal(two.field[::2], one.field)
    assert np.array_equal(two.pickups[:, ::2], one.pickups)


def test_strike_and_pluck_states_start_from_their_initial_conditions():
    sigma, omega = string_modes(NYLON, 25)
    pluck = pluck_modal_state(NYLON, 25, 0.2, 0.05, 2e-3)
    strike = strike_modal_state(NYLON, 25, 0.2, 0.05, 0.5)
    lam = -sigma + 1j * omega
    assert np.allclose(np.real(lam * pluck), 0.0, atol=1e-12)  # zero initial velocity
    assert np.allclose(strike.real, 0.0) and np.sum(np.real(lam * strike)) > 0  # at rest, moving up


def test_force_excitation_is_the_exact_step_response():
    fs, n_modes = 16000.0, 10
    steps = np.ones(1600)
    res = simulate_string(NYLON, Excitation("force", 0.2, 0.05, amplitude=0.1, force=steps), fs, 0.1, 11, [0.1],
                          n_modes)
    sigma, omega = string_modes(NYLON, n_modes)
    from training.physics.string_linear import force_gains

    b = 0.1 * force_gains(NYLON, Excitation("force", 0.2, 0.05), n_modes)
    t = res.t[:, None]
    exact = b / (sigma**2 + omega**2) * (1 - np.exp(-sigma * t) * (np.cos(omega * t) + sigma / omega * np.sin(omega * t)))
    assert np.max(np.abs(res.modal - exact)) < 1e-9 * np.max(np.abs(exact))


def test_params_for_f0_hits_the_requested_fundamental():
    params = params_for_f0(110.0)
    assert abs(string_modes(params, 1)[1][0] / (2 * np.pi) - 110.0) < 1e-9


def test_nonlinear_stepper_conserves_energy_without_damping_and_never_gains_with_it():
    lossless = replace(NYLON, d1=0.0, d3=0.0)
    hard = replace(PLUCK, amplitude=8e-3)
    res = simulate_string_nonlinear(lossless, hard, 16000.0, 0.5, 11, [0.1], 25)
    energy = string_energy(lossless, res.modal, 16000.0)
    assert np.max(np.abs(energy / energy[0] - 1)) < 1e-10
    res = simulate_string_nonlinear(NYLON, hard, 16000.0, 0.5, 11, [0.1], 25)
    energy = string_energy(NYLON, res.modal, 16000.0)
    assert np.all(np.diff(energy) <= 1e-13 * energy[0])


def _fundamental_track(amplitude: float, params: StringParams, duration: float = 1.0):
    whole = Excitation("pluck", 0.5 * params.L, params.L, amplitude)  # mostly mode 1
    res = simulate_string_nonlinear(params, whole, 16000.0, duration, 11, [0.5 * params.L], 25)
    return zero_crossing_frequency(res.modal[:, 0], 16000.0)


def test_nonlinear_pitch_falls_as_the_note_decays_and_rises_with_amplitude():
    damped = replace(NYLON, d1=4e-3)  # sigma_1 about 3.7 1/s: the note loses ~30 dB in the second
    f_lin = string_modes(damped, 1)[1][0] / (2 * np.pi)
    t, f_hard = _fundamental_track(8e-3, damped)
    _, f_soft = _fundamental_track(2e-3, damped)
    early, late = t < 0.05, t > 0.9
    glide = cents(f_hard[early].mean(), f_hard[late].mean())
    assert glide > 5, f"glide {glide:.2f} cents"
    assert f_hard[early].mean() > f_soft[early].mean() > f_lin
    assert abs(cents(f_hard[late].mean(), f_lin)) < abs(cents(f_hard[early].mean(), f_lin))


def test_modulation_coefficients_bound_the_initial_pitch_shift():
    # The contract's mean-tension formula is exact for the modulation of one mode by the others; a mode's
    # modulation of itself is 3/2 of it by harmonic balance (cos^3 = 3/4 cos + ...). So the measured shift of
    # a mostly-mode-1 pluck lies between 1 and 1.5 times the formula's prediction.
    n_modes, amplitude = 25, 1e-2
    z0 = pluck_modal_state(NYLON, n_modes, 0.5 * NYLON.L, NYLON.L, amplitude)
    _, omega = string_modes(NYLON, n_modes)
    alpha, beta = modulation_coefficients(NYLON, n_modes)
    predicted = np.sqrt(omega[0] ** 2 + alpha[0] * np.sum(beta * np.abs(z0) ** 2)) / (2 * np.pi)
    _, f = _fundamental_track(amplitude, NYLON, duration=0.1)
    shift_pred, shift_meas = cents(predicted, omega[0] / (2 * np.pi)), cents(f.mean(), omega[0] / (2 * np.pi))
    assert shift_pred > 10
    assert 1.0 < shift_meas / shift_pred < 1.5


def test_nonlinear_string_converges_to_linear_at_small_amplitude():
    tiny = replace(PLUCK, amplitude=1e-7)
    linear = simulate_string(NYLON, tiny, 16000.0, 0.25, 11, [0.1], 25)
    nonlinear = simulate_string_nonlinear(NYLON, tiny, 16000.0, 0.25, 11, [0.1], 25)
    errors = [np.max(np.abs(nonlinear.pickups - linear.pickups)) / np.max(np.abs(linear.pickups))]
    small = replace(PLUCK, amplitude=1e-6)
    errors.append(np.max(np.abs(simulate_string_nonlinear(NYLON, small, 16000.0, 0.25, 11, [0.1], 25).pickups
                                - simulate_string(NYLON, small, 16000.0, 0.25, 11, [0.1], 25).pickups))
                  / np.max(np.abs(linear.pickups)) / 10)
    assert errors[0] < 1e-8
    assert errors[1] > 10 * errors[0]  # the difference grows like amplitude^2 (relative), i.e. it is the nonlinearity


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: string_modes(replace(NYLON, T=-1.0), 10), "tension T must not be negative"),
        (lambda: string_modes(replace(NYLON, L=0.0), 10), "L must be positive"),
        (lambda: pluck_modal_state(NYLON, 10, 0.8, 0.01, 1e-3), "outside the domain"),
        (lambda: pluck_modal_state(NYLON, 10, 0.64, 0.05, 1e-3), "reaches past the end"),
        (lambda: simulate_string(NYLON, PLUCK, 8000.0, 0.1, 11, [0.1], 25),
         "sample rate 8000 Hz is below twice the highest simulated mode (6713.8 Hz)"),
        (lambda: simulate_string_nonlinear(NYLON, Excitation("pluck", 0.3, 0.02, 0.05), 16000.0, 0.1, 11, [0.1], 25),
         "time step 1/16000 s is unstable"),
    ],
)
def test_bad_input_gives_one_line_errors(call, message):
    with pytest.raises(EigentoneError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_wavenumbers_are_n_pi_over_l():
    assert np.allclose(wavenumbers(NYLON, 3), np.array([1, 2, 3]) * np.pi / NYLON.L)
