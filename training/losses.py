"""Losses shared by the families: audio (multi-resolution STFT, time domain) and field data.

All take batched signals: audio (batch, samples), fields (batch, samples, points...).
"""

from __future__ import annotations

import torch


def stft_magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| of (batch, samples) with a Hann window and hop n_fft/4: (batch, freqs, frames)."""
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft=n_fft, hop_length=n_fft // 4, window=window, return_complex=True, center=True)
    return spec.abs()


def multi_resolution_stft_loss(
    pred: torch.Tensor, target: torch.Tensor, fft_sizes: tuple[int, ...] = (256, 512, 1024, 2048), eps: float = 1e-7
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes (Yamamoto et al. 2020).

    pred, target: (batch, samples). Returns a scalar.
    """
    total = pred.new_zeros(())
    for n_fft in fft_sizes:
        if n_fft > pred.shape[-1]:
            continue
        p, t = stft_magnitude(pred, n_fft), stft_magnitude(target, n_fft)
        convergence = torch.linalg.norm(t - p, dim=(-2, -1)) / torch.linalg.norm(t, dim=(-2, -1)).clamp_min(eps)
        log_mag = (torch.log(p + eps) - torch.log(t + eps)).abs().mean(dim=(-2, -1))
        total = total + convergence.mean() + log_mag.mean()
    return total / len(fft_sizes)


def relative_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum(err^2) / sum(target^2) over everything: the metric of Diaz et al. (arXiv 2408.16650)."""
    return ((pred - target) ** 2).sum() / (target**2).sum().clamp_min(1e-20)
