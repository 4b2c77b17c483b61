"""High-resolution modal analysis of a decaying signal: ESPRIT (numpy/scipy only, no torch).

A free-decaying instrument tone is a sum of damped complex exponentials::

    x[k] = sum_n  a_n * exp((-sigma_n + i omega_n) k / fs)   (+ complex conjugates for real x)

ESPRIT (Roy & Kailath 1989) recovers the poles ``exp((-sigma_n + i omega_n)/fs)`` from the
shift invariance of the signal subspace of a Hankel matrix built from ``x``, with a resolution
far beyond the FFT's bin spacing. Amplitudes then follow from a linear least-squares fit.

Used by the diagonal-SSM trainer (to initialise modes from a recording), by
``training/metrics.py`` (partial-frequency, decay and pitch-glide metrics) and by the
engine's tests (sample-rate independence of rendered partials).

Example
-------
>>> fs = 16000.0
>>> t = np.arange(4096) / fs
>>> x = np.exp(-3 * t) * np.cos(2 * np.pi * 220 * t) + 0.5 * np.exp(-8 * t) * np.cos(2 * np.pi * 441 * t)
>>> est = esprit(x, fs, order=4)
>>> np.round(est.freqs_hz, 3)
array([220., 441.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ModalEstimate:
    """Damped sinusoids found in a real signal, one row per partial (positive frequencies only).

    Attributes
    ----------
    freqs_hz : (K,) float, partial frequencies in Hz, ascending
    sigma : (K,) float, decay rates in 1/s (positive = decaying); T60 = 3 ln(10) / sigma
    amplitudes : (K,) complex, so that x(t) ~= sum_k Re(amplitudes_k * exp((-sigma_k + 2 pi i f_k) t))
        with t = 0 at the first sample of the analysed signal
    """

    freqs_hz: np.ndarray
    sigma: np.ndarray
    amplitudes: np.ndarray

    @property
    def t60(self) -> np.ndarray:
        """(K,) seconds for each partial to decay by 60 dB (inf for non-decaying partials)."""
        with np.errstate(divide="ignore"):
            return np.where(self.sigma > 0, 3.0 * np.log(10.0) / np.maximum(self.sigma, 1e-300), np.inf)

    @property
    def energy(self) -> np.ndarray:
        """(K,) total energy of each partial, integral of |a e^{-sigma t}|^2 dt = |a|^2 / (2 sigma)."""
        return np.abs(self.amplitudes) ** 2 / (2.0 * np.maximum(self.sigma, 1e-9))

    def strongest(self, count: int, by: str = "energy") -> ModalEstimate:
        """The ``count`` partials with the largest total ``energy`` (or initial ``amplitude``), sorted by frequency."""
        score = self.energy if by == "energy" else np.abs(self.amplitudes)
        keep = np.sort(np.argsort(-score)[:count])
        return ModalEstimate(self.freqs_hz[keep], self.sigma[keep], self.amplitudes[keep])

    def synthesise(self, sample_rate: float, n_samples: int) -> np.ndarray:
        """(n_samples,) float64 signal rebuilt from the partials."""
        t = np.arange(n_samples) / float(sample_rate)
        poles = -self.sigma + 2j * np.pi * self.freqs_hz  # (K,)
        return np.real(np.exp(np.outer(t, poles)) @ self.amplitudes)


def esprit(
    signal: np.ndarray,
    sample_rate: float,
    order: int | None = None,
    *,
    max_order: int = 160,
    rel_threshold: float = 1e-5,
    window_len: int | None = None,
    max_samples: int = 8192,
    start: int = 0,
    min_freq_hz: float = 1.0,
) -> ModalEstimate:
    """Estimate damped partials of a real signal with (least-squares) ESPRIT.

    Parameters
    ----------
    signal : (samples,) real
    sample_rate : Hz
    order : number of complex exponentials (2 per real partial). None: chosen from the
        singular values (those above ``rel_threshold`` times the largest), at most ``max_order``.
    window_len : Hankel rows L (default min(samples/3, 512)); larger = finer, slower.
    max_samples : analyse at most this many samples starting at ``start``.
    start : first analysed sample; amplitudes are referred back to sample 0 of ``signal``.
    min_freq_hz : partials below this (DC, drift) are dropped.

    Returns
    -------
    ModalEstimate with positive-frequency partials, ascending frequency.
    """
    x = np.asarray(signal, dtype=np.float64).ravel()[start : start + max_samples]
    n = x.size
    if n < 16:
        raise ValueError(f"ESPRIT needs at least 16 samples, got {n}")
    rows = int(window_len or min(n // 3, 512))
    rows = max(4, min(rows, n // 2))
    cols = n - rows + 1
    hankel = np.lib.stride_tricks.sliding_window_view(x, rows).T  # (rows, cols), H[i, j] = x[i + j]
    # signal subspace from the (rows x rows) correlation matrix: cheaper than an SVD of H
    corr = hankel @ hankel.T / cols  # (rows, rows)
    eigvals, eigvecs = np.linalg.eigh(corr)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    if order is None:
        top = max(eigvals[0], 1e-300)
        order = int(np.sum(eigvals > rel_threshold * top))
        order = max(2, min(order, max_order))
    order = int(min(order, rows - 1))
    subspace = eigvecs[:, :order]  # (rows, order)
    phi = np.linalg.lstsq(subspace[:-1], subspace[1:], rcond=None)[0]  # (order, order)
    poles = np.linalg.eigvals(phi)  # (order,) discrete-time poles
    poles = poles[np.abs(poles) > 1e-8]
    log_poles = np.log(poles) * sample_rate  # (-sigma + i omega)
    sigma = -log_poles.real
    freqs = log_poles.imag / (2 * np.pi)
    # amplitudes by least squares against the analysed segment (all poles incl. negative frequencies)
    k = np.arange(n)[:, None]
    vander = np.exp(k * np.log(poles)[None, :])  # (n, order)
    amps = np.linalg.lstsq(vander, x.astype(np.complex128), rcond=None)[0]  # (order,)
    # refer amplitudes to sample 0 of the full signal: a(t0) = a(0) * p^start
    amps = amps * np.exp(-start * np.log(poles))
    keep = freqs >= min_freq_hz
    # a real partial = conjugate pair; Re(2 a e^{pt}) is its contribution
    freqs, sigma, amps = freqs[keep], sigma[keep], 2.0 * amps[keep]
    idx = np.argsort(freqs)
    return ModalEstimate(freqs[idx], sigma[idx], amps[idx])


def significant_partials(estimate: ModalEstimate, rel_amplitude: float = 1e-3, max_sigma: float | None = None) -> ModalEstimate:
    """Drop partials weaker than ``rel_amplitude`` times the strongest, or decaying faster than ``max_sigma``."""
    mag = np.abs(estimate.amplitudes)
    keep = mag >= rel_amplitude * (mag.max() if mag.size else 0.0)
    if max_sigma is not None:
        keep &= estimate.sigma <= max_sigma
    return ModalEstimate(estimate.freqs_hz[keep], estimate.sigma[keep], estimate.amplitudes[keep])


def fundamental_trajectory(
    signal: np.ndarray,
    sample_rate: float,
    *,
    frame_seconds: float = 0.04,
    hop_seconds: float = 0.02,
    f0_hint: float | None = None,
    max_order: int = 40,
    rel_amplitude: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency over time by short-window ESPRIT (pitch glides of nonlinear strings).

    Each frame is analysed with ESPRIT (model order from the singular values, at most ``max_order``);
    the fundamental is the lowest partial whose amplitude is
    at least ``rel_amplitude`` of the frame's strongest (or, with ``f0_hint``, the partial nearest
    the hint in cents), then tracked frame to frame by nearest frequency.

    Returns
    -------
    times : (frames,) seconds at frame centres
    f0 : (frames,) Hz (nan where the frame is silent)
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    frame = max(32, round(frame_seconds * sample_rate))
    hop = max(1, round(hop_seconds * sample_rate))
    peak = np.max(np.abs(x)) if x.size else 0.0
    times, f0s = [], []
    previous = f0_hint
    for begin in range(0, max(x.size - frame + 1, 1), hop):
        seg = x[begin : begin + frame]
        times.append((begin + frame / 2) / sample_rate)
        if seg.size < 32 or np.max(np.abs(seg)) < 1e-6 * max(peak, 1e-300):
            f0s.append(np.nan)
            continue
        est = esprit(seg, sample_rate, max_order=max_order, rel_threshold=1e-6, window_len=min(frame // 3, 200),
                     max_samples=frame)
        mag = np.abs(est.amplitudes)
        # a partial must be strong and neither grow nor die within a few frames (spurious poles do)
        ok = (mag >= rel_amplitude * mag.max()) & (np.abs(est.sigma) < 3.0 / frame_seconds)
        if not ok.any():
            f0s.append(np.nan)
            continue
        cand, weight = est.freqs_hz[ok], mag[ok]
        if previous is None:
            f0 = float(cand.min())
        else:
            f0 = float(cand[np.argmin(np.abs(np.log2(cand / previous)))])
        # a gliding partial splits into nearby poles: take their amplitude-weighted mean frequency
        near = np.abs(1200.0 * np.log2(cand / f0)) < 50.0
        f0 = float(np.sum(weight[near] * cand[near]) / np.sum(weight[near]))
        f0s.append(f0)
        previous = f0
    return np.asarray(times), np.asarray(f0s)
