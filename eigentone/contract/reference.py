"""The contract's executable definition in numpy float64 (see ``eigentone.contract`` for the layout).

The real-time modal bank (``engine/modal_bank.py``) and the differentiable twin every family trains
through (``eigentone.contract.torch_twin``) are both tested against these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eigentone.contract import A4_HZ, A4_NOTE


def midi_to_hz(note: np.ndarray | float) -> np.ndarray | float:
    """Equal-tempered frequency in Hz of a (fractional) MIDI note number, A4 = 69 = 440 Hz."""
    return A4_HZ * 2.0 ** ((np.asarray(note, dtype=np.float64) - A4_NOTE) / 12.0)


def hz_to_midi(freq_hz: np.ndarray | float) -> np.ndarray | float:
    """Fractional MIDI note number of a frequency in Hz."""
    return A4_NOTE + 12.0 * np.log2(np.asarray(freq_hz, dtype=np.float64) / A4_HZ)


@dataclass
class ModalVoices:
    """Continuous-time modal description of a batch of voices, as an excite graph returns it.

    Attributes
    ----------
    sigma : (voices, modes) float, 1/s, decay rates (>= 0)
    omega : (voices, modes) float, rad/s, angular frequencies (>= 0)
    z0 : (voices, modes) complex, initial modal state
    c : (voices, modes) complex, readout weights
    mod_alpha, mod_beta : (voices, modes) float or None, pole modulation
    """

    sigma: np.ndarray
    omega: np.ndarray
    z0: np.ndarray
    c: np.ndarray
    mod_alpha: np.ndarray | None = None
    mod_beta: np.ndarray | None = None

    @classmethod
    def from_graph_outputs(cls, outputs: dict[str, np.ndarray]) -> ModalVoices:
        """Build from an excite graph's named outputs (complex values as trailing (re, im) pairs).

        Works for numpy arrays and for CPU torch tensors alike (``np.asarray`` of a detached tensor)."""
        def real(name: str) -> np.ndarray | None:
            value = outputs.get(name)
            return None if value is None else np.asarray(value, dtype=np.float64)

        return cls(sigma=real("sigma"), omega=real("omega"), z0=pairs_to_complex(outputs["z0"]),
                   c=pairs_to_complex(outputs["c"]), mod_alpha=real("mod_alpha"), mod_beta=real("mod_beta"))

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


def audible(omega: np.ndarray, sample_rate: float) -> np.ndarray:
    """Bool mask of the modes representable at ``sample_rate`` Hz: |omega| < pi fs (the rest are silent)."""
    return np.abs(np.asarray(omega, dtype=np.float64)) < np.pi * float(sample_rate)


def discrete_poles(sigma: np.ndarray, omega: np.ndarray, sample_rate: float) -> np.ndarray:
    """Per-sample multipliers exp((-sigma + i*omega) / fs) for a sample rate in Hz.

    Modes at or above Nyquist (omega >= pi * fs) get multiplier 0 so they are silent rather than
    aliased; negative sigma counts as 0 (never a growing mode). Shapes follow the inputs, e.g. (voices, modes).
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    omega = np.asarray(omega, dtype=np.float64)
    poles = np.exp((-np.maximum(sigma, 0.0) + 1j * omega) / float(sample_rate))
    return np.where(audible(omega, sample_rate), poles, 0.0)


def modulated_omega(omega0: np.ndarray, z: np.ndarray, mod_alpha: np.ndarray, mod_beta: np.ndarray) -> np.ndarray:
    """Energy-dependent angular frequencies, omega = sqrt(omega0^2 + alpha * sum_m beta_m |z_m|^2).

    omega0, mod_alpha, mod_beta: (voices, modes); z: (voices, modes) complex. Returns (voices, modes) rad/s.
    """
    energy = np.sum(mod_beta * (z.real**2 + z.imag**2), axis=-1, keepdims=True)  # (voices, 1)
    return np.sqrt(omega0**2 + mod_alpha * energy)


def render_modal(voices: ModalVoices, sample_rate: float, n_samples: int, block_size: int = 64) -> np.ndarray:
    """Reference (slow, float64) rendering of the contract: (voices, samples) output.

    Pole modulation, when present, is evaluated once per ``block_size`` samples from the state at
    the block start. Without it the blocks change nothing, and the output is the closed form
    y[k] = sum_n Re(c_n z0_n p_n^k) (``render_free``).
    """
    if voices.mod_alpha is None:
        return render_free(voices, sample_rate, n_samples)
    z = voices.z0.astype(np.complex128).copy()
    out = np.zeros((z.shape[0], n_samples))
    steps = np.arange(block_size)
    for start in range(0, n_samples, block_size):
        n = min(block_size, n_samples - start)
        omega = modulated_omega(voices.omega, z, voices.mod_alpha, voices.mod_beta)
        poles = discrete_poles(voices.sigma, omega, sample_rate)  # (voices, modes)
        powers = poles[:, :, None] ** steps[None, None, :n]  # (voices, modes, n)
        out[:, start : start + n] = np.real(np.einsum("vm,vmk->vk", voices.c * z, powers))
        z = z * poles**n
    return out


def render_free(voices: ModalVoices, sample_rate: float, n_samples: int, chunk: int = 4096) -> np.ndarray:
    """(voices, n_samples) output of unmodulated voices, closed form y(t) = sum_n Re(c_n z0_n e^{lambda_n t}).

    Same rules as ``discrete_poles`` (sigma clamped at 0; a mode at or above Nyquist has multiplier 0,
    so it sounds at k = 0 only). Evaluated in chunks of ``chunk`` samples so any length fits in memory:
    the (voices, chunk, modes) table e^{lambda t} for t < chunk is computed once and chunk j starting at
    t_j uses it with the amplitudes c z0 e^{lambda t_j} (each evaluated directly, so no recursion error
    grows along the signal): one matrix product per chunk instead of chunk x modes complex exponentials.
    """
    amp = np.asarray(voices.c * voices.z0, np.complex128)  # (voices, modes)
    keep = audible(voices.omega, sample_rate)  # (voices, modes)
    pole = -np.maximum(np.asarray(voices.sigma, np.float64), 0.0) + 1j * np.asarray(voices.omega, np.float64)
    pole = np.where(keep, pole, 0.0)
    y = np.empty((amp.shape[0], n_samples))
    if n_samples == 0:
        return y
    # table memory bound: at most ~2^22 complex entries (64 MB as two float64 arrays)
    chunk = int(max(1, min(chunk, n_samples, (1 << 22) // max(1, amp.size))))
    table = np.exp(pole[:, None, :] * (np.arange(chunk) / float(sample_rate))[None, :, None])  # (voices, chunk, modes)
    real, imag = np.ascontiguousarray(table.real), np.ascontiguousarray(table.imag)
    for start in range(0, n_samples, chunk):
        size = min(chunk, n_samples - start)
        weight = np.where(keep, amp * np.exp(pole * (start / float(sample_rate))), 0.0)  # (voices, modes)
        # Re(table @ weight) without the complex product's imaginary half
        y[:, start : start + size] = (np.matmul(real[:, :size], weight.real[:, :, None])
                                      - np.matmul(imag[:, :size], weight.imag[:, :, None]))[:, :, 0]
    y[:, 0] += np.real(np.sum(np.where(keep, 0.0, amp), axis=-1))  # modes at or above Nyquist: k = 0 only
    return y
