"""The one contract every eigentone model family satisfies: excite, advance, read out.

Deep Koopman models, modal FNOs and diagonal state-space models all end in the
same runtime shape, and the engine plays all of them through this module only::

    controls (note, velocity, position, position_y)        -- one row per voice
          |  excite graph (ONNX, once per note-on)
          v
    poles   lambda_n = -sigma_n + i*omega_n                 (voices, modes), 1/s and rad/s
    state   z0_n  (complex, stored as (..., 2) = re, im)    (voices, modes, 2)
    readout c_n   (complex, stored as (..., 2))             (voices, modes, 2)
          |  advance: z[k+1] = exp(lambda / fs) * z[k]      (engine, any sample rate fs)
          v
    output  y[k] = sum_n Re(c_n * z_n[k])                   (voices, samples)

Optional parts, each declared in the bundle manifest:

* **Pole modulation** (nonlinear strings/plates: tension-modulated pitch glide).
  The excite graph also returns ``mod_alpha`` and ``mod_beta`` (voices, modes),
  both >= 0. Once per block the engine evaluates the voice energy
  ``E = sum_m beta_m |z_m|^2`` and sets ``omega_n = sqrt(omega0_n^2 + alpha_n * E)``.
  For the Kirchhoff-Carrier string this is exact to first order in the tension
  change: ``alpha_n = k_n^2 / (rho A)``, ``beta_m = E A k_m^2 / 8`` (see
  ``training/physics/string_nonlinear.py``).
* **Block-rate readout network** (``readout`` graph). Input ``z`` (voices, modes, 2)
  at the start of a block, output ``c`` (voices, modes, 2): the readout weights
  used for that block. This is how a Koopman decoder stays nonlinear in the
  state while the per-sample work stays a modal bank.
* **Field graph** (``field`` graph, visualisation only). Input ``z`` (voices, modes, 2),
  output ``u`` (voices, points): the displacement field on the model's grid.

Everything complex crosses ONNX as real pairs (torch cannot export complex
tensors), with the last axis ``(re, im)``.

Control vector layout (float32, shape (voices, 4)):

=========== ======= ===========================================================
column      unit    meaning
=========== ======= ===========================================================
note        MIDI    fractional MIDI note number (69.0 = A4 = 440 Hz)
velocity    0..1    MIDI velocity / 127
position    0..1    excitation point along the string / plate x, fraction of length
position_y  0..1    excitation point along plate y (ignored by strings)
=========== ======= ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTROL_NAMES: tuple[str, ...] = ("note", "velocity", "position", "position_y")
"""Columns of the ``controls`` input of every excite graph."""

DEFAULT_CONTROLS: dict[str, float] = {"note": 60.0, "velocity": 0.8, "position": 0.2, "position_y": 0.37}

EXCITE_OUTPUTS: tuple[str, ...] = ("sigma", "omega", "z0", "c")
"""Outputs every excite graph must have."""

# Levelling: models output whatever unit they were trained on (metres of displacement, a normalised
# recording); the synth scales each instrument so its probe note peaks near -12 dBFS (engine/instrument.py,
# ``Instrument.output_gain``; a manifest "output_gain" overrides it). render_note stays raw.

MODULATION_OUTPUTS: tuple[str, ...] = ("mod_alpha", "mod_beta")
"""Outputs an excite graph has when the bundle declares pole modulation."""


def midi_to_hz(note: np.ndarray | float) -> np.ndarray | float:
    """Equal-tempered frequency in Hz of a (fractional) MIDI note number, A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(freq_hz: np.ndarray | float) -> np.ndarray | float:
    """Fractional MIDI note number of a frequency in Hz."""
    return 69.0 + 12.0 * np.log2(np.asarray(freq_hz, dtype=np.float64) / 440.0)


@dataclass
class ModalVoices:
    """Continuous-time modal description of a batch of voices, as an excite graph returns it.

    Attributes
    ----------
    sigma : (voices, modes) float, 1/s, decay rates (>= 0)
    omega : (voices, modes) float, rad/s, angular frequencies (>= 0)
    z0 : (voices, modes) complex, initial modal state
    c : (voices, modes) complex, readout weights
    mod_alpha, mod_beta : (voices, modes) float or None, pole modulation (see module doc)
    """

    sigma: np.ndarray
    omega: np.ndarray
    z0: np.ndarray
    c: np.ndarray
    mod_alpha: np.ndarray | None = None
    mod_beta: np.ndarray | None = None

    @classmethod
    def from_graph_outputs(cls, outputs: dict[str, np.ndarray]) -> ModalVoices:
        """Build from the excite graph's named outputs (complex values as trailing (re, im) pairs)."""
        return cls(
            sigma=np.asarray(outputs["sigma"], dtype=np.float64),
            omega=np.asarray(outputs["omega"], dtype=np.float64),
            z0=pairs_to_complex(outputs["z0"]),
            c=pairs_to_complex(outputs["c"]),
            mod_alpha=None if outputs.get("mod_alpha") is None else np.asarray(outputs["mod_alpha"], np.float64),
            mod_beta=None if outputs.get("mod_beta") is None else np.asarray(outputs["mod_beta"], np.float64),
        )

    def is_finite(self) -> np.ndarray:
        """(voices,) bool: True where every returned quantity of that voice is finite."""
        parts = [self.sigma, self.omega, self.z0.real, self.z0.imag, self.c.real, self.c.imag]
        if self.mod_alpha is not None:
            parts += [self.mod_alpha, self.mod_beta]
        return np.all([np.isfinite(p).all(axis=-1) for p in parts], axis=0)


def pairs_to_complex(pairs: np.ndarray) -> np.ndarray:
    """(..., 2) real (re, im) pairs -> (...) complex128."""
    pairs = np.asarray(pairs, dtype=np.float64)
    return pairs[..., 0] + 1j * pairs[..., 1]


def complex_to_pairs(values: np.ndarray) -> np.ndarray:
    """(...) complex -> (..., 2) float32 (re, im) pairs."""
    values = np.asarray(values)
    return np.stack([values.real, values.imag], axis=-1).astype(np.float32)


def discrete_poles(sigma: np.ndarray, omega: np.ndarray, sample_rate: float) -> np.ndarray:
    """Per-sample multipliers exp((-sigma + i*omega) / fs) for a sample rate in Hz.

    Modes at or above Nyquist (omega >= pi * fs) cannot be represented at this rate;
    their multiplier is set to 0 so they are silent rather than aliased.
    Shapes follow the inputs, e.g. (voices, modes).
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    omega = np.asarray(omega, dtype=np.float64)
    poles = np.exp((-np.maximum(sigma, 0.0) + 1j * omega) / float(sample_rate))
    return np.where(np.abs(omega) < np.pi * sample_rate, poles, 0.0)


def modulated_omega(omega0: np.ndarray, z: np.ndarray, mod_alpha: np.ndarray, mod_beta: np.ndarray) -> np.ndarray:
    """Energy-dependent angular frequencies, omega = sqrt(omega0^2 + alpha * sum_m beta_m |z_m|^2).

    omega0, mod_alpha, mod_beta: (voices, modes); z: (voices, modes) complex. Returns (voices, modes) rad/s.
    """
    energy = np.sum(mod_beta * (z.real**2 + z.imag**2), axis=-1, keepdims=True)  # (voices, 1)
    return np.sqrt(omega0**2 + mod_alpha * energy)


def render_modal(voices: ModalVoices, sample_rate: float, n_samples: int, block_size: int = 64) -> np.ndarray:
    """Reference (slow, float64) rendering of the contract: (voices, samples) output.

    This is the executable definition of the contract that the real-time modal bank
    in ``engine/modal_bank.py`` is tested against. Pole modulation, when present,
    is evaluated once per ``block_size`` samples from the state at the block start.
    """
    z = voices.z0.astype(np.complex128).copy()
    out = np.zeros((z.shape[0], n_samples))
    steps = np.arange(block_size)
    for start in range(0, n_samples, block_size):
        n = min(block_size, n_samples - start)
        omega = voices.omega
        if voices.mod_alpha is not None:
            omega = modulated_omega(voices.omega, z, voices.mod_alpha, voices.mod_beta)
        poles = discrete_poles(voices.sigma, omega, sample_rate)  # (voices, modes)
        powers = poles[:, :, None] ** steps[None, None, :n]  # (voices, modes, n)
        out[:, start : start + n] = np.real(np.einsum("vm,vmk->vk", voices.c * z, powers))
        z = z * poles**n
    return out
