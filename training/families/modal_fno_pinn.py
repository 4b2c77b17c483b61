"""The modal FNO's physics-informed option (``--pinn-weight``): the linear string PDE residual as a loss.

The residual itself (autograd, normalised by the inertia term) is ``training/physics_residual.py``; this
module applies it to the modal FNO's own analytic field at random collocation points.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from eigentone.errors import EigentoneError
from training.data.field_data import FieldData
from training.families.modal_fno_eval import mode_mask
from training.physics_residual import STRING_PDE_PARAMS, modal_field, string_pde_residual


def check_pinn(data: FieldData, modulation: bool, weight: float) -> None:
    """Raise EigentoneError (one line) unless a PDE residual loss of ``weight`` applies to ``data``."""
    if not math.isfinite(weight) or weight < 0:
        raise EigentoneError(f"--pinn-weight must be a non-negative number, got {weight}")
    if data.kind != "string" or data.nonlinear or modulation:
        what = "a plate" if data.kind != "string" else ("a nonlinear string" if data.nonlinear else "--modulation on")
        raise EigentoneError(f"--pinn-weight supports linear string datasets only (eigentone simulate string, without "
                             f"--nonlinear or --modulation on), got {what}; drop --pinn-weight")
    missing = [n for n in STRING_PDE_PARAMS if n not in data.param_names]
    if missing:
        raise EigentoneError(f"--pinn-weight needs the string parameters {', '.join(missing)} in the dataset's params; "
                             "simulate it with `eigentone simulate string` or drop --pinn-weight")


def collocation_params(model: Any, batch: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, F) parameter vectors drawn uniformly (in log for positive columns) over the training range
    (``model.cfg.param_min`` .. ``param_max``): the PDE holds for every string, so the residual can be
    asked of strings no example was recorded from -- where the data say nothing and the physics term
    is the only teacher."""
    lo = torch.tensor(model.cfg.param_min, dtype=torch.float32)
    hi = torch.tensor(model.cfg.param_max, dtype=torch.float32)
    log = torch.tensor(model.cfg.param_log, dtype=torch.bool)
    u = torch.rand(batch, lo.numel(), generator=gen)
    logs = torch.exp(torch.log(lo.clamp_min(1e-30)) + u * (torch.log(hi.clamp_min(1e-30)) - torch.log(lo.clamp_min(1e-30))))
    return torch.where(log, logs, lo + u * (hi - lo))


def pinn_loss(model: Any, u0: torch.Tensor, v0: torch.Tensor, params: torch.Tensor, grid: Any, duration: float,
              gen: torch.Generator, points: int = 64, mode_mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean(r^2) of the string PDE residual of the model's field at random collocation points.

    u0, v0 (B, P) on ``grid`` (fractions), params (B, F) named ``model.cfg.param_names`` (the examples' own,
    or ``collocation_params``); per example ``points`` draws x ~ U(0, L) m and t ~ U(0, duration) s. The field
    is the model's own analytic expansion u = sum_n Re(z0_n e^{Lambda_n t}) sin(n pi x / L), differentiated
    by autograd.
    """
    names = model.cfg.param_names
    fwd, inv = model.basis(grid, u0.dtype)
    state = model.initial_state(u0, v0, params, fwd, inv, mode_mask)
    length = model.poles._lengths(params)[0]  # (B,) m
    batch = params.shape[0]
    x = torch.rand(batch, points, generator=gen, dtype=u0.dtype) * length[:, None]  # (B, M) m
    t = torch.rand(batch, points, generator=gen, dtype=u0.dtype) * duration  # (B, M) s
    physical = {n: params[:, names.index(n)] for n in STRING_PDE_PARAMS}
    u_fn = modal_field(state["sigma"], state["omega"], state["z0"], length)
    return (string_pde_residual(u_fn, physical, x, t) ** 2).mean()


def pinn_report(model: Any, data: FieldData, duration: float, seed: int, points: int = 256) -> float:
    """mean(r^2) of the normalised string PDE residual of the model on ``data`` over [0, duration] s."""
    grid = data.grid if data.input_grid is None else data.input_grid
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.enable_grad():
        value = pinn_loss(model, torch.as_tensor(data.u0.reshape(data.examples, -1), dtype=torch.float32),
                          torch.as_tensor(data.v0.reshape(data.examples, -1), dtype=torch.float32),
                          torch.as_tensor(data.params, dtype=torch.float32), grid, duration, gen, points,
                          mode_mask(model, data))
    return float(value.detach())
