"""``eigentone train fno DATA --out RUN_DIR``: fit a modal FNO to a field dataset (strings or plates).

Two stages, both seeded and resumable through ``training/trainer.py``:

1. **Modal initialisation from the data** (closed form, no gradient through oscillations): the
   sine transform of the recorded fields gives each example's modal coordinates a_n(t); a
   second-order linear predictor fitted per mode (Prony, a[k+1] = p1 a[k] + p2 a[k-1], exact for
   one damped sinusoid) gives sigma_n, omega_n; the pole network is regressed onto them in
   log space (energy-weighted).
2. **Operator training**: relative field MSE (sum err^2 / sum y^2, the metric of arXiv 2408.16650)
   of the full rollout u(x, t) over the training horizon, Adam with cosine decay. With
   ``--pinn-weight W`` (linear strings only) the loss adds W x mean(r^2), r the normalised residual of
   the string PDE at random collocation points (``training/physics_residual.py``, ``pinn_loss``).

The end-of-run report (RUN_DIR/metrics.json, RUN_DIR/report.png) gives the held-out field MSE
in-horizon and over the whole recording (extrapolation), pickup errors and audio metrics.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

HELP = "train a modal FNO (e^{Lambda t} spectral multipliers) on a string or plate field dataset"
EXAMPLE = "eigentone train fno data/string.h5 --out runs/fno-string --steps 300"


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


@dataclass
class FieldData:
    """Arrays the modal FNO trains on (float64 numpy).

    fields (E, S, P) strings or (E, S, ny, nx) plates, m; u0, v0 like fields[:, 0] (m, m/s);
    params (E, F) raw SI values named ``param_names``; grid: strings x (P,) in [0, 1], plates
    (x (nx,), y (ny,)); pickups (E, S) m at ``pickup`` (fractions (x, y)); sample_rate Hz.
    """

    kind: str
    nonlinear: bool
    sample_rate: float
    fields: np.ndarray
    u0: np.ndarray
    v0: np.ndarray
    params: np.ndarray
    param_names: list[str]
    grid: Any
    pickups: np.ndarray | None
    pickup: tuple[float, float]
    excitation: dict[str, Any]
    length: float = 1.0
    length_y: float = 1.0
    input_grid: Any = None  # grid of u0/v0 when it differs from the field grid
    mode_limit: np.ndarray | None = None  # (E,) modes the reference solver kept per example

    @property
    def examples(self) -> int:
        return self.fields.shape[0]

    def subset(self, index: np.ndarray) -> FieldData:
        exc = {k: (np.asarray(v)[index] if np.ndim(v) and len(v) == self.examples else v) for k, v in self.excitation.items()}
        return FieldData(self.kind, self.nonlinear, self.sample_rate, self.fields[index], self.u0[index], self.v0[index],
                         self.params[index], self.param_names, self.grid,
                         None if self.pickups is None else self.pickups[index], self.pickup, exc, self.length, self.length_y,
                         self.input_grid, None if self.mode_limit is None else self.mode_limit[index])


def _column(values: Any, examples: int) -> np.ndarray | None:
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        return None
    if arr.ndim == 0:
        return np.full(examples, float(arr))
    if arr.ndim == 1 and arr.shape[0] == examples:
        return arr.astype(np.float64)
    return None


NOT_MODEL_INPUTS = ("f0", "modes", "pickup_x", "pickup_y")
"""Dataset params that are labels or recording set-up, not physical inputs of the pole network."""

SHAPES = ("raised_cosine", "triangle", "gaussian")  # excitation["shape"] codes of ``eigentone simulate``


def from_dataset(ds: Any, refine: int = 8) -> FieldData:
    """Convert a ``training.data.dataset.FieldDataset`` into ``FieldData``.

    The initial condition is the excitation function (shape, position, width, amplitude) sampled on a
    grid ``refine`` times finer than the field grid, so its sine transform is an accurate quadrature
    even when the excitation is narrow; without an excitation description it is ``fields[:, 0]``.
    """
    fields = np.asarray(ds.fields, dtype=np.float64)
    examples = fields.shape[0]
    kind = "plate" if fields.ndim == 4 else "string"
    params: dict[str, Any] = dict(ds.params or {})
    names, cols = [], []
    for name, values in params.items():
        col = _column(values, examples)
        if col is not None and name not in NOT_MODEL_INPUTS:
            names.append(name)
            cols.append(col)
    param_matrix = np.stack(cols, axis=1) if cols else np.zeros((examples, 0))
    lx = np.asarray(params.get("L", params.get("Lx", np.ones(examples))), dtype=np.float64)
    ly = np.asarray(params.get("Ly", lx), dtype=np.float64)
    length, length_y = float(np.median(lx)), float(np.median(ly))
    grid = _grid_fractions(ds.grid, kind, fields.shape, length, length_y)
    excitation = {k: np.asarray(v) for k, v in dict(ds.excitation or {}).items()}
    if {"kind", "position", "width", "amplitude"} <= set(excitation):
        if kind == "string":
            input_grid = np.linspace(0.0, 1.0, refine * (len(grid) - 1) + 1)
        else:
            input_grid = tuple(np.linspace(0.0, 1.0, refine * (len(g) - 1) + 1) for g in grid)
        u0, v0 = excitation_fields(excitation, kind, input_grid, lx, ly)
    else:
        input_grid, u0, v0 = None, fields[:, 0], np.zeros_like(fields[:, 0])
    px = np.asarray(params.get("pickup_x", 0.9 * lx), dtype=np.float64) / lx
    py = np.asarray(params.get("pickup_y", 0.5 * ly), dtype=np.float64) / ly
    pickup = (float(np.median(px)), float(np.median(py)))
    pickups = np.asarray(ds.pickups, dtype=np.float64) if getattr(ds, "pickups", None) is not None else None
    limit = np.asarray(params["modes"], dtype=np.int64) if "modes" in params else None
    return FieldData(kind, bool(ds.nonlinear), float(ds.sample_rate), fields, u0, v0, param_matrix, names, grid,
                     pickups, pickup, excitation, length, length_y, input_grid, limit)


def excitation_fields(excitation: dict[str, np.ndarray], kind: str, grid: Any, lx: np.ndarray,
                      ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Initial displacement and velocity (E, P) or (E, ny, nx) on ``grid`` (fractions) from the
    dataset's excitation description (plucks: displacement, strikes: velocity; plates separable)."""
    from training.physics.modal import shape_profile

    count = len(np.atleast_1d(excitation["position"]))
    codes = np.asarray(excitation.get("kind", np.zeros(count)), dtype=np.float64)
    shapes = np.asarray(excitation.get("shape", np.zeros(count)), dtype=np.float64)
    shape_shape = (count, len(grid)) if kind == "string" else (count, len(grid[1]), len(grid[0]))
    u0, v0 = np.zeros(shape_shape), np.zeros(shape_shape)
    for e in range(count):
        shape = SHAPES[int(shapes[e])]
        pos, width, amp = float(excitation["position"][e]), float(excitation["width"][e]), float(excitation["amplitude"][e])
        if kind == "string":
            profile = shape_profile(shape, grid * lx[e] - pos, width)
        else:
            pos_y = float(excitation["position_y"][e])
            profile = np.outer(shape_profile(shape, grid[1] * ly[e] - pos_y, width),
                               shape_profile(shape, grid[0] * lx[e] - pos, width))  # (ny, nx)
        code = int(codes[e])
        if code == 1:  # strike
            v0[e] = amp * profile
        elif code == 0:  # pluck
            u0[e] = amp * profile
        else:
            raise EigentoneError(f"excitation kind code {code} (noise) has no closed-form initial field; "
                                 "regenerate the dataset with plucks or strikes")
    return u0, v0


def _grid_fractions(grid: Any, kind: str, shape: tuple, length: float, length_y: float) -> Any:
    if kind == "string":
        g = np.asarray(grid, dtype=np.float64).reshape(-1) if grid is not None else np.linspace(0.0, 1.0, shape[-1])
        return g / g.max() if g.max() > 0 else g
    g = None if grid is None else np.asarray(grid, dtype=np.float64)
    if g is not None and g.ndim == 3:  # (ny, nx, 2) coordinates in m
        return g[0, :, 0] / g[0, :, 0].max(), g[:, 0, 1] / g[:, 0, 1].max()
    return np.linspace(0.0, 1.0, shape[-1]), np.linspace(0.0, 1.0, shape[-2])


def load_field_data(path: str | Path) -> FieldData:
    """Load a dataset file written by ``eigentone simulate``."""
    try:
        from training.data.dataset import load_dataset
    except ImportError as exc:  # pragma: no cover - the dataset module is part of the package
        raise EigentoneError(f"cannot read {path}: training.data.dataset is missing ({exc})") from exc
    if not Path(path).exists():
        raise EigentoneError(f"{path} not found: make one with `eigentone simulate string --out {path}`")
    return from_dataset(load_dataset(path))


def split_indices(examples: int, seed: int) -> dict[str, np.ndarray]:
    """80/10/10 train/val/test split (at least one example in each when possible)."""
    order = np.random.default_rng(seed).permutation(examples)
    n_test = max(1, examples // 10) if examples >= 3 else 0
    n_val = max(1, examples // 10) if examples >= 3 else 0
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :] if examples >= 3 else order}


# ----------------------------------------------------------------------------------------------
# model construction and modal initialisation
# ----------------------------------------------------------------------------------------------


def make_config(data: FieldData, modes: int | None, fourier_layers: int, modulation: bool) -> Any:
    from training.models.modal_fno import ModalFNOConfig

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


def prony_poles(coords: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-mode damped-sinusoid fit of modal coordinates ``coords`` (E, S, N).

    Least squares a[k+1] = p1 a[k] + p2 a[k-1]; r = sqrt(-p2), theta = arccos(p1 / 2r):
    sigma = -ln(r) fs, omega = theta fs. Returns sigma, omega, weight (E, N) (weight 0 where the
    fit is not a decaying oscillation or the mode carries no energy).
    """
    a0, a1, a2 = coords[:, :-2], coords[:, 1:-1], coords[:, 2:]  # (E, S-2, N)
    g11, g12, g22 = (a1 * a1).sum(1), (a1 * a0).sum(1), (a0 * a0).sum(1)
    h1, h2 = (a1 * a2).sum(1), (a0 * a2).sum(1)
    det = g11 * g22 - g12**2
    ok = det > 1e-30 * (g11 * g22 + 1e-300)
    det = np.where(ok, det, 1.0)
    p1 = (h1 * g22 - h2 * g12) / det
    p2 = (g11 * h2 - g12 * h1) / det
    r = np.sqrt(np.clip(-p2, 1e-12, None))
    cos_theta = p1 / (2 * r)
    ok &= (-p2 > 0) & (np.abs(cos_theta) < 1) & (r <= 1.0 + 1e-9)
    theta = np.arccos(np.clip(cos_theta, -1, 1))
    sigma = np.clip(-np.log(np.clip(r, 1e-12, 1.0)) * sample_rate, 1e-3, None)
    omega = theta * sample_rate
    energy = (coords**2).sum(1)  # (E, N)
    weight = np.where(ok & (energy > 1e-8 * energy.max(axis=1, keepdims=True)), 1.0, 0.0)
    return sigma, omega, weight


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
    sigma_est, omega_est, weight = prony_poles(coords, data.sample_rate)
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


def check_pinn(data: FieldData, modulation: bool, weight: float) -> None:
    """Raise EigentoneError (one line) unless a PDE residual loss of ``weight`` applies to ``data``."""
    from training.physics_residual import STRING_PDE_PARAMS

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


def pinn_loss(model: Any, u0: torch.Tensor, v0: torch.Tensor, params: torch.Tensor, grid: Any, duration: float,
              gen: torch.Generator, points: int = 64, mode_mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean(r^2) of the string PDE residual of the model's field at random collocation points.

    u0, v0 (B, P) on ``grid`` (fractions), params (B, F) named ``model.cfg.param_names``; per example
    ``points`` draws x ~ U(0, L) m and t ~ U(0, duration) s. The field is the model's own analytic
    expansion u = sum_n Re(z0_n e^{Lambda_n t}) sin(n pi x / L), differentiated by autograd.
    """
    from training.physics_residual import STRING_PDE_PARAMS, modal_field, string_pde_residual

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


def build_model(cfg: Any, data: FieldData) -> Any:
    from training.models.modal_fno import ModalFNO

    model = ModalFNO(cfg)
    model._trained_rate = data.sample_rate
    if model.ic is not None:
        model.ic.scale.fill_(float(np.abs(data.u0).max() + np.abs(data.v0).max() / (2 * math.pi * 100) + 1e-12))
    return model


# ----------------------------------------------------------------------------------------------
# prediction and evaluation
# ----------------------------------------------------------------------------------------------


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
    """Displacement at the pickup, (E, S), by the model's own modal interpolation of a field."""
    from training.models.modal_fno import sine_basis

    fwd, _ = model.basis(grid, torch.float64)
    coords = field.reshape(field.shape[0], field.shape[1], -1) @ fwd.numpy()  # (E, S, N)
    m = model.cfg.modes
    _, ix = sine_basis(np.array([pickup[0]]), m)
    phi = ix[:, 0] if model.cfg.kind == "string" else np.outer(sine_basis(np.array([pickup[1]]), m)[1][:, 0], ix[:, 0]).reshape(-1)
    return coords @ phi


def evaluate(model: Any, data: FieldData, horizon: int, *, audio_examples: int = 3) -> dict[str, Any]:
    """Field/pickup errors in-horizon and over the whole recording, plus audio metrics."""
    from training import metrics

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


def save_report_plot(path: Path, model: Any, data: FieldData, history: list[dict], horizon: int) -> None:
    """PNG: loss curve, field error over time, reference vs model pickup of one example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = predict(model, data.subset(np.arange(min(4, data.examples))), data.fields.shape[1])
    ref = data.fields[: pred.shape[0]]
    err_t = ((pred - ref) ** 2).reshape(pred.shape[0], pred.shape[1], -1).sum((0, 2)) / np.maximum(
        (ref**2).reshape(ref.shape[0], ref.shape[1], -1).sum((0, 2)), 1e-30)
    t = np.arange(pred.shape[1]) / data.sample_rate
    fig, axes = plt.subplots(3, 1, figsize=(8, 9))
    if history:
        axes[0].semilogy([h["step"] for h in history], [h["loss"] for h in history])
    axes[0].set(title="training loss (relative field MSE)", xlabel="step")
    axes[1].semilogy(t, np.maximum(err_t, 1e-12))
    axes[1].axvline(horizon / data.sample_rate, color="k", ls="--", label="training horizon")
    axes[1].set(title="normalised field error per time step (test examples)", xlabel="s")
    axes[1].legend()
    pick_ref = pickup_from_field(model, ref[:1], data.grid, data.pickup)[0]
    pick_pred = pickup_from_field(model, pred[:1], data.grid, data.pickup)[0]
    show = slice(0, min(len(t), int(0.02 * data.sample_rate) + horizon))
    axes[2].plot(t[show], pick_ref[show], label="reference")
    axes[2].plot(t[show], pick_pred[show], "--", label="modal FNO")
    axes[2].set(title="pickup displacement", xlabel="s", ylabel="m")
    axes[2].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


def train(data: FieldData, run_dir: str | Path, *, steps: int = 300, modes: int | None = None, seed: int = 0,
          horizon: float | None = None, lr: float = 1e-3, batch: int = 16, fourier_layers: int = 0,
          modulation: bool | None = None, quiet: bool = False, data_name: str = "",
          command: str = "", pole_lr_scale: float = 0.03, pinn_weight: float = 0.0) -> dict[str, Any]:
    """Train and evaluate; writes RUN_DIR/{config.json, model.pt, metrics.json, report.png}. Returns metrics.

    ``pinn_weight`` > 0 (linear strings) adds that weight times the PDE residual loss (``pinn_loss``)."""
    from training.trainer import seed_everything, train_loop

    seed_everything(seed)
    run_dir = Path(run_dir)
    n_total = data.fields.shape[1]
    h = round((horizon if horizon else n_total / data.sample_rate / 10) * data.sample_rate)
    h = max(8, min(h, n_total))
    modulation = data.nonlinear if modulation is None else modulation
    if pinn_weight:
        check_pinn(data, modulation, pinn_weight)
    split = split_indices(data.examples, seed)
    train_set = data.subset(split["train"])
    cfg = make_config(train_set, modes, fourier_layers, modulation)
    model = build_model(cfg, train_set)
    if not (run_dir / "checkpoint.pt").exists():
        init = initialise_poles(model, train_set, h, quiet=quiet)
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / "init.pt") as tmp:
            torch.save(model.state_dict(), tmp)
    else:
        init = json.loads((run_dir / "init.json").read_text()) if (run_dir / "init.json").exists() else {}
    _write_json(run_dir / "init.json", init)
    config = _run_config(model, train_set, h, seed, data_name, command)
    if pinn_weight:
        config["pinn_weight"] = pinn_weight
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "config.json", config)

    u0 = torch.as_tensor(train_set.u0, dtype=torch.float32)
    v0 = torch.as_tensor(train_set.v0, dtype=torch.float32)
    params = torch.as_tensor(train_set.params, dtype=torch.float32)
    target = torch.as_tensor(train_set.fields[:, :h], dtype=torch.float32)
    mask = mode_mask(model, train_set)
    times = torch.arange(h, dtype=torch.float32) / data.sample_rate
    gen = torch.Generator().manual_seed(seed)
    pinn_gen = torch.Generator().manual_seed(seed + 1)  # collocation points; leaves the batch draws unchanged
    in_grid = train_set.grid if train_set.input_grid is None else train_set.input_grid
    from training.losses import relative_mse

    def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.randperm(train_set.examples, generator=gen)[:batch]
        pred = model(u0[idx], v0[idx], params[idx], times, train_set.grid, sample_rate=data.sample_rate,
                     in_grid=train_set.input_grid, mode_mask=None if mask is None else mask[idx])
        loss = relative_mse(pred, target[idx])
        if not pinn_weight:
            return loss, {}
        residual = pinn_loss(model, u0[idx], v0[idx], params[idx], in_grid, h / data.sample_rate, pinn_gen,
                             mode_mask=None if mask is None else mask[idx])
        return loss + pinn_weight * residual, {"pinn_residual": float(residual.detach())}

    pole_params = [p for n, p in model.named_parameters() if n.startswith("poles.")]
    other = [p for n, p in model.named_parameters() if not n.startswith("poles.")]
    groups = [{"params": pole_params, "lr": lr * pole_lr_scale}, {"params": other, "lr": lr}]
    history = train_loop(model, step_loss, run_dir=run_dir, steps=steps, lr=groups, desc="train fno",
                         checkpoint_every=max(10, steps // 10), quiet=quiet)
    model.eval()
    val = data.subset(split["val"] if len(split["val"]) else split["train"])
    selection = select_on_validation(model, run_dir, val, h)
    if not quiet:
        print(f"validation field NMSE over the training horizon: modal initialisation {selection['val_nmse_init']:.3g}, "
              f"after training {selection['val_nmse_trained']:.3g}; keeping {selection['selected']}")
    test = data.subset(split["test"] if len(split["test"]) else split["train"])
    report = {**init, **selection, **evaluate(model, test, h), "test_examples": int(test.examples), "steps": steps}
    if data.kind == "string":
        report.update(parameter_generalisation(model, test))
    if pinn_weight:
        report.update(pinn_weight=pinn_weight, pinn_residual_mse=pinn_report(model, test, h / data.sample_rate, seed))
    _write_json(run_dir / "metrics.json", report)
    config["metrics"] = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    config["instrument"] = instrument_map(model, train_set)
    _write_json(run_dir / "config.json", config)
    save_report_plot(run_dir / "report.png", model, test, history, h)
    if not quiet:
        print(json.dumps(report, indent=2))
        print(f"wrote {run_dir / 'metrics.json'} and {run_dir / 'report.png'}")
    return report


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


def select_on_validation(model: Any, run_dir: Path, val: FieldData, horizon: int) -> dict[str, Any]:
    """Keep whichever of the closed-form initialisation (RUN_DIR/init.pt) and the trained weights has the
    lower validation field NMSE over the training horizon (never looks past the horizon); model.pt is
    rewritten to the choice."""
    from training import metrics

    ref = val.fields[:, :horizon]
    trained = metrics.field_nmse(predict(model, val, horizon), ref)
    init_path = run_dir / "init.pt"
    if not init_path.exists():
        return {"val_nmse_trained": trained, "val_nmse_init": float("nan"), "selected": "trained"}
    trained_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(torch.load(init_path, map_location="cpu", weights_only=True))
    initial = metrics.field_nmse(predict(model, val, horizon), ref)
    if initial < trained:
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        return {"val_nmse_trained": trained, "val_nmse_init": initial, "selected": "init"}
    model.load_state_dict(trained_state)
    return {"val_nmse_trained": trained, "val_nmse_init": initial, "selected": "trained"}


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


def instrument_map(model: Any, data: FieldData) -> dict[str, Any]:
    """How the exported instrument maps (note, velocity, position) onto the model (see ``InstrumentMap``).

    The pitch parameter is the varying training parameter with the largest positive d log omega_1 / d log p
    at the reference (the training set's geometric mean): tension for strings, thickness for plates.
    """
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
    exc = data.excitation
    codes = np.atleast_1d(exc.get("kind", np.zeros(1))).astype(float)
    shape_codes = np.atleast_1d(exc.get("shape", np.zeros(1))).astype(float)
    width = float(np.median(np.atleast_1d(exc.get("width", 0.05 * data.length))))
    amplitude = float(np.median(np.atleast_1d(exc.get("amplitude", 1e-3))))
    signal = data.pickups if data.pickups is not None else data.fields
    peak = float(np.median(np.abs(signal).reshape(signal.shape[0], -1).max(axis=1))) or 1.0
    return {
        "pitch_param": best, "reference": reference, "pitch_range": [lo / 100.0, hi * 100.0],
        "excitation": "strike" if np.median(codes) == 1 else "pluck", "shape": SHAPES[int(np.median(shape_codes))],
        "width": width / data.length, "width_y": width / data.length_y, "amplitude": amplitude,
        "pickup": list(data.pickup), "gain": 0.5 / peak, "grid": int(data.fields.shape[-1]),
    }


def _run_config(model: Any, data: FieldData, horizon: int, seed: int, data_name: str, command: str) -> dict[str, Any]:
    return {"family": "modal_fno", "model": asdict(model.cfg), "sample_rate": data.sample_rate,
            "horizon_samples": horizon, "seed": seed, "data": data_name, "command": command,
            "instrument": instrument_map(model, data), "note_range": [36, 84] if data.kind == "string" else [24, 96]}


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset file from `eigentone simulate`")
    parser.add_argument("--out", required=True, help="run directory (resumes if it holds a checkpoint)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    parser.add_argument("--modes", type=int, default=None, help="modes (strings) or modes per axis (plates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=float, default=None, help="training horizon in s (default: a tenth of the data)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam rate (poles: 0.03x)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pole-lr-scale", type=float, default=0.03, help="pole-network rate / --lr (default 0.03)")
    parser.add_argument("--fourier-layers", type=int, default=0, help="nonlinear sine-FNO blocks on the initial condition")
    parser.add_argument("--modulation", choices=["auto", "on", "off"], default="auto",
                        help="block-rate pole modulation (pitch glide); auto: on for nonlinear data")
    parser.add_argument("--pinn-weight", type=float, default=0.0,
                        help="weight of the string PDE residual loss at random collocation points (linear strings "
                             "only; default 0: off)")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    data = load_field_data(args.data)
    modulation = {"auto": None, "on": True, "off": False}[args.modulation]
    train(data, args.out, steps=args.steps, modes=args.modes, seed=args.seed, horizon=args.horizon, lr=args.lr,
          batch=args.batch, fourier_layers=args.fourier_layers, modulation=modulation, quiet=args.quiet,
          pole_lr_scale=args.pole_lr_scale, pinn_weight=args.pinn_weight, data_name=str(args.data),
          command=f"eigentone train fno {args.data} --out {args.out} --steps {args.steps}"
                  + (f" --pinn-weight {args.pinn_weight:g}" if args.pinn_weight else ""))
    return 0
