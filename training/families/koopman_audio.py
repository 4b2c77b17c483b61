"""The deep Koopman family learning from recordings alone (``ControlKoopman``, ``training/models/koopman.py``).

No field is observed, so the encoder maps the controls (note, velocity, position) to the initial latent
state and the pickup is the block-rate readout of the latent state. Closed-form start from each note's
ESPRIT partials (``recordings.analyse``), all in the reference note's time scale s_e = 2^((note_e - note0)/12):

* poles: log omega0_n, log sigma0_n = the mean over the notes of log(omega_en / s_e), log(sigma_en / s_e), and
  the per-mode slopes of the residuals in x (the linear part of the pole correction);
* modulation (Kirchhoff-Carrier shape): alpha_n = a omega0_n^2, beta_m = (omega0_m / omega0_1)^2, so every
  partial's squared frequency rises by the factor 1 + a s^(gamma - 2) E, E = sum_m beta_m |z_m|^2; a and gamma
  by weighted least squares of log((f_early^2 - f_late^2) / (f_late^2 dE)) on log s over the gliding notes;
* the pole correction MLP: fitted to the partials (``recordings.fit_partials``);
* encoder: ridge least squares of the partial amplitude magnitudes on the features (x, velocity, position).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from training.data.audio import Recording
from training.families.recordings import NoteTargets, fit_partials
from training.models.koopman import ControlKoopman, ControlKoopmanConfig


def initialise(recs: list[Recording], targets: NoteTargets, latent: int, hidden: int, block_size: int,
               modulation: bool) -> tuple[ControlKoopman, dict[str, Any]]:
    """A ControlKoopman fitted to the notes in closed form; (model, info)."""
    notes = targets.controls[:, 0].astype(np.float64)
    note0 = float(np.median(notes))
    note_scale = max(float(notes.std()), 6.0)
    x = (notes - note0) / note_scale  # (R,)
    s = 2.0 ** ((notes - note0) / 12.0)  # (R,)
    n = latent
    log_w = np.log(2 * np.pi * targets.freqs0[:, :n] / s[:, None])  # (R, N) at the reference note
    log_s = np.log(targets.sigma[:, :n] / s[:, None])
    design = np.stack([np.ones_like(x), x], 1)  # (R, 2)
    if np.ptp(x) > 0:
        (w0, w1), (s0, s1) = (np.linalg.lstsq(design, v, rcond=None)[0] for v in (log_w, log_s))
    else:
        w0, s0, w1, s1 = log_w.mean(0), log_s.mean(0), np.zeros(n), np.zeros(n)
    omega0, sigma0 = np.exp(w0), np.exp(s0)
    mags = np.abs(targets.amps[:, :n]) * targets.found[:, :n]  # (R, N)
    amplitude = float(mags.max())
    beta = (omega0 / omega0[0]) ** 2
    glide_on = bool(np.max(targets.glide_cents) >= 1.0) if modulation else False
    a, gamma = _glide_law(targets, mags, sigma0, s, beta) if glide_on else (1e-30, 0.0)
    cfg = ControlKoopmanConfig(latent=n, sample_rate=recs[0].sample_rate, note0=note0, note_scale=note_scale,
                               amplitude=amplitude, hidden=hidden, block_size=block_size, modulation=glide_on)
    model = ControlKoopman(cfg, sigma0, omega0, a * omega0**2, beta)
    feats = np.stack([x, targets.controls[:, 1], targets.controls[:, 2]], 1)  # (R, 3)
    ridge = np.concatenate([feats, np.ones((len(x), 1))], 1)
    coef = np.linalg.solve(ridge.T @ ridge + 1e-3 * np.eye(4), ridge.T @ (mags / amplitude))  # (4, N)
    with torch.no_grad():
        model.alpha_exponent.fill_(gamma)
        model.pole_slope.weight[0::2, 0] = torch.as_tensor(w1, dtype=torch.float32)  # d_n = w1_n x
        model.pole_slope.weight[1::2, 0] = torch.as_tensor(s1, dtype=torch.float32)
        model.encoder.linear.weight.zero_()
        model.encoder.linear.bias.zero_()
        model.encoder.linear.weight[0::2] = torch.as_tensor(coef[:3].T, dtype=torch.float32)  # real parts
        model.encoder.linear.bias[0::2] = torch.as_tensor(coef[3], dtype=torch.float32)
    # inharmonicity changes with the note far more than a transposition follows (a string tuned by tension
    # stiffens relative to its pitch downwards): the pole correction learns it from the partials
    cents = fit_partials(model, list(model.pole_correction.parameters()), targets)
    return model, {"glide_scale": a, "glide_exponent": gamma, "note0": note0, "init_cents_rms": cents}


def _glide_law(targets: NoteTargets, mags: np.ndarray, sigma0: np.ndarray, s: np.ndarray, beta: np.ndarray
               ) -> tuple[float, float]:
    """(a, gamma) of the relative glide (f_early^2 - f_late^2) / f_late^2 = a s^(gamma - 2) (E(t_e) - E(t_l))."""
    sigma = sigma0[None, :] * s[:, None]  # (R, N) transposed decays

    def energy(t: np.ndarray) -> np.ndarray:
        return (beta * mags**2 * np.exp(-2 * sigma * t[:, None])).sum(1)

    drop = energy(targets.early_s) - energy(targets.late_s)
    ratio = (targets.f0_early**2 - targets.f0_late**2) / targets.f0_late**2
    use = (targets.glide_cents >= 0.5) & (drop > 0) & (ratio > 0)
    if not use.any():
        return 1e-30, 0.0
    y, w = np.log(ratio[use] / drop[use]), targets.glide_cents[use]
    if use.sum() >= 2 and np.ptp(np.log(s[use])) > 0.1:
        design = np.stack([np.ones(use.sum()), np.log(s[use])], 1) * w[:, None]
        log_a, slope = np.linalg.lstsq(design, y * w, rcond=None)[0]
        return float(np.exp(log_a)), float(slope + 2.0)
    # one gliding note: a string tuned by tension (alpha fixed, glide ~ 1 / s^2)
    return float(np.exp(np.average(y + 2.0 * np.log(s[use]), weights=w))), 0.0


def config_of(model: ControlKoopman, notes: list[float]) -> dict[str, Any]:
    """The run config of a recordings-trained Koopman model (``build`` reads it)."""
    low, high = min(notes), max(notes)
    return {**asdict(model.config), "note_range": [int(max(0, np.floor(low - 12))), int(min(127, np.ceil(high + 12)))]}


def build(config: dict[str, Any]) -> ControlKoopman:
    """An untrained ControlKoopman of a run config."""
    return ControlKoopman(ControlKoopmanConfig(**{k: v for k, v in config.items() if k != "note_range"}))


def parameter_groups(model: ControlKoopman, lr: float) -> list[dict]:
    """Adam groups: poles, modulation and the linear pole slopes move slowly (lr / 100: a regression in cents
    refines a closed-form fit), the linear encoder at lr / 10, the MLP corrections and readout at lr."""
    slow = [*model.poles.parameters(), *model.modulation.parameters(), model.alpha_exponent, *model.pole_slope.parameters()]
    medium = [*model.encoder.linear.parameters()]
    chosen = {id(p) for p in [*slow, *medium]}
    return [{"params": [p for p in slow if p.requires_grad], "lr": lr * 1e-2},
            {"params": medium, "lr": lr * 1e-1},
            {"params": [p for p in model.parameters() if id(p) not in chosen], "lr": lr}]
