"""Modes, poles and an amplitude-dependent pole law found in field data alone (no solver parameters).

What the data-only models (``--init data`` of the Koopman and modal FNO families) start from. Input:
training fields u (examples E, samples T, points P) in metres at ``fs`` Hz; nothing about the string or
plate that made them (no tension, stiffness, damping, length, no sine basis).

1. **POD** (proper orthogonal decomposition): the leading eigenvectors V (P, r) of the snapshot
   covariance sum_k u_k u_k^T span the motion; r = the modes holding energy above ``rel_tol``.
2. **Delay DMD** (dynamic mode decomposition with one delay, Schmid 2010; Kutz et al. 2016) on the
   quietest quarter of the examples, where the dynamics are closest to linear: least squares
   a[k+1] = A1 a[k] + A2 a[k-1] in POD coordinates a = V^T u, the companion matrix's eigenvalues mu give
   continuous-time poles lambda = fs log(mu) = -sigma + i omega, its eigenvectors the complex mode shapes,
   rotated to their most real phase (standing waves) and kept real: ``shapes`` (P, N).
3. **Pole law from short segments**: in the modal coordinates q = pinv(shapes) u of every training
   example, a second-order linear predictor per mode and segment (Prony) gives the local omega; the
   segment's mean squared amplitude |z_n|^2 comes from consecutive samples. Least squares (alternating)
   of the contract's law omega_n^2 = omega0_n^2 + alpha_n sum_m beta_m |z_m|^2 over all segments
   (``eigentone.contract``: the block-rate pole modulation) gives omega0, alpha, beta.

Shapes and poles of a linear system come out exact (to rounding) from noise-free data; for the nonlinear
string the law is a least-squares start that training refines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from training.fits import prony_poles


@dataclass
class DataModes:
    """What ``analyse`` found. shapes (P, N) unit-norm real mode shapes, ordered by frequency; sigma (N,) 1/s;
    omega (N,) rad/s with the modulation's mean shift removed; alpha, beta (N,) the pole law (zeros when not
    fitted); energy_scale (N,) mean |z_n|^2 at the start of the training examples (m^2)."""

    shapes: np.ndarray
    sigma: np.ndarray
    omega: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    energy_scale: np.ndarray
    info: dict = field(default_factory=dict)


def check_one_instrument(params: dict, source: object) -> None:
    """Refuse (one line) data whose examples come from different instruments: a data-only model learns the one
    instrument its fields show (its modes and poles), with no parameter to tell strings apart. ``params``: the
    dataset's per-example labels; only whether they vary is read."""
    from eigentone.errors import EigentoneError

    varying = [name for name, values in (params or {}).items()
               if np.ndim(values) == 1 and np.asarray(values).dtype.kind in "fiu" and np.ptp(values) > 1e-9 * np.abs(values).max()
               and name not in ("pickup_x", "pickup_y")]
    if varying:
        raise EigentoneError(f"{source}: --init data learns one instrument, but {', '.join(sorted(varying))} vary between "
                             "the examples; use --init physics (its pole network takes them as inputs)")


def pod_basis(fields: np.ndarray, max_rank: int, rel_tol: float = 1e-9, stride: int = 4) -> np.ndarray:
    """Orthonormal POD basis (P, r) of fields (E, T, P), r <= max_rank modes with eigenvalue > rel_tol x the
    largest (every ``stride``-th snapshot is used)."""
    snapshots = np.asarray(fields[:, ::stride], np.float64).reshape(-1, fields.shape[-1])
    values, vectors = np.linalg.eigh(snapshots.T @ snapshots)
    values, vectors = values[::-1], vectors[:, ::-1]
    rank = int(min(max_rank, np.sum(values > rel_tol * values[0])))
    return vectors[:, :rank]


def delay_dmd(coords: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Poles and mode vectors of a[k+1] = A1 a[k] + A2 a[k-1] fitted to coords (E, T, r).

    Returns lambda (2r,) complex continuous-time poles (1/s) and vectors (r, 2r), the first half of the
    companion matrix's eigenvectors (the mode in the current-sample coordinates)."""
    r = coords.shape[-1]
    target = coords[:, 2:].reshape(-1, r)
    regressors = np.concatenate([coords[:, 1:-1], coords[:, :-2]], axis=-1).reshape(-1, 2 * r)
    weights, *_ = np.linalg.lstsq(regressors, target, rcond=None)  # (2r, r)
    companion = np.zeros((2 * r, 2 * r))
    companion[:r] = weights.T
    companion[r:, :r] = np.eye(r)
    mu, vectors = np.linalg.eig(companion)
    return fs * np.log(mu.astype(np.complex128)), vectors[:r]


def standing_modes(basis: np.ndarray, poles: np.ndarray, vectors: np.ndarray, fs: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pole of each oscillating conjugate pair, by frequency: sigma (N,), omega (N,), real shapes (P, N)."""
    keep = np.flatnonzero(poles.imag > 1e-6 * fs)
    keep = keep[np.argsort(poles.imag[keep])]
    shapes = []
    for j in keep:
        shape = basis @ vectors[:, j]  # (P,) complex
        shape = (shape * np.exp(-0.5j * np.angle(np.sum(shape**2)))).real  # most real phase
        shapes.append(shape / max(np.linalg.norm(shape), 1e-300))
    return -poles.real[keep], poles.imag[keep], np.stack(shapes, axis=1)


def squared_amplitude(q: np.ndarray, sigma: np.ndarray, omega: np.ndarray, fs: float) -> np.ndarray:
    """Mean |z|^2 of each series q (S, T, N) with poles (S, N): z_k = q_k + i (q_k Re p - q_{k+1}) / Im p,
    p = exp((-sigma + i omega) / fs) (the complex state that makes q_{k+1} = Re(z_k p)). Returns (S, N)."""
    p = np.exp((-sigma + 1j * omega) / fs)
    im = np.where(np.abs(p.imag) > 1e-12, p.imag, 1e-12)
    quad = (q[:, :-1] * p.real[:, None] - q[:, 1:]) / im[:, None]
    return np.mean(q[:, :-1] ** 2 + quad**2, axis=1)


def fit_pole_law(omega2: np.ndarray, energy: np.ndarray, mask: np.ndarray, iterations: int = 30
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of omega2 (S, N) = omega0_n^2 + alpha_n sum_m beta_m energy (S, M) over the rows of
    ``mask`` (S, N): alternating between (omega0^2, alpha) per mode and beta (>= 0, max 1). Returns
    omega0^2 (N,), alpha (N,) >= 0, beta (N,)."""
    n_modes = omega2.shape[1]
    weight = mask.astype(np.float64)
    beta = np.ones(n_modes)
    omega0_sq, alpha = np.median(omega2, axis=0), np.zeros(n_modes)
    for it in range(iterations + 1):
        total = energy @ beta  # (S,)
        # per mode, weighted straight line omega2 = omega0^2 + alpha * total (closed form)
        count = weight.sum(0)
        mean_t = (weight * total[:, None]).sum(0) / np.maximum(count, 1)
        mean_w = (weight * omega2).sum(0) / np.maximum(count, 1)
        dt = (total[:, None] - mean_t) * weight
        slope = (dt * (omega2 - mean_w)).sum(0) / np.maximum((dt * (total[:, None] - mean_t)).sum(0), 1e-300)
        alpha = np.where(count >= 3, np.maximum(slope, 0.0), 0.0)
        omega0_sq = mean_w - alpha * mean_t
        if it == iterations or not alpha.any():
            break
        # beta given alpha: sum over masked (s, n) of (alpha_n energy_s . beta - residual_sn)^2, normal equations
        residual = (omega2 - omega0_sq) * weight  # (S, N)
        a2 = (weight * alpha**2).sum(1)  # (S,) sum_n w alpha_n^2
        gram = energy.T @ (a2[:, None] * energy)  # (M, M)
        rhs = energy.T @ (residual @ alpha)  # (M,)
        beta = np.linalg.solve(gram + 1e-12 * np.trace(gram) * np.eye(n_modes), rhs)
        beta = np.maximum(beta, 0.0)
        beta = beta / beta.max() if beta.max() > 0 else np.ones(n_modes)
    return omega0_sq, alpha, beta


def analyse(fields: np.ndarray, fs: float, n_modes: int, *, modulation: bool = True, segment: int = 100,
            rel_tol: float = 1e-9) -> DataModes:
    """Modes, poles and pole law of training fields (E, T, P) at fs Hz (see the module docstring).

    N <= n_modes modes come back (fewer when the data hold fewer). ``modulation`` False skips the law."""
    flat = np.asarray(fields).reshape(fields.shape[0], fields.shape[1], -1)  # (E, T, P), float32 stays float32
    basis = pod_basis(flat, n_modes, rel_tol)
    loudness = np.abs(flat).max(axis=(1, 2))
    quiet = np.argsort(loudness)[: max(2, len(loudness) // 4)] if modulation else np.arange(len(loudness))
    coords = np.asarray(flat[quiet], np.float64) @ basis  # (E', T, r)
    sigma, omega, shapes = standing_modes(basis, *delay_dmd(coords, fs), fs)
    q = np.asarray(flat @ np.linalg.pinv(shapes).T.astype(flat.dtype), np.float64)  # (E, T, N) modal coordinates
    per_example = np.broadcast_to(sigma, q[:, 0].shape), np.broadcast_to(omega, q[:, 0].shape)
    energy_scale = np.maximum(squared_amplitude(q[:, :3], *per_example, fs).mean(axis=0), 1e-30)  # |z(0)|^2
    n = shapes.shape[1]
    alpha, beta, info = np.zeros(n), np.ones(n), {"modes": int(n), "quiet_examples": len(quiet)}
    if modulation and flat.shape[1] >= 2 * segment:
        count = flat.shape[1] // segment
        pieces = q[:, : count * segment].reshape(q.shape[0] * count, segment, n)  # (E*S, segment, N)
        seg_sigma, seg_omega, ok = prony_poles(pieces, fs)
        amp2 = squared_amplitude(pieces, seg_sigma, seg_omega, fs)  # (E*S, N)
        mask = ok & (amp2 > 1e-6 * amp2.max(axis=1, keepdims=True))
        omega0_sq, alpha, beta = fit_pole_law(seg_omega**2, amp2, mask)
        fitted = np.sqrt(np.maximum(omega0_sq + alpha * (amp2 @ beta)[:, None], 1.0))
        miss = np.where(mask, 1200 * np.log2(fitted / np.maximum(seg_omega, 1e-9)), np.nan)
        omega = np.sqrt(np.clip(omega0_sq, 0.25 * omega**2, 4 * omega**2))
        info.update(law_rms_cents=float(np.sqrt(np.nanmean(miss**2))), law_segments=int(pieces.shape[0]))
    omega = np.minimum(omega, 0.98 * math.pi * fs)
    return DataModes(shapes, np.maximum(sigma, 1e-3), omega, alpha, beta, energy_scale, info)


def initial_velocity(fields: np.ndarray, shapes: np.ndarray, sigma: np.ndarray, omega: np.ndarray, fs: float
                     ) -> np.ndarray:
    """du/dt at the first sample (E, P) from the first two snapshots of fields (E, T >= 2, P), exact for the
    linear modal system (shapes (P, N), poles sigma, omega (N,)): per mode z_0 = q_0 + i (q_0 Re p - q_1) / Im p
    with p = exp((-sigma + i omega) / fs), and dq/dt = Re((-sigma + i omega) z_0)."""
    flat = np.asarray(fields[:, :2], np.float64).reshape(fields.shape[0], 2, -1)
    q = flat @ np.linalg.pinv(shapes).T  # (E, 2, N)
    p = np.exp((-sigma + 1j * omega) / fs)
    quad = (q[:, 0] * p.real - q[:, 1]) / p.imag  # (E, N)
    return (-sigma * q[:, 0] - omega * quad) @ shapes.T
