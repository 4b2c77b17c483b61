"""Reference plate solvers against theory: partials, decay, resampling, Berger energy and pitch, errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from eigentone.errors import EigentoneError
from training.physics.modal import Excitation
from training.physics.partials import cents, matrix_pencil, zero_crossing_frequency
from training.physics.plate_linear import PlateParams, plate_mode_indices, plate_modes, simulate_plate
from training.physics.plate_nonlinear import modulation_coefficients, plate_energy, simulate_plate_nonlinear

STEEL = PlateParams()
STRIKE = Excitation("strike", position=0.137, width=0.04, amplitude=1.0, position_y=0.113)
PICKUP = [(0.071, 0.053)]


def test_linear_plate_partials_and_decays_match_analytic_modes():
    n_modes, fs = 20, 4000.0
    res = simulate_plate(STEEL, STRIKE, fs, 0.2, (6, 8), PICKUP, n_modes)
    sigma, omega = plate_modes(STEEL, n_modes)
    est_sigma, est_freq = matrix_pencil(res.pickups[0], fs, n_modes)
    error = np.abs(cents(est_freq, omega / (2 * np.pi)))
    assert error.max() < 0.1, f"worst partial error {error.max():.2e} cents"
    assert np.max(np.abs(est_sigma / sigma - 1)) < 1e-6
    assert res.field.shape == (800, 6, 8) and res.x.shape == (6, 8, 2)


def test_plate_modes_follow_kirchhoff_dispersion():
    m, n = plate_mode_indices(STEEL, 6)
    assert (m[0], n[0]) == (1, 1)
    kappa2 = (m * np.pi / STEEL.Lx) ** 2 + (n * np.pi / STEEL.Ly) ** 2
    sigma, omega = plate_modes(STEEL, 6)
    assert np.allclose(omega**2 + sigma**2, STEEL.rigidity * kappa2**2 / (STEEL.rho * STEEL.h), rtol=1e-12)
    assert np.all(np.diff(kappa2) >= 0)


def test_doubling_the_sample_rate_only_resamples_the_plate():
    one = simulate_plate(STEEL, STRIKE, 8000.0, 0.05, (5, 5), PICKUP, 30)
    two = simulate_plate(STEEL, STRIKE, 16000.0, 0.05, (5, 5), PICKUP, 30)
    assert np.array_equal(two.field[::2], one.field)
    assert np.array_equal(two.pickups[:, ::2], one.pickups)


def test_berger_stepper_conserves_energy_without_damping_and_never_gains_with_it():
    hard = replace(STRIKE, amplitude=3.0)
    lossless = replace(STEEL, d1=0.0, d3=0.0)
    energy = plate_energy(lossless, simulate_plate_nonlinear(lossless, hard, 16000.0, 0.5, (4, 4), PICKUP, 30).modal,
                          16000.0)
    assert np.max(np.abs(energy / energy[0] - 1)) < 1e-10
    energy = plate_energy(STEEL, simulate_plate_nonlinear(STEEL, hard, 16000.0, 0.5, (4, 4), PICKUP, 30).modal,
                          16000.0)
    assert np.all(np.diff(energy) <= 1e-13 * energy[0])


def test_berger_plate_pitch_rises_with_amplitude_and_converges_to_linear():
    centre = Excitation("pluck", STEEL.Lx / 2, 0.25, 1e-3, position_y=STEEL.Ly / 2)  # mostly mode (1, 1)
    f_lin = plate_modes(STEEL, 1)[1][0] / (2 * np.pi)
    shifts = []
    for amplitude in (0.3e-3, 1e-3):
        res = simulate_plate_nonlinear(STEEL, replace(centre, amplitude=amplitude), 8000.0, 0.3, (3, 3), PICKUP, 20)
        shifts.append(cents(zero_crossing_frequency(res.modal[:, 0], 8000.0)[1].mean(), f_lin))
    assert 0 < shifts[0] < shifts[1]
    tiny = replace(STRIKE, amplitude=1e-5)
    linear = simulate_plate(STEEL, tiny, 8000.0, 0.3, (3, 3), PICKUP, 20)
    nonlinear = simulate_plate_nonlinear(STEEL, tiny, 8000.0, 0.3, (3, 3), PICKUP, 20)
    assert np.max(np.abs(nonlinear.pickups - linear.pickups)) < 1e-6 * np.max(np.abs(linear.pickups))


def test_berger_modulation_coefficients_are_positive_and_scale_with_wavenumber():
    alpha, beta = modulation_coefficients(STEEL, 10)
    assert np.all(alpha > 0) and np.all(beta > 0)
    assert np.allclose(beta / alpha, beta[0] / alpha[0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plate_modes(replace(STEEL, h=-1e-3), 5), "h must be positive"),
        (lambda: plate_modes(replace(STEEL, nu=0.7), 5), "Poisson's ratio"),
        (lambda: simulate_plate(STEEL, replace(STRIKE, position_y=0.5), 8000.0, 0.1, (3, 3), PICKUP, 5),
         "outside the domain"),
        (lambda: simulate_plate(STEEL, STRIKE, 8000.0, 0.1, (3, 3), [(1.0, 0.1)], 5), "must lie on the plate"),
        (lambda: simulate_plate(STEEL, STRIKE, 1000.0, 0.1, (3, 3), PICKUP, 40), "below twice the highest"),
        (lambda: simulate_plate_nonlinear(STEEL, Excitation("pluck", 0.2, 0.25, 2e-2, position_y=0.15), 2000.0, 0.1,
                                          (3, 3), PICKUP, 20), "time step 1/2000 s is unstable"),
    ],
)
def test_bad_plate_input_gives_one_line_errors(call, message):
    with pytest.raises(EigentoneError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)
