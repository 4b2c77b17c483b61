"""`eigentone train ssm`: fit a diagonal SSM to a simulated dataset, one recording or a folder of notes.

DATA decides the model (training/models/diag_ssm.py):
  * ``.h5`` dataset from ``eigentone simulate``     -> FieldSSM (field + pickup from the initial condition)
  * one WAV/FLAC file                              -> RecordingSSM (transposes the note)
  * a folder of labelled WAV/FLAC notes            -> ConditionedSSM (plays any note in range)

Every kind starts from a high-resolution modal analysis (ESPRIT, training/modal_analysis.py) and
is then refined by gradient descent in the shared ``train_loop`` (progress bar, Ctrl-C/kill resume,
seed). At the end RUN_DIR holds config.json, model.pt, metrics.json and report.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eigentone.contract.reference import ModalVoices, hz_to_midi, midi_to_hz, render_modal
from eigentone.contract.torch_twin import modal_readout, modal_trajectory
from eigentone.errors import EigentoneError
from eigentone.files import atomic_path
from training import metrics as M
from training.data.audio import AUDIO_SUFFIXES, Recording, load_folder, load_recording
from training.losses import multi_resolution_stft_loss, relative_mse
from training.modal_analysis import ModalEstimate, esprit, esprit_subband, significant_partials
from training.models.diag_ssm import ConditionedSSM, FieldSSM, RecordingSSM
from training.trainer import seed_everything, train_loop

HELP = "fit a diagonal state-space model (S4D/LRU style) to a simulated dataset or recordings"
EXAMPLE = "eigentone train ssm assets/audio/nylon_b3.flac --out runs/nylon --steps 200"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help=".h5 dataset from `eigentone simulate`, a WAV/FLAC file, or a folder of labelled notes")
    parser.add_argument("--out", required=True, help="run directory (resumes if it holds a checkpoint)")
    parser.add_argument("--steps", type=int, default=None, help="gradient steps (default: 300 field, 60 recording, 1500 conditioned)")
    parser.add_argument("--modes", type=int, default=48, help="number of modes N (default 48)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of non-pole parameters (poles use lr/100)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------- closed-form rendering (numpy, float64)


def render_contract(out: dict[str, torch.Tensor], sample_rate: float, n_samples: int) -> np.ndarray:
    """(V, n_samples) pickup of a contract dict, by the contract's float64 reference (closed form when unmodulated)."""
    voices = ModalVoices.from_graph_outputs({k: v.detach().double().numpy() for k, v in out.items()})
    return render_modal(voices, sample_rate, n_samples)


def controls_tensor(note: float, velocity: float, position: float = 0.2, position_y: float = 0.37) -> torch.Tensor:
    return torch.tensor([[note, velocity, position, position_y]], dtype=torch.float32)


# ---------------------------------------------------------------- recordings


DENSE_RESIDUAL = 1e-3
"""Relative residual of full-band ESPRIT above which a recording counts as a dense spectrum (struck plate)."""


def _relative_residual(est: ModalEstimate, x: np.ndarray, fs: float) -> float:
    """sum((x - rebuilt)^2) / sum(x^2) of the partials in ``est`` over the whole signal x (samples,)."""
    return float(np.sum((est.synthesise(fs, x.size) - x) ** 2) / max(np.sum(x**2), 1e-300))


def _strong_partials(x: np.ndarray, fs: float, n_modes: int) -> ModalEstimate:
    """The ``n_modes`` strongest decaying partials of a recording x (samples,).

    Full-band ESPRIT on the first 8192 samples suits sparse spectra (strings, fast-decaying highs).
    When it leaves more than ``DENSE_RESIDUAL`` of the energy unexplained (dense, inharmonic spectra:
    plates, bells, close pairs) subband ESPRIT on the whole signal is tried too, and the estimate with
    the smaller residual wins.
    """
    est = esprit(x, fs, max_order=min(4 * n_modes, 300))
    residual = _relative_residual(est, x, fs)
    if residual > DENSE_RESIDUAL:
        dense = esprit_subband(x, fs)
        if _relative_residual(dense, x, fs) < residual:
            est = dense
    est = significant_partials(est, rel_amplitude=1e-4)
    keep = (est.sigma > 0) & (est.freqs_hz < 0.48 * fs)
    est = ModalEstimate(est.freqs_hz[keep], est.sigma[keep], est.amplitudes[keep])
    if est.freqs_hz.size == 0:
        raise EigentoneError("no decaying partials found in the recording; is it a plucked/struck note?")
    return est.strongest(n_modes)


def _estimate_f0(est: ModalEstimate, note_hint: float) -> float:
    """Fundamental: the partial nearest the labelled note, or the lowest strong partial if unlabelled."""
    mag = np.abs(est.amplitudes)
    strong = est.freqs_hz[mag >= 0.05 * mag.max()]
    if np.isfinite(note_hint):
        target = midi_to_hz(note_hint)
        near = est.freqs_hz[np.abs(M.cents(est.freqs_hz, target)) < 100]
        if near.size:
            return float(near[np.argmin(np.abs(M.cents(near, target)))])
    return float(strong.min())


def fit_recording(rec: Recording, n_modes: int) -> tuple[RecordingSSM, dict[str, Any]]:
    """A RecordingSSM initialised from ESPRIT of the recording."""
    x = rec.audio.astype(np.float64)
    est = _strong_partials(x, rec.sample_rate, n_modes)
    f0 = _estimate_f0(est, rec.note)
    base_note = rec.note if np.isfinite(rec.note) else float(hz_to_midi(f0))
    model = RecordingSSM(est.freqs_hz.size, base_note=base_note, base_velocity=rec.velocity)
    _set_poles(model.poles, est.sigma, 2 * np.pi * est.freqs_hz)
    with torch.no_grad():
        model.amplitude.copy_(torch.tensor(np.stack([est.amplitudes.real, est.amplitudes.imag], -1), dtype=torch.float32))
    return model, {"f0_hz": f0, "base_note": base_note}


def recording_rel_mse(model: torch.nn.Module, rec: Recording, base_note: float) -> float:
    """Relative MSE of the model's note against the whole recording (closed form, float64)."""
    note = rec.note if np.isfinite(rec.note) else base_note
    with torch.no_grad():
        pred = render_contract(model(controls_tensor(note, rec.velocity, rec.position)), rec.sample_rate, rec.audio.size)[0]
    return M.pickup_rel_mse(pred, rec.audio.astype(np.float64))


def _set_poles(poles, sigma: np.ndarray, omega: np.ndarray) -> None:
    s = torch.clamp(torch.as_tensor(sigma, dtype=torch.float32) - poles.sigma_min, min=1e-6)
    with torch.no_grad():
        poles.sigma_raw.copy_(s + torch.log(-torch.expm1(-s)))
        poles.log_omega.copy_(torch.log(torch.as_tensor(omega, dtype=torch.float32)))


def audio_step_loss(model, recs: list[Recording], crop: int, rng: np.random.Generator):
    """Closure: MR-STFT + time-domain relative MSE on a random crop of a random recording."""
    targets = [torch.tensor(r.audio, dtype=torch.float32) for r in recs]

    def step_loss(step: int):
        i = int(rng.integers(len(recs)))
        rec, y = recs[i], targets[i]
        n = min(crop, y.numel())
        # early crops more often: that is where most of the energy is
        start = int(rng.integers(0, max(1, y.numel() - n) + 1) * rng.random() ** 2)
        times = (start + torch.arange(n, dtype=torch.float32)) / rec.sample_rate
        out = model(controls_tensor(rec.note if np.isfinite(rec.note) else float(model.base_note), rec.velocity,
                                    rec.position))
        pred = modal_readout(out["sigma"], out["omega"], out["z0"], out["c"], times)  # (1, n)
        ref = y[start : start + n][None]
        spec = multi_resolution_stft_loss(pred, ref)
        time = relative_mse(pred, ref)
        return time + 0.1 * spec, {"mrstft": float(spec.detach()), "rel_mse": float(time.detach())}

    return step_loss


# ---------------------------------------------------------------- conditioned (folder of notes)


def harmonic_targets(est: ModalEstimate, f0: float, n_modes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Assign ESPRIT partials to harmonic numbers n = 1..N of a stiff string (greedy, refits B as it goes).

    Returns freqs (N,) Hz, sigma (N,), amplitudes (N,) complex, found mask (N,), inharmonicity B.
    """
    freqs, sigma, amps, found = np.zeros(n_modes), np.ones(n_modes), np.zeros(n_modes, complex), np.zeros(n_modes, bool)
    b = 0.0
    for n in range(1, n_modes + 1):
        guess = f0 * n * math.sqrt(1 + b * n * n)
        if est.freqs_hz.size == 0:
            break
        gap = np.abs(M.cents(est.freqs_hz, guess))
        j = int(np.argmin(gap))
        if gap[j] < 40.0:
            freqs[n - 1], sigma[n - 1], amps[n - 1], found[n - 1] = est.freqs_hz[j], est.sigma[j], est.amplitudes[j], True
            ns = np.nonzero(found)[0] + 1
            if ns.size >= 3:
                b = max(float(np.polyfit(ns.astype(float) ** 2, (freqs[found] / (f0 * ns)) ** 2 - 1, 1)[0]), 0.0)
        else:
            freqs[n - 1] = guess
    sigma[~found] = _extrapolated_decays(freqs, sigma, found)[~found]
    return freqs, sigma, amps, found, max(b, 1e-7)


def _extrapolated_decays(freqs: np.ndarray, sigma: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Decay rates (1/s) at ``freqs`` (Hz) from the string damping law sigma = b1 + b3 f^2, fitted to the found
    partials (non-negative least squares). Harmonics the analysis did not find (above the pluck's band,
    or too weak) get these decays as targets, so they die away like real upper partials instead of
    ringing at the initial guess; floored at the largest found decay above the fundamental."""
    from scipy.optimize import nnls

    if found.sum() < 2:
        return np.full_like(sigma, max(float(sigma[found].max()) if found.any() else 1.0, 1.0) * 10.0)
    coef, _ = nnls(np.stack([np.ones(found.sum()), freqs[found] ** 2], 1), sigma[found])
    law = coef[0] + coef[1] * freqs**2
    return np.maximum(law, float(sigma[found].max()))


def fit_conditioned(recs: list[Recording], n_modes: int, hidden: int = 32) -> tuple[ConditionedSSM, dict[str, Any]]:
    """ConditionedSSM plus per-recording ESPRIT targets (regression stage)."""
    notes = np.array([r.note for r in recs])
    model = ConditionedSSM(n_modes, note_centre=float(notes.mean()), note_scale=max(float(notes.std()), 6.0), hidden=hidden)
    targets = []
    for rec in recs:
        est = _strong_partials(rec.audio.astype(np.float64), rec.sample_rate, 2 * n_modes)
        f0 = _estimate_f0(est, rec.note)
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
            "controls": torch.tensor([[r.note, r.velocity, r.position, 0.37] for r in recs], dtype=torch.float32)}
    return model, data


def conditioned_step_loss(model: ConditionedSSM, data: dict[str, torch.Tensor], recs: list[Recording], crop: int,
                          rng: np.random.Generator):
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
    _set_poles(model.poles, est.sigma, 2 * np.pi * est.freqs_hz)

    def pairs(a):
        return torch.tensor(np.stack([a.real, a.imag], -1), dtype=torch.float32)

    with torch.no_grad():
        model.encoder.copy_(pairs(encoder))
        model.field_readout.copy_(pairs(readout))
        model.pickup.copy_(pairs(cp[:n] + 1j * cp[n:]))
    return model, {"f0_hz": f0}


def field_step_loss(model: FieldSSM, ds, train_idx: np.ndarray, batch: int, rng: np.random.Generator):
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


def field_metrics(model: FieldSSM, ds, idx: np.ndarray, horizon: int | None = None) -> dict[str, float]:
    """Field NMSE and pickup relative MSE of examples ``idx`` over [0, horizon) and beyond it."""
    fields = np.asarray(ds.fields, dtype=np.float64).reshape(ds.fields.shape[0], ds.fields.shape[1], -1)[idx]
    pickups = np.asarray(ds.pickups, dtype=np.float64)[idx]
    times = torch.arange(fields.shape[1], dtype=torch.float64) / float(ds.sample_rate)
    model64 = model.double()
    try:
        with torch.no_grad():
            pu, py = predict_field(model64, torch.tensor(fields[:, 0]), times)
    finally:
        model.float()
    pu, py = pu.numpy(), py.numpy()
    horizon = horizon or fields.shape[1]
    out = {"field_nmse": M.field_nmse(pu[:, :horizon], fields[:, :horizon]),
           "pickup_rel_mse": M.pickup_rel_mse(py[:, :horizon], pickups[:, :horizon])}
    if fields.shape[1] > horizon:
        out["field_nmse_extrapolated"] = M.field_nmse(pu[:, horizon:], fields[:, horizon:])
        out["pickup_rel_mse_extrapolated"] = M.pickup_rel_mse(py[:, horizon:], pickups[:, horizon:])
    return out


# ---------------------------------------------------------------- report


def spectrogram_png(path: Path, pairs: list[tuple[str, np.ndarray, np.ndarray]], sample_rate: float) -> None:
    """Reference vs model spectrograms side by side, one row per (title, reference, prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(10, 3 * len(pairs)), squeeze=False)
    for row, (title, ref, pred) in enumerate(pairs):
        for col, (name, sig) in enumerate((("reference", ref), ("model", pred))):
            ax = axes[row, col]
            ax.specgram(sig, NFFT=1024, Fs=sample_rate, noverlap=768, cmap="magma", vmin=-160)
            ax.set_title(f"{title}: {name}")
            ax.set_xlabel("s")
            ax.set_ylabel("Hz")
            ax.set_ylim(0, min(sample_rate / 2, 8000))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def print_metrics(title: str, values: dict[str, Any], indent: int = 0) -> None:
    """Nested metric dicts, one value a line."""
    print(" " * indent + title)
    for key, value in values.items():
        if isinstance(value, dict):
            print_metrics(f"{key}:", value, indent + 2)
        else:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            print(" " * (indent + 2) + f"{key:28s} {text}")


# ---------------------------------------------------------------- command


def load_field_dataset(path: Path):
    try:
        from training.data.dataset import load_dataset
    except ImportError as exc:
        raise EigentoneError(f"{path}: field datasets need training/data/dataset.py ({exc})") from None
    return load_dataset(path)


def data_kind(path: Path) -> str:
    if path.is_dir():
        return "conditioned"
    if not path.exists():
        raise EigentoneError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return "field"
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return "recording"
    raise EigentoneError(f"{path}: expected a .h5 dataset, a WAV/FLAC file or a folder of recordings")


def train(data: str | Path, out: str | Path, *, steps: int | None = None, modes: int = 48, seed: int = 0, lr: float = 1e-3,
          quiet: bool = False, command: str = "") -> dict[str, Any]:
    """Fit, train, evaluate; returns the metrics written to RUN_DIR/metrics.json."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data, out = Path(data), Path(out)
    kind = data_kind(data)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    config: dict[str, Any] = {"family": "diag_ssm", "kind": kind, "data": str(data), "seed": seed, "command": command}
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    if kind == "field":
        ds = load_field_dataset(data)
        examples = ds.fields.shape[0]
        order = rng.permutation(examples)
        n_val = max(1, examples // 10) if examples >= 5 else 0
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        model, info = fit_field(ds, modes, train_idx)
        steps = 300 if steps is None else steps
        step_loss = field_step_loss(model, ds, train_idx, 16, rng)
        lr = lr / 10  # the least-squares start is already close: Adam's first steps must not undo it
        fs = float(ds.sample_rate)
        f0 = info["f0_hz"]
        config.update(points=int(np.prod(ds.fields.shape[2:])), field_shape=list(ds.fields.shape[2:]),
                      train_examples=train_idx.tolist(), val_examples=val_idx.tolist(), train_samples=int(ds.fields.shape[1]))
    elif kind == "recording":
        rec = load_recording(data)
        model, info = fit_recording(rec, modes)
        steps = 60 if steps is None else steps
        step_loss = audio_step_loss(model, [rec], 8192, rng)
        lr = lr / 5  # ESPRIT is already close: refine gently
        fs, f0, recs = rec.sample_rate, info["f0_hz"], [rec]
        config["train_samples"] = int(rec.audio.size)
    else:
        recs = load_folder(data)
        model, targets = fit_conditioned(recs, modes)
        steps = 1500 if steps is None else steps
        step_loss = conditioned_step_loss(model, targets, recs, 4096, rng)
        fs = recs[0].sample_rate
        f0 = float(midi_to_hz(np.mean([r.note for r in recs])))
        config.update(hidden=32, notes=[r.note for r in recs])
    n_modes = int(model.poles.log_omega.numel()) if hasattr(model, "poles") else modes
    base = float(hz_to_midi(f0))
    config.update(modes=n_modes, sample_rate=fs,
                  note_range=[int(max(0, math.floor(min(config.get("notes", [base])) - 12))),
                              int(min(127, math.ceil(max(config.get("notes", [base])) + 12)))])
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    pole_params = [p for name, p in model.named_parameters() if name.startswith("poles.")]
    other = [p for name, p in model.named_parameters() if not name.startswith("poles.")]
    groups = [{"params": other, "lr": lr}]
    if pole_params:
        groups.append({"params": pole_params, "lr": lr / 100, "weight_decay": 0.0})
    if kind == "recording":  # the closed-form start is a least-squares fit: refinement must beat it to be kept
        start_state = {k: v.clone() for k, v in model.state_dict().items()}
        start_error = recording_rel_mse(model, recs[0], base)
    train_loop(model, step_loss, run_dir=out, steps=steps, lr=groups, desc=f"diag_ssm {kind}", quiet=quiet,
               checkpoint_every=max(50, steps // 10))
    model.eval()
    if kind == "recording" and recording_rel_mse(model, recs[0], base) > start_error:
        model.load_state_dict(start_state)
        with atomic_path(out / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)

    # ---- evaluation report
    if kind == "field":
        results = {"in_horizon_train": field_metrics(model, ds, train_idx)}
        if len(val_idx):
            results["in_horizon_val"] = field_metrics(model, ds, val_idx)
        show = val_idx[:2] if len(val_idx) else train_idx[:2]
        times = torch.arange(ds.fields.shape[1], dtype=torch.float32) / fs
        with torch.no_grad():
            _, py = predict_field(model, torch.tensor(np.asarray(ds.fields[show], np.float32)).reshape(len(show), ds.fields.shape[1], -1)[:, 0], times)
        pairs = [(f"example {i}", np.asarray(ds.pickups[i], np.float64), py[j].numpy().astype(np.float64))
                 for j, i in enumerate(show)]
    else:
        results = {}
        for rec in recs[:4]:
            with torch.no_grad():
                pred = render_contract(model(controls_tensor(rec.note if np.isfinite(rec.note) else base, rec.velocity,
                                                             rec.position)), fs, rec.audio.size)[0]
            ref = rec.audio.astype(np.float64)
            results[Path(rec.path).name] = M.audio_report(pred, ref, fs)
            pairs.append((Path(rec.path).name, ref, pred))
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    spectrogram_png(out / "report.png", pairs[:4], fs)
    return results


def run(args: argparse.Namespace) -> int:
    command = "eigentone " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("eigentone") else ""
    results = train(args.data, args.out, steps=args.steps, modes=args.modes, seed=args.seed, lr=args.lr, quiet=args.quiet,
                    command=command)
    print_metrics(f"metrics ({args.out}/metrics.json, spectrograms in {args.out}/report.png):", results)
    return 0
