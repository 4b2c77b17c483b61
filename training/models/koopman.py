"""Deep Koopman family: nonlinear strings and plates through diagonal continuous-time latent dynamics.

Following Lusch et al. (2018) and Diaz et al. (DAFx24, arXiv 2408.16650), a nonlinear field
``x_k = (u_k, v_k)`` (displacement, velocity on the grid) is lifted by an encoder phi into a
latent space where the dynamics are (nearly) linear and diagonal::

    z_0 = phi(x_0)                                          (V, N, 2)   complex as (re, im)
    z_k = z_0 * exp(lambda k / fs),  lambda_n = -sigma_n + i omega_n(E)      (continuous-time poles)
    u_k = phi^{-1}(z_k) = Re(Phi z_k) + g(z_k)              (V, P)      linear modal part + small MLP
    y_k = Re(sum_n c_n(z_block) z_{k,n})                    (V,)        pickup, block-rate weights

Amplitude dependence (tension-modulated pitch glide) enters as the contract's pole modulation,
evaluated once per block from the state at the block start (exactly as the engine runs it)::

    E = sum_m beta_m |z_m|^2,   omega_n = sqrt(omega0_n^2 + alpha_n E)

For the Kirchhoff-Carrier string with sine modes ``u = sum q_m sin(k_m x)``, ``alpha_n = k_n^2/(rho A)``
and ``beta_m = E A k_m^2 / 8`` (time average of q_m^2 = |z_m|^2 / 2); the model learns them.

Losses (Lusch et al. 2018; Diaz et al. 2024, eqs. for L_pred, L_enc, L_cons)::

    L_pred = sum_k ||x_k - phi^{-1}(Lambda^k phi(x_0))||^2      multi-step prediction
    L_enc  = ||x_k - phi^{-1}(phi(x_k))||^2                      reconstruction
    L_cons = sum_k ||phi(x_k) - Lambda^k phi(x_0)||^2            latent consistency

all normalised by the target energy (relative MSE). Stability holds for any parameter value:
sigma = softplus(raw) + sigma_min > 0 (``ContinuousPoles``) and alpha, beta = exp(raw) >= 0, so
|exp(lambda / fs)| < 1 whatever omega is.

Playable instrument: the excite graph synthesises the initial field inside the graph from the
controls (Gaussian pluck at ``position``, peak set by ``velocity``, zero initial velocity), encodes
it, and transposes to ``note`` by scaling time (omega, sigma and alpha scale by 2^((note-note0)/12),
exact for a string whose every frequency scales together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from eigentone.contract.torch_twin import block_rollout, semitone_ratio, split_controls
from training.fits import prony_poles
from training.models.modal_core import ContinuousPoles
from training.models.pole_law import matrix_rollout
from training.models.voice_poles import VoicePoles

# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass
class KoopmanConfig:
    """Everything needed to rebuild a model (written to RUN_DIR/config.json)."""

    grid_shape: list[int]  # [P] for strings, [ny, nx] for plates
    latent: int  # N complex latent modes
    sample_rate: float  # Hz of the training data
    basis: str = "sine"  # analytic basis the linear parts are initialised with
    hidden: int = 128  # width of the MLP corrections (0: none, the encoder/decoder/readout stay linear)
    block_size: int = 16  # samples per pole-modulation / readout block at sample_rate
    velocity_scale: float = 1.0  # v input is multiplied by this (1 / omega_ref) to be O(u)
    modulation: bool = True
    pickup_index: int | None = None  # flat grid index nearest the pickup
    pluck: dict = field(default_factory=dict)  # Gaussian pluck synthesis for controls -> field
    family: str = "koopman"
    init: str = "physics"  # what the linear parts and poles started from: "physics" (physics_prior) or "data"
    voice_poles: bool = False  # per-voice pole corrections from the note-on state (``VoicePoles``)
    voice_hidden: int = 64  # width of that network
    law: str = "rank1"  # pole law: "rank1" (the contract's) or "matrix" (``training/models/pole_law.py``; not exportable)

    @property
    def points(self) -> int:
        return int(np.prod(self.grid_shape))


# --------------------------------------------------------------------------------------------
# analytic bases and initialisation from data
# --------------------------------------------------------------------------------------------


def sine_basis(grid_shape: list[int], n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Simply-supported mode shapes on a grid including the boundary points.

    Returns (basis (P, N), mode numbers (N, dims)) with the grid spanning [0, 1] per axis. Strings:
    sin(n pi x), n = 1..N. Plates: sin(m pi x) sin(n pi y), (m, n) ordered by m^2 + n^2 (membrane order).
    """
    if len(grid_shape) == 1:
        x = np.linspace(0.0, 1.0, grid_shape[0])
        n = np.arange(1, n_modes + 1)
        return np.sin(np.pi * np.outer(x, n)), n[:, None]
    ny, nx = grid_shape
    y, x = np.linspace(0.0, 1.0, ny), np.linspace(0.0, 1.0, nx)
    pairs = sorted(((m, n) for m in range(1, nx) for n in range(1, ny)), key=lambda mn: (mn[0] ** 2 + mn[1] ** 2, mn))
    pairs = pairs[:n_modes]
    shapes = [np.outer(np.sin(n * np.pi * y), np.sin(m * np.pi * x)).ravel() for m, n in pairs]
    return np.stack(shapes, axis=1), np.array(pairs)


def fit_modal_poles(q: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-mode damped-oscillator fit (second-order Prony, ``training.fits.prony_poles``) pooled over examples.

    q: (examples, samples, N) modal coordinates. Returns (sigma (N,) 1/s, omega (N,) rad/s); a mode the
    data does not excite gets sigma = 1 and a place on a harmonic-ish ladder from the first good mode.
    """
    sigma, omega, ok = prony_poles(q, sample_rate, pooled=True)
    ok &= np.sqrt((q[:, 2:] ** 2).sum(axis=(0, 1))) >= 1e-12
    sigma = np.where(ok, np.maximum(sigma, 1e-2), 1.0)
    omega = np.where(ok, omega, 0.0)
    missing = ~ok
    if missing.any():  # unexcited modes: place them on a harmonic-ish ladder from the first good mode
        good = np.flatnonzero(ok)
        base = omega[good[0]] / (good[0] + 1) if len(good) else 2 * math.pi * 100.0
        omega[missing] = base * (np.flatnonzero(missing) + 1)
    return sigma, np.minimum(omega, 0.98 * math.pi * sample_rate)


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class Mlp(nn.Module):
    """Two hidden tanh layers; the last layer starts at zero so a correction starts as no correction."""

    def __init__(self, n_in: int, n_out: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, n_out))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FieldEncoder(nn.Module):
    """phi: (u, v) on the grid -> latent z (V, N, 2). Linear modal projection + MLP correction.

    The linear part is initialised so that, for the linear system, z_n is exactly the complex modal
    amplitude with q_n = Re z_n and dq_n/dt = Re(lambda_n z_n):
    z_n = q_n - i (dq_n/dt + sigma_n q_n) / omega_n.
    """

    def __init__(self, points: int, latent: int, hidden: int, scale: float):
        super().__init__()
        self.linear = nn.Linear(2 * points, 2 * latent, bias=False)
        self.correction = Mlp(2 * points, 2 * latent, hidden) if hidden > 0 else None
        self.register_buffer("scale", torch.tensor(float(scale)))  # field units -> O(1) for the MLP

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """u, v: (V, P) displacement and scaled velocity. Returns z (V, N, 2)."""
        x = torch.cat([u, v], dim=-1)  # (V, 2P)
        z = self.linear(x)  # (V, 2N)
        if self.correction is not None:
            z = z + self.correction(x / self.scale) * self.scale
        return z.reshape(x.shape[0], -1, 2)


class FieldDecoder(nn.Module):
    """phi^{-1}: latent z (..., N, 2) -> field u (..., P) = Re(Phi z) + g(z)."""

    def __init__(self, points: int, latent: int, hidden: int, scale: float):
        super().__init__()
        self.modes = nn.Parameter(torch.zeros(points, latent, 2))  # Phi (P, N, 2)
        self.correction = Mlp(2 * latent, points, hidden) if hidden > 0 else None
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        linear = torch.einsum("...n,pn->...p", z[..., 0], self.modes[..., 0]) - torch.einsum(
            "...n,pn->...p", z[..., 1], self.modes[..., 1])  # (..., P)
        if self.correction is None:
            return linear
        flat = z.reshape(*z.shape[:-2], -1) / self.scale  # (..., 2N)
        return linear + self.correction(flat) * self.scale


class PickupReadout(nn.Module):
    """Block-rate readout weights c(z_b) (V, N, 2): c0 plus a small MLP of the log mode energies.

    y_k = Re(sum_n c_n(z_b) z_{k,n}) inside a block that starts at b: linear in the running state, so
    the engine keeps the per-sample work a modal bank; nonlinear in the (slow) block-start state.
    """

    def __init__(self, latent: int, hidden: int, scale: float):
        super().__init__()
        self.c0 = nn.Parameter(torch.zeros(latent, 2))
        self.correction = Mlp(latent, 2 * latent, hidden // 2) if hidden > 1 else None
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (V, N, 2) block-start state. Returns c (V, N, 2)."""
        if self.correction is None:
            return self.c0.expand_as(z)
        energy = torch.log1p((z**2).sum(-1) / self.scale**2)  # (V, N)
        return self.c0 + self.correction(energy).reshape(z.shape)


class PoleModulation(nn.Module):
    """alpha_n, beta_m >= 0 stored as logs: omega_n = sqrt(omega0_n^2 + alpha_n sum_m beta_m |z_m|^2)."""

    def __init__(self, alpha: np.ndarray, beta: np.ndarray):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.log(torch.as_tensor(np.maximum(alpha, 1e-30), dtype=torch.float32)))
        self.log_beta = nn.Parameter(torch.log(torch.as_tensor(np.maximum(beta, 1e-30), dtype=torch.float32)))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.exp(self.log_alpha), torch.exp(self.log_beta)


class KoopmanModel(nn.Module):
    """Encoder -> diagonal continuous-time latent dynamics (+ pole modulation) -> decoder / pickup."""

    def __init__(self, config: KoopmanConfig, sigma: np.ndarray | None = None, omega: np.ndarray | None = None,
                 alpha: np.ndarray | None = None, beta: np.ndarray | None = None, field_scale: float = 1.0):
        super().__init__()
        self.config = config
        n, p = config.latent, config.points
        fs = config.sample_rate
        if sigma is None:
            sigma = np.full(n, 1.0)
        if omega is None:
            omega = 2 * math.pi * 100.0 * np.arange(1, n + 1)
        self.poles = ContinuousPoles(torch.as_tensor(sigma, dtype=torch.float32),
                                     torch.as_tensor(np.minimum(omega, 0.98 * math.pi * fs), dtype=torch.float32))
        self.modulation = PoleModulation(alpha if alpha is not None else np.full(n, 1e-12),
                                         beta if beta is not None else np.full(n, 1e-12))
        self.modulation.requires_grad_(config.modulation)
        self.encoder = FieldEncoder(p, n, config.hidden, field_scale)
        self.decoder = FieldDecoder(p, n, config.hidden, field_scale)
        self.readout = PickupReadout(n, config.hidden, field_scale)
        self.voice = VoicePoles(n, config.voice_hidden) if config.voice_poles else None
        if config.law == "matrix":  # A (N, N) of omega_n^2 = omega0_n^2 + sum_m A_nm |z_m|^2, fitted in closed form
            self.register_buffer("mod_matrix", torch.zeros(n, n))

    # -- initialisation --------------------------------------------------------------------
    @torch.no_grad()
    def init_linear_parts(self, basis: np.ndarray, pickup_index: int | None = None) -> None:
        """Set Phi = basis, the encoder to its exact modal inverse, and c0 = Phi[pickup]. basis: (P, N)."""
        sigma, omega = (t.double().numpy() for t in self.poles())
        proj = np.linalg.pinv(basis)  # (N, P): q = proj u
        vs = self.config.velocity_scale  # v_in = vs * du/dt
        n, p = proj.shape
        w = np.zeros((2 * n, 2 * p))  # rows interleaved (re, im) per mode, columns [u | v_in]
        w[0::2, :p] = proj
        w[1::2, :p] = -(sigma / omega)[:, None] * proj
        w[1::2, p:] = -(1.0 / (omega * vs))[:, None] * proj
        self.encoder.linear.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        self.decoder.modes.zero_()
        self.decoder.modes[..., 0] = torch.as_tensor(basis, dtype=torch.float32)
        if pickup_index is not None:
            self.readout.c0.zero_()
            self.readout.c0[:, 0] = torch.as_tensor(basis[pickup_index], dtype=torch.float32)

    # -- dynamics ----------------------------------------------------------------------------
    def coefficients(self, z0: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Continuous-time sigma, omega0 and modulation alpha, beta (zeros when off): (N,) shared, or (V, N) for
        the voices starting at z0 (V, N, 2) when the model has per-voice poles."""
        sigma, omega = self.poles()
        alpha, beta = self.modulation()
        if not self.config.modulation:
            alpha, beta = alpha * 0, beta * 0
        shared = {"sigma": sigma, "omega": omega, "mod_alpha": alpha, "mod_beta": beta}
        return shared if self.voice is None or z0 is None else self.voice.per_voice(z0, shared)

    def rollout(self, z0: torch.Tensor, n_samples: int, time_scale: torch.Tensor | float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent trajectory and pickup under block-rate modulation, as the engine runs it.

        z0: (V, N, 2). Returns z (V, N, T, 2) and pickup y (V, T). Python loops over blocks only.
        """
        co = self.coefficients(z0)
        if self.config.law == "matrix":
            return matrix_rollout(co["sigma"], co["omega"], self.mod_matrix, z0, self.config.sample_rate, n_samples,
                                  self.config.block_size, readout=self.readout)
        return block_rollout(co["sigma"], co["omega"], z0, co["mod_alpha"], co["mod_beta"], self.config.sample_rate,
                             n_samples, self.config.block_size, readout=self.readout)

    @torch.no_grad()
    def estimate_velocity(self, fields: np.ndarray) -> np.ndarray:
        """du/dt of (E, T, P) snapshots, exact for the linear modal system with this model's poles.

        Per mode, (q_k, q_{k+1}) give z_k = q_k + i (q_k Re p - q_{k+1}) / Im p with p = exp(lambda / fs)
        (from q_{k+1} = Re(z_k p)), and dq/dt = Re(lambda z_k). The last sample repeats the previous one.
        """
        sigma, omega = (t.double().numpy() for t in self.poles())
        basis = self.decoder.modes[..., 0].double().numpy()  # (P, N)
        q = fields @ np.linalg.pinv(basis).T  # (E, T, N)
        p = np.exp((-sigma + 1j * omega) / self.config.sample_rate)  # (N,)
        zi = (q[:, :-1] * p.real - q[:, 1:]) / p.imag  # (E, T-1, N)
        qdot = -sigma * q[:, :-1] - omega * zi  # Re((-sigma + i omega)(q + i zi))
        qdot = np.concatenate([qdot, qdot[:, -1:]], axis=1)  # (E, T, N)
        return (qdot @ basis.T).astype(fields.dtype)

    def predict(self, u0: torch.Tensor, v0: torch.Tensor, n_samples: int) -> dict[str, torch.Tensor]:
        """Encode (u0, v0) (V, P), roll out n_samples, decode. Returns z, field (V, T, P), pickup (V, T)."""
        z0 = self.encoder(u0, v0 * self.config.velocity_scale)
        z, y = self.rollout(z0, n_samples)
        return {"z0": z0, "z": z, "field": self.decoder(z.transpose(1, 2)), "pickup": y}


# --------------------------------------------------------------------------------------------
# data helpers shared by trainer, benchmark and tests
# --------------------------------------------------------------------------------------------


def build_model(fields: np.ndarray, sample_rate: float, latent: int, *, modulation: bool = True,
                hidden: int = 128, block_size: int = 16, pickup_index: int | None = None,
                prior=None, pluck: dict | None = None) -> KoopmanModel:
    """A model initialised from data: sine basis (plates: the most energetic shapes), then poles and
    modulation from ``prior(mode_numbers (N, dims)) -> {"sigma", "omega", "alpha", "beta"}`` (the physics,
    see ``training.train_koopman.physics_prior``) when given, else poles by linear prediction on the
    quietest quarter of examples and modulation fitted to the loudest quarter's pitch shift.

    fields: (E, T, P) or (E, T, ny, nx) training fields (metres).
    """
    grid_shape = list(fields.shape[2:])
    flat = fields.reshape(fields.shape[0], fields.shape[1], -1)  # (E, T, P)
    if len(grid_shape) == 1:
        basis, numbers = sine_basis(grid_shape, latent)
    else:  # plates: of the first 4N membrane-ordered shapes keep the N carrying most energy in the data
        candidates, numbers = sine_basis(grid_shape, 4 * latent)
        energy = ((flat[:, ::8] @ np.linalg.pinv(candidates).T) ** 2).sum(axis=(0, 1))  # (4N,)
        keep = np.sort(np.argsort(energy)[::-1][:latent])
        basis, numbers = candidates[:, keep], numbers[keep]
    proj = np.linalg.pinv(basis)  # (N, P)
    q = flat @ proj.T  # (E, T, N)
    peak = np.abs(flat).max(axis=(1, 2))  # (E,) loudness of each example (plucks and strikes alike)
    order = np.argsort(peak)
    quiet = order[: max(1, len(order) // 4)]
    known = prior(numbers) if prior is not None else None
    if known is not None:
        sigma, omega = known["sigma"], np.minimum(known["omega"], 0.98 * math.pi * sample_rate)
    else:
        sigma, omega = fit_modal_poles(q[quiet], sample_rate)
    scale = float(np.abs(flat).max())
    omega_ref = float(omega[0])
    config = KoopmanConfig(grid_shape=grid_shape, latent=latent, sample_rate=sample_rate, hidden=hidden,
                           block_size=block_size, velocity_scale=1.0 / omega_ref, modulation=modulation,
                           pickup_index=pickup_index, pluck=pluck or {})
    if known is not None:
        alpha_beta = known["alpha"], known["beta"]
    else:
        alpha_beta = _fit_modulation(q, order, sigma, omega, sample_rate)
    if modulation and known is None:  # quiet plucks still glide: remove their mean shift, omega0^2 = omega^2 - alpha E
        energy = float(np.mean(np.sum(alpha_beta[1] * 2.0 * q[quiet] ** 2, axis=-1)))  # mean q^2 = |z|^2 / 2
        omega = np.sqrt(np.maximum(omega**2 - alpha_beta[0] * energy, 0.25 * omega**2))
    model = KoopmanModel(config, sigma, omega, alpha_beta[0], alpha_beta[1], field_scale=scale)
    model.init_linear_parts(basis, pickup_index)
    return model


def build_data_model(fields: np.ndarray, sample_rate: float, latent: int, *, modulation: bool = True,
                     hidden: int = 0, block_size: int = 16, pickup_index: int | None = None,
                     voice_poles: bool = True, pluck: dict | None = None, law: str = "rank1"
                     ) -> tuple[KoopmanModel, dict]:
    """A model started from the data alone (``training/models/data_modes.py``): no solver parameters and no
    sine basis. Mode shapes, poles and the pole law come from POD + delay DMD + short-segment Prony of the
    training fields; the encoder is the shapes' exact modal inverse (``init_linear_parts``).

    fields: (E, T, P) or (E, T, ny, nx) training fields (metres). Returns (model, what the analysis found).
    The latent size is what the data hold, at most ``latent``. ``law`` "matrix" (with modulation): the pole law
    is ``training/models/pole_law.py``'s, omega0 and A fitted to the fields' phase increments, instead of the
    rank-one law, and there are no per-voice poles.
    """
    from training.models.data_modes import analyse
    from training.models.pole_law import fit_matrix_law

    found = analyse(fields, sample_rate, latent, modulation=modulation)
    n = found.shapes.shape[1]
    matrix = law == "matrix" and modulation
    omega0, info = found.omega, dict(found.info)
    if matrix:
        flat = np.asarray(fields).reshape(fields.shape[0], fields.shape[1], -1)
        q = flat @ np.linalg.pinv(found.shapes).T.astype(flat.dtype)  # (E, T, N) modal coordinates
        omega0, mod_matrix, law_info = fit_matrix_law(q, found.sigma, found.omega, sample_rate)
        info.update(law_info)
    config = KoopmanConfig(grid_shape=list(fields.shape[2:]), latent=n, sample_rate=sample_rate, hidden=hidden,
                           block_size=block_size, velocity_scale=1.0 / float(found.omega[0]), modulation=modulation,
                           pickup_index=pickup_index, pluck=pluck or {}, init="data",
                           voice_poles=voice_poles and not matrix, law="matrix" if matrix else "rank1")
    alpha = found.alpha if found.alpha.any() else np.full(n, 1e-12)
    model = KoopmanModel(config, found.sigma, omega0, alpha, found.beta, field_scale=float(np.abs(fields).max()))
    model.init_linear_parts(found.shapes, pickup_index)
    if matrix:
        model.mod_matrix.copy_(torch.as_tensor(mod_matrix, dtype=torch.float32))
    if model.voice is not None:
        model.voice.energy_scale.copy_(torch.as_tensor(found.energy_scale, dtype=torch.float32))
    return model, info


def _fit_modulation(q: np.ndarray, order: np.ndarray, sigma: np.ndarray, omega: np.ndarray, fs: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Kirchhoff-Carrier-shaped modulation fitted to data: alpha_n = a omega0_n^2, beta_m = omega0_m^2.

    The scalar a is fitted from the fundamental's frequency in the first 512 samples of the loudest
    quarter of examples: omega_meas^2 = omega0^2 (1 + a sum_m omega0_m^2 |z_m|^2).
    """
    loud = order[-max(1, len(order) // 4):]
    n_win = min(512, q.shape[1])
    _s_l, w_l = fit_modal_poles(q[loud, :n_win, :1], fs)
    z_amp2 = np.mean(np.sum(omega**2 * q[loud, 0] ** 2, axis=-1))  # ~ sum beta |z|^2 at zero velocity
    a = max((w_l[0] ** 2 / omega[0] ** 2 - 1.0) / max(z_amp2, 1e-30), 1e-12)
    return a * omega**2, omega**2


# --------------------------------------------------------------------------------------------
# export (contract graphs)
# --------------------------------------------------------------------------------------------


class ExciteGraph(nn.Module):
    """controls (V, 4) -> {sigma, omega, z0, c, mod_alpha, mod_beta} (the contract's excite outputs).

    Synthesises a Gaussian pluck u0(x) = A exp(-(x - x0)^2 / (2 w^2)) at rest (or, for a model trained on
    strikes, that profile as the initial velocity in m/s from u0 = 0) from (velocity -> A in [amp_min,
    amp_max], position -> x0, position_y -> y0 on plates), encodes it, and transposes to ``note``:
    s = 2^((note - note0)/12), sigma' = s sigma, omega0' = s omega0, alpha' = s^2 alpha (time scaling).
    """

    def __init__(self, model: KoopmanModel):
        super().__init__()
        self.model = model
        cfg = model.config
        p = cfg.pluck
        self.note0 = float(p.get("note0", 59.0))
        self.amp_min, self.amp_max = float(p.get("amp_min", 1e-3)), float(p.get("amp_max", 1e-2))
        self.width = float(p.get("width", 0.05))  # fraction of length
        self.strike = p.get("kind", "pluck") == "strike"
        grid = np.linspace(0.0, 1.0, cfg.grid_shape[-1])
        self.register_buffer("x", torch.as_tensor(grid, dtype=torch.float32))
        self.plate = len(cfg.grid_shape) == 2
        if self.plate:
            self.register_buffer("y", torch.as_tensor(np.linspace(0.0, 1.0, cfg.grid_shape[0]), dtype=torch.float32))

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note, vel, pos, pos_y = split_controls(controls)  # (V, 1) each
        amp = self.amp_min + (self.amp_max - self.amp_min) * vel.clamp(0.0, 1.0)  # (V, 1) metres
        gx = torch.exp(-((self.x[None, :] - pos) ** 2) / (2 * self.width**2))  # (V, nx)
        if self.plate:
            gy = torch.exp(-((self.y[None, :] - pos_y) ** 2) / (2 * self.width**2))  # (V, ny)
            shape = (gy[:, :, None] * gx[:, None, :]).reshape(controls.shape[0], -1)  # (V, ny*nx)
            edge = torch.ones_like(shape).reshape(-1, len(self.y), len(self.x))
            edge = torch.nn.functional.pad(edge[:, 1:-1, 1:-1], (1, 1, 1, 1)).reshape(shape.shape)
            shape = shape * edge
        else:
            shape = gx * (self.x > 0) * (self.x < 1)  # pinned ends
        if self.strike:  # initial velocity amp * shape (m/s) from rest
            z0 = self.model.encoder(torch.zeros_like(shape), amp * shape * self.model.config.velocity_scale)
        else:  # initial displacement amp * shape (m), at rest
            z0 = self.model.encoder(amp * shape, torch.zeros_like(shape))  # (V, N, 2)
        co = self.model.coefficients(z0)
        s = semitone_ratio(note, self.note0)  # (V, 1)
        sigma = s * co["sigma"]  # (V, N)
        omega = s * co["omega"]
        alpha = s**2 * co["mod_alpha"]
        beta = co["mod_beta"].expand_as(omega)
        c = self.model.readout(z0)  # (V, N, 2)
        return {"sigma": sigma, "omega": omega, "z0": z0, "c": c, "mod_alpha": alpha, "mod_beta": beta}


class ReadoutGraph(nn.Module):
    """z (V, N, 2) at a block start -> readout weights c (V, N, 2)."""

    def __init__(self, model: KoopmanModel):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.readout(z)


class FieldGraph(nn.Module):
    """z (V, N, 2) -> displacement field u (V, P) or (V, ny, nx)."""

    def __init__(self, model: KoopmanModel):
        super().__init__()
        self.model = model
        self.shape = list(model.config.grid_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decoder(z).reshape(z.shape[0], *self.shape)


# --------------------------------------------------------------------------------------------
# learning from recordings alone: the encoder maps the controls to the initial latent state
# --------------------------------------------------------------------------------------------


@dataclass
class ControlKoopmanConfig:
    """Everything needed to rebuild a ControlKoopman (written to RUN_DIR/config.json)."""

    latent: int  # N complex latent modes
    sample_rate: float  # Hz of the recordings
    note0: float  # MIDI note the poles and modulation are stored at
    note_scale: float = 12.0  # semitones per unit of the networks' note input
    amplitude: float = 1.0  # typical |z| (pickup amplitude), so the MLPs see O(1)
    hidden: int = 128
    block_size: int = 16  # samples per pole-modulation / readout block at sample_rate
    modulation: bool = True
    source: str = "recordings"


class ControlEncoder(nn.Module):
    """psi: controls (V, 4) -> z0 (V, N, 2). Features (x, velocity, position), x = (note - note0) / note_scale;
    z0 = amplitude * (linear(features) + MLP correction(features)), the correction starting at zero."""

    def __init__(self, latent: int, hidden: int, note0: float, note_scale: float, amplitude: float):
        super().__init__()
        self.linear = nn.Linear(3, 2 * latent)
        self.correction = Mlp(3, 2 * latent, hidden)
        self.register_buffer("note0", torch.tensor(float(note0)))
        self.register_buffer("note_scale", torch.tensor(float(note_scale)))
        self.register_buffer("scale", torch.tensor(float(amplitude)))

    def features(self, controls: torch.Tensor) -> torch.Tensor:
        """(V, 3) network inputs of controls (V, 4)."""
        note, velocity, position, _ = split_controls(controls)
        return torch.cat([(note - self.note0) / self.note_scale, velocity, position], dim=-1)

    def forward(self, controls: torch.Tensor) -> torch.Tensor:
        f = self.features(controls)
        return ((self.linear(f) + self.correction(f)) * self.scale).reshape(controls.shape[0], -1, 2)


class ControlKoopman(nn.Module):
    """Deep Koopman model of a recorded instrument: controls -> latent z0 -> diagonal continuous-time dynamics with
    block-rate pole modulation -> block-rate nonlinear pickup readout. Its forward is the excite graph::

        s = 2^((note - note0) / 12),  x = (note - note0) / note_scale
        omega_n = s omega0_n e^{d_n(x)},  sigma_n = s sigma0_n e^{d'_n(x)}     (transposition + learned correction)
        alpha_n = s^gamma alpha_n(note0),  beta_m = beta_m(note0)              (glide scales with the note)
        z0 = psi(controls),  c = readout(z0)
    """

    def __init__(self, config: ControlKoopmanConfig, sigma: np.ndarray | None = None, omega: np.ndarray | None = None,
                 alpha: np.ndarray | None = None, beta: np.ndarray | None = None):
        super().__init__()
        self.config = config
        n = config.latent
        sigma = np.full(n, 1.0) if sigma is None else sigma
        omega = 2 * math.pi * 100.0 * np.arange(1, n + 1) if omega is None else omega
        self.poles = ContinuousPoles(torch.as_tensor(sigma, dtype=torch.float32), torch.as_tensor(omega, dtype=torch.float32))
        self.modulation = PoleModulation(alpha if alpha is not None else np.full(n, 1e-30),
                                         beta if beta is not None else np.full(n, 1e-30))
        self.modulation.requires_grad_(config.modulation)
        self.alpha_exponent = nn.Parameter(torch.zeros(()), requires_grad=config.modulation)
        self.pole_slope = nn.Linear(1, 2 * n)  # linear part of (d_n, d'_n) in x
        nn.init.zeros_(self.pole_slope.weight)
        nn.init.zeros_(self.pole_slope.bias)
        self.pole_correction = Mlp(1, 2 * n, config.hidden // 2)
        self.encoder = ControlEncoder(n, config.hidden, config.note0, config.note_scale, config.amplitude)
        self.readout = PickupReadout(n, config.hidden, config.amplitude)
        with torch.no_grad():
            self.readout.c0[:, 0] = 1.0

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note = split_controls(controls).note  # (V, 1)
        x = (note - self.config.note0) / self.config.note_scale
        s = semitone_ratio(note, self.config.note0)  # (V, 1)
        d = (self.pole_slope(x) + self.pole_correction(x)).reshape(-1, self.config.latent, 2)  # (V, N, 2)
        sigma0, omega0 = self.poles()
        alpha, beta = self.modulation()
        if not self.config.modulation:
            alpha, beta = alpha * 0, beta * 0
        z0 = self.encoder(controls)
        return {"sigma": s * sigma0 * torch.exp(d[..., 1]), "omega": s * omega0 * torch.exp(d[..., 0]), "z0": z0,
                "c": self.readout(z0), "mod_alpha": torch.pow(s, self.alpha_exponent) * alpha,
                "mod_beta": beta.expand(controls.shape[0], -1)}
