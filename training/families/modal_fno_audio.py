"""The modal FNO learning from recordings alone: its field stays internal and is read out at a pickup.

The operator is the one of ``training/models/modal_fno.py`` on a unit-length string (wavenumbers
k_n = n pi): its pole network reads one physical parameter, the note's fundamental ``f0`` (Hz, log
standardised), and gives the dispersion law omega_n^2 = c1 k^2 + c2 k^4 - sigma^2, sigma = s0 + s2 k^2 and
the Kirchhoff-Carrier modulation alpha_n = e^q k_n^2, beta_m = k_m^2. A note is played exactly as an
exported bundle plays it, through ``ExciteGraph``: Newton steps set f0 so that omega_1 sits at the note
(plus the recordings' tuning), the velocity scales a raised-cosine pluck at the position control, its
sine transform and the learned per-mode lifting g_n give z0, and the field's displacement at the pickup
(0.12 of the length) is the output. Nothing of the field is observed: only the pickup audio.

Closed-form start (``initialise``), from each note's ESPRIT partials (``recordings.analyse``):
c1, c2, s0, s2 per note by least squares, their logs affine in the standardised log f0 (one note: the
scaling law of a string tuned by tension, c ~ f0^2, s ~ f0), then the whole pole network fitted to the
partials (``recordings.fit_partials``); g_n by least squares onto the
partial amplitude magnitudes (phase-blind: see ``recordings.audio_loss``); e^q from the fundamentals' glides, (2 pi f_early)^2 - (2 pi f_late)^2 = e^q k_1^2 dE.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from eigentone.errors import EigentoneError
from training.data.audio import Recording
from training.families.recordings import NoteTargets, fit_partials, tuning_cents
from training.models.modal_fno import ExciteGraph, InstrumentMap, ModalFNO, ModalFNOConfig

PICKUP = 0.12
"""Pickup position along the internal string, fraction of its length."""
PLUCK_WIDTH = 0.05
"""Raised-cosine pluck width, fraction of the length (the per-mode lifting g_n absorbs the real shape)."""
PLUCK_AMPLITUDE = 1e-3
"""Pluck peak at velocity 1, m (a nominal scale: g_n and e^q absorb the true one)."""
FIELD_POINTS = 33


def _dispersion_fits(targets: NoteTargets) -> np.ndarray:
    """(R, 4) per note: c1, c2 (omega^2 + sigma^2 = c1 k^2 + c2 k^4) and s0, s2 (sigma = s0 + s2 k^2), least
    squares in relative error over the found harmonics (k = n pi), floored positive."""
    n_modes = targets.freqs0.shape[1]
    k2 = (np.pi * np.arange(1, n_modes + 1)) ** 2
    coefs = np.zeros((len(targets.freqs0), 4))
    for e in range(len(coefs)):
        sel = targets.found[e] & (targets.freqs0[e] > 0)
        if sel.sum() < 2:
            raise EigentoneError(f"note {targets.controls[e, 0]:.1f}: fewer than two harmonics found; is it a string?")
        omega, sigma = 2 * np.pi * targets.freqs0[e, sel], targets.sigma[e, sel]
        target = omega**2 + sigma**2
        c, *_ = np.linalg.lstsq(np.stack([k2[sel], k2[sel] ** 2], 1) / target[:, None], np.ones(sel.sum()), rcond=None)
        s, *_ = np.linalg.lstsq(np.stack([np.ones(sel.sum()), k2[sel]], 1) / sigma[:, None], np.ones(sel.sum()), rcond=None)
        floor = 1e-9 * np.median(target / k2[sel])
        coefs[e] = [max(c[0], floor), max(c[1], floor / k2[sel].max()), max(s[0], 1e-6),
                    max(s[1], 1e-9 * sigma.max() / k2[sel].max())]
    return coefs


def initialise(recs: list[Recording], targets: NoteTargets, n_modes: int, modulation: bool | None,
               block_size: int = 16) -> tuple[RecordedFNO, dict[str, Any], dict[str, Any]]:
    """A modal FNO and its instrument map fitted to the notes in closed form; (model, imap dict, info)."""
    f0 = targets.f0_late
    log_f0 = np.log(f0)
    single = np.ptp(log_f0) < 1e-6
    std = 1.0 if single else float(log_f0.std())
    glides = targets.glide_cents
    modulation = bool(np.max(glides) >= 1.0) if modulation is None else modulation
    cfg = ModalFNOConfig(kind="string", modes=n_modes, param_names=["f0"], param_log=[True],
                         param_mean=[float(log_f0.mean())], param_std=[std],
                         param_min=[float(f0.min()) / (2.0 if single else 1.0)],
                         param_max=[float(f0.max()) * (2.0 if single else 1.0)],
                         length=1.0, modulation=modulation, block_size=block_size)
    model = ModalFNO(cfg)
    model._trained_rate = recs[0].sample_rate
    feats = ((log_f0 - log_f0.mean()) / std)[:, None]  # (R, 1)
    logs = np.log(_dispersion_fits(targets))  # (R, 4)
    if single:  # one note: transpose like a string tuned by tension (c1, c2 ~ f0^2, s0, s2 ~ f0)
        weight, bias = np.array([[2.0], [2.0], [1.0], [1.0]]) * std, logs[0]
    else:
        sol, *_ = np.linalg.lstsq(np.concatenate([feats, np.ones_like(feats)], 1), logs, rcond=None)
        weight, bias = sol[:1].T, sol[1]
    with torch.no_grad():
        model.poles.affine.weight.zero_()
        model.poles.affine.weight[:4] = torch.as_tensor(weight, dtype=torch.float32)
        model.poles.affine.bias.copy_(torch.as_tensor([*bias, 0.0], dtype=torch.float32))
    imap = {"pitch_param": "f0", "reference": [float(np.exp(log_f0.mean()))],
            "pitch_range": [cfg.param_min[0] / 100.0, cfg.param_max[0] * 100.0], "excitation": "pluck",
            "shape": "raised_cosine", "width": PLUCK_WIDTH, "width_y": PLUCK_WIDTH, "amplitude": PLUCK_AMPLITUDE,
            "pickup": [PICKUP, 0.5], "gain": 1.0, "grid": FIELD_POINTS, "tuning_cents": tuning_cents(targets)}
    recorded = RecordedFNO(model, imap)
    excite = recorded.excite
    controls = torch.tensor(targets.controls)
    f0_params = torch.tensor(f0[:, None], dtype=torch.float32)  # the pole network at each note's own f0 (what the
    cents = fit_partials(lambda _: model.poles(f0_params), list(model.poles.parameters()), targets)  # Newton finds)
    a = np.abs(targets.amps[:, :n_modes]) * targets.found[:, :n_modes]
    with torch.no_grad():  # the per-mode lifting g_n: least squares of the pickup amplitude magnitudes
        m = np.abs(_pickup(excite(controls)))[:, :n_modes]  # (R, N), with g = 1
    g = (m * a).sum(0) / np.maximum((m**2 * targets.found[:, :n_modes]).sum(0), 1e-30)
    level = float(np.median(g[g > 0])) if np.any(g > 0) else 1.0  # into the pluck amplitude, so g_n ~ 1
    imap["amplitude"] *= level
    g = g / level
    recorded = RecordedFNO(model, imap)
    excite = recorded.excite
    with torch.no_grad():
        model.gain.copy_(torch.as_tensor(np.stack([g, np.zeros_like(g)], -1), dtype=torch.float32))
    info = {"init_cents_rms": cents, "init_partial_rms": float(np.sqrt(np.mean((m * g * level - a) ** 2) / np.mean(a**2)))}
    if modulation:
        scale = _modulation_scale(excite, controls, targets)
        with torch.no_grad():
            model.poles.affine.bias[4] = math.log(scale)
        info["modulation_scale"] = scale
    return recorded, imap, info


def _pickup(out: dict[str, torch.Tensor]) -> np.ndarray:
    """(V, N) complex c_n z0_n of excite outputs."""
    c = out["c"][..., 0].double().numpy() + 1j * out["c"][..., 1].double().numpy()
    return c * (out["z0"][..., 0].double().numpy() + 1j * out["z0"][..., 1].double().numpy())


def _modulation_scale(excite: ExciteGraph, controls: torch.Tensor, targets: NoteTargets) -> float:
    """e^q by least squares over the notes of (2 pi f_early)^2 - (2 pi f_late)^2 = e^q k_1^2 (E(t_e) - E(t_l)),
    E(t) = sum_m k_m^2 |z_m(0)|^2 e^{-2 sigma_m t} (glides below 0.5 cents count as none)."""
    with torch.no_grad():
        out = excite(controls)
    z2 = (out["z0"] ** 2).sum(-1).double().numpy()  # (R, N)
    k2 = out["mod_beta"].double().numpy()  # (R, N) = k^2
    sigma = out["sigma"].double().numpy()

    def energy(t: np.ndarray) -> np.ndarray:
        return (k2 * z2 * np.exp(-2 * sigma * t[:, None])).sum(1)

    glide = (2 * np.pi) ** 2 * (targets.f0_early**2 - targets.f0_late**2)
    glide = np.where(targets.glide_cents >= 0.5, glide, 0.0)
    drop = k2[:, 0] * (energy(targets.early_s) - energy(targets.late_s))
    return max(float(np.sum(glide * drop) / max(np.sum(drop**2), 1e-300)), 1e-30)


def instrument_map(imap: dict[str, Any]) -> InstrumentMap:
    """The InstrumentMap of a JSON imap dict."""
    return InstrumentMap(**{**imap, "pickup": tuple(imap["pickup"]), "pitch_range": tuple(imap["pitch_range"])})


def excite_graph(model: ModalFNO, imap: dict[str, Any]) -> ExciteGraph:
    """The excite module of a recordings-trained modal FNO."""
    return ExciteGraph(model, instrument_map(imap))


class RecordedFNO(nn.Module):
    """A modal FNO trained on recordings together with how the controls drive it: the module is its own excite
    graph (controls (V, 4) -> the contract's outputs), so training renders exactly what export writes."""

    def __init__(self, fno: ModalFNO, imap: dict[str, Any]):
        super().__init__()
        self.fno = fno
        self.excite = excite_graph(fno, imap)

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.excite(controls)


def config_of(model: RecordedFNO, imap: dict[str, Any], sample_rate: float, notes: list[float]) -> dict[str, Any]:
    """The run config of a recordings-trained modal FNO (``build`` reads it)."""
    low, high = min(notes), max(notes)
    return {"architecture": asdict(model.fno.cfg), "sample_rate": sample_rate, "excitation": imap,
            "note_range": [int(max(0, math.floor(low - 12))), int(min(127, math.ceil(high + 12)))],
            "source": "recordings"}


def build(config: dict[str, Any]) -> RecordedFNO:
    """An untrained RecordedFNO of a run config's architecture."""
    fno = ModalFNO(ModalFNOConfig(**config["architecture"]))
    fno._trained_rate = float(config["sample_rate"])
    return RecordedFNO(fno, config["excitation"])
