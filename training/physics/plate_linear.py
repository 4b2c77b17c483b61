"""Simply supported rectangular Kirchhoff plate with frequency-dependent damping, solved exactly in modes.

PDE on [0, Lx] x [0, Ly], w = nabla^2 w = 0 on the edges::

    rho h w_tt + D nabla^4 w + d1 w_t - d3 nabla^2 w_t = f(x, y, t),    D = E h^3 / (12 (1 - nu^2))

Modes phi_mn = sin(m pi x / Lx) sin(n pi y / Ly) with kappa_mn^2 = (m pi / Lx)^2 + (n pi / Ly)^2; each obeys::

    rho h q'' + (d1 + d3 kappa^2) q' + D kappa^4 q = f_mn,  f_mn = (4 / (Lx Ly)) integral f phi_mn dA

so sigma = (d1 + d3 kappa^2) / (2 rho h) and omega = sqrt(D kappa^4 / (rho h) - sigma^2). The N modes kept are
the N lowest kappa (ties by m). Excitation shapes are separable: amplitude * profile(x - x0) * profile(y - y0)
(profiles as in ``training/physics/modal.py``), so their modal projection is a product of two sine projections.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from eigentone.errors import EigentoneError
from training.physics.modal import (
    Excitation,
    SimResult,
    check_below_nyquist,
    check_shape_on_domain,
    free_modal_response,
    modal_state,
    sample_times,
    sine_projection,
)


@dataclass(frozen=True)
class PlateParams:
    """Physical parameters of a thin plate, SI units. Defaults: a 0.4 x 0.3 m, 1 mm steel plate.

    Lx, Ly side lengths m; h thickness m; rho density kg/m^3; E Young's modulus Pa; nu Poisson's ratio;
    d1 damping kg/(m^2 s); d3 frequency-dependent damping kg/s.
    """

    Lx: float = 0.4
    Ly: float = 0.3
    h: float = 1e-3
    rho: float = 7860.0
    E: float = 2e11
    nu: float = 0.3
    d1: float = 0.02
    d3: float = 2e-4

    def validate(self) -> None:
        """Raise EigentoneError with one line naming the first non-physical value."""
        for name, value in asdict(self).items():
            if not np.isfinite(value):
                raise EigentoneError(f"plate parameter {name} must be a finite number, got {value}")
        for name in ("Lx", "Ly", "h", "rho", "E"):
            if getattr(self, name) <= 0:
                raise EigentoneError(f"plate parameter {name} must be positive, got {getattr(self, name)}")
        if not (-1.0 < self.nu < 0.5):
            raise EigentoneError(f"plate Poisson's ratio nu must lie in (-1, 0.5), got {self.nu}")
        for name in ("d1", "d3"):
            if getattr(self, name) < 0:
                raise EigentoneError(f"plate parameter {name} must not be negative, got {getattr(self, name)}")

    @property
    def rigidity(self) -> float:
        """Flexural rigidity D = E h^3 / (12 (1 - nu^2)) in N m."""
        return self.E * self.h**3 / (12 * (1 - self.nu**2))


def plate_mode_indices(params: PlateParams, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """(m (N,), n (N,)) integer mode numbers of the N modes with the lowest wavenumber."""
    if int(n_modes) < 1:
        raise EigentoneError(f"number of modes must be at least 1, got {n_modes}")
    n_modes = int(n_modes)
    m, n = np.meshgrid(np.arange(1, n_modes + 1), np.arange(1, n_modes + 1), indexing="ij")
    kappa2 = (m * np.pi / params.Lx) ** 2 + (n * np.pi / params.Ly) ** 2
    order = np.lexsort((m.ravel(), kappa2.ravel()))[:n_modes]
    return m.ravel()[order], n.ravel()[order]


def plate_wavenumbers(params: PlateParams, n_modes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kx (N,), ky (N,), kappa2 (N,)): kx = m pi / Lx, ky = n pi / Ly in rad/m, kappa2 = kx^2 + ky^2."""
    m, n = plate_mode_indices(params, n_modes)
    kx, ky = m * np.pi / params.Lx, n * np.pi / params.Ly
    return kx, ky, kx**2 + ky**2


def plate_modes(params: PlateParams, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Decay rates sigma (N,) in 1/s and angular frequencies omega (N,) in rad/s of the N lowest modes."""
    params.validate()
    _, _, kappa2 = plate_wavenumbers(params, n_modes)
    mass = params.rho * params.h
    sigma = (params.d1 + params.d3 * kappa2) / (2 * mass)
    omega_sq = params.rigidity * kappa2**2 / mass - sigma**2
    if np.any(omega_sq <= 0):
        raise EigentoneError("a plate mode is overdamped (d1/d3 too large for its stiffness); lower d1 or d3")
    return sigma, np.sqrt(omega_sq)


def plate_projection(params: PlateParams, excitation: Excitation, n_modes: int) -> np.ndarray:
    """(N,) modal coefficients of the unit-peak separable profile centred at (position, position_y)."""
    y0 = excitation.position_y
    if y0 is None:
        raise EigentoneError("plate excitations need position_y (m)")
    check_shape_on_domain(excitation.shape, excitation.position, excitation.width, params.Lx, "x")
    check_shape_on_domain(excitation.shape, y0, excitation.width, params.Ly, "y")
    m, n = plate_mode_indices(params, n_modes)
    top = int(max(m.max(), n.max()))
    ks = np.arange(1, top + 1) * np.pi
    cx = sine_projection(excitation.shape, excitation.position, excitation.width, params.Lx, ks / params.Lx)
    cy = sine_projection(excitation.shape, y0, excitation.width, params.Ly, ks / params.Ly)
    return cx[m - 1] * cy[n - 1]


def initial_modal_values(params: PlateParams, excitation: Excitation, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial modal displacement q0 (N,) in m and velocity v0 (N,) in m/s of a pluck or strike."""
    profile = plate_projection(params, excitation, n_modes)
    zero = np.zeros_like(profile)
    if excitation.kind == "pluck":
        return excitation.amplitude * profile, zero
    if excitation.kind == "strike":
        return zero, excitation.amplitude * profile
    raise EigentoneError(f"plates take pluck or strike excitations, not {excitation.kind!r}")


def plate_grid(params: PlateParams, nx: int, ny: int) -> np.ndarray:
    """(ny, nx, 2) grid coordinates (x, y) in m, equally spaced and including the edges."""
    if int(nx) < 2 or int(ny) < 2:
        raise EigentoneError(f"plate grid needs at least 2 x 2 points, got {nx} x {ny}")
    x, y = np.meshgrid(np.linspace(0, params.Lx, int(nx)), np.linspace(0, params.Ly, int(ny)))
    return np.stack([x, y], axis=-1)


def mode_shapes(params: PlateParams, n_modes: int, points: np.ndarray) -> np.ndarray:
    """(N, P) mode shapes phi_mn at points (P, 2) given as (x, y) in m."""
    kx, ky, _ = plate_wavenumbers(params, n_modes)
    return np.sin(np.outer(kx, points[:, 0])) * np.sin(np.outer(ky, points[:, 1]))


def check_plate_pickups(params: PlateParams, pickup_positions) -> np.ndarray:
    """(n_pickups, 2) pickup points (x, y) in m, each on the plate; raise EigentoneError otherwise."""
    pts = np.atleast_2d(np.asarray(pickup_positions, dtype=np.float64))
    if pts.shape[-1] != 2:
        raise EigentoneError("plate pickup positions must be (x, y) pairs in m")
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= params.Lx) & (pts[:, 1] >= 0) & (pts[:, 1] <= params.Ly)
    if not np.all(inside):
        raise EigentoneError(f"plate pickup positions {pts.tolist()} m must lie on the plate")
    return pts


def plate_modal_to_result(params: PlateParams, q: np.ndarray, t: np.ndarray, grid_xy: np.ndarray,
                          pickups: np.ndarray) -> SimResult:
    """Field (samples, ny, nx) and pickups (n_pickups, samples) from modal displacements q (samples, N)."""
    ny, nx, _ = grid_xy.shape
    field = (q @ mode_shapes(params, q.shape[1], grid_xy.reshape(-1, 2))).reshape(t.size, ny, nx)
    return SimResult(field=field, pickups=(q @ mode_shapes(params, q.shape[1], pickups)).T, t=t, x=grid_xy,
                     modal=q)


def simulate_plate(
    params: PlateParams,
    excitation: Excitation,
    sample_rate: float,
    duration: float,
    grid_shape: tuple[int, int],
    pickup_positions,
    n_modes: int,
) -> SimResult:
    """Render the linear plate exactly (closed form in time). grid_shape = (ny, nx);
    pickup_positions (n_pickups, 2) as (x, y) in m. Returns SimResult with field (samples, ny, nx)."""
    sigma, omega = plate_modes(params, n_modes)
    check_below_nyquist(omega, sample_rate)
    pts = check_plate_pickups(params, pickup_positions)
    grid_xy = plate_grid(params, grid_shape[1], grid_shape[0])
    t = sample_times(sample_rate, duration)
    q0, v0 = initial_modal_values(params, excitation, n_modes)
    q = free_modal_response(modal_state(q0, v0, sigma, omega), sigma, omega, t)
    return plate_modal_to_result(params, q, t, grid_xy, pts)
