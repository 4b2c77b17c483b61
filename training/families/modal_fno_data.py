"""The modal FNO learned from field data alone (``eigentone train fno --init data``).

What the physics-started FNO is given and this one is not: the sine transform (the solver's modes), the
wavenumbers n pi / L, the physical parameters as pole-network inputs, the pluck's analytic profile as the
initial condition and the solver's mode count. Here:

* transform: the mode shapes found in the training fields (``training/models/data_modes.py``: POD, delay
  DMD), used as the FNO's spectral transform (``ModalFNOConfig.transform = "data"``);
* poles: one free sigma_n, omega_n per mode and the pole law alpha_n, beta_m, started from the same
  analysis; per-voice corrections from the initial state (``VoicePoles``);
* input: the observed first snapshot u(x, 0) (plucks: at rest; strikes: du/dt from the first two
  snapshots, ``data_modes.initial_velocity``), as the paper's models get it;
* loss: relative field MSE from the initial condition with a window-length curriculum and weights growing
  over the window (as the Koopman family's ``make_data_step_loss``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from training.data.field_data import FieldData
from training.family import StepLoss
from training.losses import relative_mse
from training.models.data_modes import analyse, initial_velocity
from training.models.modal_fno import ModalFNO, ModalFNOConfig


def observed_view(data: FieldData, model: ModalFNO | None = None, found: Any = None) -> FieldData:
    """``data`` with the initial condition taken from its own fields (u0 = the first snapshot; v0 = 0 for
    plucks at rest, else from the first two snapshots with the model's or the analysis' modes and poles) and
    no solver band limit."""
    at_rest = np.asarray(data.excitation.get("kind", np.zeros(data.examples)), np.float64) == 0
    flat = data.fields.reshape(data.examples, data.fields.shape[1], -1)
    if found is not None:
        shapes, sigma, omega = found.shapes, found.sigma, found.omega
    else:
        with torch.no_grad():
            shapes = model.shapes.double().numpy()
            poles = model.poles(torch.zeros(1, 1))
            sigma, omega = (poles[k][0].double().numpy() for k in ("sigma", "omega"))
    v0 = initial_velocity(flat, shapes, sigma, omega, data.sample_rate)
    v0[at_rest] = 0.0
    shape = data.fields.shape[2:]
    return replace(data, u0=data.fields[:, 0].copy(), v0=v0.reshape(-1, *shape), input_grid=None, mode_limit=None)


def initialise(train_set: FieldData, horizon: int, options: argparse.Namespace, modulation: bool
               ) -> tuple[ModalFNO, FieldData, dict[str, Any]]:
    """A data-transform modal FNO fitted in closed form to the first ``horizon`` samples of the training set;
    returns (model, the training set as the model sees it, what the analysis found)."""
    found = analyse(train_set.fields[:, :horizon], train_set.sample_rate, options.modes or 64, modulation=modulation)
    n = found.shapes.shape[1]
    cfg = ModalFNOConfig(kind=train_set.kind, modes=n, transform="data", points=found.shapes.shape[0],
                         fourier_layers=options.fourier_layers, modulation=modulation, voice_poles=True)
    model = ModalFNO(cfg)
    model._trained_rate = train_set.sample_rate
    with torch.no_grad():
        model.shapes.copy_(torch.as_tensor(found.shapes, dtype=torch.float32))
        model.voice.energy_scale.copy_(torch.as_tensor(found.energy_scale, dtype=torch.float32))
    alpha = found.alpha if found.alpha.any() else np.full(n, 1e-30)
    model.poles.set(found.sigma, found.omega, alpha, found.beta)
    if model.ic is not None:
        model.ic.scale.fill_(float(np.abs(train_set.fields[:, 0]).max() + 1e-12))
    return model, observed_view(train_set, found=found), {**found.info, "transform": "data"}


def config_of(model: ModalFNO) -> dict[str, Any]:
    return asdict(model.cfg)


def step_loss(model: ModalFNO, train_set: FieldData, horizon: int, batch: int, steps: int, seed: int,
              time_weight: float = 3.0) -> StepLoss:
    """Windows from the initial condition, H/8, H/4, H/2 then H samples (a quarter of the steps each), relative
    field MSE weighted by 1 + time_weight t / H (see ``training/families/koopman.py`` make_data_step_loss)."""
    fs = train_set.sample_rate
    u0 = torch.as_tensor(train_set.u0, dtype=torch.float32)
    v0 = torch.as_tensor(train_set.v0, dtype=torch.float32)
    params = torch.zeros(train_set.examples, 1)
    target = torch.as_tensor(train_set.fields[:, :horizon], dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)

    def loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        window = max(16, horizon >> (3 - min(3, 4 * step // max(steps, 1))))
        idx = torch.randint(0, train_set.examples, (batch,), generator=gen)
        times = torch.arange(window, dtype=torch.float32) / fs
        pred = model(u0[idx], v0[idx], params[idx], times, train_set.grid, sample_rate=fs)
        weight = (1.0 + time_weight * times * fs / horizon).reshape(1, -1, *([1] * (pred.ndim - 2)))
        value = relative_mse(pred * weight, target[idx, :window] * weight)
        return value, {"window": float(window)}

    return loss
