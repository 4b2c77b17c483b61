"""Shared pieces of the modal (FTM) solvers: excitation shapes, their projection onto sine
modes, the complex modal state, and closed-form rendering of damped modes.

Conventions used by every solver in ``training/physics``:

* A modal coordinate ``q_n(t)`` multiplies a sine mode shape, e.g. ``u(x, t) = sum_n q_n(t) sin(k_n x)``
  for the string. ``q_n`` is a displacement in metres.
* Every linear mode obeys ``q_n'' + 2 sigma_n q_n' + (sigma_n^2 + omega_n^2) q_n = b_n F(t)``, so its free
  motion is ``q_n(t) = Re(z_n exp(lambda_n t))`` with the continuous-time pole ``lambda_n = -sigma_n + i omega_n``
  (the engine's contract, ``eigentone/contract``). The complex modal state ``z_n`` has ``Re z_n = q_n(0)`` and
  ``|z_n|`` = the mode's displacement amplitude in metres (see :func:`modal_state`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from eigentone.errors import EigentoneError

SHAPES: tuple[str, ...] = ("raised_cosine", "triangle", "gaussian")
"""Spatial excitation shapes. ``width`` is the full support for raised_cosine/triangle and the
standard deviation for gaussian (metres)."""

EXCITATION_KINDS: tuple[str, ...] = ("pluck", "strike", "noise", "force")
"""pluck: initial displacement; strike: initial velocity; noise: random initial displacement;
force: a driving force f(x, t) = g(x) F(t)."""


@dataclass(frozen=True)
class Excitation:
    """How a string or plate is set in motion. All lengths in metres.

    Attributes
    ----------
    kind : "pluck" | "strike" | "noise" | "force"
    position : excitation centre along x, m (0 < position < L)
    width : shape width, m (see :data:`SHAPES`)
    amplitude : peak displacement in m (pluck, noise), peak velocity in m/s (strike),
        or a force gain (force; the applied force is ``amplitude * force`` in N)
    shape : one of :data:`SHAPES` (ignored by "noise")
    position_y : plates only, excitation centre along y, m
    force : (samples,) float, N, the force signal F(t) for kind "force", one value per output sample,
        held constant over each sample interval (zero-order hold)
    noise : (points,) float in [-1, 1], kind "noise" only: displacement / amplitude at equally spaced
        interior points of the string, joined by straight lines (ends fixed at 0)
    """

    kind: str = "pluck"
    position: float = 0.2
    width: float = 0.02
    amplitude: float = 1e-3
    shape: str = "raised_cosine"
    position_y: float | None = None
    force: np.ndarray | None = field(default=None, repr=False)
    noise: np.ndarray | None = field(default=None, repr=False)


@dataclass
class SimResult:
    """Output of a solver.

    Attributes
    ----------
    field : string (samples, points); plate (samples, ny, nx); displacement in m
    pickups : (n_pickups, samples) displacement in m at the pickup points
    t : (samples,) s, sample times k / sample_rate
    x : string (points,) m; plate (ny, nx, 2) grid coordinates (x, y) in m
    modal : (samples, modes) modal displacements q_n in m
    """

    field: np.ndarray
    pickups: np.ndarray
    t: np.ndarray
    x: np.ndarray
    modal: np.ndarray


def shape_profile(shape: str, s: np.ndarray, width: float) -> np.ndarray:
    """Unit-peak profile at offsets ``s`` (m) from the centre; ``width`` in m.

    raised_cosine: (1 + cos(2 pi s / width)) / 2 for |s| < width/2; triangle: 1 - 2|s|/width for
    |s| < width/2; gaussian: exp(-s^2 / (2 width^2)).
    """
    if shape == "raised_cosine":
        return np.where(np.abs(s) < width / 2, 0.5 * (1.0 + np.cos(2.0 * np.pi * s / width)), 0.0)
    if shape == "triangle":
        return np.maximum(1.0 - 2.0 * np.abs(s) / width, 0.0)
    if shape == "gaussian":
        return np.exp(-0.5 * (s / width) ** 2)
    raise EigentoneError(f"unknown excitation shape {shape!r}; choose one of {', '.join(SHAPES)}")


def check_shape_on_domain(shape: str, position: float, width: float, length: float, axis: str = "x") -> None:
    """Raise EigentoneError unless the excitation sits inside [0, length] (m)."""
    if shape not in SHAPES:
        raise EigentoneError(f"unknown excitation shape {shape!r}; choose one of {', '.join(SHAPES)}")
    if not np.isfinite(width) or width <= 0:
        raise EigentoneError(f"excitation width must be positive, got {width} m")
    if not (0.0 < position < length):
        raise EigentoneError(f"excitation position {axis}={position:g} m is outside the domain (0, {length:g} m)")
    half = width / 2 if shape != "gaussian" else 0.0
    if position - half < 0.0 or position + half > length:
        raise EigentoneError(
            f"excitation at {axis}={position:g} m with width {width:g} m reaches past the end of the domain "
            f"(0, {length:g} m); move it inwards or narrow it"
        )


def _gauss_legendre_panels(a: float, b: float, panels: int, order: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of composite Gauss-Legendre quadrature on [a, b]: (panels*order,) each."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(a, b, panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    return (mid + half * nodes).ravel(), (half * weights).ravel()


def sine_projection(shape: str, position: float, width: float, length: float, wavenumbers: np.ndarray) -> np.ndarray:
    """Sine-series coefficients of a unit-peak shape on [0, length]: (modes,) dimensionless.

    c_n = (2 / length) * integral_0^length profile(x - position) sin(k_n x) dx, computed with composite
    Gauss-Legendre quadrature split at the shape's kinks (support edges and centre), accurate to
    rounding for the smooth pieces.
    """
    k = np.asarray(wavenumbers, dtype=np.float64)
    half = width / 2 if shape != "gaussian" else 0.0
    breaks = sorted({0.0, max(position - half, 0.0), position, min(position + half, length), length})
    panels = max(8, int(np.ceil(k.max() * length / np.pi)))  # >= 1 panel per half wavelength of the top mode
    total = np.zeros_like(k)
    for a, b in itertools.pairwise(breaks):
        if b <= a:
            continue
        x, w = _gauss_legendre_panels(a, b, panels)
        total += np.sin(np.outer(k, x)) @ (w * shape_profile(shape, x - position, width))
    return 2.0 / length * total


def piecewise_linear_projection(values: np.ndarray, length: float, wavenumbers: np.ndarray) -> np.ndarray:
    """Sine-series coefficients of the polyline through (0, 0), interior points ``values`` and (length, 0).

    values: (points,) at x_j = j * length / (points + 1). Exact: each linear segment is integrated in closed form.
    Returns (modes,).
    """
    y = np.concatenate([[0.0], np.asarray(values, dtype=np.float64), [0.0]])
    x = np.linspace(0.0, length, y.size)
    h = x[1] - x[0]
    k = np.asarray(wavenumbers, dtype=np.float64)[:, None]
    # For a polyline u with u(0) = u(L) = 0, integrating by parts twice gives
    # integral u sin(kx) dx = -sum_j (slope_j - slope_{j-1}) sin(k x_j) / k^2 over the interior kinks x_j.
    slopes = np.diff(y) / h  # (segments,)
    kinks = np.diff(slopes)  # (interior points,)
    return -2.0 / length * (np.sin(k * x[None, 1:-1]) @ kinks) / k[:, 0] ** 2


def modal_state(q0: np.ndarray, v0: np.ndarray, sigma: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Complex modal state z with q(t) = Re(z exp((-sigma + i omega) t)) matching q(0) = q0, q'(0) = v0.

    z = q0 - i (v0 + sigma q0) / omega. All arrays (modes,); q0 in m, v0 in m/s, sigma 1/s, omega rad/s.
    """
    return q0 - 1j * (v0 + sigma * q0) / omega


def sample_times(sample_rate: float, duration: float) -> np.ndarray:
    """(samples,) times k / sample_rate in s, samples = round(duration * sample_rate)."""
    n = round(duration * sample_rate)
    if n < 1:
        raise EigentoneError(f"duration {duration} s is shorter than one sample at {sample_rate:g} Hz")
    return np.arange(n) / float(sample_rate)


def free_modal_response(z0: np.ndarray, sigma: np.ndarray, omega: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Closed-form free motion q_n(t_k) = Re(z_n exp(lambda_n t_k)): (samples, modes) in m."""
    lam = -sigma + 1j * omega  # (modes,)
    return np.real(z0[None, :] * np.exp(np.outer(t, lam)))


def forced_modal_response(
    gain: np.ndarray, force: np.ndarray, sigma: np.ndarray, omega: np.ndarray, sample_rate: float
) -> np.ndarray:
    """Exact response of q'' + 2 sigma q' + (sigma^2 + omega^2) q = gain * F(t) from rest, F held per sample.

    gain: (modes,) in m/s^2 per N; force: (samples,) N, F(t) = force[k] on [k/fs, (k+1)/fs).
    With z' = lambda z + g F, g = -i gain / omega, Re z = q exactly; the zero-order-hold discretisation
    z[k+1] = p z[k] + g (p - 1) / lambda F[k], p = exp(lambda / fs), is exact for the held input.
    Returns (samples, modes) q in m with q[0] = 0.
    """
    from scipy.signal import lfilter

    lam = -sigma + 1j * omega
    p = np.exp(lam / sample_rate)
    b = -1j * gain / omega * (p - 1.0) / lam
    f = np.asarray(force, dtype=np.float64)
    out = np.empty((f.size, lam.size))
    for n in range(lam.size):  # loop over modes, each a one-pole IIR over the whole signal
        z = lfilter([0.0, b[n]], [1.0, -p[n]], f.astype(np.complex128))
        out[:, n] = z.real
    return out


def check_below_nyquist(omega: np.ndarray, sample_rate: float) -> None:
    """Raise EigentoneError if any angular frequency (rad/s) is at or above pi * sample_rate."""
    top = float(np.max(omega)) / (2 * np.pi)
    if not np.isfinite(sample_rate) or sample_rate <= 0:
        raise EigentoneError(f"sample rate must be a positive number of Hz, got {sample_rate}")
    if 2 * top >= sample_rate:
        raise EigentoneError(
            f"sample rate {sample_rate:g} Hz is below twice the highest simulated mode ({top:.1f} Hz); "
            "use fewer modes or a higher rate"
        )
