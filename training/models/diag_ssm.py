"""Diagonal state-space models (S4D / LRU style) with continuous-time poles: the ``diag_ssm`` family.

All three modules are free diagonal linear systems (Gu et al. 2022, S4D; Orvieto et al. 2023, LRU)::

    z_n(t) = z0_n exp((-sigma_n + i omega_n) t),   y(t) = sum_n Re(c_n z_n(t))

with the poles stored unconstrained in ``ContinuousPoles`` (sigma = softplus(raw) + sigma_min > 0,
omega = exp(log_omega)), so every parameter value is a stable system and rollouts far past the
training length are the closed form, never a blow-up. Unlike S4D's ``dt``-discretised A, the
poles stay continuous-time: the engine discretises them for its own sample rate.

``forward(controls)`` of each returns the contract dict of ``eigentone/contract``::

    controls (V, 4) = [note, velocity, position, position_y]
    -> sigma (V, N) 1/s, omega (V, N) rad/s, z0 (V, N, 2), c (V, N, 2)

* ``FieldSSM``        fit to simulated fields: a linear encoder (points -> N, complex) gives z0 from
                      the initial field (built from the controls as a pluck), a (N, points) complex
                      matrix reads out the field and an N-vector the pickup.
* ``RecordingSSM``    fit to one recording: N modes from ESPRIT, refined; plays other notes by
                      scaling omega (and sigma, constant Q) with 2^((note - base_note)/12).
* ``ConditionedSSM``  fit to many labelled notes: small MLPs map (note, velocity, position) to
                      omega_n = 2 pi f0(note) r_n(note), r_n = n sqrt(1 + B(note) n^2) exp(delta_n(note)),
                      sigma_n(note) and amplitudes z0_n(note, velocity, position); any note in range plays.

Fitting, losses, evaluation and export graphs: ``training/families/diag_ssm.py``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eigentone.contract.torch_twin import midi_to_hz, semitone_ratio, split_controls, unit_readout
from training.models.modal_core import ContinuousPoles


class FieldSSM(nn.Module):
    """Diagonal SSM over a field grid (string: points = grid; plate: points = ny * nx, flattened).

    z0 = E u0 (encoder E: (N, points) complex), u(t) = Re(C^T z(t)) (C: (N, points) complex),
    pickup y(t) = Re(c . z(t)) (c: (N,) complex).
    """

    def __init__(self, n_modes: int, grid: torch.Tensor, field_shape: tuple[int, ...], pluck_width: float = 0.05,
                 pluck_amplitude: float = 1e-3, base_note: float = 60.0, pluck_shape: int = 0):
        super().__init__()
        points = int(torch.as_tensor(grid).shape[0])
        self.field_shape = tuple(int(s) for s in field_shape)
        self.poles = ContinuousPoles(torch.full((n_modes,), 1.0), torch.linspace(100.0, 1000.0, n_modes))
        self.encoder = nn.Parameter(torch.zeros(n_modes, points, 2))  # (N, P, 2)
        self.field_readout = nn.Parameter(torch.zeros(n_modes, points, 2))  # (N, P, 2)
        self.pickup = nn.Parameter(torch.zeros(n_modes, 2))  # (N, 2)
        self.register_buffer("grid", torch.as_tensor(grid, dtype=torch.float32).reshape(points, -1)[:, 0])  # (P,) 0..1
        self.register_buffer("pluck_width", torch.tensor(float(pluck_width)))  # fraction of length
        self.register_buffer("pluck_amplitude", torch.tensor(float(pluck_amplitude)))  # field units at velocity 0.8
        self.register_buffer("pluck_shape", torch.tensor(int(pluck_shape)))  # 0 raised cosine, 1 triangle, 2 gaussian
        self.register_buffer("base_note", torch.tensor(float(base_note)))

    def encode(self, u0: torch.Tensor) -> torch.Tensor:
        """Initial field (B, P) -> z0 (B, N, 2)."""
        return torch.einsum("bp,npk->bnk", u0, self.encoder)

    def field(self, z: torch.Tensor) -> torch.Tensor:
        """State (V, N, 2) -> field (V, P) = Re(sum_n C_n z_n)."""
        c = self.field_readout
        return torch.einsum("vn,np->vp", z[..., 0], c[..., 0]) - torch.einsum("vn,np->vp", z[..., 1], c[..., 1])

    def pluck_field(self, controls: torch.Tensor) -> torch.Tensor:
        """Pluck at ``position`` (fraction of length), peak pluck_amplitude * velocity / 0.8: (V, P).

        Shape as the solver's (training/physics/modal.py SHAPES): 0 raised cosine, 1 triangle (width = full
        support), 2 gaussian (width = standard deviation); widths as fractions of the length.
        """
        _, velocity, position, _ = split_controls(controls)
        s = self.grid[None, :] - position  # (V, P)
        w = self.pluck_width
        inside = (s.abs() < w / 2).to(s.dtype)
        raised = 0.5 * (1.0 + torch.cos(2.0 * math.pi * s / w)) * inside
        triangle = torch.clamp(1.0 - 2.0 * s.abs() / w, min=0.0)
        gauss = torch.exp(-0.5 * (s / w) ** 2)
        code = self.pluck_shape
        shape = raised * (code == 0).to(s.dtype) + triangle * (code == 1).to(s.dtype) + gauss * (code == 2).to(s.dtype)
        return shape * (self.pluck_amplitude * velocity / 0.8)

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note = split_controls(controls).note  # (V, 1)
        sigma, omega = self.poles()  # (N,), (N,)
        ratio = semitone_ratio(note, self.base_note)  # (V, 1) transposition
        z0 = self.encode(self.pluck_field(controls))  # (V, N, 2)
        c = self.pickup.unsqueeze(0).expand_as(z0)  # (V, N, 2)
        return {"sigma": sigma[None, :] * torch.ones_like(ratio), "omega": omega[None, :] * ratio, "z0": z0, "c": c}


class FieldReadout(nn.Module):
    """The ``field`` graph of a FieldSSM: z (V, N, 2) -> u (V, *field_shape)."""

    def __init__(self, model: FieldSSM):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.field(z).reshape(z.shape[0], *self.model.field_shape)


class RecordingSSM(nn.Module):
    """N damped modes fitted to one recording; transposes with the note, scales with velocity.

    sigma_n, omega_n from ``ContinuousPoles``; z0_n = amplitude_n * velocity / base_velocity; c = 1.
    With ``attack_samples`` L > 0 it also returns the attack component (the recording's residual after the
    modes, ``training.modal_analysis.analyse_recording``): attack (V, L) = table * velocity / base_velocity,
    played at the recording's rate (manifest "attack"), not transposed.
    """

    def __init__(self, n_modes: int, base_note: float = 60.0, base_velocity: float = 100 / 127, attack_samples: int = 0):
        super().__init__()
        self.poles = ContinuousPoles(torch.full((n_modes,), 1.0), torch.linspace(100.0, 1000.0, n_modes))
        self.amplitude = nn.Parameter(torch.zeros(n_modes, 2))  # (N, 2) complex amplitude at t = 0
        self.register_buffer("base_note", torch.tensor(float(base_note)))
        self.register_buffer("base_velocity", torch.tensor(float(base_velocity)))
        self.register_buffer("attack", torch.zeros(int(attack_samples)))  # (L,) residual table

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note, velocity, _, _ = split_controls(controls)
        sigma, omega = self.poles()  # (N,)
        ratio = semitone_ratio(note, self.base_note)  # (V, 1)
        gain = velocity / self.base_velocity  # (V, 1)
        z0 = self.amplitude[None] * gain[..., None]  # (V, N, 2)
        out = {"sigma": sigma[None] * ratio, "omega": omega[None] * ratio, "z0": z0, "c": unit_readout(z0)}
        if self.attack.numel():
            out["attack"] = self.attack[None] * gain  # (V, L)
        return out


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, outputs))


class ConditionedSSM(nn.Module):
    """Modes as smooth functions of (note, velocity, position): plays any MIDI note in range.

    With x = (note - note_centre) / note_scale:
      f0(note)    = midi_to_hz(note) * 2^(tune(x) / 1200)              tune in cents
      r_n(note)   = n sqrt(1 + B(x) n^2) exp(delta_n(x)),   B = exp(logB(x))   (stiff-string partials)
      sigma_n     = exp(log_sigma_n(x))                                1/s
      z0_n        = velocity^gamma * amp_n(x, velocity, position)      complex, c = 1
    """

    def __init__(self, n_modes: int, note_centre: float = 60.0, note_scale: float = 12.0, hidden: int = 32):
        super().__init__()
        self.n_modes = n_modes
        self.register_buffer("harmonic", torch.arange(1, n_modes + 1, dtype=torch.float32))  # (N,)
        self.register_buffer("note_centre", torch.tensor(float(note_centre)))
        self.register_buffer("note_scale", torch.tensor(float(note_scale)))
        self.pitch_net = _mlp(1, hidden, 2 + n_modes)  # tune (cents), log B, delta_n
        self.decay_net = _mlp(1, hidden, n_modes)  # log sigma_n
        self.amp_net = _mlp(3, hidden, 2 * n_modes)  # amp_n (re, im)
        self.log_gamma = nn.Parameter(torch.zeros(()))  # velocity exponent, gamma = exp(.) > 0
        self.register_buffer("delta_scale", torch.tensor(1e-3))

    def pitch(self, note: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """note (V, 1) -> (f0 Hz (V, 1), ratios r_n (V, N))."""
        x = (note - self.note_centre) / self.note_scale  # (V, 1)
        out = self.pitch_net(x)  # (V, 2 + N)
        tune, log_b, delta = out[:, 0:1], out[:, 1:2], out[:, 2:]
        f0 = midi_to_hz(note) * torch.exp(tune * (math.log(2.0) / 1200.0))  # (V, 1)
        n = self.harmonic[None]  # (1, N)
        ratios = n * torch.sqrt(1.0 + torch.exp(log_b) * n**2) * torch.exp(self.delta_scale * delta)  # (V, N)
        return f0, ratios

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note, velocity, position, _ = split_controls(controls)
        x = (note - self.note_centre) / self.note_scale  # (V, 1)
        f0, ratios = self.pitch(note)
        omega = 2.0 * math.pi * f0 * ratios  # (V, N)
        sigma = torch.exp(self.decay_net(x))  # (V, N) > 0
        amp = self.amp_net(torch.cat([x, velocity, position], dim=-1)).reshape(-1, self.n_modes, 2)  # (V, N, 2)
        z0 = amp * torch.pow(velocity.clamp_min(1e-4), torch.exp(self.log_gamma))[..., None]  # (V, N, 2)
        return {"sigma": sigma, "omega": omega, "z0": z0, "c": unit_readout(z0)}
