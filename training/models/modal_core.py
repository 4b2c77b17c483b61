"""The shared differentiable core of every family: diagonal complex linear dynamics.

Every eigentone model (diagonal SSM, deep Koopman, modal FNO) is an
``ExciteModel``: a module mapping control rows to the contract's modal
description (see ``engine/contract.py``)::

    controls (V, 4) -> {"sigma": (V, N), "omega": (V, N), "z0": (V, N, 2), "c": (V, N, 2),
                        optional "mod_alpha", "mod_beta": (V, N)}

and is trained through the same closed-form rollout that the engine runs:
``z[k] = z0 * exp((-sigma + i omega) k / fs)``, ``y[k] = Re(c z[k])``. Complex
numbers are kept as real (re, im) pairs so that every module exports to ONNX.

Poles are stored unconstrained and mapped to valid values (S4D-style):
``sigma = softplus(raw) + sigma_min > 0`` so no parameter value can give a
growing mode; frequencies are stored as ``log omega``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def complex_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of complex numbers stored as (..., 2) real pairs."""
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return torch.stack([re, im], dim=-1)


def modal_trajectory(sigma: torch.Tensor, omega: torch.Tensor, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Free modal state at given times, closed form.

    sigma, omega: (V, N) 1/s and rad/s; z0: (V, N, 2); times: (T,) seconds.
    Returns z(t) = z0 * exp((-sigma + i omega) t) as (V, N, T, 2).
    """
    t = times.reshape(1, 1, -1)
    decay = torch.exp(-sigma.unsqueeze(-1) * t)  # (V, N, T)
    phase = omega.unsqueeze(-1) * t  # (V, N, T)
    rot = torch.stack([decay * torch.cos(phase), decay * torch.sin(phase)], dim=-1)  # (V, N, T, 2)
    return complex_mul(z0.unsqueeze(2), rot)


def modal_readout(sigma: torch.Tensor, omega: torch.Tensor, z0: torch.Tensor, c: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Pickup signal y(t) = sum_n Re(c_n z_n(t)), (V, T). Shapes as in ``modal_trajectory``; c: (V, N, 2)."""
    z = modal_trajectory(sigma, omega, z0, times)  # (V, N, T, 2)
    return (c[:, :, None, 0] * z[..., 0] - c[:, :, None, 1] * z[..., 1]).sum(dim=1)


def modulated_rollout(
    sigma: torch.Tensor,
    omega0: torch.Tensor,
    z0: torch.Tensor,
    mod_alpha: torch.Tensor,
    mod_beta: torch.Tensor,
    sample_rate: float,
    n_samples: int,
    block_size: int = 64,
) -> torch.Tensor:
    """Modal state under block-rate pole modulation, exactly as the engine runs it.

    Once per block: E = sum_m beta_m |z_m|^2, omega = sqrt(omega0^2 + alpha E); inside the
    block the recurrence is free. Returns z as (V, N, n_samples, 2). Python loops over
    blocks only (n_samples / block_size iterations), never over samples.
    """
    steps = torch.arange(block_size, dtype=sigma.dtype) / sample_rate  # (B,)
    z = z0
    blocks = []
    for start in range(0, n_samples, block_size):
        n = min(block_size, n_samples - start)
        energy = (mod_beta * (z**2).sum(-1)).sum(-1, keepdim=True)  # (V, 1)
        omega = torch.sqrt(omega0**2 + mod_alpha * energy)
        traj = modal_trajectory(sigma, omega, z, steps[:n])  # (V, N, n, 2)
        blocks.append(traj)
        z = modal_trajectory(sigma, omega, z, steps.new_tensor([n / sample_rate]))[:, :, 0]
    return torch.cat(blocks, dim=2)


class ContinuousPoles(nn.Module):
    """N learnable continuous-time poles, stable by construction.

    sigma = softplus(sigma_raw) + sigma_min  (1/s, always > 0)
    omega = exp(log_omega)                   (rad/s, always > 0)
    """

    def __init__(self, sigma: torch.Tensor, omega: torch.Tensor, sigma_min: float = 1e-3):
        super().__init__()
        self.sigma_min = sigma_min
        s = torch.clamp(torch.as_tensor(sigma, dtype=torch.float32) - sigma_min, min=1e-6)
        self.sigma_raw = nn.Parameter(s + torch.log(-torch.expm1(-s)))  # inverse softplus
        self.log_omega = nn.Parameter(torch.log(torch.as_tensor(omega, dtype=torch.float32).clamp(min=1e-3)))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (sigma, omega), each (N,)."""
        return F.softplus(self.sigma_raw) + self.sigma_min, torch.exp(self.log_omega)


def hz_to_omega(freq_hz: float) -> float:
    """Angular frequency in rad/s of a frequency in Hz."""
    return 2.0 * math.pi * freq_hz
