"""The diagonal SSM family (S4D/LRU style, ``training/models/diag_ssm.py``): fits from data, losses, evaluation.

DATA decides the model:
  * field dataset (``.h5`` from ``eigentone simulate``) -> FieldSSM (field + pickup from the initial condition)
  * one WAV/FLAC file                                  -> RecordingSSM (transposes the note)
  * a folder of labelled WAV/FLAC notes                -> ConditionedSSM (plays any note in range)

Every kind starts from a high-resolution modal analysis (ESPRIT, ``training/fits.py``) and is then
refined by gradient descent on the contract's closed-form rollout (``eigentone.contract.torch_twin``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eigentone.contract.reference import hz_to_midi
from eigentone.contract.torch_twin import modal_readout, modal_trajectory
from eigentone.errors import EigentoneError
from training import metrics as M
from training.data.audio import Recording
from training.data.sources import TrainingData
from training.family import BundleInfo, Evaluation, Family, Graphs, Initialised, StepLoss
from training.fits import estimate_f0, harmonic_targets, strong_partials
from training.losses import multi_resolution_stft_loss, relative_mse
from training.modal_analysis import ModalEstimate, analyse_recording, esprit, significant_partials
from training.models.diag_ssm import ConditionedSSM, FieldReadout, FieldSSM, RecordingSSM
from training.report import controls_tensor, render_contract

DEFAULT_MODES = 48
RECORDING_MODES = 128
"""Modes of a single-recording fit: every partial within 40 dB of the strongest, pairs and noise skirts included."""

MODEL_KINDS = {"field": "field", "recording": "recording", "recordings": "conditioned"}
"""TrainingData kind -> model kind (stored in the run config)."""


def _note_of(rec: Recording, base_note: float) -> float:
    return rec.note if np.isfinite(rec.note) else base_note


def note_range(notes: list[float]) -> list[int]:
    """Playable range of a model trained on ``notes``: an octave beyond the lowest and highest, inside MIDI 0..127."""
    return [int(max(0, math.floor(min(notes) - 12))), int(min(127, math.ceil(max(notes) + 12)))]


# ---------------------------------------------------------------- one recording


def fit_recording(rec: Recording, n_modes: int) -> tuple[RecordingSSM, dict[str, Any]]:
    """A RecordingSSM from ``analyse_recording``: subband-ESPRIT modes and the attack residual."""
    x = rec.audio.astype(np.float64)
    try:
        analysis = analyse_recording(x, rec.sample_rate, n_modes)
    except ValueError as exc:
        raise EigentoneError(f"{rec.path}: {exc}; is it a plucked or struck note?") from None
    est = analysis.partials
    f0 = estimate_f0(est, rec.note)
    base_note = rec.note if np.isfinite(rec.note) else float(hz_to_midi(f0))
    model = RecordingSSM(est.freqs_hz.size, base_note=base_note, base_velocity=rec.velocity,
                         attack_samples=analysis.attack.size)
    model.poles.set_(est.sigma, 2 * np.pi * est.freqs_hz)
    with torch.no_grad():
        model.amplitude.copy_(torch.tensor(np.stack([est.amplitudes.real, est.amplitudes.imag], -1), dtype=torch.float32))
        model.attack.copy_(torch.tensor(analysis.attack, dtype=torch.float32))
    return model, {"f0_hz": f0, "base_note": base_note, "attack_samples": int(analysis.attack.size)}


def render_recording(model: nn.Module, rec: Recording, base_note: float, attack: bool = True) -> np.ndarray:
    """The model's note for ``rec`` (its labels), as long as the recording, float64 (samples,); its attack
    component added at the recording's rate when it has one and ``attack``."""
    with torch.no_grad():
        out = model(controls_tensor(_note_of(rec, base_note), rec.velocity, rec.position))
    y = render_contract(out, rec.sample_rate, rec.audio.size)[0]
    if attack and "attack" in out:
        table = out["attack"][0].double().numpy()[: y.size]
        y[: table.size] += table
    return y


def audio_step_loss(model: nn.Module, recs: list[Recording], crop: int, rng: np.random.Generator) -> StepLoss:
    """Closure: MR-STFT + time-domain relative MSE on a random crop of a random recording."""
    targets = [torch.tensor(r.audio, dtype=torch.float32) for r in recs]

    def step_loss(step: int):
        i = int(rng.integers(len(recs)))
        rec, y = recs[i], targets[i]
        n = min(crop, y.numel())
        # early crops more often: that is where most of the energy is
        start = int(rng.integers(0, max(1, y.numel() - n) + 1) * rng.random() ** 2)
        times = (start + torch.arange(n, dtype=torch.float32)) / rec.sample_rate
        out = model(controls_tensor(_note_of(rec, float(getattr(model, "base_note", 60.0))), rec.velocity, rec.position))
        pred = modal_readout(out["sigma"], out["omega"], out["z0"], out["c"], times)  # (1, n)
        ref = y[start : start + n][None]
        spec = multi_resolution_stft_loss(pred, ref)
        time = relative_mse(pred, ref)
        return time + 0.1 * spec, {"mrstft": float(spec.detach()), "rel_mse": float(time.detach())}

    return step_loss


# ---------------------------------------------------------------- conditioned (folder of notes)


def fit_conditioned(recs: list[Recording], n_modes: int, hidden: int = 32) -> tuple[ConditionedSSM, dict[str, Any]]:
    """ConditionedSSM plus per-recording ESPRIT targets (regression stage)."""
    notes = np.array([r.note for r in recs])
    model = ConditionedSSM(n_modes, note_centre=float(notes.mean()), note_scale=max(float(notes.std()), 6.0), hidden=hidden)
    targets = []
    for rec in recs:
        est = strong_partials(rec.audio.astype(np.float64), rec.sample_rate, 2 * n_modes)
        f0 = estimate_f0(est, rec.note)
        targets.append(harmonic_targets(est, f0, n_modes))
    freqs = torch.tensor(np.stack([t[0] for t in targets]), dtype=torch.float32)  # (R, N)
    sig = torch.tensor(np.stack([t[1] for t in targets]), dtype=torch.float32).clamp_min(1e-2)  # (R, N)
    amps = np.stack([t[2] for t in targets])
    amps = torch.tensor(np.stack([amps.real, amps.imag], -1), dtype=torch.float32)  # (R, N, 2)
    found = torch.tensor(np.stack([t[3] for t in targets]))  # (R, N)
    b = float(np.exp(np.mean(np.log([t[4] for t in targets]))))
    with torch.no_grad():  # start at the mean inharmonicity and mean decays
        last = model.pitch_net[-1]
        last.weight.mul_(0.1)
        last.bias.zero_()
        last.bias[1] = math.log(b)
        model.decay_net[-1].weight.mul_(0.1)
        model.decay_net[-1].bias.copy_(sig.log().mean(0))  # found decays and extrapolated ones
    data = {"freqs": freqs, "sigma": sig, "amps": amps, "found": found,
            "controls": torch.cat([controls_tensor(r.note, r.velocity, r.position) for r in recs])}
    return model, data


def conditioned_step_loss(model: ConditionedSSM, data: dict[str, torch.Tensor], recs: list[Recording], crop: int,
                          rng: np.random.Generator) -> StepLoss:
    """Closure: regression to ESPRIT partials (cents, log decay, amplitude) + audio loss on a random note."""
    audio = audio_step_loss(model, recs, crop, rng)
    mask = data["found"].float()
    energy = (data["amps"] ** 2).sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)  # (R, 1, 1)

    def step_loss(step: int):
        out = model(data["controls"])
        pred_f = out["omega"] / (2 * math.pi)
        cents = 1200 * torch.log2(pred_f / data["freqs"])  # (R, N)
        pitch = (mask * cents**2).sum() / mask.sum()
        weight = mask + 0.25 * (1.0 - mask)  # unfound harmonics: extrapolated decays, lightly weighted
        decay = (weight * (out["sigma"].log() - data["sigma"].log()) ** 2).sum() / weight.sum()
        amp = (((out["z0"] - data["amps"]) ** 2) / energy).sum(dim=(1, 2)).mean()
        reg = 1e-2 * pitch + decay + amp
        logs = {"cents_rms": float(pitch.detach().sqrt()), "decay": float(decay.detach()), "amp": float(amp.detach())}
        if step % 4 == 0:  # audio refinement every few steps keeps a step cheap
            audio_loss, audio_logs = audio(step)
            logs.update(audio_logs)
            return reg + 0.1 * audio_loss, logs
        return reg, logs

    return step_loss


# ---------------------------------------------------------------- field data


def _normalised_grid(grid: np.ndarray, points: int) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64).reshape(points, -1)[:, 0]
    span = g.max() - g.min()
    return (g - g.min()) / span if span > 0 else g


def pluck_description(ds, u0: np.ndarray) -> tuple[int, float, float]:
    """(shape code, width as a fraction of the length, median peak) of the dataset's plucks, for the excite graph.

    From ``ds.excitation`` (shape, width, amplitude) when present, else estimated from the initial fields u0 (E, P).
    """
    exc = getattr(ds, "excitation", {}) or {}
    grid = np.asarray(ds.grid, dtype=np.float64).reshape(u0.shape[1], -1)[:, 0]
    length = float(grid.max() - grid.min()) or 1.0
    if all(k in exc for k in ("shape", "width", "amplitude")):
        return int(np.median(exc["shape"])), float(np.median(exc["width"])) / length, float(np.median(exc["amplitude"]))
    half = np.median([(np.abs(u) >= 0.5 * np.abs(u).max()).sum() for u in u0]) / max(u0.shape[1] - 1, 1)
    return 0, 2.0 * half, float(np.median(np.abs(u0).max(axis=1)))


def fit_field(ds, n_modes: int, train_idx: np.ndarray) -> tuple[FieldSSM, dict[str, Any]]:
    """FieldSSM initialised in closed form: ESPRIT poles, then least squares for C, z0, encoder and pickup."""
    fields = np.asarray(ds.fields, dtype=np.float64)
    examples, samples = fields.shape[:2]
    field_shape = fields.shape[2:]
    flat = fields.reshape(examples, samples, -1)[train_idx]  # (E, T, P)
    points = flat.shape[2]
    fs = float(ds.sample_rate)
    rng = np.random.default_rng(0)
    probe = np.einsum("etp,ep->t", flat[: min(8, len(flat))], rng.standard_normal((min(8, len(flat)), points)))
    est = significant_partials(esprit(probe, fs, max_order=min(4 * n_modes, 300), rel_threshold=1e-10), 1e-6)
    keep = (est.sigma > 0) & (est.freqs_hz < 0.49 * fs)
    est = ModalEstimate(est.freqs_hz[keep], est.sigma[keep], est.amplitudes[keep]).strongest(n_modes)
    n = est.freqs_hz.size
    t = np.arange(samples) / fs
    poles = -est.sigma + 2j * np.pi * est.freqs_hz  # (N,)
    basis = np.exp(np.outer(t, poles))  # (T, N)
    design = np.concatenate([basis.real, -basis.imag], axis=1)  # (T, 2N): Re(a p^t) = a_re Re - a_im Im
    coef = np.linalg.lstsq(design, flat.transpose(1, 0, 2).reshape(samples, -1), rcond=None)[0]  # (2N, E*P)
    amp = (coef[:n] + 1j * coef[n:]).reshape(n, len(train_idx), points)  # (N, E, P)
    z0 = np.zeros((len(train_idx), n), complex)
    readout = np.zeros((n, points), complex)
    for k in range(n):  # rank-1 factor: amp[k] = z0[:, k] outer C[k]
        u, s, vh = np.linalg.svd(amp[k], full_matrices=False)
        z0[:, k], readout[k] = u[:, 0] * s[0], vh[0]
    u0 = flat[:, 0, :]  # (E, P)
    lam = 1e-8 * np.trace(u0.T @ u0) / points
    encoder = np.linalg.solve(u0.T @ u0 + lam * np.eye(points), u0.T @ z0).T  # (N, P): z0 = u0 @ encoder.T
    pick = np.asarray(ds.pickups, dtype=np.float64)[train_idx]  # (E, T)
    sub = slice(0, min(32, len(train_idx)))
    traj = z0[sub, :, None] * basis.T[None]  # (e, N, T)
    design = np.concatenate([traj.real, -traj.imag], axis=1).transpose(0, 2, 1).reshape(-1, 2 * n)  # (e*T, 2N)
    cp = np.linalg.lstsq(design, pick[sub].reshape(-1), rcond=None)[0]
    shape, width, amplitude = pluck_description(ds, u0)
    f0 = float(est.freqs_hz.min())
    model = FieldSSM(n, torch.tensor(_normalised_grid(np.asarray(ds.grid), points)), tuple(field_shape),
                     pluck_width=width, pluck_amplitude=amplitude, base_note=float(hz_to_midi(f0)), pluck_shape=shape)
    model.poles.set_(est.sigma, 2 * np.pi * est.freqs_hz)

    def pairs(a):
        return torch.tensor(np.stack([a.real, a.imag], -1), dtype=torch.float32)

    with torch.no_grad():
        model.encoder.copy_(pairs(encoder))
        model.field_readout.copy_(pairs(readout))
        model.pickup.copy_(pairs(cp[:n] + 1j * cp[n:]))
    return model, {"f0_hz": f0}


def field_step_loss(model: FieldSSM, ds, train_idx: np.ndarray, batch: int, rng: np.random.Generator) -> StepLoss:
    """Closure: relative field MSE + relative pickup MSE on a random batch of examples, full training length."""
    fields = torch.tensor(np.asarray(ds.fields, dtype=np.float32)).reshape(ds.fields.shape[0], ds.fields.shape[1], -1)
    pickups = torch.tensor(np.asarray(ds.pickups, dtype=np.float32))
    times = torch.arange(fields.shape[1], dtype=torch.float32) / float(ds.sample_rate)

    def step_loss(step: int):
        idx = torch.as_tensor(rng.choice(train_idx, size=min(batch, len(train_idx)), replace=False))
        u = fields[idx]  # (B, T, P)
        pred_u, pred_y = predict_field(model, u[:, 0], times)
        lf, lp = relative_mse(pred_u, u), relative_mse(pred_y, pickups[idx])
        return lf + lp, {"field": float(lf.detach()), "pickup": float(lp.detach())}

    return step_loss


def predict_field(model: FieldSSM, u0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From initial fields u0 (B, P): predicted fields (B, T, P) and pickups (B, T), closed form."""
    sigma, omega = model.poles()
    z0 = model.encode(u0)  # (B, N, 2)
    b = u0.shape[0]
    z = modal_trajectory(sigma.expand(b, -1), omega.expand(b, -1), z0, times)  # (B, N, T, 2)
    c = model.field_readout
    u = torch.einsum("bnt,np->btp", z[..., 0], c[..., 0]) - torch.einsum("bnt,np->btp", z[..., 1], c[..., 1])
    y = (model.pickup[None, :, None, 0] * z[..., 0] - model.pickup[None, :, None, 1] * z[..., 1]).sum(1)  # (B, T)
    return u, y


def field_metrics(model: FieldSSM, ds, idx: np.ndarray) -> dict[str, float]:
    """Field NMSE and pickup relative MSE of examples ``idx`` (float64 rollout over the dataset's length)."""
    pu, py = DiagSSM().predict_fields(model, ds, idx)
    fields = np.asarray(ds.fields, dtype=np.float64)[idx]
    return {"field_nmse": M.field_nmse(pu, fields), "pickup_rel_mse": M.pickup_rel_mse(py, np.asarray(ds.pickups)[idx])}


# ---------------------------------------------------------------- the family


class DiagSSM(Family):
    """Diagonal state-space models with continuous-time poles (S4D / LRU style)."""

    name = "diag_ssm"
    command = "ssm"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--modes", type=int, default=None,
                            help=f"number of modes N (default {RECORDING_MODES} for one recording, {DEFAULT_MODES} otherwise)")

    def default_steps(self, data: TrainingData) -> int:
        # one recording: the closed-form fit (modes + attack residual) is the model; gradient steps would
        # move the modes away from the residual that was computed against them
        return {"field": 300, "recording": 0, "recordings": 1500}[data.kind]

    def initialise(self, data: TrainingData, options: argparse.Namespace) -> Initialised:
        kind = MODEL_KINDS[data.kind]
        if options.modes is None:
            options.modes = RECORDING_MODES if data.kind == "recording" else DEFAULT_MODES
        if data.kind == "field":
            ds = data.dataset
            model, info = fit_field(ds, options.modes, np.sort(data.split["train"]))
            f0 = info["f0_hz"]
            config = {"points": int(np.prod(ds.fields.shape[2:])), "field_shape": list(ds.fields.shape[2:]),
                      "train_samples": int(ds.fields.shape[1])}
            notes = [float(hz_to_midi(f0))]
        elif data.kind == "recording":
            model, info = fit_recording(data.recordings[0], options.modes)
            config = {"train_samples": int(data.recordings[0].audio.size), "attack_samples": info["attack_samples"]}
            notes = [float(hz_to_midi(info["f0_hz"]))]
        else:
            recs = data.subset("train")
            model, targets = fit_conditioned(recs, options.modes)
            notes = [r.note for r in recs]
            config = {"hidden": 32, "notes": notes}
            info = {}
        n_modes = int(model.poles.log_omega.numel()) if hasattr(model, "poles") else options.modes
        config.update(kind=kind, modes=n_modes, sample_rate=data.sample_rate, note_range=note_range(notes))
        return Initialised(model, config, info, targets=targets if data.kind == "recordings" else None)

    def build(self, config: dict[str, Any]) -> nn.Module:
        kind, n = config["kind"], int(config["modes"])
        if kind == "field":
            return FieldSSM(n, torch.zeros(int(config["points"])), tuple(config["field_shape"]))
        if kind == "recording":
            return RecordingSSM(n, attack_samples=int(config.get("attack_samples", 0)))
        if kind == "conditioned":
            return ConditionedSSM(n, hidden=int(config.get("hidden", 32)))
        raise ValueError(f"unknown diag_ssm kind {kind!r}")

    def step_loss(self, fitted: Initialised, data: TrainingData, options: argparse.Namespace,
                  rng: np.random.Generator) -> StepLoss:
        model = fitted.model
        if data.kind == "field":
            return field_step_loss(model, data.dataset, np.sort(data.split["train"]), 16, rng)
        if data.kind == "recording":
            return audio_step_loss(model, data.recordings, 8192, rng)
        return conditioned_step_loss(model, fitted.targets, data.subset("train"), 4096, rng)

    def parameter_groups(self, model: nn.Module, options: argparse.Namespace) -> list[dict[str, Any]]:
        # the least-squares / ESPRIT starts are already close: Adam's first steps must not undo them
        lr = options.lr / {"field": 10.0, "recording": 5.0, "conditioned": 1.0}[self._kind(model)]
        poles = [p for name, p in model.named_parameters() if name.startswith("poles.")]
        groups = [{"params": [p for name, p in model.named_parameters() if not name.startswith("poles.")], "lr": lr}]
        if poles:
            groups.append({"params": poles, "lr": lr / 100, "weight_decay": 0.0})
        return groups

    @staticmethod
    def _kind(model: nn.Module) -> str:
        return {FieldSSM: "field", RecordingSSM: "recording", ConditionedSSM: "conditioned"}[type(model)]

    def validation_error(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> float | None:
        if data.kind != "recording":
            return None
        # one recording, no held-out part: the closed-form start is a least-squares fit, so refinement
        # must beat it on the recording itself to be kept
        rec = data.recordings[0]
        return M.pickup_rel_mse(render_recording(model, rec, float(model.base_note)), rec.audio.astype(np.float64))

    def evaluate(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> Evaluation:
        if data.kind == "field":
            ds = data.dataset
            results = {"in_horizon_train": field_metrics(model, ds, np.sort(data.split["train"]))}
            for part in ("val", "test"):
                if len(data.split[part]):
                    results[f"in_horizon_{part}"] = field_metrics(model, ds, np.sort(data.split[part]))
            show = data.split["test"][:2] if len(data.split["test"]) else data.split["train"][:2]
            times = torch.arange(ds.fields.shape[1], dtype=torch.float32) / data.sample_rate
            u0 = torch.tensor(np.asarray(ds.fields[show], np.float32)).reshape(len(show), ds.fields.shape[1], -1)[:, 0]
            with torch.no_grad():
                _, py = predict_field(model, u0, times)
            pairs = [(f"example {i}", np.asarray(ds.pickups[i], np.float64), py[j].numpy().astype(np.float64))
                     for j, i in enumerate(show)]
            return Evaluation(results, data.sample_rate, pairs)
        recs = data.subset("test") or data.subset("train")[:4]
        base = float(getattr(model, "base_note", 60.0))
        results, pairs = {}, []
        for rec in recs:
            pred = render_recording(model, rec, base)
            ref = rec.audio.astype(np.float64)
            # the fidelity bench's independent scores (peak matching, first 3 s, level-matched)
            results[Path(rec.path).name] = M.recording_scores(pred, ref, data.sample_rate,
                                                              note=rec.note if np.isfinite(rec.note) else None)
            pairs.append((Path(rec.path).name, ref, pred))
        return Evaluation(results, data.sample_rate, pairs)

    def predict_fields(self, model: nn.Module, dataset: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(model, FieldSSM):
            raise NotImplementedError("only diag_ssm runs trained on a field dataset predict fields")
        fields = np.asarray(dataset.fields, dtype=np.float64)[index]
        times = torch.arange(fields.shape[1], dtype=torch.float64) / float(dataset.sample_rate)
        try:
            with torch.no_grad():
                pu, py = predict_field(model.double(), torch.tensor(fields[:, 0].reshape(len(index), -1)), times)
        finally:
            model.float()
        return pu.numpy().reshape(fields.shape), py.numpy()

    def graphs(self, model: nn.Module, config: dict[str, Any]) -> Graphs:
        cfg = config["model"]
        field = FieldReadout(model).eval() if isinstance(model, FieldSSM) else None
        attack = int(cfg.get("attack_samples", 0))
        info = BundleInfo(modes=int(cfg["modes"]), note_range=tuple(cfg["note_range"]),
                          trained_sample_rate=float(cfg["sample_rate"]),
                          description=f"diagonal SSM ({cfg['kind']}) from {Path(config['data']).name}",
                          extra={"attack": {"samples": attack, "sample_rate": float(cfg["sample_rate"])}} if attack else {})
        return Graphs(model.eval(), None, field, info)

