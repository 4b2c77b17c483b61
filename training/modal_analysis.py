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
from scipy import fft as sp_fft
from scipy import signal as sps
from threadpoolctl import threadpool_limits


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

    def synthesise(self, sample_rate: float, n_samples: int, chunk: int = 8192) -> np.ndarray:
        """(n_samples,) float64 signal rebuilt from the partials (in chunks of ``chunk`` samples: O(chunk K) memory).

        The (chunk, K) table of e^{p t} is computed once; chunk j reuses it with amplitudes a e^{p t_j}, so the
        cost is one matrix product per chunk rather than chunk x K complex exponentials.
        """
        poles = -self.sigma + 2j * np.pi * self.freqs_hz  # (K,)
        out = np.empty(n_samples)
        table = np.exp(np.outer(np.arange(min(chunk, n_samples)) / float(sample_rate), poles))  # (chunk, K)
        for begin in range(0, n_samples, chunk):
            size = min(chunk, n_samples - begin)
            out[begin : begin + size] = np.real(table[:size] @ (self.amplitudes * np.exp(poles * (begin / sample_rate))))
        return out


def _hankel_eig(x: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (rows,) descending and eigenvectors (rows, rows) of the Hankel correlation H H^H / cols.

    x : (samples,) real or complex; H[i, j] = x[i + j] is (rows, cols) with cols = samples - rows + 1.
    The eigenvectors of H H^H are H's left singular vectors (a cheaper route to the signal subspace
    than an SVD of H) and the eigenvalues its squared singular values over cols.
    """
    rows = max(4, min(int(rows), x.size // 2))
    eigvals, eigvecs = np.linalg.eigh(_hankel_correlation(x, rows))
    return eigvals[::-1], eigvecs[:, ::-1]


def _hankel_correlation(x: np.ndarray, rows: int) -> np.ndarray:
    """(rows, rows) H H^H / cols for the Hankel matrix H[i, j] = x[i + j] (cols = samples - rows + 1), never built.

    Row 0 is a correlation, C[0, j] = sum_k x[k] conj(x[j + k]) over k < cols, computed by FFT in O(samples log
    samples); the others follow from the shift structure, C[i + 1, j + 1] = C[i, j] + x[i + cols] conj(x[j + cols])
    - x[i] conj(x[j]), in O(rows^2). Memory O(samples + rows^2), where the product of a strided view costs a
    (rows, cols) copy and O(rows^2 cols) time.
    """
    x = np.asarray(x)
    cols = x.size - rows + 1
    size = sp_fft.next_fast_len(x.size + cols)
    head = sp_fft.fft(x[:cols], size)  # (size,)
    lags = sp_fft.ifft(sp_fft.fft(x, size) * np.conj(head))[:rows]  # lags[j] = sum_k x[j + k] conj(x[k])
    corr = np.empty((rows, rows), complex)
    corr[0] = np.conj(lags)
    corr[:, 0] = lags
    enter, leave = x[cols : cols + rows - 1], x[: rows - 1]  # (rows - 1,)
    step = np.outer(enter, np.conj(enter)) - np.outer(leave, np.conj(leave))  # (rows - 1, rows - 1)
    for i in range(rows - 1):
        corr[i + 1, 1:] = corr[i, :-1] + step[i]
    if not np.iscomplexobj(x):
        corr = corr.real
    return corr / cols


def _shift_invariance_poles(eigvecs: np.ndarray, order: int) -> np.ndarray:
    """(<= order,) discrete-time poles from the signal subspace (Roy & Kailath 1989, least-squares ESPRIT).

    With U the first ``order`` eigenvectors (rows, order), the shift invariance U[1:] = U[:-1] Phi
    holds exactly for a sum of ``order`` exponentials; the eigenvalues of Phi are the poles z_k = e^{s_k / fs}.
    """
    order = int(min(order, eigvecs.shape[0] - 1))
    subspace = eigvecs[:, :order]  # (rows, order)
    phi = np.linalg.lstsq(subspace[:-1], subspace[1:], rcond=None)[0]  # (order, order)
    poles = np.linalg.eigvals(phi)  # (order,)
    return poles[np.abs(poles) > 1e-8]


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
    eigvals, eigvecs = _hankel_eig(x, rows)
    if order is None:
        top = max(eigvals[0], 1e-300)
        order = int(np.sum(eigvals > rel_threshold * top))
        order = max(2, min(order, max_order))
    poles = _shift_invariance_poles(eigvecs, order)
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


def fit_amplitudes(signal: np.ndarray, sample_rate: float, freqs_hz: np.ndarray, sigma: np.ndarray,
                   chunk: int = 8192, ridge: float = 0.0, weights: np.ndarray | None = None) -> np.ndarray:
    """(K,) complex amplitudes of given partials, least squares on the whole real signal, all partials jointly.

    Solves min_a sum_k (x[k] - sum_n Re(a_n e^{s_n k / fs}))^2 with s_n = -sigma_n + 2 pi i f_n, as a real
    problem with columns (Re e^{s t}, -Im e^{s t}) for (Re a, Im a). The (samples, 2K) design is never built
    whole: its R factor is updated chunk by chunk (QR of [R, Q^T x; chunk rows, chunk x]), so memory stays
    O(chunk K) and close partials keep the conditioning of QR rather than of the normal equations.
    ``ridge`` > 0 adds ridge x (mean squared column norm) x |a|^2 to the cost, which keeps nearly collinear
    columns (modes a fraction of a hertz apart) from taking huge cancelling amplitudes.
    ``weights`` (samples,) > 0 multiply each sample's residual (weighted least squares; default all 1).
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    w = np.ones(x.size) if weights is None else np.asarray(weights, np.float64).ravel()
    poles = -np.asarray(sigma, np.float64) + 2j * np.pi * np.asarray(freqs_hz, np.float64)  # (K,)
    k = poles.size
    if k == 0:
        return np.zeros(0, complex)
    r_aug = np.zeros((0, 2 * k + 1))
    for begin in range(0, x.size, chunk):
        t = np.arange(begin, min(begin + chunk, x.size)) / sample_rate
        basis = np.exp(np.outer(t, poles))  # (chunk, K)
        block = np.concatenate([basis.real, -basis.imag, x[begin : begin + t.size, None]], axis=1)  # (chunk, 2K+1)
        block *= w[begin : begin + t.size, None]
        r_aug = np.linalg.qr(np.concatenate([r_aug, block]), mode="r")
    r, rhs = r_aug[: 2 * k, : 2 * k], r_aug[: 2 * k, -1]
    if ridge > 0:  # |R a - rhs|^2 + lam |a|^2 as one least-squares problem; ||R||_F^2 is the design's
        lam = ridge * float(np.sum(r**2)) / (2 * k)
        r, rhs = np.concatenate([r, np.sqrt(lam) * np.eye(2 * k)]), np.concatenate([rhs, np.zeros(2 * k)])
    coef = np.linalg.lstsq(r, rhs, rcond=None)[0]  # (2K,)
    return coef[:k] + 1j * coef[k:]


def esprit_subband(
    signal: np.ndarray,
    sample_rate: float,
    *,
    band_hz: float | None = None,
    max_freq_hz: float | None = None,
    max_bands: int = 128,
    max_rows: int = 128,
    noise_factor: float = 30.0,
    min_freq_hz: float = 1.0,
    skip_db: float = -80.0,
    joint_amplitudes: bool = False,
) -> ModalEstimate:
    """Damped partials of a real signal with a dense spectrum: ESPRIT in overlapping subbands.

    Full-band ESPRIT needs a model order of twice the number of partials and a Hankel window long
    enough to separate the closest pair; for a struck plate or a long guitar note (hundreds of partials,
    pairs < 1 Hz apart) that is too large a matrix. As in subband ESPRIT (Badeau, David & Richard 2006,
    "High-resolution spectral analysis of mixtures of complex exponentials modulated by polynomials",
    and the subband approach of their EDS/ESTER work), each band is analysed alone:

    1. Band j has centre c_j = j B. The signal is shifted down, x[k] e^{-2 pi i c_j k / fs}, low-passed
       (Kaiser FIR h, passband edge B, stopband edge 2B, 100 dB) and decimated by D to fs_d ~ 4B (complex).
       An FIR filter maps each damped exponential a q^k onto a H(q) q^k once its ``taps`` samples of
       start-up have passed (H(q) = sum_j h_j q^-j), so dropping those samples leaves the poles exact:
       z_d = q^D = e^{(-sigma + 2 pi i (f - c_j)) D / fs}. Aliases of the transition band land outside
       |f - c_j| < B/2. Bands holding less than ``skip_db`` of the signal's energy (FFT) are skipped.
    2. ESPRIT on the decimated band with Hankel rows = min(half its samples, ``max_rows``); the model
       order is the number of correlation eigenvalues above ``noise_factor`` times their median (the
       noise floor: rows exceed the partials in one narrow band), i.e. the signal/noise gap.
    3. Only poles with |f - c_j| <= B/2 are kept: the kept regions tile [0, max_freq_hz] without overlap,
       so each partial is taken from the band where it sits mid-passband and no duplicates arise.
    4. Amplitudes: least squares of all the band's poles on the band signal, b_k, then a_k = b_k / (H(q_k)
       q_k^{s D}) (s = dropped start-up samples) undoes the filter; cost O(samples) per band instead of
       the O(samples K^2) of a joint full-band fit (``joint_amplitudes=True`` does that instead).

    Parameters
    ----------
    signal : (samples,) real
    sample_rate : Hz
    band_hz : B, width of each band's kept region in Hz (default: max_freq_hz / max_bands, at least 20 Hz and
        wide enough for ~200 decimated samples per band)
    max_freq_hz : analyse [0, max_freq_hz] (default: the highest frequency where the Welch power spectrum
        is within 80 dB of its peak)
    max_bands, max_rows : cost limits (bands analysed, Hankel rows per band)
    noise_factor : eigenvalue / noise-floor ratio above which a direction counts as signal
    min_freq_hz : partials below this (DC, drift) are dropped
    skip_db : bands with less energy than this (dB re the whole signal) are not analysed

    Returns
    -------
    ModalEstimate with positive-frequency partials (growing ones included; filter them as needed), ascending.

    Example
    -------
    >>> fs = 8000.0
    >>> t = np.arange(16000) / fs
    >>> x = sum(np.exp(-2 * t) * np.cos(2 * np.pi * f * t) for f in (300.0, 300.8, 1234.5))
    >>> np.round(esprit_subband(x, fs).freqs_hz, 3)
    array([ 300. ,  300.8, 1234.5])
    """
    with threadpool_limits(1, user_api="blas"):  # many small factorisations: BLAS threads only add contention
        bands = SubbandDecomposition(signal, sample_rate, band_hz=band_hz, max_freq_hz=max_freq_hz,
                                     max_bands=max_bands, max_rows=max_rows, skip_db=skip_db)
        return bands.estimate(noise_factor, min_freq_hz=min_freq_hz, joint_amplitudes=joint_amplitudes)


class SubbandDecomposition:
    """Steps 1-2 of ``esprit_subband`` (bands and their Hankel eigendecompositions), kept so that the poles can
    be extracted at several noise factors (``estimate``) without filtering and decomposing the bands again.
    Arguments as in ``esprit_subband``."""

    def __init__(self, signal: np.ndarray, sample_rate: float, *, band_hz: float | None = None,
                 max_freq_hz: float | None = None, max_bands: int = 128, max_rows: int = 128,
                 skip_db: float = -80.0) -> None:
        x = np.asarray(signal, dtype=np.float64).ravel()
        self.signal, self.sample_rate = x, float(sample_rate)
        power = np.abs(np.fft.rfft(x)) ** 2  # (bins,)
        bins_hz = sample_rate / x.size
        if max_freq_hz is None:
            f, pxx = sps.welch(x, sample_rate, nperseg=min(4096, x.size))
            max_freq_hz = float(f[np.nonzero(pxx >= 1e-8 * pxx.max())[0][-1]]) if pxx.max() > 0 else sample_rate / 4
        max_freq_hz = float(min(max_freq_hz, 0.5 * sample_rate))
        # a band's decimated signal (~4 B samples per second) needs ~200 samples for its Hankel matrix
        band = float(band_hz or max(max_freq_hz / max_bands, 20.0, 50.0 * sample_rate / x.size))
        decim = max(1, int(sample_rate // (4.0 * band)))
        taps = sps.firwin(_kaiser_taps(band / sample_rate), 1.5 * band, window=("kaiser", 10.06), fs=sample_rate)
        skip = -(-taps.size // decim)  # decimated samples still inside the filter's start-up
        self.band, self.decim, self.taps, self.skip = band, decim, taps, skip
        cumulative = np.concatenate([[0.0], np.cumsum(power)])
        threshold = 10.0 ** (skip_db / 10.0) * cumulative[-1]
        filters = _BandFilter(x, taps, decim)
        self.bands: list[tuple[float, float, np.ndarray, np.ndarray, np.ndarray]] = []
        """(centre Hz, shift Hz, y (n_d,), eigvals (rows,), eigvecs (rows, rows)) of every analysed band."""
        for centre in np.arange(0.0, max_freq_hz + band / 2, band):
            lo, hi = (int(np.clip(round(f / bins_hz), 0, power.size)) for f in (centre - band, centre + band))
            if cumulative[hi] - cumulative[lo] <= threshold:
                continue
            shift, y = filters.decimated(centre / sample_rate)  # y[m] = a H(q) q^((skip+m) D), q relative to shift
            y = y[skip : x.size // decim]  # (n_d,)
            if y.size < 32:
                raise ValueError(f"signal of {x.size} samples too short for {band:.0f} Hz subbands; use a wider band_hz")
            eigvals, eigvecs = _hankel_eig(y, min(y.size // 2, max_rows))
            self.bands.append((float(centre), shift * sample_rate, y, eigvals, eigvecs))

    def estimate(self, noise_factor: float = 30.0, *, min_freq_hz: float = 1.0,
                 joint_amplitudes: bool = False) -> ModalEstimate:
        """Steps 2-4 of ``esprit_subband``: the partials at this ``noise_factor``, ascending frequency."""
        fs, band, taps = self.sample_rate, self.band, self.taps
        fs_d = fs / self.decim
        freqs, sigma, amps = [], [], []
        for centre, shift_hz, y, eigvals, eigvecs in self.bands:
            # noise floor: the median eigenvalue, but never below 1e-12 of the largest (float64 round-off of a
            # noiseless signal, whose directions would otherwise become spurious poles)
            floor = max(float(np.median(eigvals)), 1e-12 * max(eigvals[0], 1e-300))
            order = int(np.sum(eigvals > noise_factor * floor))
            if order == 0:
                continue
            poles = _shift_invariance_poles(eigvecs, order)  # (order,) z_d
            log_poles = np.log(poles) * fs_d  # (-sigma + i (omega - 2 pi shift))
            f_abs = shift_hz + log_poles.imag / (2 * np.pi)
            mine = (np.abs(f_abs - centre) <= band / 2) & (f_abs >= min_freq_hz)
            if not mine.any():
                continue
            b = _ridge_amplitudes(poles, y)  # (order,)
            q = np.exp(log_poles[mine] / fs)  # per-sample shifted poles
            response = np.exp(-np.outer(np.log(q), np.arange(taps.size))) @ taps  # H(q) = sum_j h_j q^-j
            a = b[mine] / (response * np.exp(np.log(q) * self.skip * self.decim))
            freqs.append(f_abs[mine])
            sigma.append(-log_poles.real[mine])
            amps.append(2.0 * a)  # a real partial is Re(2 a e^{pt})
        freqs = np.concatenate(freqs) if freqs else np.zeros(0)
        sigma = np.concatenate(sigma) if sigma else np.zeros(0)
        amps = np.concatenate(amps) if amps else np.zeros(0, complex)
        idx = np.argsort(freqs)
        freqs, sigma, amps = freqs[idx], sigma[idx], amps[idx]
        if joint_amplitudes:
            amps = fit_amplitudes(self.signal, fs, freqs, sigma)
        return ModalEstimate(freqs, sigma, amps)


class _BandFilter:
    """Shift, low-pass and decimate one signal many times over, in the frequency domain.

    ``upfirdn(taps, x e^{-2 pi i nu k}, down=D)`` costs O(samples taps / D) per band, and the shift itself one
    complex exponential per sample. Here x (samples,) is transformed once, zero-padded to N = D M >= samples +
    taps - 1 (so the convolution is linear, not circular); a band is then the M bins around nu times the
    filter's response, folded and inverse-transformed at size M: y[m] = (x_shifted * taps)[m D] exactly, up to
    the bins beyond +-fs/(2D), which the filter's stopband has already taken 100 dB down. The shift is rounded
    to the nearest bin (1/N cycles/sample), so callers measure frequencies from the returned shift.
    """

    def __init__(self, x: np.ndarray, taps: np.ndarray, decim: int) -> None:
        self.decim = int(decim)
        self.m = sp_fft.next_fast_len(-(-(x.size + taps.size - 1) // self.decim))
        self.n = self.m * self.decim
        self.spectrum = sp_fft.fft(x, self.n)  # (N,)
        self.offsets = np.arange(-(self.m // 2), self.m - self.m // 2)  # (M,) bins around the shift
        self.response = sp_fft.fft(taps, self.n)[self.offsets % self.n]  # (M,)
        self.slots = self.offsets % self.m

    def decimated(self, nu: float) -> tuple[float, np.ndarray]:
        """(shift in cycles/sample actually used, (M,) complex decimated band signal) for a shift near ``nu``."""
        s = round(nu * self.n)
        folded = np.empty(self.m, complex)
        folded[self.slots] = self.spectrum[(s + self.offsets) % self.n] * self.response
        return s / self.n, sp_fft.ifft(folded) / self.decim


def _ridge_amplitudes(poles: np.ndarray, y: np.ndarray, ridge: float = 1e-7) -> np.ndarray:
    """(order,) complex b minimising |y - V b|^2 + ridge tr(V^H V)/order |b|^2, V[m, k] = poles_k^m (y: (n,)).

    Close pole pairs that ESPRIT fits to noise make V nearly rank-deficient, and plain least squares then
    gives them huge cancelling amplitudes (loud in a resynthesis that is not exactly on the same samples);
    the small ridge keeps those at the size the data supports and leaves well-separated poles unchanged.
    """
    vander = np.exp(np.arange(y.size)[:, None] * np.log(poles)[None, :])  # (n, order)
    gram = vander.conj().T @ vander  # (order, order)
    lam = ridge * float(np.real(np.trace(gram))) / max(poles.size, 1)
    return np.linalg.solve(gram + lam * np.eye(poles.size), vander.conj().T @ y)


def _kaiser_taps(transition: float, attenuation_db: float = 100.0) -> int:
    """Odd FIR length for a Kaiser design with transition width ``transition`` (cycles/sample) (Kaiser 1974)."""
    n = int(np.ceil((attenuation_db - 7.95) / (2.285 * 2 * np.pi * transition))) + 1
    return n | 1


def _lowest_subharmonic(cand: np.ndarray, f0: float) -> float:
    """``f0`` (Hz), or the lowest of ``cand`` (Hz) within 50 cents of f0 / 2 or f0 / 3, repeatedly: the pitch a
    harmonic series with a partial at ``f0`` really has."""
    while True:
        lower = [c for k in (2, 3) for c in cand if abs(1200.0 * np.log2(c * k / f0)) < 50.0]
        if not lower:
            return f0
        f0 = float(min(lower))


def fundamental_trajectory(
    signal: np.ndarray,
    sample_rate: float,
    *,
    frame_seconds: float = 0.04,
    hop_seconds: float = 0.02,
    f0_hint: float | None = None,
    max_order: int = 40,
    rel_amplitude: float = 0.05,
    skip_attack: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency over time by short-window ESPRIT (pitch glides of nonlinear strings).

    Each frame is analysed with ESPRIT (model order from the singular values, at most ``max_order``).
    A partial counts when it neither grows nor dies within a few frames (spurious poles do) and its
    amplitude is at least ``rel_amplitude`` of the frame's strongest pole. The fundamental is the lowest
    such partial (or, with ``f0_hint``, the one nearest the hint in cents), then tracked frame to frame
    by nearest frequency. A hint or a track never hides a lower pitch: when a counted partial lies within
    50 cents of 1/2 or 1/3 of the choice, the choice is a harmonic and the lower partial is the
    fundamental (a note played an octave low reads an octave low).

    ``skip_attack``: a frame whose strongest pole is such a transient (the click of an attack) reads nan.
    Next to a loud click a note's fundamental can fall under the bar while a harmonic stays above it, and
    the track would then follow the harmonic for the whole note; scores comparing two notes use this.

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
        steady = (np.abs(est.sigma) < 3.0 / frame_seconds) & (est.freqs_hz > 0)
        ok = steady & (mag >= rel_amplitude * mag.max())
        if not ok.any() or (skip_attack and not steady[np.argmax(mag)]):
            f0s.append(np.nan)
            continue
        cand, weight = est.freqs_hz[ok], mag[ok]
        if previous is None:
            f0 = float(cand.min())
        else:
            f0 = _lowest_subharmonic(cand, float(cand[np.argmin(np.abs(np.log2(cand / previous)))]))
        # a gliding partial splits into nearby poles: take their amplitude-weighted mean frequency
        near = np.abs(1200.0 * np.log2(cand / f0)) < 50.0
        f0 = float(np.sum(weight[near] * cand[near]) / np.sum(weight[near]))
        f0s.append(f0)
        previous = f0
    return np.asarray(times), np.asarray(f0s)


# ---------------------------------------------------------------- spectral peaks (independent of ESPRIT)


@dataclass
class SpectralPeaks:
    """Partials found as peaks of a magnitude spectrum, strongest first.

    freqs_hz : (K,) peak frequencies, Hz (quadratic interpolation of the dB spectrum)
    level_db : (K,) peak level in dB relative to the strongest peak (0 = strongest)
    t60 : (K,) seconds for each partial's envelope to fall 60 dB (inf when it does not decay)
    window_s, span_s : (K,) envelope smoothing window and (K, 2) time span the T60 was measured over, s
    """

    freqs_hz: np.ndarray
    level_db: np.ndarray
    t60: np.ndarray
    window_s: np.ndarray | None = None
    span_s: np.ndarray | None = None

    def subset(self, index: np.ndarray) -> SpectralPeaks:
        """The peaks ``index`` (in that order)."""
        pick = (None if v is None else v[index] for v in (self.window_s, self.span_s))
        return SpectralPeaks(self.freqs_hz[index], self.level_db[index], self.t60[index], *pick)

    @property
    def sigma(self) -> np.ndarray:
        """(K,) decay rates in 1/s, 3 ln(10) / T60 (0 for non-decaying peaks)."""
        return np.where(np.isfinite(self.t60), 3.0 * np.log(10.0) / np.maximum(self.t60, 1e-9), 0.0)


def spectral_peaks(signal: np.ndarray, sample_rate: float, *, count: int = 40, seconds: float = 1.0,
                   floor_db: float = -90.0, min_freq_hz: float = 20.0, decay_seconds: float = 3.0) -> SpectralPeaks:
    """The ``count`` strongest peaks of a signal's spectrum, each with its decay (classic peak picking).

    The spectrum is the 4-term Blackman-Harris windowed FFT (sidelobes -92 dB, so sidelobes of strong
    partials are never taken for weak ones) of the first ``seconds`` of the signal, zero-padded 4x;
    peaks are local maxima at least 4 bins apart and above ``floor_db`` re the strongest, their
    frequency the vertex of a parabola through the three dB values around the maximum. Each peak's T60
    comes from ``peak_t60`` over the first ``decay_seconds``. This analysis shares nothing with ESPRIT,
    so it can score models whose modes came from ESPRIT.
    """
    x = np.asarray(signal, np.float64).ravel()
    n = int(min(x.size, max(64, round(seconds * sample_rate))))
    if n < 64 or not np.any(x[:n]):
        return SpectralPeaks(np.zeros(0), np.zeros(0), np.zeros(0))
    window = sps.windows.blackmanharris(n, sym=False)
    pad = 4
    spec = np.abs(np.fft.rfft(x[:n] * window, pad * n))
    db = 20.0 * np.log10(np.maximum(spec, 1e-300) / max(spec.max(), 1e-300))
    found, _ = sps.find_peaks(db, height=floor_db, distance=4 * pad)
    found = found[(found > 0) & (found < db.size - 1)]
    bin_hz = sample_rate / (pad * n)
    found = found[found * bin_hz >= min_freq_hz]
    found = found[np.argsort(-db[found])][:count]
    a, b, c = db[found - 1], db[found], db[found + 1]
    shift = 0.5 * (a - c) / np.where(np.abs(a - 2 * b + c) > 1e-12, a - 2 * b + c, 1e-12)
    freqs = (found + np.clip(shift, -0.5, 0.5)) * bin_hz
    level = b - 0.25 * (a - c) * shift
    t60, window_s, span_s = _peak_decays(x, sample_rate, freqs, decay_seconds, 0.3, 0.02, None)
    return SpectralPeaks(freqs, level - level.max() if level.size else level, t60, window_s, span_s)


def peak_t60(signal: np.ndarray, sample_rate: float, freqs_hz: np.ndarray, *, seconds: float = 3.0,
             max_window_s: float = 0.3, min_window_s: float = 0.02, like: SpectralPeaks | None = None) -> np.ndarray:
    """(K,) T60 in seconds of the partials at ``freqs_hz``, from each one's heterodyned envelope.

    Partial k's envelope is |x(t) e^{-2 pi i f_k t}| smoothed by a Blackman-Harris window of 8 / (gap to its
    nearest neighbour) seconds (clamped to [min_window_s, max_window_s]), which rejects the neighbours by
    > 90 dB. A straight line is fitted to the envelope in dB from its maximum down to 40 dB below it or to
    above the lowest level it reaches by 10 dB or 30% of the fall, whichever is less (that lowest level is the
    noise floor, or the window's end when the partial decays slowly); beating pairs closer than the window
    resolves are averaged over their beats. inf where the line does not fall.

    ``like``: measure partial k with the smoothing window and over the time span that ``like``'s partial k was
    measured with (``like.window_s``, ``like.span_s``), so a model's partial is compared with its recording's
    over the same stretch of time, whatever either signal's noise floor.
    """
    t60, _, _ = _peak_decays(signal, sample_rate, freqs_hz, seconds, max_window_s, min_window_s, like)
    return t60


def _peak_decays(signal, sample_rate, freqs_hz, seconds, max_window_s, min_window_s, like):
    """``peak_t60`` plus the window (K,) s and span (K, 2) s each partial was measured with."""
    x = np.asarray(signal, np.float64).ravel()[: int(seconds * sample_rate)]
    freqs = np.asarray(freqs_hz, np.float64)
    out = np.full(freqs.size, np.inf)
    widths, spans = np.zeros(freqs.size), np.zeros((freqs.size, 2))
    if freqs.size == 0 or x.size < 64:
        return out, widths, spans
    order = np.sort(freqs)
    t = np.arange(x.size) / sample_rate
    for k, f in enumerate(freqs):
        if like is not None:
            width = int(np.rint(like.window_s[k] * sample_rate))
        else:
            others = np.abs(order - f)
            gap = np.min(others[others > 1e-9]) if np.sum(others > 1e-9) else f
            gap = min(gap, f)  # the partial's own negative-frequency image sits 2f away
            width = int(np.clip(8.0 / max(gap, 1e-3), min_window_s, max_window_s) * sample_rate)
        width = max(16, min(width, x.size // 2))
        hop = max(1, width // 4)
        widths[k] = width / sample_rate
        window = sps.windows.blackmanharris(width)
        window /= window.sum()
        env = np.abs(sps.oaconvolve(x * np.exp(-2j * np.pi * f * t), window, mode="valid"))[::hop]  # (frames,)
        if env.size < 3 or env.max() <= 0:
            continue
        db = 20.0 * np.log10(np.maximum(env, 1e-300))
        if like is not None:
            top, end = (int(np.rint(v * sample_rate / hop)) for v in like.span_s[k])
            top, end = min(top, db.size - 3), min(max(end, top + 3), db.size)
        else:
            top = int(np.argmax(db))
            floor = float(np.min(db[top:]))
            stop = max(db[top] - 40.0, floor + min(10.0, 0.3 * (db[top] - floor)))
            below = np.nonzero(db[top:] < stop)[0]
            end = top + (int(below[0]) if below.size else db.size - top)
            end = max(end, min(db.size, top + 3))
        spans[k] = (top * hop / sample_rate, end * hop / sample_rate)
        out[k] = _line_t60(db[top:end], hop / sample_rate)
    return out, widths, spans


def _line_t60(db: np.ndarray, step_s: float) -> float:
    """T60 (s) of the least-squares line through an envelope ``db`` (frames,) sampled every ``step_s`` seconds;
    inf when it does not fall or has fewer than 2 frames."""
    if db.size < 2:
        return float("inf")
    t_fit = np.arange(db.size) * step_s
    t_fit = t_fit - t_fit.mean()
    slope = float(np.sum(t_fit * db) / np.sum(t_fit**2))  # dB/s
    return -60.0 / slope if slope < 0 else float("inf")


def modal_peak_t60(est: ModalEstimate, sample_rate: float, n_samples: int, like: SpectralPeaks) -> np.ndarray:
    """(P,) T60 in seconds that ``peak_t60(est.synthesise(sample_rate, n_samples), ..., like=like)`` measures at
    ``like``'s peaks, computed from the modes without synthesising them.

    Smoothing a damped exponential c e^{s t} by the envelope window w multiplies it by W(s) = sum_j w_j e^{-s j / fs},
    so the heterodyned, smoothed envelope at peak f is |sum_n (a_n / 2) W(s_n) e^{s_n t}| with s_n = -sigma_n + 2 pi i
    (f_n - f), evaluated at the frame times only. Modes more than 6 window bandwidths from f (and every mode's
    negative-frequency image) are left out: the Blackman-Harris window's sidelobes put them > 90 dB down.
    Cost O(P (modes near a peak) (window + frames)) instead of O(n_samples modes) for the synthesis alone.
    """
    out = np.full(like.freqs_hz.size, np.inf)
    for k, f in enumerate(like.freqs_hz):
        width = max(16, min(int(np.rint(like.window_s[k] * sample_rate)), n_samples // 2))
        hop = max(1, width // 4)
        frames = -(-(n_samples - width + 1) // hop)
        top, end = (int(np.rint(v * sample_rate / hop)) for v in like.span_s[k])
        top, end = min(top, frames - 3), min(max(end, top + 3), frames)
        local = np.abs(est.freqs_hz - f) <= 6.0 * sample_rate / width
        if not local.any() or top < 0:
            continue
        s = -est.sigma[local] + 2j * np.pi * (est.freqs_hz[local] - f)  # (local,) 1/s
        window = sps.windows.blackmanharris(width)
        gain = (window / window.sum()) @ np.exp(-np.outer(np.arange(width) / sample_rate, s))  # (local,) W(s_n)
        times = (np.arange(top, end) * hop + width - 1) / sample_rate  # (frames,) end of each frame's window
        env = np.abs(np.exp(np.outer(times, s)) @ (0.5 * est.amplitudes[local] * gain))
        out[k] = _line_t60(20.0 * np.log10(np.maximum(env, 1e-300)), hop / sample_rate)
    return out


# ---------------------------------------------------------------- one recording: modes + attack residual

ANALYSIS_SECONDS = 3.0
"""Recordings are analysed over their first 3 s (longer ones: the modes' decays extrapolate the tail)."""
ATTACK_SECONDS = 0.1
"""Length of the attack residual (recording minus modes), faded out over its second half."""
MIN_T60 = ATTACK_SECONDS
"""Poles decaying faster than this (s) are attack, not modes: the residual carries them (and their amplitudes at
t = 0, extrapolated back through the subband filters' start-up, are unreliable)."""
DENSE_RESIDUAL = 0.15
"""Fraction of a recording's energy after 0.1 s that its modes may leave unexplained before it is analysed as a
dense spectrum (cymbals, gongs: many more, weaker modes)."""
DENSE_MODES = 1024
"""Most modes kept from a dense spectrum (a cymbal's scored peak is a cluster of several modes)."""
DENSE_BANDS = 384
"""Subbands of the dense analysis, 3x the first pass's: a band's Hankel window (128 rows at ~4 x the band width)
then spans 3x the time, so it separates modes 3x closer, and each band holds 3x fewer modes. Cymbal modes ~1 Hz
apart that the first pass merged into one pole (decaying unlike the cluster it stood for) come out separately."""
DENSE_NOISE_FACTOR = 3.0
"""Subband eigenvalue / noise-floor ratio for dense spectra: a noise-like band is modelled by many decaying modes."""
CALIBRATE_PEAKS = 64
"""Strongest spectral peaks of a dense recording whose envelope decays its modes are calibrated to: in a cymbal a
peak is a cluster of modes, and the analysis' least squares fit (ruled by the loud start) leaves the cluster's
envelope decaying 20-50% off the recording's further on; the classic resynthesis measures each peak's envelope."""
CALIBRATE_ROUNDS = 3
"""Rounds of decay calibration (each measures every peak's envelope in the modes and rescales their decays)."""
CALIBRATE_STEP = 2.0
"""Largest factor one calibration round changes a mode's decay rate by."""
REFIT_RIDGE = 1e-9
"""Ridge of the single-pass modes' amplitude refit (``fit_amplitudes``), relative to the mean squared column norm:
keeps modes a fraction of a hertz apart from cancelling amplitudes too large for the bundle's float32."""
TAIL_WEIGHT_RANGE_DB = 40.0
"""Weights of the single-pass refit (``tail_weights``) are 1 / the recording's envelope down to this many dB below its
peak and constant below (the noise floor and the silence after the note get no more weight than a partial there)."""
TAIL_ENVELOPE_SECONDS = 0.02
"""Length (s) of the moving RMS window that gives the recording's envelope for ``tail_weights``."""


@dataclass
class RecordingAnalysis:
    """What one recorded note is made of.

    partials : the modes (frequencies, decays, amplitudes at the recording's first sample)
    attack : (L,) float64 residual of the recording after the modes over the first ``ATTACK_SECONDS``,
        faded to 0 over its second half (pluck noise, mallet contact, body: what decaying modes do not hold)
    sample_rate : Hz of both
    """

    partials: ModalEstimate
    attack: np.ndarray
    sample_rate: float


def analyse_recording(signal: np.ndarray, sample_rate: float, max_modes: int = 128, *,
                      seconds: float = ANALYSIS_SECONDS, attack_seconds: float = ATTACK_SECONDS) -> RecordingAnalysis:
    """Modes and attack residual of one recorded note x (samples,), onset at sample 0.

    1. ``esprit_subband`` over the first ``seconds`` (amplitudes per band, so cost stays O(samples));
    2. keep poles below 0.48 fs with T60 >= ``MIN_T60`` (faster ones are the attack); poles that do not decay
       within the window (sustained, or slightly growing from beating) are kept with T60 = 20 x the window;
       rank them by their energy after the first 0.1 s (amplitudes at t = 0 are extrapolated through the
       filters' start-up, so the attack region must not decide the ranking); the ``max_modes`` strongest are
       the modes;
    3. if they leave more than ``DENSE_RESIDUAL`` of the energy after 0.1 s unexplained (cymbals, gongs), the
       analysis is repeated as a dense spectrum (``DENSE_BANDS`` finer subbands, ``DENSE_NOISE_FACTOR``, up to
       ``DENSE_MODES`` modes) and the better of the two is kept, its decays then calibrated to the envelopes of
       the recording's strongest spectral peaks (``_calibrate_peak_decays``); otherwise the modes' amplitudes
       are refitted to the whole segment, so that they start at the recording's level (``_refit_to_segment``);
    4. attack = (x - modes) over the first ``attack_seconds`` with a half-cosine fade over its second half.

    ValueError when the recording holds no decaying partial.
    """
    x = np.asarray(signal, np.float64).ravel()
    n = int(min(x.size, round(seconds * sample_rate)))
    seg = x[:n] - np.mean(x[:n])  # a DC offset would take model order and is no mode
    with threadpool_limits(1, user_api="blas"):  # many small factorisations: BLAS threads only add contention
        bands = SubbandDecomposition(seg, sample_rate)
        est, residual = _ranked_modes(bands, max_modes, noise_factor=30.0)
        if residual > DENSE_RESIDUAL:
            fine = SubbandDecomposition(seg, sample_rate, max_bands=DENSE_BANDS)
            dense, dense_residual = _ranked_modes(fine, max(max_modes, DENSE_MODES), DENSE_NOISE_FACTOR)
            if dense_residual < residual:
                est = dense
            est = _calibrate_peak_decays(est, seg, sample_rate)
        else:
            est = _refit_to_segment(est, seg, sample_rate)
    span = int(min(n, round(attack_seconds * sample_rate)))
    residual = seg[:span] - est.synthesise(sample_rate, span)
    half = span // 2
    fade = np.ones(span)
    fade[half:] = 0.5 * (1.0 + np.cos(np.pi * np.arange(span - half) / max(span - half, 1)))
    return RecordingAnalysis(est, residual * fade, float(sample_rate))


def _ranked_modes(bands: SubbandDecomposition, max_modes: int, noise_factor: float) -> tuple[ModalEstimate, float]:
    """The ``max_modes`` strongest modes of the decomposed segment at ``noise_factor``, and the fraction of the
    segment's energy after 0.1 s they leave unexplained."""
    seg, sample_rate = bands.signal, bands.sample_rate
    est = bands.estimate(noise_factor)
    length = seg.size / sample_rate
    sigma = np.maximum(est.sigma, 3.0 * np.log(10.0) / (20.0 * length))
    keep = (est.freqs_hz < 0.48 * sample_rate) & (est.sigma > -3.0 / length) & (est.t60 >= MIN_T60)
    keep &= np.isfinite(est.amplitudes)
    if not keep.any():
        raise ValueError("no decaying partials found")
    est = ModalEstimate(est.freqs_hz[keep], sigma[keep], est.amplitudes[keep])
    t_rank = min(0.1, 0.25 * length)
    decay = np.exp(-2.0 * est.sigma * t_rank) * -np.expm1(-2.0 * est.sigma * (length - t_rank)) / (2.0 * est.sigma)
    chosen = np.sort(np.argsort(-np.abs(est.amplitudes) ** 2 * decay)[:max_modes])
    est = ModalEstimate(est.freqs_hz[chosen], est.sigma[chosen], est.amplitudes[chosen])
    start = int(t_rank * sample_rate)
    tail = seg[start:]
    unexplained = float(np.sum((tail - est.synthesise(sample_rate, seg.size)[start:]) ** 2) / max(np.sum(tail**2), 1e-300))
    return est, unexplained


def _calibrate_peak_decays(est: ModalEstimate, seg: np.ndarray, sample_rate: float) -> ModalEstimate:
    """``est`` with the decays of the modes under each strong spectral peak of ``seg`` (samples,) scaled so that the
    peak's envelope in the modes decays as it does in ``seg``; frequencies unchanged.

    The ``CALIBRATE_PEAKS`` strongest peaks of ``seg`` and their envelope decays come from ``spectral_peaks`` (the
    independent peak analysis the classic resynthesis uses). Each mode belongs to the peak nearest it when it lies
    within that peak's envelope bandwidth (4 / window seconds, Hz). A round measures every peak's T60 in the modes
    (``modal_peak_t60``, same window and span) and multiplies its modes' decay rates by T60_modes / T60_recording
    (clipped to 1/``CALIBRATE_STEP``..``CALIBRATE_STEP``); a mode made to decay slower keeps its level at the
    middle of its peak's span (from t = 0 it would otherwise ring louder than fitted), one made to decay faster
    keeps its starting amplitude. ``CALIBRATE_ROUNDS`` rounds: a cluster's envelope is not one exponential, so
    one scaling does not land it exactly.
    """
    seconds = seg.size / sample_rate
    ref = spectral_peaks(seg, sample_rate, count=CALIBRATE_PEAKS, decay_seconds=seconds)
    ref = ref.subset(np.nonzero(np.isfinite(ref.t60))[0])
    if ref.freqs_hz.size == 0 or est.freqs_hz.size == 0:
        return est
    dist = np.abs(est.freqs_hz[:, None] - ref.freqs_hz[None, :])  # (K, P) Hz
    owner = np.argmin(dist, axis=1)  # (K,)
    near = dist[np.arange(owner.size), owner] <= 4.0 / ref.window_s[owner]
    anchor = np.where(near, ref.span_s.mean(axis=1)[owner], 0.0)  # (K,) s
    slowest = 3.0 * np.log(10.0) / (20.0 * seconds)  # as _ranked_modes: T60 at most 20 x the analysed length
    sigma, amps = est.sigma.copy(), est.amplitudes.copy()
    for _ in range(CALIBRATE_ROUNDS):
        t60 = modal_peak_t60(ModalEstimate(est.freqs_hz, sigma, amps), sample_rate, seg.size, ref)  # (P,)
        ratio = np.clip(np.where(np.isfinite(t60), t60 / ref.t60, 1.0), 1.0 / CALIBRATE_STEP, CALIBRATE_STEP)
        new_sigma = np.maximum(np.where(near, sigma * ratio[owner], sigma), slowest)
        amps = amps * np.exp(np.minimum(new_sigma - sigma, 0.0) * anchor)
        sigma = new_sigma
    return ModalEstimate(est.freqs_hz, sigma, amps)


def tail_weights(seg: np.ndarray, sample_rate: float) -> np.ndarray:
    """(samples,) least-squares weights that make a residual count relative to the level of ``seg`` (samples,)
    at that moment: peak envelope / envelope, the envelope being a ``TAIL_ENVELOPE_SECONDS`` moving RMS floored
    ``TAIL_WEIGHT_RANGE_DB`` below its peak (so weights run from 1 at the peak to 10^(range/20))."""
    x = np.asarray(seg, np.float64).ravel()
    width = max(round(TAIL_ENVELOPE_SECONDS * sample_rate), 1)
    power = np.concatenate([[0.0], np.cumsum(x**2)])
    start = np.arange(x.size) - width // 2  # window [start, start + width), zeros outside the segment
    lo, hi = np.clip(start, 0, x.size), np.clip(start + width, 0, x.size)
    env = np.sqrt(np.maximum(power[hi] - power[lo], 0.0) / width)  # (samples,) RMS around each sample
    peak = max(float(env.max()), 1e-300)
    return peak / np.maximum(env, peak * 10.0 ** (-TAIL_WEIGHT_RANGE_DB / 20.0))


def _refit_to_segment(est: ModalEstimate, seg: np.ndarray, sample_rate: float) -> ModalEstimate:
    """``est`` with amplitudes (and decays) refitted so that the modes alone start at the level of ``seg``
    (samples,) and still decay like its spectral peaks.

    The subband amplitudes are fitted after each band filter's start-up and extrapolated back to t = 0. A partial
    whose envelope first rises comes out as a cluster of close modes whose large amplitudes cancel later but not
    at the start, so without the attack residual the modes begin up to ~20 dB louder than the recording. Three
    steps: amplitudes by least squares over the whole segment (the onset then counts, as in the classic
    resynthesis), but that changes each cluster's envelope, so its decays are calibrated back to the recording's
    peaks (``_calibrate_peak_decays``), and the amplitudes are refitted once more for the calibrated decays.
    The last fit weighs each sample by ``tail_weights``: a plain least-squares fit is ruled by the loud start and
    leaves the quiet tail's partials several dB off, which log-spectral scores (and ears) weigh as much. The first
    fit stays plain, so the decays the calibration arrives at are those of the unweighted fit (weighting both moved
    one plate mode's decay past the 10% the struck-plate test allows).
    """

    def refit(e: ModalEstimate, weights: np.ndarray | None) -> ModalEstimate:
        amps = fit_amplitudes(seg, sample_rate, e.freqs_hz, e.sigma, ridge=REFIT_RIDGE, weights=weights)
        return ModalEstimate(e.freqs_hz, e.sigma, amps)

    calibrated = _calibrate_peak_decays(refit(est, None), seg, sample_rate)
    return refit(calibrated, tail_weights(seg, sample_rate))
