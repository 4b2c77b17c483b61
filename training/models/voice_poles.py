"""Per-voice poles: amplitude-dependent corrections computed once, at note-on, from the initial modal state.

The contract (``eigentone.contract``) lets the excite graph give every voice its own sigma, omega0,
mod_alpha and mod_beta (V, N). A shared pole law omega_n^2 = omega0_n^2 + alpha_n sum_m beta_m |z_m|^2 is
rank one in (n, m); a nonlinear string's frequencies, decays and glides depend on the whole spectrum of
the pluck in ways one rank-one law does not hold (a mode's own amplitude shifts it 3/2 as much as the
others', energy leaks between near-resonant modes). ``VoicePoles`` maps the note-on mode energies to
multiplicative corrections of the four coefficients for that voice; the block-rate law then carries the
glide as the voice decays, exactly as the engine runs it. Stable for any weights: the corrections are
positive factors (exp), so sigma > 0 and alpha, beta >= 0 stay true.

The last layer starts at zero (no correction); omega0's correction is scaled by 1e-2 (a unit output is
about 17 cents), so the other outputs can move by O(1) factors while pitch moves by cents.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

OMEGA_STEP = 1e-2
"""omega0 factor per unit of the network's output: exp(1e-2) = 17.3 cents."""


class VoicePoles(nn.Module):
    """z0 (V, N, 2) -> factors (V, 4, N) for (omega0, sigma, mod_alpha, mod_beta).

    Input features: log(1 + |z0_n|^2 / s_n) with s_n the training set's mean |z0_n|^2 (``energy_scale``)."""

    def __init__(self, modes: int, hidden: int = 64, energy_scale: np.ndarray | None = None):
        super().__init__()
        scale = np.ones(modes) if energy_scale is None else np.asarray(energy_scale, np.float64)
        self.register_buffer("energy_scale", torch.as_tensor(scale, dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(modes, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 4 * modes))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z0: torch.Tensor) -> torch.Tensor:
        features = torch.log1p((z0**2).sum(-1) / self.energy_scale)  # (V, N)
        log_factor = self.net(features).reshape(z0.shape[0], 4, -1)  # (V, 4, N)
        scale = torch.tensor([OMEGA_STEP, 1.0, 1.0, 1.0], dtype=z0.dtype)[None, :, None]
        return torch.exp(log_factor * scale)

    def per_voice(self, z0: torch.Tensor, coefficients: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-voice "omega", "sigma" (and "mod_alpha", "mod_beta" when present) (V, N) from the shared ones
        ((N,) or (V, N)) and z0 (V, N, 2)."""
        factor = self.forward(z0)
        keys = ("omega", "sigma", "mod_alpha", "mod_beta")
        return {key: coefficients[key] * factor[:, i] for i, key in enumerate(keys) if key in coefficients}
