"""The deep Koopman family (``training/models/koopman.py``) on simulated string/plate fields, or on recordings
alone (``koopman_audio.py``: the encoder maps the controls to the initial latent state).

Training windows of ``--horizon`` samples start at random offsets; the loss is the Koopman triple of
Lusch et al. 2018 / Diaz et al. 2024 (multi-step prediction, reconstruction, latent consistency), each
a relative MSE, plus the pickup (relative MSE and a light MR-STFT). The evaluation rolls every
validation example out from its initial condition, in-horizon and to 4x the horizon.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from eigentone.errors import EigentoneError
from training.data.sources import TrainingData
from training.families import koopman_audio, recordings
from training.family import BundleInfo, Evaluation, Family, Graphs, Initialised, StepLoss
from training.losses import multi_resolution_stft_loss, relative_mse
from training.models.data_modes import check_one_instrument
from training.models.koopman import (
    ControlKoopman,
    ExciteGraph,
    FieldGraph,
    KoopmanConfig,
    KoopmanModel,
    ReadoutGraph,
    build_data_model,
    build_model,
)


def pickup_index(fields: np.ndarray, pickups: np.ndarray) -> int:
    """Flat grid index whose trajectory is closest to the pickup signal. fields (E, T, P), pickups (E, T)."""
    err = ((fields - pickups[:, :, None]) ** 2).sum(axis=(0, 1))
    return int(np.argmin(err))


def physics_prior(kind: str, params: dict):
    """Linear poles and pole-modulation coefficients from the physical parameters, as a function of the
    basis' mode numbers (N, dims) -> {"sigma", "omega", "alpha", "beta"} (each (N,)), or None.

    Every mode obeys M q'' + (d1 + d3 k^2) q' + K q + gamma k^2 P q = 0 (``training/physics``), so
    sigma = (d1 + d3 k^2) / (2 M), omega^2 = K / M - sigma^2, alpha = k^2 / M, beta = gamma k^2 / 2 with
    string: M = rho A, K = E I k^4 + T k^2, gamma = E A / 4, k = n pi / L;
    plate (Berger): M = rho h, K = D k^4, gamma = E h / (8 (1 - nu^2)), k^2 = (m pi/Lx)^2 + (n pi/Ly)^2.
    Per-example parameters are reduced to their median (fixed-instrument sets).
    """
    p = {k: float(np.median(v)) for k, v in dict(params or {}).items()}
    if kind == "string" and {"L", "T", "rho", "A", "E", "I", "d1", "d3"} <= p.keys():
        def k2_of(numbers):
            return (numbers[:, 0] * np.pi / p["L"]) ** 2
        mass, gamma = p["rho"] * p["A"], p["E"] * p["A"] / 4.0

        def stiffness(k2):
            return p["E"] * p["I"] * k2**2 + p["T"] * k2
    elif kind == "plate" and {"Lx", "Ly", "rho", "h", "E", "nu", "d1", "d3"} <= p.keys():
        def k2_of(numbers):
            return (numbers[:, 0] * np.pi / p["Lx"]) ** 2 + (numbers[:, 1] * np.pi / p["Ly"]) ** 2
        mass, gamma = p["rho"] * p["h"], p["E"] * p["h"] / (8.0 * (1.0 - p["nu"] ** 2))
        rigidity = p["E"] * p["h"] ** 3 / (12.0 * (1.0 - p["nu"] ** 2))

        def stiffness(k2):
            return rigidity * k2**2
    else:
        return None

    def prior(numbers: np.ndarray) -> dict[str, np.ndarray]:
        k2 = k2_of(np.asarray(numbers, np.float64))
        sigma = (p["d1"] + p["d3"] * k2) / (2.0 * mass)
        omega = np.sqrt(np.maximum(stiffness(k2) / mass - sigma**2, 1e-6))
        return {"sigma": sigma, "omega": omega, "alpha": k2 / mass, "beta": gamma * k2 / 2.0}

    return prior


def pluck_config(params: dict, excitation: dict, omega0: float, fields: np.ndarray) -> dict:
    """Excitation synthesis for the excite graph: Gaussian of the data's median width, amplitude range
    from the data (peak displacement in m for plucks, the recorded peak velocity in m/s for strikes)."""
    length = float(np.median((params or {}).get("L", (params or {}).get("Lx", 1.0))))
    exc = excitation or {}
    width = float(np.median(np.asarray(exc["width"], np.float64))) / length if "width" in exc else 0.05
    strike = "kind" in exc and bool(np.all(np.asarray(exc["kind"]) == 1))
    if strike and "amplitude" in exc:
        peaks = np.asarray(exc["amplitude"], np.float64)
    else:
        peaks = np.abs(fields[:, 0].reshape(fields.shape[0], -1)).max(axis=1)
    return {"note0": float(69 + 12 * np.log2(omega0 / (2 * np.pi) / 440.0)), "amp_min": float(peaks.min()),
            "amp_max": float(peaks.max()), "width": width, "kind": "strike" if strike else "pluck"}


def parameter_groups(model: KoopmanModel, lr: float) -> list[dict]:
    """Adam groups scaled to what each parameter means (Adam moves every weight by ~lr per step):
    poles and modulation (log-space, 1e-3 lr ~ 0.002 cents per step, so windows of a few hundred ms
    cannot trade long-term pitch for short-term fit), the analytic linear encoder (1e-2 lr, weights of
    order 1e-2), decoder mode shapes and pickup weights (1e-1 lr), the MLP corrections (lr)."""
    poles = [*model.poles.parameters(), *model.modulation.parameters()]
    chosen = {id(p) for p in [*poles, model.encoder.linear.weight, model.decoder.modes, model.readout.c0]}
    return [{"params": [p for p in poles if p.requires_grad], "lr": lr * 1e-3},
            {"params": [model.encoder.linear.weight], "lr": lr * 1e-2},
            {"params": [model.decoder.modes, model.readout.c0], "lr": lr * 1e-1},
            {"params": [p for p in model.parameters() if id(p) not in chosen], "lr": lr}]


def data_parameter_groups(model: KoopmanModel, lr: float) -> list[dict]:
    """Adam groups of a data-started model (``--init data``): its poles and pole law come from a noisy
    least-squares fit, so they move at the full rate (log-space: lr 1e-3 ~ 1.7 cents a step at most); the
    modal encoder and decoder shapes slowly (1e-2 lr); per-voice poles and MLP corrections at lr."""
    poles = [p for p in [*model.poles.parameters(), *model.modulation.parameters()] if p.requires_grad]
    linear = [model.encoder.linear.weight, model.decoder.modes, model.readout.c0]
    chosen = {id(p) for p in [*poles, *linear]}
    return [{"params": poles, "lr": lr}, {"params": linear, "lr": lr * 1e-2},
            {"params": [p for p in model.parameters() if id(p) not in chosen], "lr": lr}]


def make_data_step_loss(model: KoopmanModel, u: torch.Tensor, v: torch.Tensor, y: torch.Tensor, *, horizon: int,
                        batch: int, steps: int, seed: int, time_weight: float = 3.0, shoot: float = 0.0) -> StepLoss:
    """Closure for a data-started model: every window starts at the initial condition (the evaluation task,
    and what the per-voice poles are computed from), and grows over training (curriculum: H/8, H/4, H/2, H,
    a quarter of the steps each) so a window never starts longer than the pitch estimates can stay in phase.
    The loss is the relative field MSE with weights 1 + ``time_weight`` t / H growing over the window (a
    phase or decay error grows with time: weighting the late samples is what makes the fit extrapolate),
    plus a tenth of the pickup's. u, v: (E, T, P) fields and velocities; y: (E, T) pickups."""
    gen = torch.Generator().manual_seed(seed)
    horizon = min(horizon, u.shape[1])

    def step_loss(step: int):
        stage = min(3, 4 * step // max(steps, 1))
        window = max(16, horizon >> (3 - stage))
        ex = torch.randint(0, u.shape[0], (batch,), generator=gen)
        k0 = torch.randint(0, horizon - window + 1, (batch,), generator=gen)
        k0[: batch - round(shoot * batch)] = 0  # a share ``shoot`` of the windows starts later (multiple shooting)
        idx = k0[:, None] + torch.arange(window)[None, :]  # (B, W)
        weight = 1.0 + time_weight * torch.arange(window, dtype=u.dtype) / horizon  # (W,)
        out = model.predict(u[ex, k0], v[ex, k0], window)
        l_field = relative_mse(out["field"] * weight[:, None], u[ex[:, None], idx] * weight[:, None])
        l_pick = relative_mse(out["pickup"] * weight, y[ex[:, None], idx] * weight)
        return l_field + 0.1 * l_pick, {"field": float(l_field.detach()), "pickup": float(l_pick.detach()),
                                        "window": float(window)}

    return step_loss


def make_step_loss(model: KoopmanModel, u: torch.Tensor, v: torch.Tensor, y: torch.Tensor, *, horizon: int,
                   batch: int, stft_weight: float, seed: int) -> StepLoss:
    """Closure for ``train_loop``. u, v: (E, T, P) fields and velocities; y: (E, T) pickups."""
    gen = torch.Generator().manual_seed(seed)
    n_ex, n_t = u.shape[0], u.shape[1]
    horizon = min(horizon, n_t)
    n_cons = 8  # latent-consistency / reconstruction checkpoints per window

    def step_loss(step: int):
        ex = torch.randint(0, n_ex, (batch,), generator=gen)
        # half the windows start at the initial condition (the evaluation task), half anywhere
        k0 = torch.randint(0, max(1, n_t - horizon + 1), (batch,), generator=gen)
        k0[: batch // 2] = 0
        idx = k0[:, None] + torch.arange(horizon)[None, :]  # (B, H)
        u_win = u[ex[:, None], idx]  # (B, H, P)
        v_win = v[ex[:, None], idx]
        y_win = y[ex[:, None], idx]  # (B, H)
        out = model.predict(u_win[:, 0], v_win[:, 0], horizon)
        l_pred = relative_mse(out["field"], u_win)
        l_pick = relative_mse(out["pickup"], y_win)
        ks = torch.linspace(0, horizon - 1, n_cons).long()  # (C,)
        z_enc = model.encoder(u_win[:, ks].reshape(-1, u.shape[-1]),
                              v_win[:, ks].reshape(-1, u.shape[-1]) * model.config.velocity_scale)  # (B*C, N, 2)
        z_roll = out["z"][:, :, ks].transpose(1, 2).reshape(z_enc.shape)  # (B*C, N, 2)
        l_cons = relative_mse(z_enc, z_roll.detach()) + relative_mse(z_roll, z_enc.detach())
        l_enc = relative_mse(model.decoder(z_enc), u_win[:, ks].reshape(-1, u.shape[-1]))
        loss = l_pred + 0.1 * l_enc + 0.1 * l_cons + 0.1 * l_pick
        logs = {k: float(t.detach()) for k, t in {"pred": l_pred, "enc": l_enc, "cons": l_cons, "pickup": l_pick}.items()}
        if stft_weight > 0:
            l_stft = multi_resolution_stft_loss(out["pickup"], y_win, fft_sizes=(256, 512))
            loss = loss + stft_weight * l_stft
            logs["stft"] = float(l_stft.detach())
        return loss, logs

    return step_loss


@torch.no_grad()
def rollout_examples(model: KoopmanModel, fields: np.ndarray, n_samples: int, batch: int = 16,
                     at_rest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Roll every example out from its initial condition: fields (E, T, ...) -> (field, pickup).

    at_rest: the initial velocity is zero (plucks); otherwise it is estimated from the first two snapshots.
    """
    flat = torch.as_tensor(fields.reshape(fields.shape[0], fields.shape[1], -1), dtype=torch.float32)
    v0 = torch.zeros_like(flat[:, 0]) if at_rest else torch.as_tensor(model.estimate_velocity(
        flat[:, :2].numpy().astype(np.float64))[:, 0], dtype=torch.float32)
    outs_f, outs_y = [], []
    for i in range(0, flat.shape[0], batch):
        u0 = flat[i:i + batch, 0]
        out = model.predict(u0, v0[i:i + batch], n_samples)
        outs_f.append(out["field"].numpy())
        outs_y.append(out["pickup"].numpy())
    pred = np.concatenate(outs_f).reshape(fields.shape[0], n_samples, *fields.shape[2:])
    return pred, np.concatenate(outs_y)


def evaluate(model: KoopmanModel, fields: np.ndarray, pickups: np.ndarray, horizon: int, sample_rate: float,
             at_rest: bool = True) -> dict[str, float]:
    """Normalised field MSE / pickup metrics in-horizon [0, H) and over [0, min(4H, T))."""
    from training.metrics import field_nmse, log_spectral_distance, pickup_rel_mse

    n_long = min(4 * horizon, fields.shape[1])
    pred_f, pred_y = rollout_examples(model, fields, n_long, at_rest=at_rest)
    h = min(horizon, n_long)
    lsd = lambda p, r: float(np.mean([log_spectral_distance(a, b, n_fft=512) for a, b in zip(p, r)]))
    return {
        "horizon_samples": h, "long_samples": n_long, "examples": int(fields.shape[0]),
        "field_nmse_in_horizon": field_nmse(pred_f[:, :h], fields[:, :h]),
        "field_nmse_long": field_nmse(pred_f, fields[:, :n_long]),
        "field_nmse_beyond_horizon": field_nmse(pred_f[:, h:], fields[:, h:n_long]) if n_long > h else float("nan"),
        "pickup_rel_mse_in_horizon": pickup_rel_mse(pred_y[:, :h], pickups[:, :h]),
        "pickup_rel_mse_long": pickup_rel_mse(pred_y, pickups[:, :n_long]),
        "pickup_lsd_db_in_horizon": lsd(pred_y[:, :h], pickups[:, :h]),
        "pickup_lsd_db_long": lsd(pred_y, pickups[:, :n_long]),
    }


def _arrays(data: TrainingData) -> tuple[np.ndarray, np.ndarray, bool]:
    """fields (E, T, ...) and pickups (E, T) float32 of a field dataset, and whether every example starts at rest."""
    ds = data.dataset
    at_rest = np.asarray((ds.excitation or {}).get("kind", np.zeros(ds.examples)), np.float64) == 0  # plucks
    return np.asarray(ds.fields, np.float32), np.asarray(ds.pickups, np.float32), np.broadcast_to(at_rest, (ds.examples,))


class Koopman(Family):
    """Deep Koopman: encoder -> diagonal continuous-time latent poles (+ modulation) -> decoder / pickup."""

    name = "koopman"
    command = "koopman"
    default_threads = 1

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--latent", type=int, default=32, help="latent complex modes N")
        parser.add_argument("--horizon", type=int, default=1000, help="training window in samples")
        parser.add_argument("--batch", type=int, default=8)
        parser.add_argument("--hidden", type=int, default=128)
        parser.add_argument("--block", type=int, default=16, help="pole-modulation block in samples")
        parser.add_argument("--no-modulation", action="store_true",
                            help="plain linear latent dynamics (always so for a linear dataset)")
        parser.add_argument("--stft-weight", type=float, default=0.01)
        parser.add_argument("--init", choices=("physics", "data"), default="physics",
                            help="physics: sine basis, poles and pole law from the dataset's physical parameters "
                                 "(physics-informed); data: modes, poles and pole law found in the training fields "
                                 "alone (POD + DMD), per-voice poles, windows from the initial condition")
        parser.add_argument("--time-weight", type=float, default=3.0,
                            help="--init data: loss weights 1 + W t / horizon over a window (default 3)")
        parser.add_argument("--law", choices=("rank1", "matrix"), default="rank1",
                            help="--init data pole law: rank1 (the engine contract's, exportable) or matrix (every mode's "
                                 "frequency from every mode's energy, fitted to the fields; scored, not exportable)")
        parser.add_argument("--shoot", type=float, default=0.0,
                            help="--init data: share of the windows starting after the initial condition (default 0)")

    def default_steps(self, data: TrainingData) -> int:
        return 1500

    def initialise(self, data: TrainingData, options: argparse.Namespace) -> Initialised:
        if data.kind != "field":
            recs = data.subset("train")
            targets = recordings.analyse_training_notes(data, options.latent)
            model, info = koopman_audio.initialise(recs, targets, options.latent, options.hidden, options.block,
                                                   not options.no_modulation)
            return Initialised(model, koopman_audio.config_of(model, [r.note for r in recs]), info, targets=targets)
        fields, pickups, at_rest = _arrays(data)
        if fields.shape[0] < 2:
            raise EigentoneError(f"{data.path}: needs at least 2 examples, has {fields.shape[0]}")
        ds, tr, fs = data.dataset, data.split["train"], data.sample_rate
        flat = fields.reshape(fields.shape[0], fields.shape[1], -1)  # (E, T, P)
        p_idx = pickup_index(flat[tr[:8]], pickups[tr[:8]])
        info: dict[str, Any] = {}
        modulation = bool(ds.nonlinear) and not options.no_modulation  # a linear string's poles do not glide
        if options.law == "matrix" and options.init != "data":
            raise EigentoneError("--law matrix is a pole law found in the data: use it with --init data")
        if options.init == "data":  # nothing about the solver: the grid's span only sizes the playable pluck
            check_one_instrument(dict(ds.params or {}), data.path)
            model, info = build_data_model(fields[tr], fs, options.latent, modulation=modulation,
                                           hidden=options.hidden, block_size=options.block, pickup_index=p_idx,
                                           law=options.law)
            grid = np.asarray(ds.grid)
            params = {"L": float(grid.max() if grid.ndim == 1 else grid[..., 0].max())}  # x span, m
        else:
            params = dict(ds.params or {})
            model = build_model(fields[tr], fs, options.latent, modulation=modulation,
                                hidden=options.hidden, block_size=options.block, pickup_index=p_idx,
                                prior=physics_prior(ds.kind, params))
        omega0 = float(model.coefficients()["omega"][0].detach())
        model.config.pluck = pluck_config(params, dict(ds.excitation or {}), omega0, fields[tr])
        v = model.estimate_velocity(flat)  # (E, T, P) du/dt from consecutive snapshots
        v[at_rest, 0] = 0.0  # a pluck starts at rest: exact initial velocity
        targets = tuple(torch.as_tensor(a[tr], dtype=torch.float32) for a in (flat, v, pickups))
        return Initialised(model, asdict(model.config), info, targets=targets)

    def build(self, config: dict[str, Any]) -> nn.Module:
        if config.get("source") == "recordings":
            return koopman_audio.build(config)
        return KoopmanModel(KoopmanConfig(**config))

    def step_loss(self, fitted: Initialised, data: TrainingData, options: argparse.Namespace,
                  rng: np.random.Generator) -> StepLoss:
        if data.kind != "field":
            model = fitted.model
            return recordings.audio_loss(model, model.readout, data.subset("train"), fitted.targets,
                                         block_size=model.config.block_size, batch=min(options.batch, 4), rng=rng)
        u, v, y = fitted.targets
        if fitted.model.config.init == "data":
            steps = options.steps if options.steps is not None else self.default_steps(data)
            return make_data_step_loss(fitted.model, u, v, y, horizon=options.horizon, batch=options.batch,
                                       steps=steps, seed=options.seed, time_weight=options.time_weight,
                                       shoot=options.shoot)
        return make_step_loss(fitted.model, u, v, y, horizon=options.horizon, batch=options.batch,
                              stft_weight=options.stft_weight, seed=options.seed)

    def parameter_groups(self, model: nn.Module, options: argparse.Namespace) -> list[dict[str, Any]]:
        if isinstance(model, ControlKoopman):
            return koopman_audio.parameter_groups(model, options.lr)
        if model.config.init == "data":
            return data_parameter_groups(model, options.lr)
        return parameter_groups(model, options.lr)

    def validation_error(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> float | None:
        """Validation field relative MSE over the training window, from the initial condition: the trainer
        keeps the better of the closed-form start and the trained weights (as the modal FNO family does);
        recordings: none."""
        if data.kind != "field" or not len(data.split["val"]):
            return None
        fields, _, at_rest = _arrays(data)
        val = data.split["val"]
        horizon = min(options.horizon, fields.shape[1])
        pred, _ = rollout_examples(model, fields[val], horizon, at_rest=bool(np.all(at_rest[val])))
        return float(relative_mse(torch.as_tensor(pred), torch.as_tensor(fields[val, :horizon])))

    def evaluate(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> Evaluation:
        if data.kind != "field":
            graphs = Graphs(model, ReadoutGraph(model), None, None)
            return recordings.evaluate_notes(graphs, data.subset("test") or data.subset("train")[:2], data.sample_rate)
        fields, pickups, at_rest = _arrays(data)
        val = data.split["val"] if len(data.split["val"]) else data.split["train"]
        horizon = min(options.horizon, fields.shape[1])
        rest = bool(np.all(at_rest))
        metrics = evaluate(model, fields[val], pickups[val], horizon, data.sample_rate, at_rest=rest)
        n_long = metrics["long_samples"]
        pred_f, pred_y = rollout_examples(model, fields[val[:1]], n_long, at_rest=rest)
        ref = fields[val[:1], :n_long].reshape(1, n_long, -1)
        err = ((pred_f.reshape(1, n_long, -1) - ref) ** 2).sum(-1)[0] / max((ref**2).sum(-1).mean(), 1e-30)
        t = np.arange(n_long) / data.sample_rate
        pairs = [(f"example {val[0]}", pickups[val[0], :n_long].astype(np.float64), pred_y[0].astype(np.float64))]
        return Evaluation(metrics, data.sample_rate, pairs, (t, err, horizon / data.sample_rate))

    def predict_fields(self, model: nn.Module, dataset: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(model, ControlKoopman):
            raise NotImplementedError("a Koopman model trained on recordings has no field to predict")
        at_rest = np.asarray((dataset.excitation or {}).get("kind", np.zeros(dataset.examples)), np.float64)[index] == 0
        fields = np.asarray(dataset.fields, np.float32)[index]
        pred_f, pred_y = rollout_examples(model, fields, fields.shape[1], at_rest=bool(np.all(at_rest)))
        return pred_f.astype(np.float64), pred_y.astype(np.float64)

    def graphs(self, model: nn.Module, config: dict[str, Any]) -> Graphs:
        cfg = model.config
        if isinstance(model, ControlKoopman):
            info = BundleInfo(modes=cfg.latent, note_range=tuple(config["model"]["note_range"]),
                              trained_sample_rate=cfg.sample_rate, modulation=bool(cfg.modulation),
                              description=f"deep Koopman from recordings {config.get('data', '?')}, {cfg.latent} "
                                          "latent modes, block-rate pole modulation and readout")
            return Graphs(model.eval(), ReadoutGraph(model).eval(), None, info)
        if cfg.law != "rank1":
            raise EigentoneError(f"a Koopman model with the {cfg.law} pole law cannot be exported: the engine's contract "
                                 "holds a rank-one law; train with --law rank1 to export")
        note0 = float(cfg.pluck.get("note0", 59.0))
        info = BundleInfo(modes=cfg.latent, note_range=(round(note0) - 12, round(note0) + 12),
                          trained_sample_rate=cfg.sample_rate, modulation=bool(cfg.modulation),
                          description=f"deep Koopman {'plate' if len(cfg.grid_shape) == 2 else 'string'}, "
                                      f"{cfg.latent} latent modes, block-rate pole modulation and readout")
        return Graphs(ExciteGraph(model).eval(), ReadoutGraph(model).eval(), FieldGraph(model).eval(), info)
