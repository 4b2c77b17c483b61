"""Spectrogram PNG of rendered audio (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

N_FFT = 2048
MAX_FRAMES = 4096
"""STFT frames at most: the hop grows past 512 samples for long audio, so memory stays bounded."""


def save_spectrogram(audio: np.ndarray, sample_rate: float, path: str | Path, title: str = "") -> None:
    """Log-magnitude STFT (2048-sample Hann, hop 512, or longer so at most MAX_FRAMES frames) of
    (channels, samples) or (samples,) audio (mixed to mono) as a PNG."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise EigentoneError(f"{path}: spectrograms need matplotlib (pip install 'eigentone[plot]')") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mono = np.asarray(audio, np.float64).mean(axis=0) if audio.ndim == 2 else np.asarray(audio, np.float64)
    n_fft = N_FFT
    hop = max(512, -(-(len(mono) - n_fft) // (MAX_FRAMES - 1)))
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * np.hanning(n_fft)  # (frames, n_fft)
    db = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-9)  # (bins, frames)
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    extent = (0, len(mono) / sample_rate, 0, sample_rate / 2000)
    image = ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=db.max() - 90, vmax=db.max(), cmap="magma")
    ax.set(xlabel="time (s)", ylabel="frequency (kHz)", title=title)
    fig.colorbar(image, ax=ax, label="dB")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
