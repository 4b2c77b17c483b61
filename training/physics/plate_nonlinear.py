"""Berger plate: the linear plate of ``plate_linear`` plus a uniform in-plane tension set by the stretching.

Berger's approximation of large-amplitude plate vibration::

    rho h w_tt + D nabla^4 w - N(t) nabla^2 w + d1 w_t - d3 nabla^2 w_t = 0,
    N(t) = E h / (2 Lx Ly (1 - nu^2)) integral |grad w|^2 dA

With w = sum q_mn phi_mn, integral |grad w|^2 dA = (Lx Ly / 4) P, P = sum kappa^2 q^2, so N = gamma P with
gamma = E h / (8 (1 - nu^2)) (N/m), and each mode obeys::

    rho h q'' + (d1 + d3 kappa^2) q' + D kappa^4 q + gamma kappa^2 P q = 0,

system (1) of ``tension_modulated`` with M = rho h and norm weight W = Lx Ly / 4; stepped by its
energy-conserving scheme. Pole modulation for the engine (same averaging as the string):
alpha_n = kappa_n^2 / (rho h) (m^2/kg), beta_m = gamma kappa_m^2 / 2 = E h kappa_m^2 / (16 (1 - nu^2)) (N/m^3).
"""

from __future__ import annotations

import numpy as np

from training.physics.modal import Excitation, SimResult, check_below_nyquist, sample_times
from training.physics.plate_linear import (
    PlateParams,
    check_plate_pickups,
    initial_modal_values,
    plate_grid,
    plate_modal_to_result,
    plate_modes,
    plate_wavenumbers,
)
from training.physics.tension_modulated import check_step, continuous_energy, discrete_energy, run_scheme


def tension_gain(params: PlateParams) -> float:
    """gamma = E h / (8 (1 - nu^2)) in N/m: in-plane tension per unit P = sum kappa^2 q^2."""
    return params.E * params.h / (8 * (1 - params.nu**2))


def modulation_coefficients(params: PlateParams, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Contract pole-modulation coefficients (alpha (N,), beta (N,)), see module doc."""
    _, _, kappa2 = plate_wavenumbers(params, n_modes)
    return kappa2 / (params.rho * params.h), tension_gain(params) * kappa2 / 2


def simulate_plate_nonlinear(
    params: PlateParams,
    excitation: Excitation,
    sample_rate: float,
    duration: float,
    grid_shape: tuple[int, int],
    pickup_positions,
    n_modes: int,
) -> SimResult:
    """Render the Berger plate; arguments and SimResult shapes as ``plate_linear.simulate_plate``."""
    sigma, omega = plate_modes(params, n_modes)
    check_below_nyquist(omega, sample_rate)
    pts = check_plate_pickups(params, pickup_positions)
    grid_xy = plate_grid(params, grid_shape[1], grid_shape[0])
    t = sample_times(sample_rate, duration)
    q0, v0 = initial_modal_values(params, excitation, n_modes)
    _, _, kappa2 = plate_wavenumbers(params, n_modes)
    k = np.sqrt(kappa2)
    mass, gamma, weight = params.rho * params.h, tension_gain(params), params.Lx * params.Ly / 4
    energy = continuous_energy(q0, v0, k, mass, params.rigidity * kappa2**2, gamma, weight)
    check_step(np.sqrt(omega**2 + sigma**2), k, mass, gamma, energy, weight, sample_rate)
    q = run_scheme(q0, v0, sigma, omega, k, mass, gamma, sample_rate, t.size)
    return plate_modal_to_result(params, q, t, grid_xy, pts)


def plate_energy(params: PlateParams, q: np.ndarray, sample_rate: float) -> np.ndarray:
    """Discrete energy (samples - 1,) in J of a Berger-plate modal trajectory q (samples, N)."""
    sigma, omega = plate_modes(params, q.shape[1])
    _, _, kappa2 = plate_wavenumbers(params, q.shape[1])
    return discrete_energy(q, np.sqrt(kappa2), params.rho * params.h, tension_gain(params),
                           params.Lx * params.Ly / 4, sigma, omega, sample_rate)
