"""A deliberately tiny model family: one damped partial per note, to show what a new family takes."""

import numpy as np
import torch
from torch import nn

from eigentone.contract.torch_twin import modal_readout, semitone_ratio, split_controls, unit_readout
from training.family import BundleInfo, Evaluation, Family, Graphs, Initialised
from training.fits import strong_partials
from training.metrics import audio_report
from training.models.modal_core import ContinuousPoles
from training.report import controls_tensor, render_contract


class OnePartial(nn.Module):
    """controls (V, 4) -> one mode at the recording's strongest partial, transposed to the note, scaled by velocity."""

    def __init__(self, base_note: float = 60.0):
        super().__init__()
        self.poles = ContinuousPoles(torch.ones(1), torch.full((1,), 1000.0))
        self.amplitude = nn.Parameter(torch.zeros(1, 2))
        self.register_buffer("base_note", torch.tensor(float(base_note)))

    def forward(self, controls: torch.Tensor) -> dict[str, torch.Tensor]:
        note, velocity, _, _ = split_controls(controls)
        sigma, omega = self.poles()
        z0 = self.amplitude[None] * velocity[..., None]  # (V, 1, 2)
        return {"sigma": sigma * torch.ones_like(note), "omega": omega * semitone_ratio(note, self.base_note),
                "z0": z0, "c": unit_readout(z0)}


class Tiny(Family):
    name, command, data_kinds = "tiny", "tiny", ("recording",)

    def initialise(self, data, options):
        rec = data.recordings[0]
        est = strong_partials(rec.audio.astype(np.float64), rec.sample_rate, 1)
        model = OnePartial(rec.note)
        model.poles.set_(est.sigma, 2 * np.pi * est.freqs_hz)
        with torch.no_grad():
            model.amplitude[0] = torch.tensor([est.amplitudes[0].real, est.amplitudes[0].imag]) / rec.velocity
        return Initialised(model, {"note": rec.note, "sample_rate": rec.sample_rate})

    def build(self, config):
        return OnePartial(config["note"])

    def step_loss(self, fitted, data, options, rng):
        rec = data.recordings[0]
        y, t = torch.tensor(rec.audio), torch.arange(rec.audio.size) / rec.sample_rate

        def loss(step):
            out = fitted.model(controls_tensor(rec.note, rec.velocity))
            return ((modal_readout(out["sigma"], out["omega"], out["z0"], out["c"], t)[0] - y) ** 2).mean(), {}
        return loss

    def evaluate(self, model, data, options):
        rec = data.recordings[0]
        with torch.no_grad():
            pred = render_contract(model(controls_tensor(rec.note, rec.velocity)), rec.sample_rate, rec.audio.size)[0]
        return Evaluation({"note": audio_report(pred, rec.audio, rec.sample_rate)}, rec.sample_rate)

    def graphs(self, model, config):
        note = round(config["model"]["note"])
        return Graphs(model, None, None, BundleInfo(1, (note - 12, note + 12), config["model"]["sample_rate"]))
