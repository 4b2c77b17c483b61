"""Linear stiff string with frequency-dependent damping, solved exactly in modal form (FTM).

PDE on 0 <= x <= L, simply supported ends (u = u_xx = 0 at x = 0, L)::

    rho A u_tt + E I u_xxxx - T u_xx + d1 u_t - d3 u_xxt = f(x, t)

With u(x, t) = sum_n q_n(t) sin(k_n x), k_n = n pi / L, each mode obeys::

    rho A q_n'' + (d1 + d3 k_n^2) q_n' + (E I k_n^4 + T k_n^2) q_n = f_n(t),
    f_n(t) = (2 / L) integral_0^L f(x, t) sin(k_n x) dx

so ``sigma_n = (d1 + d3 k_n^2) / (2 rho A)`` (1/s) and
``omega_n = sqrt((E I k_n^4 + T k_n^2) / (rho A) - sigma_n^2)`` (rad/s). Free motion is the closed form
``q_n(t) = Re(z_n exp((-sigma_n + i omega_n) t))`` (see ``training/physics/modal.py``), evaluated at
every sample time directly, so the solution at 2 fs sampled at even indices equals the solution at fs.

Example::

    p = params_for_f0(110.0)
    res = simulate_string(p, Excitation("pluck", position=0.2, width=0.05, amplitude=2e-3),
                          sample_rate=48000, duration=1.0, grid_points=64, pickup_positions=[0.1], n_modes=60)
    res.pickups.shape  # (1, 48000)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from eigentone.errors import EigentoneError
from training.physics.modal import (
    Excitation,
    SimResult,
    check_below_nyquist,
    check_shape_on_domain,
    forced_modal_response,
    free_modal_response,
    modal_state,
    piecewise_linear_projection,
    sample_times,
    sine_projection,
)


@dataclass(frozen=True)
class StringParams:
    """Physical parameters of a stiff string, SI units. Defaults: the nylon guitar B string of
    Diaz et al. 2024 (arXiv 2408.16650), f1 about 247 Hz.

    L length m; T tension N; rho density kg/m^3; A cross-section m^2; E Young's modulus Pa;
    I area moment of inertia m^4; d1 frequency-independent damping kg/(m s); d3 frequency-dependent
    damping kg m/s.
    """

    L: float = 0.65
    T: float = 60.97
    rho: float = 1140.0
    A: float = 0.5188e-6
    E: float = 5.4e9
    I: float = 0.141e-12
    d1: float = 8e-5
    d3: float = 1.4e-5

    def validate(self) -> None:
        """Raise EigentoneError with one line naming the first non-physical value."""
        for name, value in asdict(self).items():
            if not np.isfinite(value):
                raise EigentoneError(f"string parameter {name} must be a finite number, got {value}")
        for name in ("L", "rho", "A"):
            if getattr(self, name) <= 0:
                raise EigentoneError(f"string parameter {name} must be positive, got {getattr(self, name)}")
        if self.T < 0:
            raise EigentoneError(f"string tension T must not be negative, got {self.T} N")
        for name in ("E", "I", "d1", "d3"):
            if getattr(self, name) < 0:
                raise EigentoneError(f"string parameter {name} must not be negative, got {getattr(self, name)}")
        if self.T == 0 and self.E * self.I == 0:
            raise EigentoneError("string has neither tension nor bending stiffness (T = 0 and E*I = 0)")


def wavenumbers(params: StringParams, n_modes: int) -> np.ndarray:
    """(n_modes,) k_n = n pi / L in rad/m, n = 1..n_modes."""
    if int(n_modes) < 1:
        raise EigentoneError(f"number of modes must be at least 1, got {n_modes}")
    return np.arange(1, int(n_modes) + 1) * np.pi / params.L


def string_modes(params: StringParams, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Decay rates and angular frequencies of the first ``n_modes`` modes.

    Returns (sigma (N,) in 1/s, omega (N,) in rad/s). Raises EigentoneError for non-physical
    parameters or an overdamped mode.
    """
    params.validate()
    k = wavenumbers(params, n_modes)
    mass = params.rho * params.A  # kg/m
    sigma = (params.d1 + params.d3 * k**2) / (2 * mass)
    omega_sq = (params.E * params.I * k**4 + params.T * k**2) / mass - sigma**2
    if np.any(omega_sq <= 0):
        n = int(np.argmax(omega_sq <= 0)) + 1
        raise EigentoneError(f"string mode {n} is overdamped (d1/d3 too large for its stiffness); lower d1 or d3")
    return sigma, np.sqrt(omega_sq)


def _check_excitation(params: StringParams, excitation: Excitation) -> None:
    if excitation.kind == "noise":
        if excitation.noise is None:
            raise EigentoneError("noise excitation needs its noise values")
        return
    check_shape_on_domain(excitation.shape, excitation.position, excitation.width, params.L)


def pluck_modal_state(
    params: StringParams,
    n_modes: int,
    position: float,
    width: float,
    amplitude: float,
    shape: str = "raised_cosine",
) -> np.ndarray:
    """Complex modal state z0 (N,) of a pluck: initial displacement ``amplitude * profile(x - position)``
    (position, width, amplitude in m), zero initial velocity. ``|z0_n|`` is mode n's amplitude in m."""
    check_shape_on_domain(shape, position, width, params.L)
    sigma, omega = string_modes(params, n_modes)
    q0 = amplitude * sine_projection(shape, position, width, params.L, wavenumbers(params, n_modes))
    return modal_state(q0, np.zeros_like(q0), sigma, omega)


def strike_modal_state(
    params: StringParams,
    n_modes: int,
    position: float,
    width: float,
    velocity: float,
    shape: str = "raised_cosine",
) -> np.ndarray:
    """Complex modal state z0 (N,) of a strike: zero displacement, initial velocity
    ``velocity * profile(x - position)`` (velocity in m/s, position and width in m)."""
    check_shape_on_domain(shape, position, width, params.L)
    sigma, omega = string_modes(params, n_modes)
    v0 = velocity * sine_projection(shape, position, width, params.L, wavenumbers(params, n_modes))
    return modal_state(np.zeros_like(v0), v0, sigma, omega)


def initial_modal_values(params: StringParams, excitation: Excitation, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial modal displacement q0 (N,) in m and velocity v0 (N,) in m/s of an excitation
    (zero for kind "force", which starts from rest)."""
    _check_excitation(params, excitation)
    k = wavenumbers(params, n_modes)
    zero = np.zeros(k.size)
    if excitation.kind == "noise":
        return excitation.amplitude * piecewise_linear_projection(excitation.noise, params.L, k), zero
    profile = sine_projection(excitation.shape, excitation.position, excitation.width, params.L, k)
    if excitation.kind == "pluck":
        return excitation.amplitude * profile, zero
    if excitation.kind == "strike":
        return zero, excitation.amplitude * profile
    if excitation.kind == "force":
        return zero, zero
    raise EigentoneError(f"unknown excitation kind {excitation.kind!r}; choose pluck, strike, noise or force")


def force_gains(params: StringParams, excitation: Excitation, n_modes: int) -> np.ndarray:
    """(N,) modal acceleration per newton, m/s^2/N, for f(x, t) = g(x) F(t) with g = profile / integral(profile)
    (1/m, unit integral, so F is the total force in N): gain_n = (2 / L) integral g sin(k_n x) dx / (rho A)."""
    k = wavenumbers(params, n_modes)
    profile = sine_projection(excitation.shape, excitation.position, excitation.width, params.L, k)
    # integral of the unit-peak profile over the line (the support lies inside the string)
    area = {"raised_cosine": 0.5, "triangle": 0.5, "gaussian": np.sqrt(2 * np.pi)}[excitation.shape] * excitation.width
    return profile / area / (params.rho * params.A)


def grid(params: StringParams, grid_points: int) -> np.ndarray:
    """(points,) equally spaced x in m, including both ends."""
    if int(grid_points) < 2:
        raise EigentoneError(f"grid needs at least 2 points, got {grid_points}")
    return np.linspace(0.0, params.L, int(grid_points))


def check_pickups(params: StringParams, pickup_positions) -> np.ndarray:
    """(n_pickups,) pickup positions in m, each inside [0, L]; raise EigentoneError otherwise."""
    xp = np.atleast_1d(np.asarray(pickup_positions, dtype=np.float64))
    if np.any(~np.isfinite(xp)) or np.any((xp < 0) | (xp > params.L)):
        raise EigentoneError(f"pickup positions {xp.tolist()} m must lie on the string [0, {params.L:g} m]")
    return xp


def simulate_string(
    params: StringParams,
    excitation: Excitation,
    sample_rate: float,
    duration: float,
    grid_points: int,
    pickup_positions,
    n_modes: int,
) -> SimResult:
    """Render the linear string exactly at ``sample_rate`` Hz for ``duration`` s.

    Returns SimResult with field (samples, grid_points), pickups (n_pickups, samples), t (samples,),
    x (grid_points,), modal (samples, n_modes); displacements in m. Free motion is closed form; a force
    excitation adds the exact zero-order-hold response (``modal.forced_modal_response``).
    """
    sigma, omega = string_modes(params, n_modes)
    check_below_nyquist(omega, sample_rate)
    xp = check_pickups(params, pickup_positions)
    x = grid(params, grid_points)
    t = sample_times(sample_rate, duration)
    q0, v0 = initial_modal_values(params, excitation, n_modes)
    q = free_modal_response(modal_state(q0, v0, sigma, omega), sigma, omega, t)  # (samples, N)
    if excitation.kind == "force":
        if excitation.force is None or np.size(excitation.force) != t.size:
            raise EigentoneError(f"force excitation needs a force signal of {t.size} samples")
        gain = force_gains(params, excitation, n_modes)
        q = q + forced_modal_response(gain, excitation.amplitude * np.asarray(excitation.force), sigma, omega,
                                      sample_rate)
    return modal_to_result(params, q, t, x, xp)


def modal_to_result(params: StringParams, q: np.ndarray, t: np.ndarray, x: np.ndarray, xp: np.ndarray) -> SimResult:
    """Synthesize field and pickups from modal displacements q (samples, N)."""
    k = wavenumbers(params, q.shape[1])
    field = q @ np.sin(np.outer(k, x))  # (samples, points)
    pickups = (q @ np.sin(np.outer(k, xp))).T  # (n_pickups, samples)
    return SimResult(field=field, pickups=pickups, t=t, x=x, modal=q)


def modal_energy(params: StringParams, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Total energy in J of the linear string, (samples,), from modal displacement q and velocity v
    (samples, N): H = (L/2) sum_n [rho A v_n^2 / 2 + (E I k_n^4 + T k_n^2) q_n^2 / 2]."""
    k = wavenumbers(params, q.shape[-1])
    stiffness = params.E * params.I * k**4 + params.T * k**2
    return params.L / 2 * np.sum(0.5 * params.rho * params.A * v**2 + 0.5 * stiffness * q**2, axis=-1)


def params_for_f0(f0_hz: float, base: StringParams = StringParams()) -> StringParams:
    """``base`` with its tension set so that the first mode's (damped) frequency is ``f0_hz``.

    From omega_1^2 + sigma_1^2 = (E I k_1^4 + T k_1^2) / (rho A):
    T = ((2 pi f0)^2 + sigma_1^2) rho A / k_1^2 - E I k_1^2.
    """
    if not np.isfinite(f0_hz) or f0_hz <= 0:
        raise EigentoneError(f"fundamental frequency must be positive, got {f0_hz} Hz")
    k1 = np.pi / base.L
    mass = base.rho * base.A
    sigma1 = (base.d1 + base.d3 * k1**2) / (2 * mass)
    tension = ((2 * np.pi * f0_hz) ** 2 + sigma1**2) * mass / k1**2 - base.E * base.I * k1**2
    if tension < 0:
        raise EigentoneError(f"{f0_hz:g} Hz is below this string's stiffness-only fundamental; use a thinner string")
    params = replace(base, T=float(tension))
    params.validate()
    return params
