"""Closed-form modal fits from recordings, shared by every family that learns from audio.

ESPRIT (``training/modal_analysis.py``) finds a recording's decaying partials; these helpers pick the
strong ones, find the fundamental, assign partials to the harmonics of a stiff string and extrapolate
the decays of harmonics the analysis did not find from the string damping law.
"""

from __future__ import annotations

import math

import numpy as np

from eigentone.contract.reference import midi_to_hz
from eigentone.errors import EigentoneError
from training.metrics import cents
from training.modal_analysis import ModalEstimate, esprit, esprit_subband, significant_partials

DENSE_RESIDUAL = 1e-3
"""Relative residual of full-band ESPRIT above which a recording counts as a dense spectrum (struck plate)."""


def relative_residual(est: ModalEstimate, x: np.ndarray, fs: float) -> float:
    """sum((x - rebuilt)^2) / sum(x^2) of the partials in ``est`` over the whole signal x (samples,)."""
    return float(np.sum((est.synthesise(fs, x.size) - x) ** 2) / max(np.sum(x**2), 1e-300))


def strong_partials(x: np.ndarray, fs: float, n_modes: int) -> ModalEstimate:
    """The ``n_modes`` strongest decaying partials of a recording x (samples,).

    Full-band ESPRIT on the first 8192 samples suits sparse spectra (strings, fast-decaying highs).
    When it leaves more than ``DENSE_RESIDUAL`` of the energy unexplained (dense, inharmonic spectra:
    plates, bells, close pairs) subband ESPRIT on the whole signal is tried too, and the estimate with
    the smaller residual wins.
    """
    est = esprit(x, fs, max_order=min(4 * n_modes, 300))
    residual = relative_residual(est, x, fs)
    if residual > DENSE_RESIDUAL:
        dense = esprit_subband(x, fs)
        if relative_residual(dense, x, fs) < residual:
            est = dense
    est = significant_partials(est, rel_amplitude=1e-4)
    keep = (est.sigma > 0) & (est.freqs_hz < 0.48 * fs)
    est = ModalEstimate(est.freqs_hz[keep], est.sigma[keep], est.amplitudes[keep])
    if est.freqs_hz.size == 0:
        raise EigentoneError("no decaying partials found in the recording; is it a plucked/struck note?")
    return est.strongest(n_modes)


def estimate_f0(est: ModalEstimate, note_hint: float) -> float:
    """Fundamental: the partial nearest the labelled note, or the lowest strong partial if unlabelled."""
    mag = np.abs(est.amplitudes)
    strong = est.freqs_hz[mag >= 0.05 * mag.max()]
    if np.isfinite(note_hint):
        target = midi_to_hz(note_hint)
        near = est.freqs_hz[np.abs(cents(est.freqs_hz, target)) < 100]
        if near.size:
            return float(near[np.argmin(np.abs(cents(near, target)))])
    return float(strong.min())


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
        gap = np.abs(cents(est.freqs_hz, guess))
        j = int(np.argmin(gap))
        if gap[j] < 40.0:
            freqs[n - 1], sigma[n - 1], amps[n - 1], found[n - 1] = est.freqs_hz[j], est.sigma[j], est.amplitudes[j], True
            ns = np.nonzero(found)[0] + 1
            if ns.size >= 3:
                b = max(float(np.polyfit(ns.astype(float) ** 2, (freqs[found] / (f0 * ns)) ** 2 - 1, 1)[0]), 0.0)
        else:
            freqs[n - 1] = guess
    sigma[~found] = extrapolated_decays(freqs, sigma, found)[~found]
    return freqs, sigma, amps, found, max(b, 1e-7)


def extrapolated_decays(freqs: np.ndarray, sigma: np.ndarray, found: np.ndarray) -> np.ndarray:
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


def prony_poles(coords: np.ndarray, sample_rate: float, *, pooled: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Damped-sinusoid fit of modal coordinates by second-order linear prediction (Prony).

    coords: (E, S, N) real modal coordinates of E examples, S samples, N modes. Least squares of
    a[k+1] = p1 a[k] + p2 a[k-1], exact for one damped sinusoid; the roots r e^{+-i theta} of
    z^2 - p1 z - p2 give sigma = -ln(r) fs (1/s, negative for a growing fit) and omega = theta fs (rad/s).
    Per example and mode, or ``pooled`` over the examples (one fit per mode).
    Returns sigma, omega, oscillating (E, N) or (N,) pooled; ``oscillating`` is False where the fit is
    degenerate or its roots are real (no oscillation), and sigma, omega are then meaningless.
    """
    a0, a1, a2 = coords[:, :-2], coords[:, 1:-1], coords[:, 2:]  # (E, S-2, N)
    axes = (0, 1) if pooled else 1
    g11, g12, g22 = (a1 * a1).sum(axes), (a1 * a0).sum(axes), (a0 * a0).sum(axes)
    h1, h2 = (a1 * a2).sum(axes), (a0 * a2).sum(axes)
    det = g11 * g22 - g12**2
    ok = det > 1e-30 * (g11 * g22 + 1e-300)
    det = np.where(ok, det, 1.0)
    p1 = (h1 * g22 - h2 * g12) / det
    p2 = (g11 * h2 - g12 * h1) / det
    r = np.sqrt(np.clip(-p2, 1e-12, None))
    cos_theta = p1 / (2 * r)
    ok &= (-p2 > 0) & (np.abs(cos_theta) < 1)
    sigma = -np.log(r) * sample_rate
    omega = np.arccos(np.clip(cos_theta, -1, 1)) * sample_rate
    return sigma, omega, ok
