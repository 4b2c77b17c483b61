"""Learnable continuous-time poles, stable by construction: the parametrisation every family shares.

Every eigentone model maps controls to the contract's modal description (``eigentone.contract``) and
trains through the contract's torch twin (``eigentone.contract.torch_twin``). Poles are stored
unconstrained and mapped to valid values (S4D-style): ``sigma = softplus(raw) + sigma_min > 0``, so
no parameter value can give a growing mode; frequencies are stored as ``log omega``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


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

    @torch.no_grad()
    def set_(self, sigma: np.ndarray, omega: np.ndarray) -> None:
        """Set the poles to sigma (N,) 1/s and omega (N,) rad/s (e.g. from a modal analysis)."""
        s = torch.clamp(torch.as_tensor(sigma, dtype=torch.float32) - self.sigma_min, min=1e-6)
        self.sigma_raw.copy_(s + torch.log(-torch.expm1(-s)))
        self.log_omega.copy_(torch.log(torch.as_tensor(omega, dtype=torch.float32)))
