"""End-of-run reports shared by every family: rendering a model's note, metrics on the console, report.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from eigentone.contract import controls_row
from eigentone.contract.reference import ModalVoices, render_modal
from eigentone.contract.torch_twin import block_rollout
from eigentone.files import atomic_path
from training.family import Evaluation, Graphs


def controls_tensor(note: float, velocity: float, position: float = 0.2, position_y: float = 0.37) -> torch.Tensor:
    """One control row (1, 4) float32 in the contract's layout."""
    return torch.tensor([controls_row(note, velocity, position, position_y)], dtype=torch.float32)


def render_contract(out: dict[str, torch.Tensor], sample_rate: float, n_samples: int, block_size: int = 64) -> np.ndarray:
    """(V, n_samples) float64 output of an excite module's outputs, by the contract's reference (what the engine plays,
    without a readout graph)."""
    voices = ModalVoices.from_graph_outputs({k: v.detach().double().numpy() for k, v in out.items()})
    return render_modal(voices, sample_rate, n_samples, block_size)


def render_graphs(graphs: Graphs, controls: torch.Tensor, sample_rate: float, n_samples: int,
                  block_size: int = 64) -> np.ndarray:
    """(V, n_samples) float64 output of a family's export graphs for controls (V, 4), as the engine plays them:
    the excite outputs, pole modulation and the readout graph (if any) once per ``block_size`` samples (the
    first block uses the excite graph's c), modes at or above Nyquist silenced."""
    with torch.no_grad():
        out = graphs.excite(controls)
        if graphs.readout is None:
            return render_contract(out, sample_rate, n_samples, block_size)
        out = {k: v.double() for k, v in out.items()}
        blocks = 0

        def readout(z: torch.Tensor) -> torch.Tensor:
            nonlocal blocks
            blocks += 1
            return out["c"] if blocks == 1 else graphs.readout(z.float()).double()

        _, y = block_rollout(out["sigma"].clamp_min(0.0), out["omega"], out["z0"], out.get("mod_alpha"),
                             out.get("mod_beta"), sample_rate, n_samples, block_size, readout=readout, nyquist_rule=True)
    return y.numpy()


def print_metrics(title: str, values: dict[str, Any], indent: int = 0) -> None:
    """Nested metric dicts, one value a line."""
    print(" " * indent + title)
    for key, value in values.items():
        if isinstance(value, dict):
            print_metrics(f"{key}:", value, indent + 2)
        else:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            print(" " * (indent + 2) + f"{key:28s} {text}")


def write_report_png(path: Path, history: list[dict[str, float]], evaluation: Evaluation, max_pairs: int = 2) -> None:
    """report.png: the loss curve (and the field error over time when the family has one), then reference vs
    model spectrograms of up to ``max_pairs`` examples."""
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = evaluation.pairs[:max_pairs]
    fs = evaluation.sample_rate
    fig, axes = plt.subplots(1 + len(pairs), 2, figsize=(10, 3 * (1 + len(pairs))), squeeze=False)
    if history:
        axes[0, 0].semilogy([h["step"] for h in history], [max(h["loss"], 1e-12) for h in history])
    axes[0, 0].set(title="training loss", xlabel="step")
    if evaluation.field_error is not None:
        t, err, horizon = evaluation.field_error
        axes[0, 1].semilogy(t, np.maximum(err, 1e-12))
        axes[0, 1].axvline(horizon, color="k", ls="--", label="training horizon")
        axes[0, 1].set(title="normalised field error over time", xlabel="s")
        axes[0, 1].legend()
    else:
        axes[0, 1].axis("off")
    for row, (title, ref, pred) in enumerate(pairs, start=1):
        n_fft = min(1024, max(16, 2 ** int(np.log2(max(len(ref) // 2, 2)))))
        top = max(np.abs(ref).max(), 1e-12)  # one dB scale for reference and model
        for col, (name, sig) in enumerate((("reference", ref), ("model", pred))):
            ax = axes[row, col]
            db = librosa.amplitude_to_db(np.abs(librosa.stft(np.asarray(sig, np.float32), n_fft=n_fft)), ref=top * n_fft / 4,
                                         top_db=None)
            librosa.display.specshow(db, sr=fs, hop_length=n_fft // 4, x_axis="time", y_axis="hz", ax=ax, cmap="magma",
                                     vmin=-100, vmax=0)
            ax.set(title=f"{title}: {name}", ylim=(0, min(fs / 2, 8000)))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
