"""Learning from recordings alone, shared by the families whose models are driven by the controls.

A family that learns from a folder of labelled notes (or one note) needs the same three things,
whatever its model: what each note holds (``analyse``: ESPRIT partials assigned to harmonics, decays,
amplitudes, and the fundamental's pitch glide), a loss on the audio at the pickup (``audio_loss``:
the excite module's contract outputs rolled out exactly as the engine plays them, block-rate pole
modulation and readout included, plus a regression onto the analysed partials), and an evaluation
of the notes (``evaluate_notes``) as the engine plays them, trimmed to their onset like the recordings.

Pitch glide: a tension-modulated string plucked hard starts sharp and settles at its small-amplitude
pitch. The early ESPRIT window measures partials raised by the glide; under Kirchhoff-Carrier
modulation every partial's squared frequency rises by the same factor (omega_n^2 gains alpha_n E with
alpha_n ~ k_n^2 ~ omega_n^2), so the small-amplitude partials are the early ones scaled by the ratio of
the settled fundamental to the early one (``NoteTargets.freqs0``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eigentone.contract import controls_row
from eigentone.contract.reference import midi_to_hz
from eigentone.contract.torch_twin import block_rollout, complex_mul
from eigentone.errors import EigentoneError
from training import metrics as M
from training.data.audio import Recording, onset_index
from training.data.sources import TrainingData
from training.family import Evaluation, Graphs, StepLoss
from training.fits import estimate_f0, harmonic_targets
from training.losses import multi_resolution_stft_loss
from training.modal_analysis import ModalEstimate, esprit, significant_partials
from training.report import controls_tensor, render_graphs

HORIZON_S = 0.3
"""Seconds of each note the audio loss rolls out from the onset."""


@dataclass
class NoteTargets:
    """What the training notes hold, (R, N) arrays for R recordings and N harmonics (see ``analyse``).

    freqs0: small-amplitude partial frequencies, Hz (glide removed); sigma: decay rates, 1/s (analysis
    failures: the damping law's extrapolation); amps: complex pickup amplitudes at the onset (x = sum Re(a
    e^{lambda t})); found: the analysis found that harmonic; inharmonicity: (R,) stiff-string B;
    f0_early, f0_late: (R,) Hz, the fundamental in the first frame and settled (median of the last quarter);
    early_s, late_s: (R,) seconds of those frames; controls: (R, 4) float32 contract rows.
    """

    freqs0: np.ndarray
    sigma: np.ndarray
    amps: np.ndarray
    found: np.ndarray
    inharmonicity: np.ndarray
    f0_early: np.ndarray
    f0_late: np.ndarray
    early_s: np.ndarray
    late_s: np.ndarray
    controls: np.ndarray

    @property
    def glide_cents(self) -> np.ndarray:
        """(R,) how far the first frame's fundamental lies above the settled one, cents."""
        return M.cents(self.f0_early, self.f0_late)


def settled_pitch(rec: Recording, f0_hint: float) -> tuple[float, float, float, float]:
    """(f0 first frame Hz, its time s, settled f0 Hz, its time s) from the fundamental trajectory (first second)."""
    x = rec.audio[: int(rec.sample_rate)].astype(np.float64)
    times, track = M.fundamental_trajectory(x, rec.sample_rate, f0_hint=f0_hint)
    ok = np.flatnonzero(np.isfinite(track))
    if ok.size < 4:
        return f0_hint, 0.0, f0_hint, 0.0
    tail = ok[-max(1, ok.size // 4):]
    return float(track[ok[0]]), float(times[ok[0]]), float(np.median(track[tail])), float(np.median(times[tail]))


def harmonic_partials(x: np.ndarray, fs: float, count: int) -> ModalEstimate:
    """The ``count`` strongest decaying partials of a string note (full-band ESPRIT on its first 8192 samples;
    the dense-spectrum fallback of ``training.fits.strong_partials`` buys nothing for harmonic notes, and a
    gliding note never fits one set of fixed partials anyway)."""
    est = significant_partials(esprit(x, fs, max_order=min(2 * count, 300)), rel_amplitude=1e-4)
    keep = (est.sigma > 0) & (est.freqs_hz < 0.48 * fs)
    if not keep.any():
        raise EigentoneError("no decaying partials found in the recording; is it a plucked/struck note?")
    return ModalEstimate(est.freqs_hz[keep], est.sigma[keep], est.amplitudes[keep]).strongest(count)


def analyse(recs: list[Recording], n_modes: int) -> NoteTargets:
    """ESPRIT of each note (``training/fits.py``): harmonics 1..n_modes and the fundamental's glide."""
    rows = []
    for rec in recs:
        x = rec.audio.astype(np.float64)
        est = harmonic_partials(x, rec.sample_rate, 2 * n_modes)
        f0 = estimate_f0(est, rec.note)
        freqs, sigma, amps, found, b = harmonic_targets(est, f0, n_modes)
        early, t_early, late, t_late = settled_pitch(rec, f0)
        rows.append((freqs * late / f0, np.maximum(sigma, 1e-2), amps, found, b, early, late, t_early, t_late))
    stack = [np.array([row[i] for row in rows]) for i in range(9)]
    controls = np.array([controls_row(r.note if np.isfinite(r.note) else 69.0, r.velocity, r.position) for r in recs],
                        np.float32)
    return NoteTargets(stack[0], stack[1], stack[2], stack[3], stack[4], stack[5], stack[6], stack[7], stack[8],
                       controls)


def analyse_training_notes(data: TrainingData, n_modes: int) -> NoteTargets:
    """``analyse`` of the training notes of ``data``, computed once per data set (families share it)."""
    key = ("notes", n_modes)
    if key not in data.views:
        data.views[key] = analyse(data.subset("train"), n_modes)
    return data.views[key]


def fit_partials(poles: Callable[[torch.Tensor], dict[str, torch.Tensor]], parameters: list[torch.nn.Parameter],
                 targets: NoteTargets, steps: int = 1500, lr: float = 1e-2) -> float:
    """Fit ``parameters`` to the notes' partials, ``poles(controls (R, 4))`` giving "omega" and "sigma" (R, N) (an
    excite module, or the part of it that makes the poles): Adam on 1e-2 cents^2 of the found harmonics'
    small-amplitude frequencies + the squared log decay (harmonics the analysis did not find: the damping law's
    extrapolation, at a quarter weight). Part of a family's closed-form start: R notes, a thousand or so cheap
    steps, no audio. Returns the RMS cents error after the fit."""
    controls = torch.tensor(targets.controls)
    log_f = torch.tensor(np.log(2 * np.pi * targets.freqs0), dtype=torch.float32)
    log_sigma = torch.tensor(np.log(targets.sigma), dtype=torch.float32)
    mask = torch.tensor(targets.found, dtype=torch.float32)
    weight = mask + 0.25 * (1 - mask)
    optimiser = torch.optim.Adam(parameters, lr=lr)

    def errors() -> tuple[torch.Tensor, torch.Tensor]:
        out = poles(controls)
        n = min(out["omega"].shape[1], log_f.shape[1])
        cents = (torch.log(out["omega"][:, :n]) - log_f[:, :n]) * (1200 / np.log(2))
        pitch = (mask[:, :n] * cents**2).sum() / mask[:, :n].sum().clamp_min(1)
        return pitch, (weight[:, :n] * (torch.log(out["sigma"][:, :n]) - log_sigma[:, :n]) ** 2).mean()

    for _ in range(steps):
        optimiser.zero_grad()
        pitch, decay = errors()
        (1e-2 * pitch + decay).backward()
        optimiser.step()
    with torch.no_grad():
        return float(errors()[0].sqrt())


def tuning_cents(targets: NoteTargets) -> float:
    """Median offset of the settled fundamentals from the labelled notes, cents (0 for exact labels)."""
    return float(np.median(M.cents(targets.f0_late, midi_to_hz(targets.controls[:, 0]))))


def audio_loss(excite: torch.nn.Module, readout: Callable[[torch.Tensor], torch.Tensor] | None, recs: list[Recording],
               targets: NoteTargets, *, block_size: int, batch: int, rng: np.random.Generator,
               partial_weight: float = 1.0) -> StepLoss:
    """Closure: MR-STFT of the first ``HORIZON_S`` of ``batch`` random notes, rendered from ``excite(controls)`` as
    the engine plays them (``block_rollout``: modulation and ``readout`` once per block, the first block with the
    excite graph's c), plus ``partial_weight`` x the regression onto the analysed partials (1e-2 cents^2 on the
    small-amplitude frequencies, squared log decay, amplitude magnitudes relative to the note's energy).

    Phase-blind on purpose: a recording starts at its trimmed onset, the model at the pluck, and the pluck's
    width (which sets each note's level and brightness) is not among the labels."""
    fs = recs[0].sample_rate
    horizon = min(int(HORIZON_S * fs), min(r.audio.size for r in recs))
    audio = torch.tensor(np.stack([r.audio[:horizon] for r in recs]), dtype=torch.float32)  # (R, H)
    controls = torch.tensor(targets.controls)
    freqs = torch.tensor(targets.freqs0, dtype=torch.float32)
    log_sigma = torch.tensor(np.log(targets.sigma), dtype=torch.float32)
    mags = torch.tensor(np.abs(targets.amps), dtype=torch.float32)  # (R, N)
    found = torch.tensor(targets.found, dtype=torch.float32)
    energy = (mags**2).sum(dim=1, keepdim=True).clamp_min(1e-12)

    def step_loss(step: int):
        pick = torch.as_tensor(rng.choice(len(recs), size=min(batch, len(recs)), replace=False))
        out = excite(controls[pick])
        blocks = 0

        def block_readout(z: torch.Tensor) -> torch.Tensor:
            nonlocal blocks
            blocks += 1
            return out["c"] if blocks == 1 or readout is None else readout(z)

        _, y = block_rollout(out["sigma"], out["omega"], out["z0"], out.get("mod_alpha"), out.get("mod_beta"), fs,
                             horizon, block_size, readout=block_readout)
        loss = multi_resolution_stft_loss(y, audio[pick])
        logs = {"mrstft": float(loss.detach())}
        if partial_weight:
            every = excite(controls)
            n = min(every["omega"].shape[1], freqs.shape[1])
            cents = 1200 * torch.log2(every["omega"][:, :n] / (2 * np.pi * freqs[:, :n]))
            mask = found[:, :n]
            pitch = (mask * cents**2).sum() / mask.sum().clamp_min(1)
            decay = ((every["sigma"][:, :n].log() - log_sigma[:, :n]) ** 2).mean()
            pickup = complex_mul(every["c"], every["z0"])[:, :n]  # (R, n, 2)
            amp = (((pickup**2).sum(-1).clamp_min(1e-20).sqrt() - mags[:, :n]) ** 2 / energy).sum(1).mean()
            loss = loss + partial_weight * (1e-2 * pitch + decay + amp)
            logs.update(cents_rms=float(pitch.detach().sqrt()), decay=float(decay.detach()), amp=float(amp.detach()))
        return loss, logs

    return step_loss


def render_note(graphs: Graphs, rec: Recording) -> np.ndarray:
    """The family's note for ``rec`` (its labels) as the engine plays it, trimmed to its onset like the recording,
    as long as the recording: (samples,) float64."""
    fs = rec.sample_rate
    pred = render_graphs(graphs, controls_tensor(rec.note, rec.velocity, rec.position), fs,
                         rec.audio.size + int(0.05 * fs))[0]
    start = onset_index(pred[: int(0.25 * fs)], fs)
    return pred[start : start + rec.audio.size]


def pitch_errors(pred: np.ndarray, ref: np.ndarray, fs: float) -> tuple[float, float]:
    """(fundamental error, glide error) in cents of a note against its recording: |median f0 difference| and the
    max |cents| between the f0 tracks frame by frame (short-window ESPRIT, ``fundamental_trajectory``; frames
    where an attack's click is the loudest pole have no reading in either track)."""
    _, f_ref = M.fundamental_trajectory(ref, fs, skip_attack=True)
    _, f_pred = M.fundamental_trajectory(pred, fs, f0_hint=float(np.nanmedian(f_ref[:3])), skip_attack=True)
    return abs(float(M.cents(np.nanmedian(f_pred), np.nanmedian(f_ref)))), M.trajectory_max_cents(f_pred, f_ref)


def note_report(pred: np.ndarray, ref: np.ndarray, fs: float) -> dict[str, float]:
    """Fundamental and glide error (cents), log-spectral distance (dB) and MR-STFT distance of a note."""
    fundamental, glide = pitch_errors(pred, ref, fs)
    return {"fundamental_cents": fundamental, "glide_cents": glide, "lsd_db": M.log_spectral_distance(pred, ref),
            "mr_stft": M.mr_stft_distance(pred, ref)}


def evaluate_notes(graphs: Graphs, recs: list[Recording], sample_rate: float) -> Evaluation:
    """``note_report`` of each note, rendered from the family's export graphs as the engine plays them."""
    results, pairs = {}, []
    for rec in recs:
        pred, ref = render_note(graphs, rec), rec.audio.astype(np.float64)
        results[Path(rec.path).name] = note_report(pred, ref, rec.sample_rate)
        pairs.append((Path(rec.path).name, ref, pred))
    return Evaluation(results, sample_rate, pairs)
