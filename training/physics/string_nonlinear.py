"""Tension-modulated (Kirchhoff-Carrier) stiff string, solved in the linear string's modes.

PDE (same symbols and boundary conditions as ``string_linear``)::

    rho A u_tt + E I u_xxxx - T(t) u_xx + d1 u_t - d3 u_xxt = 0,
    T(t) = T + (E A / (2 L)) integral_0^L u_x^2 dx

With u = sum_n q_n sin(k_n x), integral u_x^2 dx = (L/2) sum_m k_m^2 q_m^2 = (L/2) P, so the tension change
is (E A / 4) P and each mode obeys::

    rho A q_n'' + (d1 + d3 k_n^2) q_n' + (E I k_n^4 + T k_n^2) q_n + (E A / 4) k_n^2 P q_n = 0,

i.e. system (1) of ``tension_modulated`` with M = rho A, gamma = E A / 4 and norm weight W = L / 2.
The energy-conserving stepper there integrates it; pitch glides down as the note decays.

Pole modulation for the engine (``eigentone/contract``): over one period q_m^2 averages to |z_m|^2 / 2
(|z_m| = modal displacement amplitude in m, this package's normalisation), so the mean tension change is
(E A / 8) sum_m k_m^2 |z_m|^2 and omega_n^2 = omega0_n^2 + alpha_n sum_m beta_m |z_m|^2 with::

    alpha_n = k_n^2 / (rho A)   (m/kg),     beta_m = E A k_m^2 / 8   (N/m^2).

This mean-tension formula is exact to first order for the modulation of a mode by the *other* modes. A mode's
modulation of itself is 3/2 of it (harmonic balance: cos^3 = 3/4 cos + 1/4 cos 3), so for a pluck dominated by
one mode the solver's initial pitch shift is 1 to 1.5 times the formula's (measured 1.25 for a whole-string
pluck of the nylon B string, ``tests/test_physics_string.py``).
"""

from __future__ import annotations

import numpy as np

from eigentone.errors import EigentoneError
from training.physics.modal import Excitation, SimResult, check_below_nyquist, sample_times
from training.physics.string_linear import (
    StringParams,
    check_pickups,
    grid,
    initial_modal_values,
    modal_to_result,
    string_modes,
    wavenumbers,
)
from training.physics.tension_modulated import check_step, continuous_energy, discrete_energy, run_scheme


def tension_gain(params: StringParams) -> float:
    """gamma = E A / 4 in N: tension increase per unit P = sum_m k_m^2 q_m^2."""
    return params.E * params.A / 4.0


def modulation_coefficients(params: StringParams, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Contract pole-modulation coefficients (alpha (N,) in m/kg, beta (N,) in N/m^2), see module doc."""
    k = wavenumbers(params, n_modes)
    return k**2 / (params.rho * params.A), params.E * params.A * k**2 / 8.0


def simulate_string_nonlinear(
    params: StringParams,
    excitation: Excitation,
    sample_rate: float,
    duration: float,
    grid_points: int,
    pickup_positions,
    n_modes: int,
) -> SimResult:
    """Render the Kirchhoff-Carrier string at ``sample_rate`` Hz for ``duration`` s (same arguments and
    SimResult shapes as ``string_linear.simulate_string``; force excitations are not supported here).

    Raises EigentoneError if a mode is above Nyquist or the step cannot resolve the tension-raised modes.
    """
    if excitation.kind == "force":
        raise EigentoneError("the nonlinear string takes pluck, strike or noise excitations, not a force signal")
    sigma, omega = string_modes(params, n_modes)
    check_below_nyquist(omega, sample_rate)
    xp = check_pickups(params, pickup_positions)
    x = grid(params, grid_points)
    t = sample_times(sample_rate, duration)
    q0, v0 = initial_modal_values(params, excitation, n_modes)
    k = wavenumbers(params, n_modes)
    mass = params.rho * params.A
    gamma = tension_gain(params)
    stiffness = params.E * params.I * k**4 + params.T * k**2
    energy = continuous_energy(q0, v0, k, mass, stiffness, gamma, params.L / 2)
    check_step(np.sqrt(omega**2 + sigma**2), k, mass, gamma, energy, params.L / 2, sample_rate)
    q = run_scheme(q0, v0, sigma, omega, k, mass, gamma, sample_rate, t.size)
    return modal_to_result(params, q, t, x, xp)


def string_energy(params: StringParams, q: np.ndarray, sample_rate: float) -> np.ndarray:
    """Discrete energy (samples - 1,) in J of a nonlinear-string modal trajectory q (samples, N):
    conserved to rounding without damping, never increasing with it."""
    sigma, omega = string_modes(params, q.shape[1])
    k = wavenumbers(params, q.shape[1])
    return discrete_energy(q, k, params.rho * params.A, tension_gain(params), params.L / 2, sigma, omega, sample_rate)
