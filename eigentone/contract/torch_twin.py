"""The contract's maths in differentiable torch: the twin of ``eigentone.contract.reference``.

Every family trains through these functions, so a model is optimised on exactly what the engine
will play: ``z(t) = z0 exp((-sigma + i omega) t)``, ``y = sum_n Re(c_n z_n)``, pole modulation once
per block from the block-start state. Complex numbers are (..., 2) real (re, im) pairs so every
module that uses them exports to ONNX. Shapes: V voices (or examples), N modes, T samples.

Imported by training and export only: the engine never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from eigentone.contract import A4_HZ, A4_NOTE, NOTE, POSITION, POSITION_Y, VELOCITY

LN2_12 = math.log(2.0) / 12.0
"""ln 2 / 12: one semitone as a natural-log frequency ratio."""


SILENCED_SIGMA = 1e30
"""1/s: decay standing in for the multiplier 0 of a mode at or above Nyquist (exp(-1e30 / fs) == 0)."""


class Controls(NamedTuple):
    """The control columns of a (V, 4) batch, each (V, 1)."""

    note: torch.Tensor
    velocity: torch.Tensor
    position: torch.Tensor
    position_y: torch.Tensor


def split_controls(controls: torch.Tensor) -> Controls:
    """controls (V, 4) in the contract's column order -> named (V, 1) columns."""
    return Controls(controls[:, NOTE : NOTE + 1], controls[:, VELOCITY : VELOCITY + 1],
                    controls[:, POSITION : POSITION + 1], controls[:, POSITION_Y : POSITION_Y + 1])


def midi_to_hz(note: torch.Tensor) -> torch.Tensor:
    """Equal-tempered frequency in Hz of (fractional) MIDI notes, A4 = 69 = 440 Hz; shape of ``note``."""
    return A4_HZ * torch.exp((note - A4_NOTE) * LN2_12)


def semitone_ratio(note: torch.Tensor, base_note: torch.Tensor | float) -> torch.Tensor:
    """Frequency ratio 2^((note - base_note) / 12) of transposing ``base_note`` to ``note``."""
    return torch.exp((note - base_note) * LN2_12)


def complex_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of complex numbers stored as (..., 2) real pairs."""
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return torch.stack([re, im], dim=-1)


def unit_readout(like: torch.Tensor) -> torch.Tensor:
    """c = 1 + 0i shaped like z0 (V, N, 2)."""
    return torch.stack([torch.ones_like(like[..., 0]), torch.zeros_like(like[..., 1])], dim=-1)


def modal_trajectory(sigma: torch.Tensor, omega: torch.Tensor, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Free modal state at given times, closed form.

    sigma, omega: (V, N) 1/s and rad/s; z0: (V, N, 2); times: (T,) seconds.
    Returns z(t) = z0 * exp((-sigma + i omega) t) as (V, N, T, 2).
    """
    t = times.reshape(1, 1, -1)
    decay = torch.exp(-sigma.unsqueeze(-1) * t)  # (V, N, T)
    phase = omega.unsqueeze(-1) * t  # (V, N, T)
    rot = torch.stack([decay * torch.cos(phase), decay * torch.sin(phase)], dim=-1)  # (V, N, T, 2)
    return complex_mul(z0.unsqueeze(2), rot)


def read_out(c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """y = sum_n Re(c_n z_n): c (V, N, 2), z (V, N, T, 2) -> (V, T)."""
    return (c[:, :, None, 0] * z[..., 0] - c[:, :, None, 1] * z[..., 1]).sum(dim=1)


def modal_readout(sigma: torch.Tensor, omega: torch.Tensor, z0: torch.Tensor, c: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Pickup signal y(t) = sum_n Re(c_n z_n(t)), (V, T). Shapes as in ``modal_trajectory``; c: (V, N, 2)."""
    return read_out(c, modal_trajectory(sigma, omega, z0, times))


def modulated_omega(omega0: torch.Tensor, z: torch.Tensor, mod_alpha: torch.Tensor, mod_beta: torch.Tensor) -> torch.Tensor:
    """omega = sqrt(omega0^2 + alpha * sum_m beta_m |z_m|^2): omega0, alpha, beta (V, N) or (N,); z (V, N, 2)."""
    energy = (mod_beta * (z**2).sum(-1)).sum(-1, keepdim=True)  # (V, 1)
    return torch.sqrt(omega0**2 + mod_alpha * energy)


def block_rollout(
    sigma: torch.Tensor,
    omega0: torch.Tensor,
    z0: torch.Tensor,
    mod_alpha: torch.Tensor | None,
    mod_beta: torch.Tensor | None,
    sample_rate: float,
    n_samples: int,
    block_size: int = 64,
    readout: Callable[[torch.Tensor], torch.Tensor] | None = None,
    nyquist_rule: bool = False,
    block_omega: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Modal state (and output) under block-rate pole modulation and readout, exactly as the engine runs it.

    Once per block, from the state z at the block start: omega = ``modulated_omega`` (when mod_alpha is
    given) and c = ``readout(z)`` (when given); inside the block the recurrence is free. With
    ``nyquist_rule`` a mode whose block frequency is at or above Nyquist gets multiplier 0 for that
    block, as in the engine (training rollouts leave it off: their modes stay below Nyquist).
    ``block_omega(z)`` -> (V, N), when given, replaces the contract's law (a model whose law the engine does
    not hold, e.g. training/models/pole_law.py, rolled out by the same block rule).
    sigma, omega0, mod_alpha, mod_beta: (V, N) or (N,); z0 (V, N, 2).
    Returns z (V, N, n_samples, 2) and y (V, n_samples) (None without a readout). Python loops over
    blocks only (n_samples / block_size iterations), never over samples.
    """
    steps = torch.arange(block_size + 1, dtype=z0.dtype) / sample_rate  # (B+1,)
    z, zs, ys = z0, [], []
    for start in range(0, n_samples, block_size):
        n = min(block_size, n_samples - start)
        if block_omega is not None:
            omega = block_omega(z)
        else:
            omega = omega0 if mod_alpha is None else modulated_omega(omega0, z, mod_alpha, mod_beta)
        omega = omega.expand(z.shape[0], -1)
        decay = sigma.expand_as(omega)
        if nyquist_rule:
            decay = torch.where(omega.abs() < math.pi * sample_rate, decay, SILENCED_SIGMA)
        traj = modal_trajectory(decay, omega, z, steps[: n + 1])  # (V, N, n+1, 2)
        if readout is not None:
            ys.append(read_out(readout(z), traj[:, :, :n]))
        zs.append(traj[:, :, :n])
        z = traj[:, :, n]
    return torch.cat(zs, dim=2), (torch.cat(ys, dim=1) if readout is not None else None)


def modulated_rollout(sigma: torch.Tensor, omega0: torch.Tensor, z0: torch.Tensor, mod_alpha: torch.Tensor,
                      mod_beta: torch.Tensor, sample_rate: float, n_samples: int, block_size: int = 64) -> torch.Tensor:
    """Modal state z (V, N, n_samples, 2) under block-rate pole modulation (``block_rollout`` without readout)."""
    return block_rollout(sigma, omega0, z0, mod_alpha, mod_beta, sample_rate, n_samples, block_size)[0]


def render_modal(outputs: dict[str, torch.Tensor], sample_rate: float, n_samples: int, block_size: int = 64) -> torch.Tensor:
    """(V, n_samples) output of an excite graph's outputs, the twin of ``reference.render_modal``.

    Same rules as the reference: sigma is clamped at 0, a mode at or above Nyquist has multiplier 0
    (it sounds at k = 0 only, then its state is 0), pole modulation (when ``mod_alpha`` is present)
    once per ``block_size`` samples. Differentiable.
    """
    sigma, omega, z0, c = outputs["sigma"].clamp_min(0.0), outputs["omega"], outputs["z0"], outputs["c"]
    alpha, beta = outputs.get("mod_alpha"), outputs.get("mod_beta")
    if alpha is None:
        # multiplier 0 as a decay so fast that exp(-sigma t) is exactly 0 from the first sample on
        sigma = torch.where(omega.abs() < math.pi * sample_rate, sigma, SILENCED_SIGMA)
        times = torch.arange(n_samples, dtype=z0.dtype) / sample_rate
        return modal_readout(sigma, omega, z0, c, times)
    z, _ = block_rollout(sigma, omega, z0, alpha, beta, sample_rate, n_samples, block_size, nyquist_rule=True)
    return read_out(c, z)
