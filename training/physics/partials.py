"""Measuring partials and pitch from rendered signals (used to check the solvers against theory).

* :func:`matrix_pencil` estimates the damped complex exponentials of a signal (Hua & Sarkar's matrix pencil:
  least squares on a Hankel matrix, SVD-truncated to the model order). For a noiseless sum of damped
  sinusoids it recovers frequencies and decay rates to rounding error.
* :func:`zero_crossing_frequency` gives an instantaneous frequency track from upward zero crossings
  (linear interpolation between samples), for slowly gliding near-sinusoids such as one modal coordinate
  of the nonlinear string.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def matrix_pencil(signal: np.ndarray, sample_rate: float, n_sinusoids: int) -> tuple[np.ndarray, np.ndarray]:
    """Decay rates and frequencies of the ``n_sinusoids`` damped real sinusoids that best fit ``signal``.

    signal: (samples,) real; sample_rate in Hz. Returns (sigma (n,) in 1/s, freq (n,) in Hz), sorted by
    frequency. Cost: one SVD of a (samples/2, samples/2) matrix, so pass a few thousand samples at most.
    """
    y = np.asarray(signal, dtype=np.float64)
    order = 2 * int(n_sinusoids)  # a real sinusoid is a conjugate pair of exponentials
    pencil = y.size // 2
    hankel = scipy.linalg.hankel(y[: y.size - pencil], y[y.size - pencil - 1 :])  # (rows, pencil + 1)
    _, _, vh = np.linalg.svd(hankel, full_matrices=False)
    v = vh[:order].conj().T  # (pencil + 1, order) dominant right singular vectors
    poles = np.linalg.eigvals(np.linalg.pinv(v[:-1]) @ v[1:])  # (order,) z = exp((-sigma + i omega) / fs)
    poles = poles[poles.imag > 0]
    log = np.log(poles) * sample_rate
    idx = np.argsort(log.imag)
    return -log.real[idx], log.imag[idx] / (2 * np.pi)


def zero_crossing_frequency(signal: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Instantaneous frequency from successive upward zero crossings.

    Returns (times (c,) in s at the midpoint between crossings, freq (c,) in Hz).
    """
    y = np.asarray(signal, dtype=np.float64)
    i = np.nonzero((y[:-1] < 0) & (y[1:] >= 0))[0]
    crossings = (i + y[i] / (y[i] - y[i + 1])) / sample_rate  # linear interpolation, s
    return 0.5 * (crossings[1:] + crossings[:-1]), 1.0 / np.diff(crossings)


def cents(freq: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Interval 1200 log2(freq / reference) in cents."""
    return 1200.0 * np.log2(np.asarray(freq, dtype=np.float64) / np.asarray(reference, dtype=np.float64))
