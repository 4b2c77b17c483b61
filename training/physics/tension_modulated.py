"""Energy-conserving time stepper for modal systems coupled only through a scalar tension.

Both the Kirchhoff-Carrier string and the Berger plate reduce, in their linear modes, to::

    M q_n'' + C_n q_n' + K_n q_n + gamma k_n^2 P(q) q_n = 0,    P(q) = sum_m k_m^2 q_m^2        (1)

(M modal mass per unit length/area, kg/m or kg/m^2; K_n, C_n linear stiffness and damping; gamma the
tension per unit P, N or N/m). With modal norm weight W (L/2 for the string, Lx Ly / 4 for the plate),
the conserved energy is::

    H = W sum_n [M q_n'^2 / 2 + K_n q_n^2 / 2] + W gamma P^2 / 4.

Scheme (Bilbao, Numerical Sound Synthesis ch. 8, linearly implicit conservative form), step k = 1/fs::

    M dtt q_n + C~_n dt. q_n + K~_n q_n^j + gamma k_n^2 P^j mt. q_n = 0                         (2)

with dtt q = (q^{j+1} - 2 q^j + q^{j-1}) / k^2, dt. q = (q^{j+1} - q^{j-1}) / (2k), mt. q = (q^{j+1} + q^{j-1}) / 2.
The linear coefficients are chosen so that, with gamma = 0, (2) is the *exact* recursion of the damped mode
q^{j+1} = 2 exp(-sigma k) cos(omega k) q^j - exp(-2 sigma k) q^{j-1}:

    C~_n k / (2 M) = tanh(sigma_n k),   K~_n k^2 / M = 2 - 2 cos(omega_n k) / cosh(sigma_n k).

Multiplying (2) by W dt. q_n and summing over n gives dt+ H~^{j-1/2} = -W sum_n C~_n (dt. q_n)^2 <= 0 for

    H~^{j+1/2} = W sum_n [M/2 ((q^{j+1} - q^j)/k)^2 + K~_n/2 q^{j+1} q^j] + W gamma P^{j+1} P^j / 4,

because P^j (P^{j+1} - P^{j-1}) = P^{j+1} P^j - P^j P^{j-1}. H~ >= 0 (hence the scheme is stable) whenever
K~_n k^2 / (4 M) <= 1, which holds for every mode below Nyquist (omega_n k < pi). In the modal basis the
implicit part of (2) is diagonal (P^j is known at step j), so each step is an explicit division per mode;
no linear system (and no Sherman-Morrison update) is needed.
"""

from __future__ import annotations

import numba
import numpy as np

from eigentone.errors import EigentoneError


def scheme_coefficients(
    mass: float, sigma: np.ndarray, omega: np.ndarray, sample_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """(C~ (N,), K~ (N,)) of scheme (2): damping in kg/(m s) and stiffness in N/m^2 (per unit length/area)."""
    k = 1.0 / sample_rate
    damping = 2 * mass / k * np.tanh(sigma * k)
    stiffness = mass / k**2 * (2 - 2 * np.cos(omega * k) / np.cosh(sigma * k))
    return damping, stiffness


def check_step(omega0: np.ndarray, wavenumbers: np.ndarray, mass: float, gamma: float, energy: float,
               weight: float, sample_rate: float) -> None:
    """Refuse a time step 1/fs the scheme cannot resolve for this excitation.

    The linear part needs omega_n k < pi. Tension modulation raises each frequency to
    omega_n^2 + gamma k_n^2 P / M, and P is bounded by the energy: W gamma P^2 / 4 <= H, so
    P <= 2 sqrt(H / (W gamma)). The highest mode at that bound must stay below Nyquist too,
    otherwise the scheme (bounded, but no longer resolving the motion) is refused.
    """
    p_max = 2.0 * np.sqrt(max(energy, 0.0) / (weight * gamma)) if gamma > 0 else 0.0
    omega_max = np.sqrt(omega0**2 + gamma * wavenumbers**2 * p_max / mass)
    top = int(np.argmax(omega_max))
    if omega_max[top] >= np.pi * sample_rate:
        raise EigentoneError(
            f"time step 1/{sample_rate:g} s is unstable for this excitation: tension modulation can raise mode "
            f"{top + 1} to {omega_max[top] / (2 * np.pi):.0f} Hz, above Nyquist ({sample_rate / 2:g} Hz); "
            "raise the sample rate, use fewer modes or a smaller amplitude"
        )


@numba.njit(cache=True, fastmath=False)
def _run(q0, q1, mass, damping, stiffness, k2, gamma, dt, n_samples):  # pragma: no cover - compiled
    n_modes = q0.size
    out = np.empty((n_samples, n_modes))
    out[0] = q0
    if n_samples > 1:
        out[1] = q1
    inv_k2 = mass / (dt * dt)
    for j in range(1, n_samples - 1):
        p = 0.0
        for m in range(n_modes):
            p += k2[m] * out[j, m] * out[j, m]
        for n in range(n_modes):
            nl = 0.5 * gamma * k2[n] * p  # coefficient of q^{j+1} and q^{j-1} from gamma k^2 P mt.q
            half_damp = damping[n] / (2 * dt)
            rhs = (2 * inv_k2 - stiffness[n]) * out[j, n] - (inv_k2 - half_damp + nl) * out[j - 1, n]
            out[j + 1, n] = rhs / (inv_k2 + half_damp + nl)
    return out


def run_scheme(q0: np.ndarray, v0: np.ndarray, sigma: np.ndarray, omega: np.ndarray, wavenumbers: np.ndarray,
               mass: float, gamma: float, sample_rate: float, n_samples: int) -> np.ndarray:
    """Modal displacements (samples, N) in m of system (1) from q(0) = q0 (m), q'(0) = v0 (m/s).

    The first step is the exact linear step plus the second-order Taylor term of the tension force,
    q^1 = Re(z0 exp(lambda k)) - k^2 / 2 * gamma k_n^2 P^0 q0_n / M, so gamma = 0 reproduces the closed-form
    linear solution exactly (up to rounding).
    """
    dt = 1.0 / sample_rate
    damping, stiffness = scheme_coefficients(mass, sigma, omega, sample_rate)
    z0 = q0 - 1j * (v0 + sigma * q0) / omega
    k2 = wavenumbers**2
    q1 = np.real(z0 * np.exp((-sigma + 1j * omega) * dt)) - 0.5 * dt**2 * gamma * k2 * np.sum(k2 * q0**2) * q0 / mass
    return _run(q0.astype(np.float64), q1, float(mass), damping, stiffness, k2, float(gamma), dt, int(n_samples))


def discrete_energy(q: np.ndarray, wavenumbers: np.ndarray, mass: float, gamma: float, weight: float,
                    sigma: np.ndarray, omega: np.ndarray, sample_rate: float) -> np.ndarray:
    """Conserved/dissipated discrete energy H~^{j+1/2} of scheme (2) in J, (samples - 1,), from q (samples, N)."""
    dt = 1.0 / sample_rate
    _, stiffness = scheme_coefficients(mass, sigma, omega, sample_rate)
    k2 = wavenumbers**2
    p = q**2 @ k2  # (samples,)
    kinetic = 0.5 * mass * ((q[1:] - q[:-1]) / dt) ** 2
    potential = 0.5 * stiffness * q[1:] * q[:-1]
    return weight * (np.sum(kinetic + potential, axis=1) + 0.25 * gamma * p[1:] * p[:-1])


def continuous_energy(q0: np.ndarray, v0: np.ndarray, wavenumbers: np.ndarray, mass: float, stiffness: np.ndarray,
                      gamma: float, weight: float) -> float:
    """Energy H of system (1) in J at one instant: q0, v0, stiffness K_n (N,)."""
    p = np.sum(wavenumbers**2 * q0**2)
    return float(weight * (np.sum(0.5 * mass * v0**2 + 0.5 * stiffness * q0**2) + 0.25 * gamma * p**2))
