"""Conditioned instruments from laws fitted across notes: play a note that was never recorded.

Every recorded note of an instrument is analysed on its own (``training.modal_analysis.analyse_recording``:
modes + attack residual). Across the notes, smooth laws are fitted:

* pitch: f0(note) = midi_to_hz(note) * 2^(tune(note) / 1200), tune (cents) piecewise linear in note;
* stiff-string partials: f_k = k f0 sqrt(1 + B k^2) with log B piecewise linear in note (Fletcher & Rossing,
  *The Physics of Musical Instruments*, 2nd ed., section 2.18); tuned bars land on the same law with a
  tiny B for the modes near integer ratios (marimba 1:4:10, xylophone 1:3), other modes keep their ratio;
* damping: log sigma as one smooth function of log absolute frequency for the whole instrument (piecewise
  linear, knots ``KNOT_OCTAVES`` apart, second-difference penalty): a partial's decay follows its frequency,
  not its harmonic number (for a string, sigma = b1 + b3 f^2 is such a law); fitted jointly with a damping level
  per recorded note (one take's string, or bar, rings longer or shorter as a whole) and an offset per partial
  number. A note between recordings takes the level interpolated linearly in note between its two recorded
  neighbours, as the tuning is. Decided on the dev set's 8 tuned-on instruments with >= 5 notes (every other note
  held out; the fidelity bench's conditioned rows) against the law without levels (the donor's deviation carried
  its note's level): T60 error, median of the 8 medians, 0.386 -> 0.367; medians relative to the better of the
  bench's two baselines, geometric mean over the 8, LSD 0.978 -> 0.975, MR-STFT 1.043 -> 1.036; held-out f0
  within 5 cents on 7 instruments (was 6), LSD below both baselines on 7 (was 6), partials 4, T60 1, MR-STFT 3
  (unchanged). Pooling the decays over more notes instead lost on every aggregate: the per-note levels without
  the donor's deviation (T60 0.672), an offset per partial number fitted over every note (0.399; linear in note
  0.398), the donor's deviation shrunk toward 0 (x 0.75: 0.393; x 0: 0.640): a partial's decay differs from note
  to note by more than one take's measurement noise, and the recorded neighbours say more about it than the rest;
* body and excitation: log |amplitude| = body(log f) + excitation(k), fitted jointly over every mode of
  every recorded note: the body's resonances stay at their frequency when the pitch moves, the
  pluck/strike spectrum stays with the partial number;
* modes below 0.9 f0 that follow no partial law (the body's air and plate modes) keep their frequency;
* measured decays: the T60s the fidelity score measures on each recorded note's partials
  (``training.metrics.note_decays``), averaged across notes by a kernel over log frequency and note
  (``MEASURED_SHARE``).

A note is played from the nearest recorded note (the *donor*): each donor mode moves to the law's frequency
(keeping its own offset in cents from the law, so beating pairs stay pairs); a partial's decay and amplitude
are the laws' values at the new frequency (and the note's interpolated damping level) plus the donor's own
deviation from the laws at its old frequency;
modes that follow no partial law transpose with the note; a partial's deviations move part of the way toward
those of the same partial in the recorded neighbour on the note's other side (``NEIGHBOUR_SHARE``); the modes
heard in each of the donor's measured partials then move, by one factor per partial, toward the measured decays'
law, more the farther the note is from the donor (``MEASURED_SHARE``). At a recorded note the model therefore
gives back that note's own fit. The attack residual (``RESIDUAL_SECONDS``) is the donor's, resampled to the note's pitch
and scaled by velocity.

``LawsInstrument`` is an excite module of the shared contract (controls (V, 4) -> sigma, omega, z0, c,
attack), so it exports to an ``.etone`` bundle with ``export_laws_bundle``.

    python -m training.conditioned_laws FOLDER --out NAME.etone     # FOLDER: labelled notes (labels.csv)
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eigentone.contract import reference
from eigentone.contract.torch_twin import midi_to_hz, split_controls, unit_readout
from eigentone.errors import EigentoneError
from training.data.audio import Recording
from training.metrics import SCORE_SECONDS, NoteDecays, cents, note_decays

MODES = 128
"""Modes per recorded note (and of the instrument)."""
KNOT_OCTAVES = 0.25
"""Spacing of the knots of the piecewise-linear decay and body laws over log2 frequency (octaves)."""
SMOOTHNESS = 1e-2
"""Second-difference penalty of those laws, relative to the total weight of the modes they are fitted to."""
HARMONIC_CENTS = 25.0
"""A mode within this many cents of a stiff-string partial k f0 sqrt(1 + B k^2) follows that law."""
B_RANGE = (1e-7, 1e-3)
"""Inharmonicity coefficients are kept inside this range (the analysis of a few partials can overshoot)."""
HARMONICS_FOR_B = 24
BODY_RATIO = 0.9
"""Modes below this fraction of f0 that follow no partial law are the body's (or the room's): they keep their
absolute frequency when the note moves (a string's or bar's lowest mode is its fundamental)."""
MODE_LAWS = ("pitch", "decay", "body")
"""The laws of the modes (partial frequencies, decays, amplitudes across notes)."""
LAWS = (*MODE_LAWS, "neighbours", "measured-decay", "resample-attack")
"""Laws a LawsInstrument applies by default; one left out is replaced by transposing the donor: "pitch", "decay",
"body" (above), "neighbours" (a partial's deviations from the decay and body laws moved from the donor's toward
the other recorded neighbour's for the same partial number, by ``NEIGHBOUR_SHARE`` of the note's way there),
"measured-decay" (each scored partial's T60 moved toward a law of the recorded notes' measured partial T60s;
``MEASURED_SHARE``) and "resample-attack" (the donor's residual resampled to the note's pitch, as a sampler would). Also available: "tracks" (each mode's ratio to f0, decay and amplitude interpolated in note between the donor and
the recorded neighbour on the other side of the note, for the modes matched between the two; replaces the other
laws for those modes) and "blend-attack" (the residuals of the two recorded neighbours, each resampled to the
note's pitch, mixed by note; ``LawsInstrument._blended_attack``)."""
RESIDUAL_SECONDS = 0.5
"""Length of each recorded note's residual after its modes (the attack component), seconds. Longer than the
single-note fits' 0.1 s (``training.modal_analysis.ATTACK_SECONDS``): between partials and above them a plucked or
struck note keeps decaying noise (string and body, mallet) over its first half second that no sum of modes
holds. Played with its donor's residual over that span, resampled to its pitch, a held-out note came closer to
its recording than with the donor's 0.1 s residual as recorded: on the dev set's 8 tuned-on instruments with >= 5
notes, every other note held out, the medians relative to the better of the fidelity bench's two baselines
(transposed single-note model, sampler), geometric mean over the 8: LSD 1.060 -> 1.007, MR-STFT 1.200 -> 1.053."""
NEIGHBOUR_SHARE = 0.5
"""Law "neighbours": a note a fraction x of the way from its donor to the recorded neighbour on its other side
takes x * NEIGHBOUR_SHARE of the difference between the two notes' deviations (partial by partial number) from the
decay and body laws. Deviations that a partial keeps from note to note (a string's own damping, the body's
response at a partial) carry over; one note's measurement noise is not copied whole. On the dev set's 8
tuned-on instruments (every other note held out) against playing the donor's deviations alone: T60 error, median
of the 8 medians, 0.425 -> 0.384; medians relative to the better of the fidelity bench's two baselines, geometric
mean over the 8, LSD 1.007 -> 0.989, MR-STFT 1.053 -> 1.053; LSD below both baselines on 6 instruments (was 4),
MR-STFT on 4 (was 3), held-out f0 within 5 cents on 6 (was 7: a banjo at 5.00 -> 5.01). Also tried: the decays
alone at share 0.5 (LSD 1.004, MR-STFT 1.051) or 1 (LSD 1.010), the amplitudes alone at 0.5 (0.995, 1.055),
the amplitudes at 1 with the decays at 0.5 (0.981, 1.057)."""
ALL_LAWS = ("pitch", "decay", "body", "neighbours", "measured-decay", "tracks", "resample-attack", "blend-attack")
MEASURED_OCTAVES = 0.25
"""Law "measured-decay": bandwidth of its Gaussian kernel in log2 frequency (octaves)."""
MEASURED_SEMITONES = 4.0
"""Law "measured-decay": bandwidth of its Gaussian kernel in note (semitones)."""
MEASURED_SHARE = 0.5
"""Law "measured-decay": how far (in log T60) a scored partial of a note half way between two recorded notes moves
from the T60 the other laws give it to the law's target (linearly less nearer the donor, none at it).

The fidelity score measures a partial's T60 on its envelope (``training.metrics.note_decays``); a partial is often
a cluster of modes (a beating pair) whose envelope decays as none of its modes does, so the law works on the
recorded partials' measured T60s and moves all the modes of a cluster by one factor. The target: a Gaussian kernel
average of the recorded notes' measured log T60s over (log2 f, note), bandwidths ``MEASURED_OCTAVES`` and
``MEASURED_SEMITONES``, plus ``MEASURED_DONOR_SHARE`` of the donor partial's own deviation from it. Decided on the
dev set's 8 tuned-on instruments with >= 5 notes (every other note held out; the fidelity bench's conditioned rows)
against the laws without it: T60 error, median of the 8 medians, 0.367 -> 0.353; medians relative to the better
of the bench's two baselines, geometric mean over the 8, LSD 0.975 -> 0.973, MR-STFT 1.036 -> 1.033; MR-STFT below
both baselines on 4 instruments (was 3); f0 7, partials 4, T60 1, LSD 7 (unchanged). The kernel law alone (share
1, no donor deviation) cut the T60 error most (0.312) but lost on LSD (1.002) and MR-STFT (1.069); shares 1 and
0.5 of the deviation (0.345; 0.988, 1.052), 0.5 and 0 (0.338; 0.976, 1.039), 0.5 and 1 (0.365; 0.974, 1.030),
0.75 and 0.5 (0.358; 0.978, 1.041); the share 0.5 at every distance from the donor (0.352; 0.974, 1.034);
bandwidths 0.15, 0.25, 0.5 octave x 3, 4, 6 semitones on the laws before the per-note damping levels: 0.25 x 4 among
the best on all three."""
MEASURED_DONOR_SHARE = 0.5
"""Law "measured-decay": share of the donor partial's own deviation (log T60) from the kernel law kept in the target."""
TRACK_CENTS = 40.0
"""Two neighbouring notes' modes are one track when each is the other's nearest in ratio to f0, within this many
cents (a stiff string's partial k moves by a few cents between neighbouring notes; a bar's modes by tens)."""


@dataclass
class NoteFit:
    """One recorded note's modes, seen by the laws.

    note : MIDI note of the label; f0 : Hz, measured fundamental; b : inharmonicity of its partials
    freqs, sigma : (N,) Hz and 1/s; amps : (N,) complex amplitudes at t = 0; k : (N,) stiff-string partial
    number of each mode (0: no law, the mode keeps its ratio to f0); attack : (L,) residual at ``sample_rate``
    decays : the recording's scored partials and their measured T60s (``training.metrics.note_decays``), or None
    """

    note: float
    f0: float
    b: float
    freqs: np.ndarray
    sigma: np.ndarray
    amps: np.ndarray
    k: np.ndarray
    attack: np.ndarray
    sample_rate: float
    decays: NoteDecays | None = None


def fit_note(rec: Recording, modes: int = MODES, residual_seconds: float = RESIDUAL_SECONDS) -> NoteFit:
    """The single-note analysis of the recordings helper (``analyse_recording``, residual over the first
    ``residual_seconds``) plus a partial number per mode."""
    from training.fits import estimate_f0, harmonic_targets
    from training.modal_analysis import analyse_recording

    try:
        analysis = analyse_recording(rec.audio.astype(np.float64), rec.sample_rate, modes, attack_seconds=residual_seconds)
    except ValueError as exc:
        raise EigentoneError(f"{rec.path}: {exc}; is it a plucked or struck note?") from None
    est = analysis.partials
    f0 = estimate_f0(est, rec.note)
    b = float(np.clip(harmonic_targets(est, f0, HARMONICS_FOR_B)[4], *B_RANGE))
    return NoteFit(rec.note, f0, b, est.freqs_hz, est.sigma, est.amplitudes, partial_numbers(est.freqs_hz, f0, b),
                   analysis.attack, rec.sample_rate, note_decays(rec.audio, rec.sample_rate, rec.note))


def stiff_ratio(k: np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """k sqrt(1 + B k^2): the frequency of partial k of a stiff string over its fundamental."""
    return k * np.sqrt(1.0 + b * k * k)


def partial_numbers(freqs: np.ndarray, f0: float, b: float) -> np.ndarray:
    """(N,) int: the stiff-string partial k >= 1 within ``HARMONIC_CENTS`` of each frequency, else 0."""
    k = np.maximum(np.round(freqs / f0), 1.0)
    # refine once: with stretch, partial k sits above k f0, so round against the stretched series
    k = np.maximum(np.round(freqs / (f0 * np.sqrt(1.0 + b * k * k))), 1.0)
    near = np.abs(cents(freqs, f0 * stiff_ratio(k, b))) <= HARMONIC_CENTS
    return np.where(near, k, 0).astype(np.int64)


def match_tracks(ratio_a: np.ndarray, ratio_b: np.ndarray, tolerance: float = TRACK_CENTS) -> np.ndarray:
    """(Na,) int: for each mode of note a (ratios to its f0), the mode of note b on the same track, or -1.

    A track is a mutual nearest neighbour in ratio within ``tolerance`` cents (unmatched: -1)."""
    out = np.full(ratio_a.size, -1, dtype=np.int64)
    if ratio_a.size == 0 or ratio_b.size == 0:
        return out
    gap = np.abs(cents(ratio_a[:, None], ratio_b[None, :]))  # (Na, Nb)
    a_to_b, b_to_a = np.argmin(gap, axis=1), np.argmin(gap, axis=0)
    mutual = (b_to_a[a_to_b] == np.arange(ratio_a.size)) & (gap[np.arange(ratio_a.size), a_to_b] <= tolerance)
    out[mutual] = a_to_b[mutual]
    return out


def neighbour_shifts(k: np.ndarray, res: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) each: for every mode of every recorded note, the recorded neighbour above's (below's) deviation from
    a law for the mode's partial number minus its own note's, 0 where either note lacks that partial or k = 0.

    k (T, N) partial numbers; res (T, N) each mode's deviation from the law; weight (T, N) >= 0. A note's deviation
    for partial k is the weighted mean over its modes numbered k (a beating pair is one partial)."""
    n_k = int(k.max()) + 1 if k.size else 1
    per_k = np.zeros((k.shape[0], n_k))
    has_k = np.zeros((k.shape[0], n_k), dtype=bool)
    for t in range(k.shape[0]):
        on = k[t] > 0
        total = np.bincount(k[t][on], weights=weight[t][on], minlength=n_k)
        has_k[t] = total > 0
        per_k[t, has_k[t]] = (np.bincount(k[t][on], weights=(weight[t] * res[t])[on], minlength=n_k)[has_k[t]]
                              / total[has_k[t]])
    shifts = []
    for step in (1, -1):
        out = np.zeros(k.shape)
        for t in range(k.shape[0]):
            if 0 <= t + step < k.shape[0]:
                ok = (k[t] > 0) & has_k[t + step][k[t]] & has_k[t][k[t]]
                out[t, ok] = per_k[t + step, k[t][ok]] - per_k[t, k[t][ok]]
        shifts.append(out)
    return shifts[0], shifts[1]


def partial_clusters(freqs: np.ndarray, decays: NoteDecays) -> np.ndarray:
    """(N,) int: for each mode (frequencies (N,) Hz) the scored partial of ``decays`` it is heard in, or -1.

    A scored partial's T60 is measured on the envelope at its peak frequency, smoothed by a Blackman-Harris window
    of ``window_s`` seconds (``training.modal_analysis.peak_t60``): every mode within that window's main lobe,
    4 / window_s Hz, beats in that envelope (a beating pair is one partial). A mode goes to its nearest partial."""
    out = np.full(freqs.size, -1, dtype=np.int64)
    if decays.freqs_hz.size == 0 or freqs.size == 0:
        return out
    gap = np.abs(freqs[:, None] - decays.freqs_hz[None])  # (N, P) Hz
    nearest = np.argmin(gap, axis=1)
    lobe = 4.0 / np.maximum(decays.peaks.window_s, 1e-6)  # (P,) Hz
    inside = gap[np.arange(freqs.size), nearest] <= lobe[nearest]
    out[inside] = nearest[inside]
    return out


def _pad(values: np.ndarray, size: int, fill: complex) -> np.ndarray:
    out = np.full(size, fill, dtype=values.dtype)
    out[: values.size] = values
    return out


def _hats(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(n, G) piecewise-linear basis on uniformly spaced ``knots`` at x (clamped to the knots' range)."""
    step = knots[1] - knots[0]
    x = np.clip(x, knots[0], knots[-1])
    return np.maximum(1.0 - np.abs(x[:, None] - knots[None]) / step, 0.0)


def fit_smooth_law(x: np.ndarray, y: np.ndarray, weight: np.ndarray, knots: np.ndarray,
                   groups: tuple[np.ndarray, ...] = (), smooth: float = SMOOTHNESS) -> tuple[np.ndarray, list[np.ndarray]]:
    """Weighted least squares y ~ g(x) + sum_i e_i[groups[i]]: g piecewise linear on ``knots`` with a
    second-difference penalty ``smooth`` (relative to the total weight); for each array of ``groups`` (one group
    index >= 0 per sample), one offset per group >= 1 (group 0: none). A whisper of ridge ties the offsets to 0
    (it fixes the constant that g and the offsets share).

    Returns (g at the knots (G,), [e_i (max group + 1,) with e_i[0] = 0 for each array of ``groups``]).
    """
    columns = [_hats(x, knots)]
    for index in groups:
        onehot = np.zeros((x.size, int(index.max()) + 1 if index.size else 1))
        onehot[np.arange(x.size), index] = 1.0
        columns.append(onehot[:, 1:])
    basis = np.concatenate(columns, axis=1)
    g = knots.size
    rows = [basis * weight[:, None]]
    rhs = [y * weight]
    scale = math.sqrt(smooth * weight.sum())
    if g >= 3:
        second = np.zeros((g - 2, basis.shape[1]))
        for i in range(g - 2):
            second[i, i : i + 3] = (1.0, -2.0, 1.0)
        rows.append(scale * second)
        rhs.append(np.zeros(g - 2))
    ridge = np.zeros((basis.shape[1] - g, basis.shape[1]))
    ridge[:, g:] = np.eye(basis.shape[1] - g) * 1e-3 * scale
    rows.append(ridge)
    rhs.append(np.zeros(basis.shape[1] - g))
    coef = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)[0]
    offsets, start = [], g
    for block in columns[1:]:
        offsets.append(np.r_[0.0, coef[start : start + block.shape[1]]])
        start += block.shape[1]
    return coef[:g], offsets


def _law_at(log_f: torch.Tensor, knots: torch.Tensor, values: torch.Tensor, lo: float, hi: float, step: float) -> torch.Tensor:
    """A piecewise-linear law (knots (G,) log2 Hz from ``lo`` to ``hi`` by ``step``, values (G,)) at log_f (...)."""
    x = torch.clamp(log_f, lo, hi)[..., None]
    return (torch.relu(1.0 - torch.abs(x - knots) / step) * values).sum(-1)


class LawsInstrument(nn.Module):
    """Excite module of a conditioned instrument: controls (V, 4) -> the contract's outputs for any note.

    Buffers (T recorded notes, N modes each, G law knots, L attack samples):
      notes (T,); gap_below, gap_above (T,) semitones to the neighbours (1e6 at the ends)
      ratio (T, N) donor frequency / donor f0; k (T, N) partial numbers (0 = ratio kept); law_cents (T, N)
      offset of each mode from its stiff-string law in cents; log_sigma, log_amp, phase (T, N) the fits
      knots (G,) log2 Hz; decay_law, body_law (G,) log sigma and log |amplitude| over log2 frequency
      excitation (T, N) log amplitude of each mode's partial number k (the pluck/strike spectrum, 0 for k = 0)
      decay_level (T,) each recorded note's damping level (log sigma) beside the decay law
      decay_res, body_res (T, N) each mode's deviation from the laws (and its note's damping level) at its own frequency
      tune (T,) cents of each recorded f0 from its label; log_b (T,) its log inharmonicity; attack (T, L)
      up_*, down_* (T, N) each mode's track in the recorded neighbour above / below (``_tracks``)
    Tuning and log B are interpolated linearly in note between neighbouring recordings.
    """

    def __init__(self, fits: list[NoteFit], base_velocity: float = 100 / 127, laws: tuple[str, ...] = LAWS,
                 measured_octaves: float = MEASURED_OCTAVES, measured_semitones: float = MEASURED_SEMITONES):
        super().__init__()
        self.laws = tuple(laws)
        fits = sorted(fits, key=lambda f: f.note)
        if len(fits) < 1:
            raise ValueError("no recorded notes")
        n_modes = max(f.freqs.size for f in fits)
        notes = np.array([f.note for f in fits])
        tune = np.array([float(cents(f.f0, reference.midi_to_hz(f.note))) for f in fits])
        log_b = np.log(np.array([f.b for f in fits]))
        rows = {key: [] for key in ("ratio", "k", "law_cents", "log_sigma", "log_amp", "phase", "log_f", "weight")}
        for f in fits:
            freqs, sigma, amps = _pad(f.freqs, n_modes, 1.0), _pad(f.sigma, n_modes, 1.0), _pad(f.amps, n_modes, 0j)
            k = _pad(f.k, n_modes, 0)
            mag = np.abs(amps)
            rows["ratio"].append(freqs / f.f0)
            rows["k"].append(k)
            with np.errstate(divide="ignore", invalid="ignore"):
                rows["law_cents"].append(np.where(k > 0, cents(freqs, f.f0 * stiff_ratio(k, f.b)), 0.0))
            rows["log_sigma"].append(np.log(np.maximum(sigma, 1e-3)))
            rows["log_amp"].append(np.log(np.maximum(mag, 1e-12)))
            rows["phase"].append(np.angle(amps))
            rows["log_f"].append(np.log2(freqs))
            # strong modes decide the laws (their decays are measured best); padding rows never do
            rows["weight"].append(np.where(np.arange(n_modes) < f.freqs.size,
                                           np.sqrt(np.clip(mag / max(mag.max(), 1e-30), 1e-4, 1.0)), 0.0))
        tab = {key: np.array(value) for key, value in rows.items()}
        tab.update(self._tracks(fits, tab, n_modes))
        x, w = tab["log_f"].ravel(), tab["weight"].ravel()
        knots = np.arange(x[w > 0].min() - KNOT_OCTAVES, x[w > 0].max() + 2 * KNOT_OCTAVES, KNOT_OCTAVES)
        note_index = np.repeat(np.arange(len(fits)), n_modes)  # (T N,) which recorded note each mode is of
        decay_law, (level, _) = fit_smooth_law(x, tab["log_sigma"].ravel(), w, knots,
                                               groups=(note_index + 1, tab["k"].ravel()))
        decay_level = level[1:]  # (T,) each recorded note's damping level
        body_law, (excitation,) = fit_smooth_law(x, tab["log_amp"].ravel(), w, knots, groups=(tab["k"].ravel(),))
        exc = excitation[tab["k"]]  # (T, N)
        decay_res = (tab["log_sigma"] - decay_level[:, None]
                     - (_hats(x, knots) @ decay_law).reshape(tab["log_sigma"].shape))
        body_res = tab["log_amp"] - exc - (_hats(x, knots) @ body_law).reshape(exc.shape)
        for name, res in (("decay", decay_res), ("body", body_res)):
            up, down = neighbour_shifts(tab["k"].astype(np.int64), res, np.exp(tab["log_amp"]) * (tab["weight"] > 0))
            self.register_buffer(f"{name}_up", torch.tensor(up, dtype=torch.float32))
            self.register_buffer(f"{name}_down", torch.tensor(down, dtype=torch.float32))
        for key, value in (*((k, tab[k]) for k in ("ratio", "k", "law_cents", "log_sigma", "log_amp", "phase",
                                                    "up_ok", "up_log_ratio", "up_log_sigma", "up_log_amp",
                                                    "down_ok", "down_log_ratio", "down_log_sigma", "down_log_amp")),
                           ("log_f", tab["log_f"]), ("knots", knots), ("decay_law", decay_law), ("decay_level", decay_level),
                           ("body_law", body_law),
                           ("excitation", exc), ("decay_res", decay_res), ("body_res", body_res)):
            self.register_buffer(key, torch.tensor(value, dtype=torch.float32))
        self.register_buffer("freq_hz", torch.tensor(np.exp2(tab["log_f"]), dtype=torch.float32))
        self._measured_points(fits, np.exp2(tab["log_f"]), measured_octaves, measured_semitones)
        self.register_buffer("below", torch.tensor((tab["k"] == 0) & (tab["ratio"] < BODY_RATIO), dtype=torch.float32))
        gaps = np.diff(notes)
        self.register_buffer("notes", torch.tensor(notes, dtype=torch.float32))
        self.register_buffer("gap_below", torch.tensor(np.r_[1e6, gaps], dtype=torch.float32))
        self.register_buffer("gap_above", torch.tensor(np.r_[gaps, 1e6], dtype=torch.float32))
        self.register_buffer("tie_break", torch.arange(len(fits), dtype=torch.float32) * 1e-4)
        self.register_buffer("tune", torch.tensor(tune, dtype=torch.float32))
        self.register_buffer("log_b", torch.tensor(log_b, dtype=torch.float32))
        self.register_buffer("base_velocity", torch.tensor(float(base_velocity)))
        length = max(f.attack.size for f in fits)
        self.register_buffer("attack", torch.tensor(np.array([_pad(f.attack, length, 0.0) for f in fits]),
                                                    dtype=torch.float32))
        self.sample_rate = float(fits[0].sample_rate)
        self.n_modes = n_modes
        self.knot_span = (float(knots[0]), float(knots[-1]), float(knots[1] - knots[0]))

    def _measured_points(self, fits: list[NoteFit], freqs: np.ndarray, octaves: float, semitones: float) -> None:
        """Buffers of law "measured-decay" (P scored partials over all recorded notes, at least one row):
        point_log_f (P,) log2 Hz / ``octaves``, point_note (P,) note / ``semitones``, point_log_t60 (P,) log T60 s;
        per mode (T, N): scored (1 when heard in a scored partial), partial_log2 (log2 of that partial's frequency
        over the mode's) and measured_log_t60 (log of that partial's measured T60 s)."""
        scored, offset, log_t60 = (np.zeros(freqs.shape) for _ in range(3))
        points = []
        for t, f in enumerate(fits):
            if f.decays is None or f.decays.freqs_hz.size == 0:
                continue
            d = f.decays
            points.append(np.stack([np.log2(d.freqs_hz) / octaves, np.full(d.freqs_hz.size, d.note / semitones),
                                    np.log(d.t60)], axis=1))
            member = partial_clusters(freqs[t, : f.freqs.size], d)
            on = np.nonzero(member >= 0)[0]
            scored[t, on] = 1.0
            offset[t, on] = np.log2(d.freqs_hz[member[on]] / freqs[t, on])
            log_t60[t, on] = np.log(d.t60[member[on]])
        table = np.concatenate(points) if points else np.zeros((1, 3))
        for key, value in (("point_log_f", table[:, 0]), ("point_note", table[:, 1]), ("point_log_t60", table[:, 2]),
                           ("scored", scored), ("partial_log2", offset), ("measured_log_t60", log_t60)):
            self.register_buffer(key, torch.tensor(value, dtype=torch.float32))
        self.measured_scale = (float(octaves), float(semitones))

    @staticmethod
    def _tracks(fits: list[NoteFit], tab: dict[str, np.ndarray], n_modes: int) -> dict[str, np.ndarray]:
        """Each mode's track in the recorded neighbour above ("up_") and below ("down_"): (T, N) log ratio to f0,
        log sigma and log |amplitude| of the matched mode there, and ``*_ok`` = 1 where there is one."""
        values = {"log_ratio": np.log(tab["ratio"]), "log_sigma": tab["log_sigma"], "log_amp": tab["log_amp"]}
        out = {f"{side}_{key}": np.zeros((len(fits), n_modes)) for side in ("up", "down")
               for key in ("ok", *values)}
        for t, f in enumerate(fits):
            for side, other in (("up", t + 1), ("down", t - 1)):
                if not 0 <= other < len(fits):
                    continue
                match = match_tracks(f.freqs / f.f0, fits[other].freqs / fits[other].f0)
                ok = np.nonzero(match >= 0)[0]
                out[f"{side}_ok"][t, ok] = 1.0
                for key, value in values.items():
                    out[f"{side}_{key}"][t, ok] = value[other, match[ok]]
        return out

    def weights(self, note: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """note (V, 1) -> (donor one-hot (V, T), linear interpolation weights between recorded notes (V, T))."""
        distance = torch.abs(note - self.notes[None]) + self.tie_break[None]
        donor = (distance <= distance.min(dim=1, keepdim=True).values).to(note.dtype)
        rise = (note - self.notes[None]) / self.gap_below[None] + 1.0
        fall = (self.notes[None] - note) / self.gap_above[None] + 1.0
        hat = torch.clamp(torch.minimum(rise, fall), 0.0, 1.0)
        return donor, hat / hat.sum(dim=1, keepdim=True)

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note, velocity, _, _ = split_controls(controls)
        donor, hat = self.weights(note)  # (V, T)
        f0 = midi_to_hz(note) * torch.exp((hat @ self.tune[:, None]) * (math.log(2.0) / 1200.0))  # (V, 1) Hz
        b = torch.exp(hat @ self.log_b[:, None])  # (V, 1)
        k = donor @ self.k  # (V, N)
        law = k * torch.sqrt(1.0 + b * k * k) * torch.exp((donor @ self.law_cents) * (math.log(2.0) / 1200.0))
        ratio = torch.where(k > 0, law, donor @ self.ratio) if "pitch" in self.laws else donor @ self.ratio  # (V, N)
        freqs = f0 * ratio  # (V, N) Hz
        if "pitch" in self.laws:  # modes below the fundamental (body, air) stay where the donor had them
            freqs = torch.where((donor @ self.below) > 0.5, donor @ self.freq_hz, freqs)
        log_f = torch.log(freqs) * (1.0 / math.log(2.0))  # log2 (the ONNX exporter mishandles torch.log2)
        transposed = torch.exp(donor @ self.log_sigma) * freqs / (donor @ self.freq_hz)  # rates scale with the pitch
        body_res = donor @ self.body_res  # (V, N)
        if "neighbours" in self.laws:
            up, down = self._toward_neighbours(note, donor)
            body_res = body_res + NEIGHBOUR_SHARE * (up * (donor @ self.body_up) + down * (donor @ self.body_down))
        if "decay" in self.laws:  # partials follow the damping law; modes that follow no partial law transpose
            sigma = torch.where(k > 0, torch.exp(self._partial_log_sigma(note, donor, hat, log_f)), transposed)
        else:
            sigma = transposed
        if "body" in self.laws:
            log_amp = _law_at(log_f, self.knots, self.body_law, *self.knot_span) + donor @ self.excitation + body_res
        else:
            log_amp = donor @ self.log_amp
        if "measured-decay" in self.laws:
            sigma = self._measured_decay(note, donor, log_f, sigma)
        if "tracks" in self.laws:
            freqs, sigma, log_amp = self._along_tracks(note, donor, f0, freqs, sigma, log_amp)
        magnitude = torch.exp(log_amp) * (velocity / self.base_velocity)  # (V, N)
        phase = donor @ self.phase
        z0 = torch.stack([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=-1)  # (V, N, 2)
        if "blend-attack" in self.laws:
            attack = self._blended_attack(note, hat)
        else:
            attack = donor @ self.attack  # (V, L)
            if "resample-attack" in self.laws:
                attack = self._resampled(attack, torch.exp((note - donor @ self.notes[:, None]) * (math.log(2.0) / 12.0)))
        return {"sigma": sigma, "omega": 2.0 * math.pi * freqs, "z0": z0, "c": unit_readout(z0),
                "attack": attack * (velocity / self.base_velocity)}

    def t60_law(self, log_f: torch.Tensor, note: torch.Tensor) -> torch.Tensor:
        """(V, N) log T60 (s) of law "measured-decay" at partials of log2 frequency log_f (V, N) of notes (V, 1): the
        recorded notes' measured log T60s averaged with Gaussian weights in log2 frequency and in note
        (bandwidths ``measured_scale``: octaves, semitones), normalised over the P recorded partials."""
        octaves, semitones = self.measured_scale
        d_f = (log_f * (1.0 / octaves))[..., None] - self.point_log_f  # (V, N, P)
        d_note = (note * (1.0 / semitones))[..., None] - self.point_note  # (V, 1, P)
        weight = torch.softmax(-0.5 * (d_f * d_f + d_note * d_note), dim=-1)  # the nearest points win far off
        return (weight * self.point_log_t60).sum(-1)

    def _measured_decay(self, note: torch.Tensor, donor: torch.Tensor, log_f: torch.Tensor,
                        sigma: torch.Tensor) -> torch.Tensor:
        """(V, N) 1/s: ``sigma`` with the modes heard in each of the donor's scored partials scaled by one factor (the
        donor's own decays times it, blended with ``sigma``), so that the partial's T60 moves toward a target:
        ``t60_law`` at its new frequency (log_f (V, N) log2 Hz of the modes) and the note (V, 1), plus
        ``MEASURED_DONOR_SHARE`` of the donor's own deviation from that law. It moves ``MEASURED_SHARE`` of the way
        there (in log T60) from the T60 the other laws give it half way to the recorded neighbour, none at the donor
        (a recorded note plays its own fit), linearly in between."""
        partial_log_f = donor @ self.partial_log2
        measured = donor @ self.measured_log_t60  # (V, N) log s: the donor's partial as recorded
        donor_law = self.t60_law(donor @ self.log_f + partial_log_f, donor @ self.notes[:, None])
        target = self.t60_law(log_f + partial_log_f, note) + MEASURED_DONOR_SHARE * (measured - donor_law)
        up, down = self._toward_neighbours(note, donor)
        share = MEASURED_SHARE * torch.clamp(2.0 * (up + down), 0.0, 1.0)  # (V, 1)
        log_sigma = torch.log(sigma)
        moved = log_sigma + share * (donor @ self.log_sigma + measured - target - log_sigma)
        return torch.where((donor @ self.scored) > 0.5, torch.exp(moved), sigma)

    def _partial_log_sigma(self, note: torch.Tensor, donor: torch.Tensor, hat: torch.Tensor,
                           log_f: torch.Tensor) -> torch.Tensor:
        """(V, N) log sigma (1/s) of the donor's partials at their new frequencies (log2 Hz, (V, N)): the decay law,
        plus the damping level interpolated between the recorded notes (``hat`` (V, T), ``weights``), plus the donor's
        deviation from both, moved toward the neighbour's by law "neighbours"."""
        decay_res = donor @ self.decay_res
        if "neighbours" in self.laws:
            up, down = self._toward_neighbours(note, donor)
            decay_res = decay_res + NEIGHBOUR_SHARE * (up * (donor @ self.decay_up) + down * (donor @ self.decay_down))
        level = hat @ self.decay_level[:, None]  # (V, 1)
        return _law_at(log_f, self.knots, self.decay_law, *self.knot_span) + level + decay_res

    def _toward_neighbours(self, note: torch.Tensor, donor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, 1) each: how far the note lies from its donor toward the recorded neighbour above / below, as a
        fraction of the gap (0 at the donor, 1 at that neighbour; one of the two is 0)."""
        offset = note - donor @ self.notes[:, None]  # (V, 1) semitones from the donor
        return (torch.clamp(offset / (donor @ self.gap_above[:, None]), 0.0, 1.0),
                torch.clamp(-offset / (donor @ self.gap_below[:, None]), 0.0, 1.0))

    def _along_tracks(self, note: torch.Tensor, donor: torch.Tensor, f0: torch.Tensor, freqs: torch.Tensor,
                      sigma: torch.Tensor, log_amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Modes on a track to the recorded neighbour on the note's side: ratio, log sigma and log |amplitude|
        linear in note between the donor's value and the neighbour's (V, N each); other modes unchanged."""
        up, down = self._toward_neighbours(note, donor)
        up, down = up * (donor @ self.up_ok), down * (donor @ self.down_ok)  # (V, N)
        on_track = (up + down) > 0.0

        def along(own: torch.Tensor, key: str) -> torch.Tensor:
            return own + up * (donor @ getattr(self, f"up_{key}") - own) + down * (donor @ getattr(self, f"down_{key}") - own)

        ratio = torch.exp(along(torch.log(donor @ self.ratio), "log_ratio"))
        return (torch.where(on_track, f0 * ratio, freqs),
                torch.where(on_track, torch.exp(along(donor @ self.log_sigma, "log_sigma")), sigma),
                torch.where(on_track, along(donor @ self.log_amp, "log_amp"), log_amp))

    def _blended_attack(self, note: torch.Tensor, hat: torch.Tensor) -> torch.Tensor:
        """(V, L): the two recorded neighbours' attack residuals, each resampled to the note's pitch, mixed with
        weights sqrt(hat) (hat: (V, T) linear in note, summing to 1): the residuals are noise, uncorrelated between
        two recordings, so these weights keep their power where a linear mix would lose up to 3 dB between notes."""
        rate = torch.exp((note - self.notes[None]) * (math.log(2.0) / 12.0))  # (V, T)
        tables = self.attack[None].expand(note.shape[0], -1, -1)  # (V, T, L)
        return (torch.sqrt(hat)[..., None] * self._resampled(tables, rate[..., None])).sum(dim=1)

    def _resampled(self, table: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """(..., L) tables played ``rate`` (..., 1) times faster (linear interpolation; zero past their end).

        A table is a residual faded out over its second half (``attack_fade``). Played slower (rate < 1) it would
        be cut off mid-fade at sample L, a click across the whole spectrum: there the fade is moved onto the
        output's own time axis (the residual at n rate, faded by attack_fade(n) instead of attack_fade(n rate))."""
        length = table.shape[-1]
        n = torch.arange(length, dtype=table.dtype)
        pos = n * rate  # (..., L)
        lo = torch.clamp(torch.floor(pos), 0.0, length - 1.0)
        frac = pos - lo
        lo_i = lo.to(torch.int64)
        hi_i = torch.clamp(lo_i + 1, max=length - 1)
        out = torch.gather(table, -1, lo_i) * (1.0 - frac) + torch.gather(table, -1, hi_i) * frac
        refade = torch.clamp(attack_fade(n, length) / torch.clamp(attack_fade(pos, length), min=1e-6), max=1.0)
        return torch.where(pos <= length - 1.0, out * refade, torch.zeros_like(out))


def attack_fade(n: torch.Tensor, length: int) -> torch.Tensor:
    """The fade of an attack residual of ``length`` samples at (fractional) sample n: 1 over the first half, a
    half cosine to 0 over the second (as ``training.modal_analysis.analyse_recording`` fades it), 0 past the end."""
    half = length // 2
    x = torch.clamp((n - half) / max(length - half, 1), 0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


CANDIDATE_LAWS: tuple[tuple[str, ...], ...] = tuple(
    base + attack for base in ((), MODE_LAWS, ("pitch", "tracks"), ("tracks",), (*MODE_LAWS, "tracks"))
    for attack in ((), ("resample-attack",), ("blend-attack",)))
"""The sets of laws ``fit_instrument(laws="cv")`` chooses from by leave-one-out cross-validation on the recorded
notes."""
CV_SECONDS = SCORE_SECONDS
"""Each left-out recorded note is scored over the fidelity bench's span (its first 3 s)."""


def leave_one_out(fits: list[NoteFit], recordings: list[Recording], candidates=CANDIDATE_LAWS,
                  seconds: float = CV_SECONDS) -> dict[tuple[str, ...], np.ndarray]:
    """{laws: (M, 2) LSD dB and MR-STFT of each inner recorded note (not the lowest or highest: M = T - 2) played by
    the instrument fitted to the other notes with those laws}, level-matched, first ``seconds``."""
    from training.metrics import level_match, log_spectral_distance, mr_stft_distance

    order = np.argsort([f.note for f in fits])
    fits, recordings = [fits[i] for i in order], [recordings[i] for i in order]
    velocity = float(np.median([r.velocity for r in recordings]))
    out = {laws: np.zeros((max(len(fits) - 2, 0), 2)) for laws in candidates}
    for i in range(1, len(fits) - 1):
        rec = recordings[i]
        ref = rec.audio.astype(np.float64)[: int(seconds * rec.sample_rate)]
        model = LawsInstrument(fits[:i] + fits[i + 1:], velocity)  # its fits do not depend on the laws
        for laws in candidates:
            model.laws = tuple(laws)
            pred = level_match(render_note(model, rec.note, rec.velocity, ref.size), ref)
            out[laws][i - 1] = (log_spectral_distance(pred, ref), mr_stft_distance(pred, ref))
    return out


def choose_laws(scores: dict[tuple[str, ...], np.ndarray]) -> tuple[str, ...]:
    """The laws with the lowest mean LSD + MR-STFT over the left-out notes, each relative to the best set's mean
    (the two scores weigh the same); the default ``LAWS`` when no note could be left out (fewer than 3)."""
    means = {laws: value.mean(axis=0) for laws, value in scores.items() if value.size}
    if not means:
        return LAWS
    best = np.min(np.array(list(means.values())), axis=0)
    return min(means, key=lambda laws: float(np.sum(means[laws] / best)))


def render_note(model: LawsInstrument, note: float, velocity: float, n_samples: int) -> np.ndarray:
    """(n_samples,) float64: the model's note by the contract's closed form, attack residual added."""
    from training.report import controls_tensor, render_contract

    with torch.no_grad():
        out = model(controls_tensor(note, velocity))
    y = render_contract(out, model.sample_rate, n_samples)[0]
    table = out["attack"][0].double().numpy()[:n_samples]
    y[: table.size] += table
    return y


def fit_instrument(recordings: list[Recording], modes: int = MODES, laws: tuple[str, ...] | str = LAWS,
                   report: dict | None = None) -> LawsInstrument:
    """A LawsInstrument from labelled recordings of one instrument (one note each); ``report`` (when given) gets
    the laws played (``"laws"``).

    ``laws="cv"``: the set of ``CANDIDATE_LAWS`` that plays the recorded notes best when each inner note is left out
    and played from the others (``leave_one_out``; the scores go into ``report["leave_one_out"]``). It is not the
    default: with the 2 to 5 inner notes a sample bank gives, each left out between neighbours twice as far apart
    as the notes to be played, the choice among the candidates follows the noise of a few notes, and on the
    dev set's tuned-on instruments the fixed default laws played the notes between recordings better.
    """
    if not recordings:
        raise EigentoneError("no recordings to fit")
    unlabelled = [r.path for r in recordings if not np.isfinite(r.note)]
    if unlabelled:
        raise EigentoneError(f"{unlabelled[0]}: no note label (name the file like E2.flac or list it in labels.csv)")
    rates = {r.sample_rate for r in recordings}
    if len(rates) > 1:
        raise EigentoneError(f"{recordings[0].path}: recordings at different sample rates {sorted(rates)}")
    fits = [fit_note(r, modes) for r in recordings]
    if laws == "cv":
        scores = leave_one_out(fits, recordings)
        laws = choose_laws(scores)
        if report is not None:
            report["leave_one_out"] = {"+".join(k) or "transposed": v.mean(axis=0).tolist()
                                       for k, v in scores.items() if v.size}
    if report is not None:
        report["laws"] = list(laws)
    return LawsInstrument(fits, base_velocity=float(np.median([r.velocity for r in recordings])), laws=tuple(laws))


def export_laws_bundle(model: LawsInstrument, out: str | Path, *, name: str, description: str = "",
                       provenance: dict | None = None) -> dict:
    """Export ``model`` as an .etone bundle (excite graph with its attack output), parity-checked against
    onnxruntime and validated by the engine's loader; returns the manifest. Nothing is left on failure."""
    from engine.bundle import load_bundle
    from export.bundle_writer import write_bundle
    from export.parity import REL_TOLERANCE, check_parity
    from export.torch_export import excite_example, export_excite
    from training.families.diag_ssm import note_range

    out = Path(out)
    model = model.eval()
    excite_bytes, adapter = export_excite(model, modulation=False, attack=True)
    parity = check_parity(adapter, excite_bytes, lambda v, s: excite_example(v, s), "controls", list(adapter.names))
    if not parity["max_rel_error"] <= REL_TOLERANCE:
        raise EigentoneError(f"{out}: excite graph parity failed: relative error {parity['max_rel_error']:.3g} > "
                             f"{REL_TOLERANCE:g} (torch vs onnxruntime); bundle not written")
    notes = model.notes.tolist()
    manifest = write_bundle(
        out, name=name, family="laws", modes=model.n_modes, graphs={"excite": excite_bytes},
        note_range=tuple(note_range(notes)), trained_sample_rate=model.sample_rate,
        description=description or f"conditioned instrument (laws across {len(notes)} recorded notes)",
        training={"recorded_notes": [round(n, 3) for n in notes], **(provenance or {})}, parity={"excite": parity},
        extra={"attack": {"samples": int(model.attack.shape[1]), "sample_rate": model.sample_rate}},
    )
    try:
        load_bundle(out)
    except EigentoneError:
        out.unlink(missing_ok=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.conditioned_laws", description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="labelled notes of one instrument (WAV/FLAC + labels.csv or note names)")
    parser.add_argument("--out", required=True, help="bundle to write, NAME.etone")
    parser.add_argument("--name", help="instrument name (default: the bundle's file name)")
    parser.add_argument("--modes", type=int, default=MODES)
    parser.add_argument("--description", default="", help="one line shown by `eigentone list`")
    parser.add_argument("--laws", default="+".join(LAWS), help=f"laws to play, joined by '+' (of {', '.join(ALL_LAWS)}), "
                        f"or 'cv': chosen by leave-one-out on the recorded notes (default {'+'.join(LAWS)})")
    args = parser.parse_args(argv)
    laws = args.laws if args.laws == "cv" else tuple(args.laws.split("+"))
    unknown = [law for law in laws if law not in ALL_LAWS] if laws != "cv" else []
    if unknown:
        print(f"error: --laws: unknown law {unknown[0]!r} (known: {', '.join(ALL_LAWS)}, or cv)", file=sys.stderr)
        return 2
    from training.data.audio import load_folder

    try:
        torch.set_num_threads(1)
        model = fit_instrument(load_folder(args.folder), args.modes, laws=laws)
        manifest = export_laws_bundle(model, args.out, name=args.name or Path(args.out).stem,
                                      description=args.description, provenance={"data": Path(args.folder).name})
    except EigentoneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({manifest['modes']} modes, notes {manifest['note_range']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
