"""The modal FNO's closed-form start from field data: configuration, pole network fit, instrument map.

``initialise_poles`` is stage 1 of training (no gradient through oscillations): the sine transform of
the recorded fields gives each example's modal coordinates a_n(t); a second-order linear predictor per
mode (Prony, ``training.fits.prony_poles``) gives sigma_n, omega_n; the dispersion law of the pole
network (``training/models/modal_fno.py`` eq. (3)) is then fitted in log space by least squares.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from eigentone.errors import EigentoneError
from training.data.field_data import SHAPES, FieldData
from training.fits import prony_poles
from training.models.modal_fno import InstrumentMap, ModalFNO, ModalFNOConfig


def make_config(data: FieldData, modes: int | None, fourier_layers: int, modulation: bool) -> Any:
    points = data.fields.shape[-1] if data.kind == "string" else min(data.fields.shape[-2:])
    max_modes = points - 1  # a uniform grid with M intervals resolves sine modes 1..M-1 exactly
    modes = int(modes) if modes else min(max_modes, _modes_for(data, max_modes))
    if modes > max_modes:
        raise EigentoneError(f"--modes {modes} exceeds what a {points}-point grid resolves ({max_modes})")
    p = data.params
    positive = [bool(np.all(p[:, j] > 0)) for j in range(p.shape[1])]
    x = np.where(positive, np.log(np.where(p > 0, p, 1.0)), p) if p.size else p
    std = x.std(axis=0) if p.size else np.zeros(0)
    return ModalFNOConfig(
        kind=data.kind, modes=modes, param_names=list(data.param_names), param_log=positive,
        param_mean=x.mean(axis=0).tolist() if p.size else [], param_std=np.where(std > 1e-9, std, 1.0).tolist(),
        param_min=p.min(axis=0).tolist() if p.size else [], param_max=p.max(axis=0).tolist() if p.size else [],
        length=data.length, length_y=data.length_y, fourier_layers=fourier_layers, modulation=modulation,
    )


def _modes_for(data: FieldData, max_modes: int) -> int:
    """Default mode count: enough to hold every mode the reference solver kept (strings: N; plates: the
    per-axis count covering the N lowest-wavenumber modes), else 32 (strings) or 12 per axis (plates)."""
    if data.mode_limit is None:
        return 32 if data.kind == "string" else 12
    n = int(np.max(data.mode_limit))
    if data.kind == "string":
        return n
    m = np.arange(1, max_modes + 1)
    kappa = (m[None, :] / data.length) ** 2 + (m[:, None] / data.length_y) ** 2  # (my, mx)
    lowest = np.argsort(kappa, axis=None)[:n]
    my, mx = np.unravel_index(lowest, kappa.shape)
    return int(max(my.max(), mx.max())) + 1


def initialise_poles(model: Any, data: FieldData, horizon: int, quiet: bool = False) -> dict[str, float]:
    """Closed-form modal initialisation of the pole network from the training fields.

    1. Prony fit per example and mode gives sigma_en, omega_en (``prony_poles``).
    2. Per example, linear least squares of the dispersion law of eq. (3):
       omega^2 + sigma^2 = c1 k^2 + c2 k^4 and sigma = s0 + s2 k^2 (rows scaled to relative error).
       With modulation, the mean energy shift exp(q) k_n^2 E_e is removed first.
    3. Across examples, least squares of log(c1, c2, s0, s2) on the standardised log-parameters:
       the affine head of the pole network (exact when the law is a power law in the parameters,
       e.g. c1 = T / (rho A), c2 = E I / (rho A)).
    """
    fwd, _ = model.basis(data.grid, torch.float64)
    flat = data.fields[:, :horizon].reshape(data.examples, horizon, -1)
    coords = flat @ fwd.numpy()  # (E, S, N)
    sigma_est, omega_est, ok = prony_poles(coords, data.sample_rate)
    ok &= sigma_est >= -np.log1p(1e-9) * data.sample_rate  # not growing (r <= 1 + 1e-9)
    sigma_est = np.clip(sigma_est, 1e-3, None)
    energy = (coords**2).sum(1)  # (E, N)
    weight = np.where(ok & (energy > 1e-8 * energy.max(axis=1, keepdims=True)), 1.0, 0.0)
    params = torch.as_tensor(data.params, dtype=torch.float32)
    with torch.no_grad():
        kappa = model.poles.wavenumbers(params).double().numpy()  # (E, N)
        feats = model.poles.features(params).double().numpy()  # (E, F)
    k2 = kappa**2
    target = omega_est**2 + sigma_est**2  # (E, N) undamped omega0^2 (+ mean modulation shift)
    coefs = np.zeros((data.examples, 4))
    for e in range(data.examples):
        sel = weight[e] > 0
        if sel.sum() < 2:
            coefs[e] = np.nan
            continue
        scale = target[e, sel]
        basis = np.stack([k2[e, sel], k2[e, sel] ** 2], 1) / scale[:, None]
        c, *_ = np.linalg.lstsq(basis, np.ones(sel.sum()), rcond=None)
        basis_s = np.stack([np.ones(sel.sum()), k2[e, sel]], 1) / sigma_est[e, sel][:, None]
        s, *_ = np.linalg.lstsq(basis_s, np.ones(sel.sum()), rcond=None)
        floor_c = 1e-9 * np.median(scale / k2[e, sel])
        coefs[e] = [max(c[0], floor_c), max(c[1], floor_c / k2[e, sel].max()), max(s[0], 1e-6),
                    max(s[1], 1e-9 * sigma_est[e, sel].max() / k2[e, sel].max())]
    ok = np.all(np.isfinite(coefs), axis=1)
    if not ok.any():
        raise EigentoneError("no example of the dataset has two clean decaying modes to initialise the poles from")
    design = np.concatenate([feats[ok], np.ones((ok.sum(), 1))], axis=1)  # (E', F+1)
    scale_q = 0.0
    if model.cfg.modulation:
        # the modulation adds exp(q) E_e k_n^2 to omega^2, i.e. to c1: alternate between the affine fit of
        # c1 - exp(q) E_e and the least-squares slope exp(q) of the c1 residual against E_e
        energy = (k2 * 2.0 * (coords**2).mean(axis=1)).sum(axis=1)[ok]  # (E',) mean sum_m k_m^2 |z_m|^2
        c1_raw = coefs[ok, 0].copy()
        for _ in range(200):
            corrected = np.maximum(c1_raw - scale_q * energy, 1e-3 * c1_raw)
            sol_c1, *_ = np.linalg.lstsq(design, np.log(corrected), rcond=None)
            residual = c1_raw - np.exp(design @ sol_c1)
            scale_q = max(float(residual @ energy / max(energy @ energy, 1e-300)), 0.0)
        coefs[ok, 0] = np.maximum(c1_raw - scale_q * energy, 1e-3 * c1_raw)
    q = math.log(scale_q) if scale_q > 0 else _modulation_prior(model.cfg)
    sol, *_ = np.linalg.lstsq(design, np.log(coefs[ok]), rcond=None)  # (F+1, 4)
    with torch.no_grad():
        weight_t = torch.zeros_like(model.poles.affine.weight)  # (5, F)
        weight_t[:4] = torch.as_tensor(sol[:-1].T, dtype=torch.float32)
        model.poles.affine.weight.copy_(weight_t)
        model.poles.affine.bias.copy_(torch.as_tensor([*sol[-1], q], dtype=torch.float32))
        omega_model = model.poles(params)["omega"].double().numpy()
    w = weight > 0
    rms_cents = float(np.sqrt(np.mean((1200 * np.log2(omega_model[w] / omega_est[w])) ** 2)))
    if not quiet:
        print(f"modal initialisation: {int(w.sum())} mode fits over {int(ok.sum())} examples, "
              f"rms pitch misfit {rms_cents:.3g} cents")
    return {"init_rms_cents": rms_cents}


def _modulation_prior(cfg: Any) -> float:
    """Initial log modulation scale q: Kirchhoff-Carrier alpha beta = E A k_n^2 k_m^2 / (8 rho A), so
    exp(q) = E / (8 rho) at the training data's typical parameters (0 when those are not parameters)."""
    names = cfg.param_names
    if "E" in names and "rho" in names:
        mean = dict(zip(names, cfg.param_mean))
        log_e = mean["E"] if cfg.param_log[names.index("E")] else math.log(mean["E"])
        log_rho = mean["rho"] if cfg.param_log[names.index("rho")] else math.log(mean["rho"])
        return log_e - log_rho - math.log(8.0)
    return 0.0


def build_model(cfg: ModalFNOConfig, data: FieldData) -> ModalFNO:
    model = ModalFNO(cfg)
    model._trained_rate = data.sample_rate
    if model.ic is not None:
        model.ic.scale.fill_(float(np.abs(data.u0).max() + np.abs(data.v0).max() / (2 * math.pi * 100) + 1e-12))
    return model


def pitch_map(model: ModalFNO) -> dict[str, Any]:
    """How the note control drives the pole network (part of ``InstrumentMap``): the pitch parameter is the
    varying training parameter with the largest positive d log omega_1 / d log p at the reference (the
    training set's geometric mean): tension for strings, thickness for plates."""
    cfg = model.cfg
    names = cfg.param_names
    reference = [float(np.exp(m)) if lg else float(m) for m, lg in zip(cfg.param_mean, cfg.param_log)]
    best, best_slope = "", 0.0
    for j, name in enumerate(names):
        if not cfg.param_log[j] or cfg.param_max[j] <= cfg.param_min[j] * (1 + 1e-9):
            continue
        probe = torch.tensor([reference, reference], dtype=torch.float32)
        probe[1, j] *= math.exp(0.01)
        with torch.no_grad():
            w1 = model.poles(probe)["omega"][:, 0].double()
        slope = float(torch.log(w1[1] / w1[0])) / 0.01
        if slope > best_slope:
            best, best_slope = name, slope
    j = names.index(best) if best else 0
    lo, hi = (cfg.param_min[j], cfg.param_max[j]) if best else (1.0, 1.0)
    return {"pitch_param": best, "reference": reference, "pitch_range": [lo / 100.0, hi * 100.0]}


def excitation_map(data: FieldData) -> dict[str, Any]:
    """How velocity and position make the initial condition, from the training data (part of ``InstrumentMap``):
    the data's median excitation shape, width and amplitude, its pickup, and a gain so a note peaks near 0.5."""
    exc = data.excitation
    codes = np.atleast_1d(exc.get("kind", np.zeros(1))).astype(float)
    shape_codes = np.atleast_1d(exc.get("shape", np.zeros(1))).astype(float)
    width = float(np.median(np.atleast_1d(exc.get("width", 0.05 * data.length))))
    amplitude = float(np.median(np.atleast_1d(exc.get("amplitude", 1e-3))))
    signal = data.pickups if data.pickups is not None else data.fields
    peak = float(np.median(np.abs(signal).reshape(signal.shape[0], -1).max(axis=1))) or 1.0
    return {
        "excitation": "strike" if np.median(codes) == 1 else "pluck", "shape": SHAPES[int(np.median(shape_codes))],
        "width": width / data.length, "width_y": width / data.length_y, "amplitude": amplitude,
        "pickup": list(data.pickup), "gain": 0.5 / peak, "grid": int(data.fields.shape[-1]),
    }


def instrument_map(model: ModalFNO, data: FieldData) -> InstrumentMap:
    """How the exported instrument maps (note, velocity, position) onto the model."""
    imap = {**pitch_map(model), **excitation_map(data)}
    return InstrumentMap(**{**imap, "pickup": tuple(imap["pickup"]), "pitch_range": tuple(imap["pitch_range"])})
