"""Modes, poles and pole law found in field data alone (training/models/data_modes.py), checked against the
solver that made the data (the analysis itself never sees the solver's parameters or its sine basis)."""

from __future__ import annotations

import numpy as np
import pytest

from training.models.data_modes import analyse, fit_pole_law, initial_velocity
from training.physics.modal import Excitation
from training.physics.string_linear import (
    StringParams,
    initial_modal_values,
    simulate_string,
    string_modes,
    wavenumbers,
)

FS = 16000.0


@pytest.fixture(scope="module")
def linear_strings():
    """8 plucks and 4 strikes of the nylon B string, 33 points, 8 modes, 600 samples: (fields, excitation kinds,
    the solver's initial velocity on the grid (E, 33) m/s)."""
    params, rng = StringParams(), np.random.default_rng(1)
    x = np.linspace(0.0, params.L, 33)
    fields, kinds, velocities = [], [], []
    for e in range(12):
        kind = "strike" if e % 3 == 2 else "pluck"
        exc = Excitation(kind, float(rng.uniform(0.2, 0.8)) * params.L, 0.05, 1e-3 if kind == "pluck" else 0.3,
                         "raised_cosine")
        fields.append(simulate_string(params, exc, FS, 600 / FS, 33, [0.1 * params.L], 8).field)
        kinds.append(kind)
        _, v0 = initial_modal_values(params, exc, 8)
        velocities.append(np.sin(np.outer(x, wavenumbers(params, 8))) @ v0)
    return np.stack(fields), np.array(kinds), np.stack(velocities)


def test_linear_string_modes_and_poles_come_out_exact_from_the_fields(linear_strings):
    fields, _, _ = linear_strings
    found = analyse(fields, FS, 32, modulation=False)
    sigma, omega = string_modes(StringParams(), 8)
    assert found.shapes.shape == (33, 8)  # the data hold 8 modes: POD finds 8, not 32
    np.testing.assert_allclose(1200 * np.log2(found.omega / omega), 0.0, atol=1e-4)  # cents
    np.testing.assert_allclose(found.sigma, sigma, rtol=1e-4)
    x = np.linspace(0.0, 1.0, 33)
    sines = np.sin(np.pi * np.outer(x, np.arange(1, 9)))
    sines /= np.linalg.norm(sines, axis=0)
    assert np.all(np.abs(np.sum(found.shapes * sines, axis=0)) > 1 - 1e-8)  # each shape is its sine, up to sign
    assert not found.alpha.any()


def test_initial_velocity_of_strikes_from_two_snapshots(linear_strings):
    fields, kinds, velocities = linear_strings
    found = analyse(fields, FS, 32, modulation=False)
    v0 = initial_velocity(fields, found.shapes, found.sigma, found.omega, FS)  # (E, P)
    assert np.abs(v0[kinds == "pluck"]).max() < 1e-6 * np.abs(v0[kinds == "strike"]).max()  # plucks start at rest
    np.testing.assert_allclose(v0, velocities, atol=1e-6 * np.abs(velocities).max())  # the solver's, to rounding


def test_pole_law_least_squares_recovers_a_known_law():
    rng = np.random.default_rng(0)
    omega0_sq, alpha, beta = (2 * np.pi * 200 * np.arange(1, 7)) ** 2, rng.uniform(1, 3, 6) * 1e9, rng.uniform(0.1, 1, 6)
    beta /= beta.max()
    energy = rng.uniform(0, 1e-5, (400, 6)) * rng.uniform(0, 1, (400, 1))  # (segments, modes) |z|^2
    omega2 = omega0_sq + alpha * (energy @ beta)[:, None]
    got = fit_pole_law(omega2, energy, np.ones_like(omega2, bool))
    for name, want, have in zip(("omega0^2", "alpha", "beta"), (omega0_sq, alpha, beta), got):
        np.testing.assert_allclose(have, want, rtol=1e-6, err_msg=name)
