"""Physics-informed (PINN) residual of the linear stiff string, by automatic differentiation.

The PDE (``training/physics/string_linear.py``), SI units, 0 < x < L, ends fixed::

    rho A u_tt + E I u_xxxx - T u_xx + d1 u_t - d3 u_xxt = 0                          (1)

``string_pde_residual`` evaluates the left-hand side of (1) for any differentiable field ``u_fn(x, t)``
at collocation points, with every derivative taken by ``torch.autograd`` (no finite differences), and
divides it per example by the RMS over that example's points of the inertia term ``rho A u_tt``::

    r(x, t) = LHS(x, t) / sqrt(mean_j (rho A u_tt(x_j, t))^2)                             (2)

Why this scale: the raw residual is in N/m and grows with the amplitude and with the square of the
pitch, so strings of different tension or amplitude would not be comparable, and u = 0 would trivially
minimise it. Eq. (2) is dimensionless, invariant to the field's amplitude (no pull towards silence),
and equals the relative error of the dispersion relation: a single mode whose frequency is off by a
factor (1 + e) has |r| ~ 2 e.

``modal_field`` builds the field of a modal expansion ``u = sum_n Re(z_n e^{(-sigma_n + i omega_n) t})
sin(n pi x / L)`` as such a function (the exact solution when sigma, omega come from ``string_modes``;
the modal FNO's field when they come from its pole network).

Example::

    u_fn = modal_field(sigma, omega, z0, length)          # (B, N) each, z0 (B, N, 2), length (B,)
    x = torch.rand(B, 64) * length[:, None]               # m
    t = torch.rand(B, 64) * 0.01                          # s
    r = string_pde_residual(u_fn, params, x, t)           # (B, 64), dimensionless
    loss = (r**2).mean()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

STRING_PDE_PARAMS = ("rho", "A", "E", "I", "T", "d1", "d3")
"""Parameters the residual needs (SI: kg/m^3, m^2, Pa, m^4, N, kg/(m s), kg m/s)."""

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _grad(out: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """Pointwise derivative d out / d wrt (each output depends only on its own point), kept differentiable."""
    return torch.autograd.grad(out.sum(), wrt, create_graph=True)[0]


def string_pde_residual(u_fn: Field, params: Mapping[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Normalised residual (2) of the linear string PDE (1) at collocation points.

    u_fn: maps x (B, M) in m and t (B, M) in s to u (B, M) in m, differentiable in both.
    params: ``STRING_PDE_PARAMS`` -> (B,) tensors (SI units, per example).
    x, t: (B, M) collocation points (need not require grad; copies that do are made here).
    Returns r (B, M), dimensionless; 0 for an exact solution of (1). Differentiable with respect to
    whatever ``u_fn`` depends on, so ``(r**2).mean()`` can be a training loss.
    """
    missing = [name for name in STRING_PDE_PARAMS if name not in params]
    if missing:
        raise KeyError(f"string PDE residual needs parameters {missing}")
    x = x.detach().clone().requires_grad_(True)  # (B, M)
    t = t.detach().clone().requires_grad_(True)  # (B, M)
    p = {name: params[name].reshape(-1, 1).to(x.dtype) for name in STRING_PDE_PARAMS}  # (B, 1) each
    u = u_fn(x, t)  # (B, M)
    u_t = _grad(u, t)
    u_tt = _grad(u_t, t)
    u_x = _grad(u, x)
    u_xx = _grad(u_x, x)
    u_xxxx = _grad(_grad(u_xx, x), x)
    u_xxt = _grad(u_xx, t)
    inertia = p["rho"] * p["A"] * u_tt  # (B, M) N/m
    lhs = inertia + p["E"] * p["I"] * u_xxxx - p["T"] * u_xx + p["d1"] * u_t - p["d3"] * u_xxt  # (B, M) N/m
    scale = torch.sqrt((inertia**2).mean(dim=1, keepdim=True)).clamp_min(torch.finfo(x.dtype).tiny)  # (B, 1)
    return lhs / scale


def modal_field(sigma: torch.Tensor, omega: torch.Tensor, z0: torch.Tensor, length: torch.Tensor) -> Field:
    """Field of a free modal expansion on a string with fixed ends, as a function of (x, t).

    sigma, omega: (B, N) in 1/s and rad/s; z0: (B, N, 2) complex modal state (re, im), m;
    length: (B,) m. Returns u_fn with u_fn(x, t) = sum_n Re(z0_n e^{(-sigma_n + i omega_n) t})
    sin(n pi x / L) for x, t (B, M) -> (B, M) m.
    """
    n = torch.arange(1, sigma.shape[1] + 1, dtype=sigma.dtype, device=sigma.device)  # (N,)
    k = math.pi * n[None, :] / length.reshape(-1, 1).to(sigma.dtype)  # (B, N) rad/m

    def u_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        decay = torch.exp(-sigma[:, :, None] * t[:, None, :])  # (B, N, M)
        phase = omega[:, :, None] * t[:, None, :]  # (B, N, M)
        re = decay * (z0[..., 0, None] * torch.cos(phase) - z0[..., 1, None] * torch.sin(phase))  # (B, N, M)
        return (re * torch.sin(k[:, :, None] * x[:, None, :])).sum(dim=1)  # (B, M)

    return u_fn
