"""A matrix pole law found in field data: each mode's frequency as a function of every mode's energy.

The contract's block-rate law (``eigentone.contract``) is rank one: omega_n^2 = omega0_n^2 + alpha_n sum_m beta_m
|z_m|^2. This module's law gives every (mode n, mode m) pair its own coefficient::

    omega_n^2 = omega0_n^2 + sum_m A_nm |z_m|^2            A (N, N), evaluated once per block like the contract's

A tension-modulated string obeys it with A_nm ~ k_n^2 k_m^2 plus a larger self term A_nn (a mode's own
amplitude shifts it 3/2 as much as another's of the same energy, the Duffing factor); rank one cannot hold
both. ``fit_matrix_law`` finds omega0 and A from training fields alone, by linear least squares: for each
mode, the frequency over a block of samples (the mean phase advance of its complex state) squared, against
the block's mean mode energies |z_m|^2. Nothing about the solver enters: the modal coordinates come from
the data's own mode shapes (``data_modes.analyse``).

The law is not in the engine's contract (whose law is rank one per voice), so a model using it is scored
in training and benches and cannot be exported.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from eigentone.contract.torch_twin import block_rollout


def complex_state(q: np.ndarray, sigma: np.ndarray, omega: np.ndarray, fs: float) -> np.ndarray:
    """The complex modal state of real series q (E, T, N): z_k = q_k + i (q_k Re p - q_{k+1}) / Im p with
    p = exp((-sigma + i omega) / fs) the pole over that sample (the state that makes q_{k+1} = Re(z_k p)).
    sigma (N,); omega (N,) or per sample (E, T-1, N). Returns (E, T-1, N) complex."""
    p = np.exp((-sigma + 1j * omega) / fs)
    return q[:, :-1] + 1j * (q[:, :-1] * p.real - q[:, 1:]) / p.imag


def block_frequencies(q: np.ndarray, sigma: np.ndarray, omega: np.ndarray, fs: float, block: int = 32
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per block of ``block`` samples of each series q (E, T, N): the mean frequency of every mode (rad/s, the
    phase advance of its complex state over the block) and its mean energy |z|^2 (units of q squared).
    omega: (N,) or (E, blocks, N), the frequency the complex state assumes in each block.
    Returns (omega_block, energy_block), each (E * blocks, N)."""
    e, n = q.shape[0], q.shape[-1]
    blocks = (q.shape[1] - 2) // block
    q = np.asarray(q[:, : blocks * block + 2], np.float64)
    if np.ndim(omega) == 3:  # per block -> per sample
        omega = np.repeat(omega, block, axis=1)
        omega = np.concatenate([omega, omega[:, -1:]], axis=1)  # (E, blocks * block + 1, N)
    z = complex_state(q, sigma, omega, fs)  # (E, blocks * block + 1, N)
    advance = np.angle(z[:, 1:] / np.where(z[:, :-1] == 0, 1e-300, z[:, :-1]))  # rad per sample
    freq = advance.reshape(e, blocks, block, n).sum(axis=2) * fs / block
    energy = (np.abs(z[:, :-1]) ** 2).reshape(e, blocks, block, n).mean(axis=2)
    return freq.reshape(-1, n), energy.reshape(-1, n)


def fit_matrix_law(q: np.ndarray, sigma: np.ndarray, omega: np.ndarray, fs: float, block: int = 32, passes: int = 3
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """omega0 (N,) rad/s and A (N, N) of omega_n^2 = omega0_n^2 + sum_m A_nm |z_m|^2 from modal series q (E, T, N)
    at fs Hz; sigma, omega (N,): linear poles that define the first pass's complex state (``complex_state``).

    Per mode n, weighted least squares over every block of every example; a block counts in proportion to
    the mode's amplitude there (its phase is the more precise the louder it is). The complex state is
    exact only at the frequency it assumes, so each further pass rebuilds it at the previous pass's fitted
    frequency of every block. Also returns the fit's energy-weighted rms miss in cents over the blocks
    where the mode is heard (above 1e-4 of the loudest)."""
    n, examples = q.shape[-1], q.shape[0]
    assumed = omega
    for _ in range(passes):
        freq, energy = block_frequencies(q, sigma, assumed, fs, block)
        design = np.concatenate([np.ones((len(energy), 1)), energy], axis=1)  # (S, 1 + N)
        coef = np.zeros((n, n + 1))
        for mode in range(n):
            weight = np.sqrt(energy[:, mode] / max(energy[:, mode].max(), 1e-300))  # (S,)
            coef[mode], *_ = np.linalg.lstsq(design * weight[:, None], freq[:, mode] ** 2 * weight, rcond=None)
        fitted = np.sqrt(np.maximum(design @ coef.T, 0.25 * omega**2))  # (S, N)
        assumed = fitted.reshape(examples, -1, n)
    omega0 = np.sqrt(np.clip(coef[:, 0], 0.25 * omega**2, 4 * omega**2))
    misses = 1200 * np.log2(fitted / np.maximum(np.abs(freq), 1e-300))
    heard = np.where(energy > 1e-4 * energy.max(axis=1, keepdims=True), energy, 0.0)  # a silent mode has no phase
    rms = float(np.sqrt(np.sum(misses**2 * heard) / np.sum(heard)))
    return omega0, coef[:, 1:], {"matrix_law_rms_cents": rms, "matrix_law_blocks": len(energy)}


def matrix_omega(omega0: torch.Tensor, z: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """omega_n = sqrt(omega0_n^2 + sum_m A_nm |z_m|^2) (V, N), floored at omega0_n / 2 (A may hold negative
    entries): omega0 (N,) or (V, N); z (V, N, 2); matrix A (N, N)."""
    shift = ((z**2).sum(-1)) @ matrix.T  # (V, N)
    return torch.sqrt(torch.maximum(omega0**2 + shift, 0.25 * omega0**2))


def matrix_rollout(sigma: torch.Tensor, omega0: torch.Tensor, matrix: torch.Tensor, z0: torch.Tensor,
                   sample_rate: float, n_samples: int, block_size: int,
                   readout: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Modal state under the matrix law, evaluated once per block from the block-start state (the block
    rule of ``eigentone.contract.torch_twin.block_rollout``). sigma, omega0 (N,) or (V, N); z0 (V, N, 2).
    Returns z (V, N, n_samples, 2) and the pickup y (V, n_samples) (None without a readout)."""
    return block_rollout(sigma, omega0, z0, None, None, sample_rate, n_samples, block_size, readout,
                         block_omega=lambda z: matrix_omega(omega0, z, matrix))
