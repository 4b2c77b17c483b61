"""Small data makers shared by the diagonal-SSM tests (physics solver output, written as users' files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from eigentone.contract.reference import midi_to_hz
from training.physics.modal import Excitation
from training.physics.string_linear import params_for_f0, simulate_string


def pluck(note: float, fs: float = 16000, seconds: float = 0.6, modes: int = 12, position: float = 0.2,
          noise_db: float | None = None, seed: int = 0) -> np.ndarray:
    """Pickup signal of a plucked linear stiff string tuned to ``note``, peak 0.5."""
    p = params_for_f0(float(midi_to_hz(note)))
    res = simulate_string(p, Excitation("pluck", position=position * p.L, width=0.03, amplitude=2e-3), sample_rate=fs,
                          duration=seconds, grid_points=8, pickup_positions=[0.1 * p.L], n_modes=modes)
    x = 0.5 * res.pickups[0] / np.max(np.abs(res.pickups[0]))
    if noise_db is not None:
        x = x + 0.5 * 10 ** (noise_db / 20) * np.random.default_rng(seed).standard_normal(x.size)
    return x


def write_notes(folder: Path, notes, fs: float = 16000, seconds: float = 0.6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for note in notes:
        sf.write(folder / f"{int(note)}_v100.wav", pluck(note, fs, seconds), int(fs))
    return folder
