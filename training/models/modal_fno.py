"""Modal Fourier neural operator: an FNO whose spectral multipliers are modal exponentials e^{Lambda t}.

The FNO of Li et al. (ICLR 2021, arXiv 2010.08895) writes one layer as
``v <- act(W v + F^{-1}(R_theta . F v))`` with learned spectral weights ``R_theta``.
For a *linear* PDE with time-invariant coefficients the exact solution operator has
the same shape, with the transform ``T`` that diagonalises the spatial operator
(the modal method / FTM; Rabenstein & Trautmann, and the ISMIR 2025 tutorial)::

    u(x, t) = T^{-1} ( e^{Lambda t} . T u0 )(x),     Lambda_n = -sigma_n + i omega_n      (1)

For fixed strings and simply supported plates ``T`` is the sine transform (eigenfunctions
``sin(n pi x / L)``), applied here as a fixed matrix built by trapezoidal quadrature on
whatever grid the data come on, so the operator is defined for any grid size and is exact
(DST-I) for uniform grids (discretisation invariance). No torch.fft: every exported graph
is matrix products and elementwise real arithmetic (complex numbers as (re, im) pairs).

Pipeline of ``ModalFNO`` (shapes for a batch B, P grid points, N modes, T times)::

    (u0, v0)                       (B, P) each: initial displacement and velocity
      | [optional] nonlinear Fourier layers (lift -> sine-FNO blocks -> project), residual,
      |            zero-initialised, so the model starts as the exact linear modal method
      v
    a = T u0, b = T v0             (B, N)        sine transform (fixed matrix, quadrature)
      v
    z0 = g_n (a (1 - i sigma/omega) - i b / omega)   (B, N) complex   first-order modal state  (2)
      v
    z(t) = z0 e^{Lambda(params) t}  (B, N, T)    Lambda from a small network of physical params
      v                                          [optional] block-rate pole modulation (glide)
    u(x, t) = sum_n Re z_n(t) phi_n(x)   (B, T, P)     inverse transform T^{-1} + projection Re

Eq. (2) is the lifting/projection of the modal method for a second-order system: a mode
``u_n(t) = e^{-sigma t}(a cos wt + (b + sigma a)/w sin wt)`` equals ``Re(z0 e^{Lambda t})``
with ``z0 = a - i (b + sigma a)/w``. A learned pointwise lifting to C channels followed by a
per-mode diagonal multiplier and a pointwise projection collapses algebraically to one
complex gain per mode, so that gain ``g_n`` (initialised to 1) is the learned lifting.

The pole network maps physical parameters (tension T, density rho, area A, Young's modulus
E, inertia I, damping d1/d3, length L; plates: D, h, Lx, Ly, ...) to poles through a
dispersion-structured head, stable by construction (sigma > 0 for every parameter value)::

    sigma_n = (s0(p) + s2(p) kappa_n^2) exp(delta'_n(p, kappa_n)) + sigma_min
    omega_n = sqrt(c1(p) kappa_n^2 + c2(p) kappa_n^4 - sigma_n^2) * exp(delta_n(p, kappa_n))   (3)

with ``kappa_n`` the wavenumber (n pi / L; plates pi sqrt((m/Lx)^2 + (n/Ly)^2)), ``log c1, log
c2, log s0, log s2`` affine in the standardised log-parameters plus an MLP correction, and a
zero-initialised per-mode MLP correction ``delta``. The same network evaluates any mode number.

Pole modulation (nonlinear strings, the contract's ``mod_alpha``/``mod_beta``)::

    omega_n^2 = omega0_n^2 + alpha_n sum_m beta_m |z_m|^2,  alpha_n = e^{q(p)} kappa_n^2, beta_m = kappa_m^2

the Kirchhoff-Carrier form (alpha beta = E A k_n^2 k_m^2 / (8 rho A)) with a learned scale.

Nonlinear FNO blocks are offered *before* the modal step (on the initial condition, eq. (2) input)
but not after it: a nonlinear map of z(t) would make the per-sample readout nonlinear and break the
engine's modal-bank contract (``eigentone/contract``); amplitude-dependent behaviour enters through
those blocks and the block-rate pole modulation instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eigentone.contract.torch_twin import complex_mul, midi_to_hz, modal_trajectory, modulated_rollout, split_controls
from training.models.voice_poles import VoicePoles

SIGMA_MIN = 1e-3  # 1/s: smallest decay rate any parameter value can give
LN2_1200 = math.log(2.0) / 1200.0  # one cent as a natural-log frequency ratio


# ----------------------------------------------------------------------------------------------
# sine transform as a fixed matrix (any grid)
# ----------------------------------------------------------------------------------------------


def sine_basis(x: np.ndarray, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward and inverse sine-transform matrices for positions ``x`` in [0, 1].

    x: (P,) grid positions as a fraction of the length (endpoints may or may not be included;
    the fixed boundary value 0 is assumed at 0 and 1). Returns ``fwd`` (P, N) and ``inv`` (N, P)
    with ``a_n = 2 int_0^1 u(x) sin(n pi x) dx ~= (u @ fwd)_n`` (trapezoidal rule) and
    ``u(x_j) = (a @ inv)_j = sum_n a_n sin(n pi x_j)``, n = 1..N. For a uniform grid with
    M intervals this is the exact DST-I pair for N < M.
    """
    x = np.asarray(x, dtype=np.float64)
    ext = np.concatenate([[0.0], x, [1.0]])
    if np.any(np.diff(ext) < 0):
        raise ValueError("grid positions must be sorted and inside [0, 1]")
    gaps = np.diff(ext)  # (P+1,)
    weights = 0.5 * (gaps[:-1] + gaps[1:])  # (P,) trapezoid weights of the interior nodes
    n = np.arange(1, n_modes + 1)
    inv = np.sin(np.pi * n[:, None] * x[None, :])  # (N, P)
    fwd = 2.0 * (inv * weights[None, :]).T  # (P, N)
    return fwd, inv


def normalised_grid(grid: np.ndarray | int, length: float | None = None) -> np.ndarray:
    """Grid positions as fractions of the length: accepts a point count (interior uniform grid
    including both ends) or an array of positions (metres if ``length`` given, else in [0, 1])."""
    if np.isscalar(grid):
        return np.linspace(0.0, 1.0, int(grid))
    g = np.asarray(grid, dtype=np.float64)
    span = float(length) if length else (g.max() if g.max() > 1.0 + 1e-9 else 1.0)
    return g / span


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------


@dataclass
class ModalFNOConfig:
    """Everything needed to rebuild a ModalFNO (saved as RUN_DIR/config.json)."""

    kind: str = "string"  # "string" (1-D, fixed ends) or "plate" (2-D, simply supported)
    modes: int = 32  # strings: N modes; plates: modes per axis (N = modes^2)
    param_names: list[str] = field(default_factory=list)
    param_log: list[bool] = field(default_factory=list)  # column standardised in log space
    param_mean: list[float] = field(default_factory=list)
    param_std: list[float] = field(default_factory=list)
    param_min: list[float] = field(default_factory=list)  # training range (raw units)
    param_max: list[float] = field(default_factory=list)
    length: float = 1.0  # m, used when "L" is not a parameter (plates: Lx)
    length_y: float = 1.0  # m, plates: Ly when not a parameter
    hidden: int = 32  # width of the pole-network MLPs
    fourier_layers: int = 0  # nonlinear sine-FNO blocks applied to the initial condition
    channels: int = 16  # lifted width of those blocks
    modulation: bool = False  # block-rate pole modulation (pitch glide)
    block_size: int = 16  # samples per modulation block (at the training rate)
    transform: str = "sine"  # "sine" (fixed ends / simply supported edges) or "data" (see ``DataTransform``)
    points: int = 0  # "data": the grid points the mode shapes are sampled on
    voice_poles: bool = False  # per-voice pole corrections from the initial state (``VoicePoles``)
    voice_hidden: int = 64

    @property
    def n_modes(self) -> int:
        return self.modes if self.kind == "string" or self.transform == "data" else self.modes * self.modes


# ----------------------------------------------------------------------------------------------
# pole network
# ----------------------------------------------------------------------------------------------


class PoleNet(nn.Module):
    """Physical parameters -> continuous-time poles, eq. (3); sigma > 0 for every input."""

    def __init__(self, cfg: ModalFNOConfig):
        super().__init__()
        self.cfg = cfg
        n_in = max(len(cfg.param_names), 1)
        self.register_buffer("p_mean", torch.tensor(cfg.param_mean or [0.0], dtype=torch.float32))
        self.register_buffer("p_std", torch.tensor(cfg.param_std or [1.0], dtype=torch.float32))
        self.register_buffer("p_log", torch.tensor(cfg.param_log or [False], dtype=torch.bool))
        # coefficient head: [log c1, log c2, log s0, log s2, q (modulation log-scale)]
        self.affine = nn.Linear(n_in, 5)
        self.coef_mlp = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 5))
        nn.init.zeros_(self.coef_mlp[-1].weight)
        nn.init.zeros_(self.coef_mlp[-1].bias)
        # per-mode correction delta(p, kappa): (log-omega, sigma) residuals
        self.mode_mlp = nn.Sequential(nn.Linear(n_in + 1, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 2))
        nn.init.zeros_(self.mode_mlp[-1].weight)
        nn.init.zeros_(self.mode_mlp[-1].bias)
        m = torch.arange(1, cfg.modes + 1, dtype=torch.float32)
        if cfg.kind == "string":
            self.register_buffer("mode_index", m[:, None])  # (N, 1)
        else:
            my, mx = torch.meshgrid(m, m, indexing="ij")
            self.register_buffer("mode_index", torch.stack([mx.reshape(-1), my.reshape(-1)], -1))  # (N, 2)

    def features(self, params: torch.Tensor) -> torch.Tensor:
        """(B, F) raw parameters -> (B, F) standardised (log where configured) features."""
        if not self.cfg.param_names:
            return params.new_zeros(params.shape[0], 1)
        x = torch.where(self.p_log, torch.log(params.clamp_min(1e-30)), params)
        return (x - self.p_mean) / self.p_std

    def _lengths(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        names = self.cfg.param_names
        ones = params.new_ones(params.shape[0])
        lx = params[:, names.index("L")] if "L" in names else (params[:, names.index("Lx")] if "Lx" in names else ones * self.cfg.length)
        ly = params[:, names.index("Ly")] if "Ly" in names else ones * self.cfg.length_y
        return lx, ly

    def wavenumbers(self, params: torch.Tensor) -> torch.Tensor:
        """(B, N) kappa_n in rad/m."""
        lx, ly = self._lengths(params)
        kx = math.pi * self.mode_index[None, :, 0] / lx[:, None]  # (B, N)
        if self.cfg.kind == "string":
            return kx
        ky = math.pi * self.mode_index[None, :, 1] / ly[:, None]
        return torch.sqrt(kx**2 + ky**2)

    def forward(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """params (B, F) -> sigma, omega (B, N) [1/s, rad/s], mod_alpha, mod_beta (B, N)."""
        feats = self.features(params)  # (B, F)
        coef = self.affine(feats) + self.coef_mlp(feats)  # (B, 5)
        kappa = self.wavenumbers(params)  # (B, N)
        k2 = kappa**2
        log_k = torch.log(kappa) - torch.log(kappa[:, :1])  # (B, N) mode position, 0 for the first
        mode_in = torch.cat([feats[:, None, :].expand(-1, kappa.shape[1], -1), log_k[..., None]], dim=-1)
        delta = self.mode_mlp(mode_in)  # (B, N, 2)
        sigma = (torch.exp(coef[:, 2:3]) + torch.exp(coef[:, 3:4]) * k2) * torch.exp(delta[..., 1]) + SIGMA_MIN
        # undamped omega0^2 = c1 k^2 + c2 k^4; damped omega^2 = omega0^2 - sigma^2 (second-order mode)
        omega0_sq = torch.exp(coef[:, :1]) * k2 + torch.exp(coef[:, 1:2]) * k2 * k2  # (B, N)
        omega = torch.sqrt(torch.maximum(omega0_sq - sigma**2, 1e-4 * omega0_sq)) * torch.exp(delta[..., 0])
        out = {"sigma": sigma, "omega": omega}
        if self.cfg.modulation:
            out["mod_alpha"] = torch.exp(coef[:, 4:5]) * k2
            out["mod_beta"] = k2
        return out


class FreePoles(nn.Module):
    """Poles of a data-transform model: one free sigma_n, omega_n (and alpha_n, beta_n) per mode, stored as
    logs (sigma > 0, alpha, beta >= 0 for any value). No physical parameters, no wavenumbers: the model
    describes one instrument, the one in its training data. Same call as ``PoleNet``."""

    def __init__(self, cfg: ModalFNOConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_modes
        self.log_sigma = nn.Parameter(torch.zeros(n))
        self.log_omega = nn.Parameter(torch.log(2 * math.pi * 100.0 * torch.arange(1, n + 1, dtype=torch.float32)))
        self.log_alpha = nn.Parameter(torch.full((n,), -30.0))
        self.log_beta = nn.Parameter(torch.zeros(n))

    @torch.no_grad()
    def set(self, sigma: np.ndarray, omega: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> None:
        """Start from poles sigma, omega (N,) (1/s, rad/s) and law alpha, beta (N,)."""
        for param, value in ((self.log_sigma, sigma - SIGMA_MIN), (self.log_omega, omega), (self.log_alpha, alpha),
                             (self.log_beta, beta)):
            param.copy_(torch.log(torch.as_tensor(np.maximum(value, 1e-30), dtype=torch.float32)))

    def forward(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """params (B, F) (only B is used) -> sigma, omega [, mod_alpha, mod_beta] (B, N)."""
        batch = params.shape[0]
        out = {"sigma": torch.exp(self.log_sigma).expand(batch, -1) + SIGMA_MIN,
               "omega": torch.exp(self.log_omega).expand(batch, -1)}
        if self.cfg.modulation:
            out["mod_alpha"] = torch.exp(self.log_alpha).expand(batch, -1)
            out["mod_beta"] = torch.exp(self.log_beta).expand(batch, -1)
        return out


# ----------------------------------------------------------------------------------------------
# nonlinear sine-FNO blocks (optional, applied to the initial condition)
# ----------------------------------------------------------------------------------------------


class SineFourierBlock(nn.Module):
    """One FNO layer with the sine transform: h <- gelu(h W + T^{-1}(R . T h)), h (B, P, C).

    R (K, C, C) is a per-mode channel mixing, real because the sine transform is real.
    ``fwd`` (P, K) and ``inv`` (K, P) are passed in so the block works on any grid.
    """

    def __init__(self, channels: int, modes: int):
        super().__init__()
        self.pointwise = nn.Linear(channels, channels)
        self.spectral = nn.Parameter(torch.randn(modes, channels, channels) / channels)

    def forward(self, h: torch.Tensor, fwd: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        spec = torch.einsum("bpc,pk->bkc", h, fwd)  # (B, K, C)
        spec = torch.einsum("bkc,kcd->bkd", spec, self.spectral)  # (B, K, C)
        return F.gelu(self.pointwise(h) + torch.einsum("bkd,kp->bpd", spec, inv))


class InitialConditionFNO(nn.Module):
    """Nonlinear residual on (u0, v0): lift -> sine-FNO blocks -> project, zero-initialised."""

    def __init__(self, channels: int, layers: int, modes: int):
        super().__init__()
        self.lift = nn.Linear(2, channels)
        self.blocks = nn.ModuleList(SineFourierBlock(channels, modes) for _ in range(layers))
        self.project = nn.Linear(channels, 2)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.register_buffer("scale", torch.ones(()))  # displacement scale, so the MLPs see O(1)

    def forward(self, uv: torch.Tensor, fwd: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """uv (B, P, 2) -> (B, P, 2)."""
        h = self.lift(uv / self.scale)  # (B, P, C)
        for block in self.blocks:
            h = block(h, fwd, inv)
        return uv + self.project(h) * self.scale


# ----------------------------------------------------------------------------------------------
# the operator
# ----------------------------------------------------------------------------------------------


class ModalFNO(nn.Module):
    """Modal FNO for strings (1-D) and plates (2-D); see the module docstring for the math.

    Usable outside the trainer::

        model = ModalFNO(cfg)
        u = model(u0, v0, params, times, grid)   # (B, T, P) or (B, T, ny, nx)
    """

    def __init__(self, cfg: ModalFNOConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_modes
        if cfg.transform == "data":
            self.register_buffer("shapes", torch.zeros(cfg.points, n))  # (P, N) mode shapes found in data
            self.poles = FreePoles(cfg)
        else:
            self.poles = PoleNet(cfg)
        self.gain = nn.Parameter(torch.tensor([[1.0, 0.0]]).repeat(n, 1))  # (N, 2) complex g_n
        self.ic = InitialConditionFNO(cfg.channels, cfg.fourier_layers, n) if cfg.fourier_layers else None
        self.voice = VoicePoles(n, cfg.voice_hidden) if cfg.voice_poles else None

    # -- transforms ------------------------------------------------------------------------------
    def basis(self, grid: Any, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """fwd (P, N), inv (N, P) for a grid: strings ``x`` (P,); plates ``(x (nx,), y (ny,))``
        with P = ny * nx in row-major (y, x) order. Modes of plates are (m_y, m_x) row-major.

        A "data" transform has its mode shapes on the training grid only: fwd = pinv(shapes), inv = shapes^T."""
        m = self.cfg.modes
        if self.cfg.transform == "data":
            points = len(grid) if self.cfg.kind == "string" else len(grid[0]) * len(grid[1])
            if points != self.cfg.points:
                raise ValueError(f"this model's mode shapes were found on a {self.cfg.points}-point grid, not {points}")
            shapes = self.shapes.to(dtype)
            return torch.linalg.pinv(shapes).T, shapes.T
        if self.cfg.kind == "string":
            fwd, inv = sine_basis(np.asarray(grid), m)
        else:
            gx, gy = grid
            fx, ix = sine_basis(np.asarray(gx), m)  # (nx, M), (M, nx)
            fy, iy = sine_basis(np.asarray(gy), m)  # (ny, M), (M, ny)
            fwd = np.einsum("ym,xn->yxmn", fy, fx).reshape(len(gy) * len(gx), m * m)
            inv = np.einsum("my,nx->mnyx", iy, ix).reshape(m * m, len(gy) * len(gx))
        return torch.as_tensor(fwd, dtype=dtype), torch.as_tensor(inv, dtype=dtype)

    def band_limit_mask(self, params: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
        """(B, N) 1/0 mask keeping, per example, the ``limits`` (B,) lowest-wavenumber modes (ties by the
        x index), the way the reference solvers truncate their modal expansions. A data transform holds the
        modes the data hold: all ones."""
        if self.cfg.transform == "data":
            return params.new_ones(params.shape[0], self.cfg.n_modes)
        with torch.no_grad():
            kappa = self.poles.wavenumbers(params)  # (B, N)
            key = kappa * (1 + 1e-9 * self.poles.mode_index[None, :, 0] / self.cfg.modes)
            rank = torch.argsort(torch.argsort(key, dim=1), dim=1)  # (B, N) 0 = lowest
        return (rank < limits[:, None]).to(params.dtype)

    def modal_coordinates(self, field_: torch.Tensor, grid: Any) -> torch.Tensor:
        """T u: field (..., P) or (..., ny, nx) -> (..., N)."""
        fwd, _ = self.basis(grid, field_.dtype)
        flat = field_.reshape(*field_.shape[: -1 if self.cfg.kind == "string" else -2], -1)
        return flat @ fwd

    # -- the model -------------------------------------------------------------------------------
    def initial_state(self, u0: torch.Tensor, v0: torch.Tensor, params: torch.Tensor, fwd: torch.Tensor,
                      inv: torch.Tensor, mode_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """u0, v0 (B, P) flat fields -> poles (B, N) and z0 (B, N, 2), eq. (2).

        ``mode_mask`` (B, N), optional: 0 for modes the reference data leaves out (a solver's band limit).
        """
        poles = self.poles(params)
        if self.ic is not None:
            uv = self.ic(torch.stack([u0, v0], dim=-1), fwd, inv)  # (B, P, 2)
            u0, v0 = uv[..., 0], uv[..., 1]
        a = u0 @ fwd  # (B, N)
        b = v0 @ fwd  # (B, N)
        if mode_mask is not None:
            a, b = a * mode_mask, b * mode_mask
        state = self.state_from_coefficients(a, b, poles)
        if self.voice is not None:
            state.update(self.voice.per_voice(state["z0"], state))
        return state

    def state_from_coefficients(self, a: torch.Tensor, b: torch.Tensor, poles: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eq. (2): sine coefficients a = T u0, b = T v0 (B, N) and poles -> poles with z0 (B, N, 2)."""
        sigma, omega = poles["sigma"], poles["omega"]
        z = torch.stack([a, -(b + sigma * a) / omega], dim=-1)  # (B, N, 2)
        return {**poles, "z0": complex_mul(z, self.gain.expand_as(z))}

    def rollout_modes(self, state: dict[str, torch.Tensor], times: torch.Tensor, sample_rate: float | None = None) -> torch.Tensor:
        """Modal state z(t): (B, N, T, 2). With modulation, ``times`` must be k / sample_rate."""
        if self.cfg.modulation:
            if sample_rate is None:
                raise ValueError("modulated rollout needs the sample rate")
            block = max(1, round(self.cfg.block_size * sample_rate / self._trained_rate))
            return modulated_rollout(state["sigma"], state["omega"], state["z0"], state["mod_alpha"],
                                     state["mod_beta"], sample_rate, times.shape[0], block)
        return modal_trajectory(state["sigma"], state["omega"], state["z0"], times)

    _trained_rate: float = 16000.0

    def forward(self, u0: torch.Tensor, v0: torch.Tensor, params: torch.Tensor, times: torch.Tensor, grid: Any,
                sample_rate: float | None = None, in_grid: Any = None, mode_mask: torch.Tensor | None = None) -> torch.Tensor:
        """u(x, t) for initial fields u0, v0 at ``times`` (T,) seconds, on ``grid``.

        u0, v0: (B, P') or (B, ny', nx') sampled on ``in_grid`` (default: ``grid``); the output is
        (B, T, P) or (B, T, ny, nx) on ``grid``: input and output resolutions are independent
        (discretisation invariance; see ``basis``).
        """
        in_grid = grid if in_grid is None else in_grid
        fwd, inv_in = self.basis(in_grid, u0.dtype)
        _, inv = self.basis(grid, u0.dtype)
        state = self.initial_state(u0.reshape(u0.shape[0], -1), v0.reshape(v0.shape[0], -1), params, fwd, inv_in,
                                   mode_mask)
        z = self.rollout_modes(state, times, sample_rate)  # (B, N, T, 2)
        u = torch.einsum("bnt,np->btp", z[..., 0], inv)  # (B, T, P): inverse transform of Re z
        spatial = (len(grid),) if self.cfg.kind == "string" else (len(grid[1]), len(grid[0]))
        return u.reshape(u.shape[0], u.shape[1], *spatial)


# ----------------------------------------------------------------------------------------------
# exported graphs: excite (controls -> contract) and field (z -> u)
# ----------------------------------------------------------------------------------------------


@dataclass
class InstrumentMap:
    """How the playable instrument maps engine controls onto the model's inputs (manifest fields)."""

    pitch_param: str  # parameter solved for so that the lowest mode sits at the note's f0
    reference: list[float]  # raw parameter values used for every other parameter
    pitch_range: tuple[float, float]  # raw range the pitch parameter is clamped to
    excitation: str  # "pluck" (displacement) or "strike" (velocity)
    shape: str  # "raised_cosine" | "triangle" | "gaussian" (training/physics/modal.py shape_profile)
    width: float  # shape width, fraction of the length (x)
    width_y: float  # plates: shape width, fraction of Ly
    amplitude: float  # peak displacement (m) or velocity (m/s) at velocity 1
    pickup: tuple[float, float]  # pickup position (x, y) as fractions
    gain: float  # output scale so that a velocity-1 note peaks near 1
    grid: int  # points per axis of the field graph
    tuning_cents: float = 0.0  # the note's lowest mode sits this far above equal temperament (recorded instruments)


class ExciteGraph(nn.Module):
    """controls (V, 4) = (note, velocity, position, position_y) -> contract outputs.

    The note sets the pitch parameter (e.g. string tension) by Newton steps on the pole network so
    that omega_1 = 2 pi f0(note) (unrolled, exportable); velocity scales a pluck displacement (or a
    strike velocity) in the training data's shape and median width centred at ``position``; its sine
    transform (per axis: the profiles are separable) gives z0 via eq. (2); the pickup readout is
    c_n = gain * phi_n(x_pickup).
    """

    NEWTON_STEPS = 6

    def __init__(self, model: ModalFNO, imap: InstrumentMap):
        super().__init__()
        self.model, self.imap = model, imap
        cfg = model.cfg
        self.pitch_index = cfg.param_names.index(imap.pitch_param) if imap.pitch_param in cfg.param_names else -1
        self.register_buffer("reference", torch.tensor(imap.reference or [0.0], dtype=torch.float32))
        self.log_pitch_ref = math.log(imap.reference[self.pitch_index]) if self.pitch_index >= 0 else 0.0
        xs = np.linspace(0.0, 1.0, 8 * (imap.grid - 1) + 1)  # refined quadrature grid for the profile
        self.separable = model.ic is None  # sine transform per axis (exact for separable profiles)
        if self.separable:  # one axis: fwd (G, M)
            fwd, inv = torch.as_tensor(sine_basis(xs, cfg.modes)[0], dtype=torch.float32), torch.zeros(0)
        else:
            fwd, inv = model.basis(xs if cfg.kind == "string" else (xs, xs))
        self.register_buffer("fwd", fwd)
        self.register_buffer("inv", inv)
        self.register_buffer("xs", torch.tensor(xs, dtype=torch.float32))
        px, py = imap.pickup
        _, ipx = sine_basis(np.array([px]), cfg.modes)  # (M, 1)
        if cfg.kind == "string":
            phi = ipx[:, 0]
        else:
            _, ipy = sine_basis(np.array([py]), cfg.modes)
            phi = np.outer(ipy[:, 0], ipx[:, 0]).reshape(-1)
        self.register_buffer("phi_pick", torch.tensor(phi * imap.gain, dtype=torch.float32))

    def _profile(self, s: torch.Tensor, width: float) -> torch.Tensor:
        """Unit-peak excitation profile at offsets s (fractions of the length), as the solvers define it."""
        if self.imap.shape == "gaussian":
            return torch.exp(-0.5 * (s / width) ** 2)
        inside = (s.abs() < width / 2).to(s.dtype)
        if self.imap.shape == "triangle":
            return inside * (1 - 2 * s.abs() / width)
        return inside * 0.5 * (1 + torch.cos(2 * math.pi * s / width))

    def _params(self, log_pitch: torch.Tensor) -> torch.Tensor:
        params = self.reference[None, :].repeat(log_pitch.shape[0], 1)  # (V, F)
        if self.pitch_index >= 0:
            onehot = F.one_hot(torch.tensor(self.pitch_index), params.shape[1]).to(params.dtype)
            params = params * (1 - onehot) + torch.exp(log_pitch)[:, None] * onehot
        return params

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note, velocity, pos_x, pos_y = (column[:, 0] for column in split_controls(controls))  # (V,) each
        target = torch.log(2 * math.pi * midi_to_hz(note)) + self.imap.tuning_cents * LN2_1200  # (V,) log omega_1
        lo, hi = math.log(self.imap.pitch_range[0]), math.log(self.imap.pitch_range[1])
        log_p = torch.full_like(note, self.log_pitch_ref)
        if self.pitch_index >= 0:  # Newton in log-log space (omega_1 grows with the pitch parameter)
            for _ in range(self.NEWTON_STEPS):
                w1 = torch.log(self.model.poles(self._params(log_p))["omega"][:, 0])  # (V,)
                w1h = torch.log(self.model.poles(self._params(log_p + 1e-2))["omega"][:, 0])
                slope = torch.clamp((w1h - w1) / 1e-2, min=0.05)
                log_p = torch.clamp(log_p + (target - w1) / slope, lo, hi)
        params = self._params(log_p)
        # excitation profile on a refined grid, centred at the position control(s), separable on plates
        prof_x = self._profile(self.xs[None, :] - pos_x[:, None], self.imap.width)  # (V, G)
        scale = (self.imap.amplitude * velocity)[:, None]  # (V, 1) m or m/s
        poles = self.model.poles(params)
        if self.separable:
            coef = prof_x @ self.fwd  # (V, M) sine coefficients along x
            if self.model.cfg.kind == "plate":
                coef_y = self._profile(self.xs[None, :] - pos_y[:, None], self.imap.width_y) @ self.fwd  # (V, M)
                coef = (coef_y[:, :, None] * coef[:, None, :]).reshape(coef.shape[0], -1)  # (V, M*M), (m_y, m_x)
            coef = coef * scale
            zeros = torch.zeros_like(coef)
            a, b = (coef, zeros) if self.imap.excitation == "pluck" else (zeros, coef)
            state = self.model.state_from_coefficients(a, b, poles)
        else:
            shape = prof_x
            if self.model.cfg.kind == "plate":
                shape_y = self._profile(self.xs[None, :] - pos_y[:, None], self.imap.width_y)  # (V, G)
                shape = (shape_y[:, :, None] * shape[:, None, :]).reshape(shape.shape[0], -1)  # (V, G*G)
            profile = shape * scale
            zeros = torch.zeros_like(profile)
            u0, v0 = (profile, zeros) if self.imap.excitation == "pluck" else (zeros, profile)
            state = self.model.initial_state(u0, v0, params, self.fwd, self.inv)
        c = torch.stack([self.phi_pick, torch.zeros_like(self.phi_pick)], -1)[None].expand_as(state["z0"])  # (V, N, 2)
        out = {"sigma": state["sigma"], "omega": state["omega"], "z0": state["z0"], "c": c.contiguous()}
        if self.model.cfg.modulation:
            out["mod_alpha"], out["mod_beta"] = state["mod_alpha"], state["mod_beta"]
        return out


class FieldGraph(nn.Module):
    """z (V, N, 2) -> u (V, G) for strings or (V, G, G) for plates: u = sum_n Re(z_n) phi_n."""

    def __init__(self, model: ModalFNO, points: int):
        super().__init__()
        xs = np.linspace(0.0, 1.0, points)
        _, inv = model.basis(xs if model.cfg.kind == "string" else (xs, xs))
        self.register_buffer("inv", inv)  # (N, P)
        self.shape = (points,) if model.cfg.kind == "string" else (points, points)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z[..., 0] @ self.inv).reshape(z.shape[0], *self.shape)
