"""Evaluation metrics shared by every family (numpy/scipy only, no torch).

Field / time-domain:
    ``field_nmse``            sum(err^2) / sum(ref^2) over a field (any shape)
    ``pickup_rel_mse``        the same over pickup signals (the DAFx24 string-study metric)
Spectral (audio, 1-D signals at one sample rate):
    ``mr_stft_distance``      multi-resolution STFT: spectral convergence + log-magnitude L1
    ``log_spectral_distance`` LSD in dB (RMS over frequency of the dB difference, mean over frames)
Modal (via ESPRIT, ``training/modal_analysis.py``):
    ``partial_errors``        matched partials: frequency error in cents, T60 relative error
    ``broadband_t60``         Schroeder energy-decay T60 of a whole signal, seconds
Recordings (independent of the models' own ESPRIT analysis: spectral peak matching):
    ``recording_scores``      level-matched first seconds: MR-STFT, LSD, partial cents, T60 error, partials present
Nonlinear strings:
    ``fundamental_trajectory`` f0 over time (short-window ESPRIT)
    ``trajectory_max_cents``  max |cents| between two f0 tracks

``audio_report`` and ``field_report`` bundle them into flat dicts of floats; ``split_report``
evaluates in-horizon (training length) and extrapolated (beyond it) segments separately. A metric that
cannot be measured on a signal (no decaying partials, no decay to fit) is reported as NaN under its own
name, with a ``MissingMetricWarning`` saying why: never left out silently.

Example
-------
>>> fs = 16000.0
>>> t = np.arange(8000) / fs
>>> ref = np.exp(-4 * t) * np.sin(2 * np.pi * 220 * t)
>>> pred = np.exp(-4 * t) * np.sin(2 * np.pi * 220.5 * t)
>>> round(partial_errors(pred, ref, fs)["partial_cents_max"], 1)
3.9
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from training.modal_analysis import (
    ModalEstimate,
    SpectralPeaks,
    esprit,
    esprit_subband,
    fundamental_trajectory,
    peak_t60,
    significant_partials,
    spectral_peaks,
)

__all__ = [
    "NoteDecays",
    "audio_report",
    "broadband_t60",
    "cents",
    "field_nmse",
    "field_report",
    "fundamental_trajectory",
    "log_spectral_distance",
    "mr_stft_distance",
    "note_decays",
    "partial_errors",
    "pickup_rel_mse",
    "recording_scores",
    "split_report",
    "trajectory_max_cents",
]

_EPS = 1e-12

PARTIAL_KEYS = ("partial_cents_mean", "partial_cents_max", "t60_rel_error_mean", "t60_rel_error_max", "partials_matched")
"""What ``partial_errors`` returns (and ``audio_report`` reports as NaN when it cannot)."""
T60_KEYS = ("t60_ref_s", "t60_broadband_rel_error")
"""The broadband decay entries of ``audio_report``."""


class MissingMetricWarning(UserWarning):
    """A metric could not be measured on these signals; its value is NaN."""


def _missing(keys: tuple[str, ...], reason: str) -> dict[str, float]:
    import warnings

    warnings.warn(f"{', '.join(keys)}: not measured ({reason}); reported as NaN", MissingMetricWarning, stacklevel=3)
    return dict.fromkeys(keys, float("nan"))


def cents(freq: np.ndarray | float, ref: np.ndarray | float) -> np.ndarray | float:
    """Interval from ``ref`` to ``freq`` in cents (1200 log2(freq/ref))."""
    return 1200.0 * np.log2(np.asarray(freq, dtype=np.float64) / np.asarray(ref, dtype=np.float64))


def field_nmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Normalised field MSE, sum((pred-ref)^2) / sum(ref^2); any matching shapes, e.g. (examples, samples, points)."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    _check_shapes(pred, ref)
    return float(np.sum((pred - ref) ** 2) / max(np.sum(ref**2), 1e-300))


def pickup_rel_mse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Relative pickup MSE sum(err^2)/sum(ref^2) over (examples, samples) or (samples,) signals."""
    return field_nmse(pred, ref)


def _check_shapes(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")


def _stft_mag(x: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| with a Hann window, hop n_fft/4: (freqs, frames) (mirrors training/losses.py)."""
    _, _, spec = sps.stft(x, nperseg=n_fft, noverlap=n_fft - n_fft // 4, window="hann", boundary="even",
                          padded=True, scaling="spectrum")
    return np.abs(spec)


def mr_stft_distance(pred: np.ndarray, ref: np.ndarray, fft_sizes: tuple[int, ...] = (256, 512, 1024, 2048),
                     floor_db: float = -80.0) -> float:
    """Multi-resolution STFT distance of two 1-D signals: mean over FFT sizes of spectral convergence
    ||R-P||_F/||R||_F plus mean |log P - log R| (natural log; magnitudes floored ``floor_db`` below the
    reference's peak, so a noise floor the model does not reproduce does not dominate)."""
    pred, ref = np.asarray(pred, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    _check_shapes(pred, ref)
    total, used = 0.0, 0
    for n_fft in fft_sizes:
        if n_fft > ref.size:
            continue
        p, r = _stft_mag(pred, n_fft), _stft_mag(ref, n_fft)
        floor = 10.0 ** (floor_db / 20.0) * max(r.max(), _EPS)
        convergence = np.linalg.norm(r - p) / max(np.linalg.norm(r), _EPS)
        log_mag = np.mean(np.abs(np.log(p + floor) - np.log(r + floor)))
        total += convergence + log_mag
        used += 1
    if used == 0:
        raise ValueError(f"signal of {ref.size} samples is shorter than every FFT size {fft_sizes}")
    return float(total / used)


def log_spectral_distance(pred: np.ndarray, ref: np.ndarray, n_fft: int = 2048, floor_db: float = -80.0) -> float:
    """Log-spectral distance in dB: per frame sqrt(mean_f (10 log10 P_pred - 10 log10 P_ref)^2), mean over frames.

    Power spectra are floored ``floor_db`` below the reference's peak so that silent bins do not dominate.
    """
    pred, ref = np.asarray(pred, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    _check_shapes(pred, ref)
    n_fft = min(n_fft, 1 << int(np.floor(np.log2(max(ref.size, 2)))))
    p, r = _stft_mag(pred, n_fft) ** 2, _stft_mag(ref, n_fft) ** 2
    floor = max(r.max(), _EPS) * 10.0 ** (floor_db / 10.0)
    diff = 10.0 * np.log10(np.maximum(p, floor)) - 10.0 * np.log10(np.maximum(r, floor))  # (freqs, frames)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


DENSE_RESIDUAL = 1e-3
"""Relative residual of full-band ESPRIT above which a signal is analysed as a dense spectrum (subband ESPRIT)."""


def _partials(x: np.ndarray, fs: float, n_partials: int, max_samples: int) -> ModalEstimate:
    """The ``n_partials`` strongest decaying partials of x (samples,).

    Full-band ESPRIT of the first ``max_samples`` samples; if that leaves more than ``DENSE_RESIDUAL`` of the
    segment's energy unexplained (more partials than its model order, pairs closer than its window resolves:
    struck plates), subband ESPRIT of the whole signal is used instead when it explains the signal better.
    """
    seg = np.asarray(x, np.float64).ravel()[:max_samples]
    est = esprit(seg, fs, max_samples=max_samples)
    energy = max(float(np.sum(seg**2)), 1e-300)
    residual = float(np.sum((est.synthesise(fs, seg.size) - seg) ** 2)) / energy
    if residual > DENSE_RESIDUAL and np.size(x) > seg.size:
        dense = esprit_subband(x, fs)
        if float(np.sum((dense.synthesise(fs, seg.size) - seg) ** 2)) / energy < residual:
            est = dense
    est = significant_partials(est, rel_amplitude=1e-3)
    est = ModalEstimate(est.freqs_hz[est.sigma > 0], est.sigma[est.sigma > 0], est.amplitudes[est.sigma > 0])
    return est.strongest(n_partials)


def partial_errors(
    pred: np.ndarray,
    ref: np.ndarray,
    sample_rate: float,
    *,
    n_partials: int = 16,
    tolerance_cents: float = 50.0,
    max_samples: int = 8192,
    ref_estimate: ModalEstimate | None = None,
) -> dict[str, float]:
    """Match the strongest partials of ``ref`` (ESPRIT) to those of ``pred`` and compare them.

    Returns ``partial_cents_mean`` / ``partial_cents_max`` (|frequency error| in cents over matched
    partials), ``t60_rel_error_mean`` / ``t60_rel_error_max`` (|T60_pred - T60_ref| / T60_ref) and
    ``partials_matched`` (fraction of the reference partials with a predicted partial within
    ``tolerance_cents``). Signals: 1-D, same sample rate. ``ref_estimate`` skips re-analysing ``ref``.
    """
    ref_est = ref_estimate if ref_estimate is not None else _partials(ref, sample_rate, n_partials, max_samples)
    pred_est = _partials(pred, sample_rate, 4 * n_partials, max_samples)
    if ref_est.freqs_hz.size == 0:
        raise ValueError("reference has no decaying partials")
    errs, t60_errs = [], []
    for f, s in zip(ref_est.freqs_hz, ref_est.sigma):
        if pred_est.freqs_hz.size == 0:
            break
        gaps = cents(pred_est.freqs_hz, f)
        j = int(np.argmin(np.abs(gaps)))
        if abs(gaps[j]) <= tolerance_cents:
            errs.append(abs(gaps[j]))
            t60_errs.append(abs(s / pred_est.sigma[j] - 1.0))  # T60 ∝ 1/sigma
    if not errs:
        return {"partial_cents_mean": float("inf"), "partial_cents_max": float("inf"), "t60_rel_error_mean": float("inf"),
                "t60_rel_error_max": float("inf"), "partials_matched": 0.0}
    return {
        "partial_cents_mean": float(np.mean(errs)),
        "partial_cents_max": float(np.max(errs)),
        "t60_rel_error_mean": float(np.mean(t60_errs)),
        "t60_rel_error_max": float(np.max(t60_errs)),
        "partials_matched": len(errs) / ref_est.freqs_hz.size,
    }


def broadband_t60(x: np.ndarray, sample_rate: float, fit_db: tuple[float, float] = (-5.0, -25.0)) -> float:
    """T60 in seconds from the Schroeder backward-integrated energy decay curve of a whole signal.

    A straight line is fitted to the EDC between ``fit_db`` levels (T20 style) and extrapolated to -60 dB.
    """
    x = np.asarray(x, np.float64).ravel()
    energy = np.cumsum((x**2)[::-1])[::-1]
    if energy[0] <= 0:
        raise ValueError("silent signal has no decay time")
    edc = 10.0 * np.log10(np.maximum(energy / energy[0], 1e-300))
    hi, lo = fit_db
    sel = np.nonzero((edc <= hi) & (edc >= lo))[0]
    if sel.size < 8:
        raise ValueError(f"signal does not decay from {hi} to {lo} dB; too short for a T60 estimate")
    t = sel / sample_rate
    slope = np.polyfit(t, edc[sel], 1)[0]  # dB/s
    return float(-60.0 / slope) if slope < 0 else float("inf")


def trajectory_max_cents(f0_pred: np.ndarray, f0_ref: np.ndarray) -> float:
    """Max |cents| between two f0 tracks of equal length (frames where either is nan are skipped)."""
    f0_pred, f0_ref = np.asarray(f0_pred, np.float64), np.asarray(f0_ref, np.float64)
    n = min(f0_pred.size, f0_ref.size)
    ok = np.isfinite(f0_pred[:n]) & np.isfinite(f0_ref[:n]) & (f0_pred[:n] > 0) & (f0_ref[:n] > 0)
    if not ok.any():
        return float("inf")
    return float(np.max(np.abs(cents(f0_pred[:n][ok], f0_ref[:n][ok]))))


def audio_report(pred: np.ndarray, ref: np.ndarray, sample_rate: float, *, pitch_glide: bool = False,
                 n_partials: int = 16) -> dict[str, float]:
    """All audio metrics of one 1-D prediction against its reference, as a flat dict of floats.

    The partial and T60 entries are always present: NaN (with a ``MissingMetricWarning``) when the signals
    do not allow the measurement, e.g. a reference without decaying partials.
    """
    pred, ref = np.asarray(pred, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    report = {
        "rel_mse": pickup_rel_mse(pred, ref),
        "mr_stft": mr_stft_distance(pred, ref),
        "lsd_db": log_spectral_distance(pred, ref),
    }
    try:
        report.update(partial_errors(pred, ref, sample_rate, n_partials=n_partials))
    except ValueError as exc:
        report.update(_missing(PARTIAL_KEYS, str(exc)))
    try:
        report["t60_ref_s"] = broadband_t60(ref, sample_rate)
    except ValueError as exc:
        report.update(_missing(T60_KEYS, f"reference: {exc}"))
    else:
        try:
            report["t60_broadband_rel_error"] = abs(broadband_t60(pred, sample_rate) / report["t60_ref_s"] - 1.0)
        except ValueError as exc:
            report.update(_missing(T60_KEYS[1:], f"prediction: {exc}"))
    if pitch_glide:
        _, f_ref = fundamental_trajectory(ref, sample_rate)
        _, f_pred = fundamental_trajectory(pred, sample_rate, f0_hint=float(np.nanmedian(f_ref[:3])))
        report["f0_track_max_cents"] = trajectory_max_cents(f_pred, f_ref)
    return report


def field_report(pred_field: np.ndarray, ref_field: np.ndarray, pred_pickup: np.ndarray, ref_pickup: np.ndarray) -> dict[str, float]:
    """Field and pickup errors of a batch: fields (examples, samples, points...), pickups (examples, samples)."""
    return {"field_nmse": field_nmse(pred_field, ref_field), "pickup_rel_mse": pickup_rel_mse(pred_pickup, ref_pickup)}


def split_report(pred: np.ndarray, ref: np.ndarray, sample_rate: float, horizon: int, **kwargs) -> dict[str, dict[str, float]]:
    """``audio_report`` over samples [0, horizon) ("in_horizon") and [horizon, end) ("extrapolated")."""
    pred, ref = np.asarray(pred, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    out = {"in_horizon": audio_report(pred[:horizon], ref[:horizon], sample_rate, **kwargs)}
    if ref.size - horizon >= 2048:
        out["extrapolated"] = audio_report(pred[horizon:], ref[horizon:], sample_rate, **kwargs)
    return out


# ---------------------------------------------------------------- recordings: independent peak-matching scores

SCORE_SECONDS = 3.0
"""Recordings are scored over their first 3 s (or their whole length when shorter)."""
PARTIAL_RANGE_DB = 40.0
"""Reference partials within this many dB of the strongest one are scored."""
MAX_SCORED_PARTIALS = 24
TOLERANCE_CENTS = 50.0
"""A predicted peak further than this from a reference partial does not match it."""
PRESENT_DB = 20.0
"""A matched partial counts as present when its level is within this many dB of the reference's."""


def level_match(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``pred`` scaled to the RMS of ``ref`` (same length); zeros stay zeros."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    rms = float(np.sqrt(np.mean(pred**2)))
    return pred * (float(np.sqrt(np.mean(ref**2))) / rms) if rms > 0 else pred


def scored_partials(ref: SpectralPeaks, range_db: float = PARTIAL_RANGE_DB,
                    max_partials: int = MAX_SCORED_PARTIALS) -> np.ndarray:
    """Indices of the reference partials the scores use: those within ``range_db`` of the strongest, at most
    ``max_partials`` (``ref``'s peaks come strongest first)."""
    return np.nonzero(ref.level_db >= -range_db)[0][:max_partials]


def match_peaks(pred: SpectralPeaks, ref: SpectralPeaks, *, tolerance_cents: float = TOLERANCE_CENTS,
                range_db: float = PARTIAL_RANGE_DB, max_partials: int = MAX_SCORED_PARTIALS) -> dict[str, np.ndarray]:
    """Pair each scored reference partial with the nearest predicted peak (in cents).

    Scored reference partials: those within ``range_db`` of the strongest, at most ``max_partials``.
    Returns arrays over the scored partials: ``ref_hz``, ``pred_index`` (matched peak of ``pred``, -1 if none),
    ``cents`` (pred - ref, nan if unmatched),
    ``level_db`` (pred - ref level, nan if unmatched), ``t60_ratio`` (T60_pred / T60_ref, nan if unmatched or
    either does not decay).
    """
    keep = scored_partials(ref, range_db, max_partials)
    out = {k: np.full(keep.size, np.nan) for k in ("cents", "level_db", "t60_ratio")}
    out["ref_hz"] = ref.freqs_hz[keep]
    out["pred_index"] = np.full(keep.size, -1)
    if pred.freqs_hz.size == 0:
        return out
    for i, k in enumerate(keep):
        gaps = cents(pred.freqs_hz, ref.freqs_hz[k])
        j = int(np.argmin(np.abs(gaps)))
        if abs(gaps[j]) > tolerance_cents:
            continue
        out["cents"][i] = gaps[j]
        out["pred_index"][i] = j
        out["level_db"][i] = pred.level_db[j] - ref.level_db[k]
        if np.isfinite(pred.t60[j]) and np.isfinite(ref.t60[k]):
            out["t60_ratio"][i] = pred.t60[j] / ref.t60[k]
    return out


@dataclass
class NoteDecays:
    """One recorded note's scored partials: those ``recording_scores`` scores, with a finite measured T60.

    note : MIDI note of the label
    freqs_hz : (P,) Hz;  t60 : (P,) s
    peaks : the same partials as ``SpectralPeaks`` (with the envelope windows and spans they were measured with)
    """

    note: float
    freqs_hz: np.ndarray
    t60: np.ndarray
    peaks: SpectralPeaks


def note_decays(audio: np.ndarray, sample_rate: float, note: float, seconds: float = SCORE_SECONDS) -> NoteDecays:
    """The partials ``recording_scores(pred, audio, sample_rate, seconds=seconds)`` scores on ``audio`` (samples,),
    measured exactly as it measures them, those whose T60 is finite."""
    ref = np.asarray(audio, np.float64)[: int(min(np.size(audio), round(seconds * sample_rate)))]
    pk = spectral_peaks(ref, sample_rate, count=MAX_SCORED_PARTIALS, decay_seconds=seconds)
    keep = scored_partials(pk)
    keep = keep[np.isfinite(pk.t60[keep]) & (pk.t60[keep] > 0)]
    scored = pk.subset(keep)
    return NoteDecays(float(note), scored.freqs_hz, scored.t60, scored)


def recording_scores(pred: np.ndarray, ref: np.ndarray, sample_rate: float, *, seconds: float = SCORE_SECONDS,
                     note: float | None = None, ref_peaks: SpectralPeaks | None = None) -> dict[str, float]:
    """How close a rendered note is to its recording: the fidelity bench's and the trainer's scores.

    Both signals (1-D, same rate) are cut to the first ``seconds`` and ``pred`` is level-matched (RMS) to
    ``ref``. Partials come from ``spectral_peaks`` of each signal separately (peak picking, nothing shared
    with the model's fit), then ``match_peaks``:

    * ``mr_stft``, ``lsd_db``: multi-resolution STFT distance, log-spectral distance (dB)
    * ``partial_cents_median`` / ``partial_cents_mean``: |frequency error| over matched partials
    * ``t60_error_median``: median |T60_pred / T60_ref - 1| over matched decaying partials
    * ``partials_present``: fraction of the reference's partials within 40 dB of its strongest (at most 24)
      that the prediction has within 50 cents and within 20 dB of the reference's level
    * ``f0_cents`` (only with ``note``): cents from the recording's partial nearest the note to the prediction's
      peak nearest it (nan if the recording has no partial within a semitone of the note)

    Missing values (no matched partial) are nan, never dropped.
    """
    n = int(min(np.size(ref), round(seconds * sample_rate)))
    ref = np.asarray(ref, np.float64).ravel()[:n]
    pred = np.asarray(pred, np.float64).ravel()[:n]
    if pred.size < n:
        pred = np.pad(pred, (0, n - pred.size))
    pred = level_match(pred, ref)
    ref_pk = ref_peaks if ref_peaks is not None else spectral_peaks(ref, sample_rate, count=MAX_SCORED_PARTIALS,
                                                                    decay_seconds=seconds)
    pred_pk = spectral_peaks(pred, sample_rate, count=3 * MAX_SCORED_PARTIALS, decay_seconds=seconds)
    pairs = match_peaks(pred_pk, ref_pk)
    matched = pairs["pred_index"] >= 0
    if matched.any() and ref_pk.span_s is not None:
        # each matched partial's decay over the same time span and with the same envelope window as the
        # recording's, so a model without the recording's noise floor is not measured over a longer stretch
        scored = scored_partials(ref_pk)[matched]
        t_ref = ref_pk.t60[scored]
        t_pred = peak_t60(pred, sample_rate, pred_pk.freqs_hz[pairs["pred_index"][matched]], seconds=seconds,
                          like=ref_pk.subset(scored))
        ok = np.isfinite(t_ref) & np.isfinite(t_pred)
        ratio = np.full(t_ref.size, np.nan)
        ratio[ok] = t_pred[ok] / t_ref[ok]
        pairs["t60_ratio"][matched] = ratio
    err = np.abs(pairs["cents"][np.isfinite(pairs["cents"])])
    t60 = np.abs(pairs["t60_ratio"][np.isfinite(pairs["t60_ratio"])] - 1.0)
    present = np.isfinite(pairs["cents"]) & (np.abs(np.nan_to_num(pairs["level_db"], nan=1e9)) <= PRESENT_DB)
    scores = {
        "mr_stft": mr_stft_distance(pred, ref),
        "lsd_db": log_spectral_distance(pred, ref),
        "partial_cents_median": float(np.median(err)) if err.size else float("nan"),
        "partial_cents_mean": float(np.mean(err)) if err.size else float("nan"),
        "t60_error_median": float(np.median(t60)) if t60.size else float("nan"),
        "partials_present": float(np.mean(present)) if present.size else float("nan"),
        "partials_scored": float(present.size),
    }
    if note is not None:
        scores["f0_cents"] = fundamental_cents(pred_pk, ref_pk, note)
    return scores


def fundamental_cents(pred: SpectralPeaks, ref: SpectralPeaks, note: float) -> float:
    """Cents from the reference's partial nearest MIDI ``note`` (within 100 cents, within 40 dB of its strongest)
    to the predicted peak nearest that partial; nan when either is missing."""
    target = 440.0 * 2.0 ** ((note - 69.0) / 12.0)
    ok = ref.level_db >= -PARTIAL_RANGE_DB
    if not ok.any() or pred.freqs_hz.size == 0:
        return float("nan")
    gaps = np.abs(cents(ref.freqs_hz[ok], target))
    if gaps.min() > 100.0:
        return float("nan")
    f_ref = ref.freqs_hz[ok][int(np.argmin(gaps))]
    to_pred = cents(pred.freqs_hz, f_ref)
    j = int(np.argmin(np.abs(to_pred)))
    return float(to_pred[j]) if abs(to_pred[j]) <= TOLERANCE_CENTS else float("nan")
