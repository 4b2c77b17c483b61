"""The modal FNO's rollouts and evaluation on field data: predictions, band limits, pickups, metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from training import metrics
from training.data.field_data import FieldData
from training.models.modal_fno import sine_basis


def predict(model: Any, data: FieldData, n_samples: int, *, grid: Any = None, sample_rate: float | None = None,
            batch: int = 16) -> np.ndarray:
    """Model fields for every example of ``data``: (E, n_samples, P...) float64 numpy."""
    fs = sample_rate or data.sample_rate
    times = torch.arange(n_samples, dtype=torch.float32) / fs
    out = []
    with torch.no_grad():
        for start in range(0, data.examples, batch):
            sl = slice(start, start + batch)
            params = torch.as_tensor(data.params[sl], dtype=torch.float32)
            u = model(torch.as_tensor(data.u0[sl], dtype=torch.float32), torch.as_tensor(data.v0[sl], dtype=torch.float32),
                      params, times, grid if grid is not None else data.grid, sample_rate=fs, in_grid=data.input_grid,
                      mode_mask=mode_mask(model, data, sl))
            out.append(u.double().numpy())
    return np.concatenate(out, axis=0)


def mode_mask(model: Any, data: FieldData, index: Any = slice(None)) -> torch.Tensor | None:
    """Band-limit mask (B, N) of ``data``'s reference solver for examples ``index`` (None when unknown)."""
    if data.mode_limit is None:
        return None
    params = torch.as_tensor(data.params[index], dtype=torch.float32)
    return model.band_limit_mask(params, torch.as_tensor(np.atleast_1d(data.mode_limit[index])))


def pickup_from_field(model: Any, field: np.ndarray, grid: Any, pickup: tuple[float, float]) -> np.ndarray:
    """Displacement at the pickup, (E, S), by the model's own modal interpolation of a field (a data transform,
    whose modes exist on the grid only: the grid point nearest the pickup)."""
    if model.cfg.transform == "data":
        if model.cfg.kind == "string":
            return field[:, :, int(np.argmin(np.abs(np.asarray(grid) - pickup[0])))]
        ix, iy = (int(np.argmin(np.abs(np.asarray(g) - p))) for g, p in zip(grid, pickup))
        return field[:, :, iy, ix]
    fwd, _ = model.basis(grid, torch.float64)
    coords = field.reshape(field.shape[0], field.shape[1], -1) @ fwd.numpy()  # (E, S, N)
    m = model.cfg.modes
    _, ix = sine_basis(np.array([pickup[0]]), m)
    phi = ix[:, 0] if model.cfg.kind == "string" else np.outer(sine_basis(np.array([pickup[1]]), m)[1][:, 0], ix[:, 0]).reshape(-1)
    return coords @ phi


def evaluate(model: Any, data: FieldData, horizon: int, *, audio_examples: int = 3) -> dict[str, Any]:
    """Field/pickup errors in-horizon and over the whole recording, plus audio metrics."""
    n = data.fields.shape[1]
    pred = predict(model, data, n)
    report: dict[str, Any] = {
        "field_nmse_in_horizon": metrics.field_nmse(pred[:, :horizon], data.fields[:, :horizon]),
        "field_nmse_full": metrics.field_nmse(pred, data.fields),
        "horizon_samples": horizon,
        "samples": n,
        "extrapolation_factor": n / horizon,
    }
    if n > horizon:
        report["field_nmse_extrapolated"] = metrics.field_nmse(pred[:, horizon:], data.fields[:, horizon:])
    ref_pick = data.pickups if data.pickups is not None else pickup_from_field(model, data.fields, data.grid, data.pickup)
    pred_pick = pickup_from_field(model, pred, data.grid, data.pickup)
    report["pickup_rel_mse"] = metrics.pickup_rel_mse(pred_pick, ref_pick)
    audio = [metrics.audio_report(pred_pick[e], ref_pick[e], data.sample_rate, pitch_glide=data.nonlinear)
             for e in range(min(audio_examples, data.examples))]
    for key in audio[0] if audio else []:
        vals = [a[key] for a in audio if key in a and np.isfinite(a[key])]
        if vals:
            report[f"audio_{key}"] = float(np.mean(vals))
    return report


def parameter_generalisation(model: Any, data: FieldData, n_partials: int = 10) -> dict[str, float]:
    """Max |cents| between the model's first partials and the linear string solver's, on ``data``'s
    parameters (the test split: values inside the training range not seen in training)."""
    from training.physics.string_linear import StringParams, string_modes

    names = model.cfg.param_names
    fields = set(StringParams.__dataclass_fields__)
    if not set(names) & fields:
        return {}
    with torch.no_grad():
        omega = model.poles(torch.as_tensor(data.params, dtype=torch.float32))["omega"].double().numpy()  # (E, N)
    errs = []
    k = min(n_partials, omega.shape[1])
    for e in range(data.examples):
        p = StringParams(**{n: float(data.params[e, j]) for j, n in enumerate(names) if n in fields})
        _, w_ref = string_modes(p, k)
        keep = w_ref < math.pi * data.sample_rate
        errs.append(np.abs(1200 * np.log2(omega[e, :k][keep] / w_ref[keep])))
    cents = np.concatenate(errs)
    return {"partial_cents_vs_solver_max": float(cents.max()), "partial_cents_vs_solver_mean": float(cents.mean())}
