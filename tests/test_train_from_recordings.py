"""Koopman and the modal FNO learn from labelled WAVs alone, and the pitch glide of a hard pluck survives.

Tiny on purpose (3 notes of 0.3 s at 8 kHz, a few steps): the closed-form start from the recordings carries
the glide; full runs are `eigentone bench families`. The Koopman case is marked slow (`pytest -m slow`): the
default suite keeps the modal FNO one, which takes the same shared path (note analysis, partial fit, audio loss).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from eigentone.contract.reference import midi_to_hz
from training.data.sources import load_training_data
from training.families.recordings import render_note, settled_pitch
from training.fit import train
from training.metrics import cents
from training.physics.modal import Excitation
from training.physics.string_linear import StringParams, params_for_f0
from training.physics.string_nonlinear import simulate_string_nonlinear
from training.run_folder import load_run

torch.set_num_threads(1)
FS = 8000
NOTES = {"e2_hard.wav": (40, 8e-3, 127), "a2.wav": (45, 4e-3, 64), "d3.wav": (50, 3e-3, 48)}


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    """Three plucks of a tension-modulated nylon string (the hard E2 glides by tens of cents), one gain, labels.csv."""
    folder = tmp_path_factory.mktemp("nonlinear-notes")
    pickups = {}
    for name, (note, amplitude, _) in NOTES.items():
        p = params_for_f0(float(midi_to_hz(note)), StringParams())
        pluck = Excitation("pluck", position=0.3 * p.L, width=0.05 * p.L, amplitude=amplitude)
        pickups[name] = simulate_string_nonlinear(p, pluck, FS, 0.3, 16, [0.12 * p.L], 12).pickups[0]
    gain = 0.9 / max(np.abs(x).max() for x in pickups.values())
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "note", "velocity", "position"])
        for name, (note, _, velocity) in NOTES.items():
            sf.write(folder / name, gain * pickups[name], FS, subtype="FLOAT")
            writer.writerow([name, note, velocity, 0.3])
    return load_training_data(folder)  # one object for both families: the note analysis is shared


@pytest.mark.parametrize("family, options", [
    pytest.param("koopman", {"latent": 12, "hidden": 16}, marks=pytest.mark.slow),  # ~45 s: the default suite keeps one
    ("fno", {"modes": 12}),
])
def test_family_learns_from_recordings_and_keeps_the_glide(notes, tmp_path, family, options):
    data = notes
    metrics = train(family, data, tmp_path / "run", steps=2, batch=2, quiet=True, **options)
    run = load_run(tmp_path / "run")
    assert run.config["data_kind"] == "recordings" and run.graphs().info.modulation
    hard = next(r for r in data.recordings if r.path.endswith("e2_hard.wav"))
    ref_early, _, ref_late, _ = settled_pitch(hard, float(midi_to_hz(40)))
    pred = render_note(run.graphs(), hard)
    model_early, _, model_late, _ = settled_pitch(type(hard)(pred.astype(np.float32), FS, 40, 1.0, 0.3, "model"),
                                                  float(midi_to_hz(40)))
    glide_ref, glide_model = cents(ref_early, ref_late), cents(model_early, model_late)
    print(f"{family}: E2 glide reference {glide_ref:.1f} cents, model {glide_model:.1f} cents; settled pitch "
          f"{cents(model_late, ref_late):+.2f} cents; metrics {sorted(metrics)}")
    assert glide_ref > 10.0  # the data really glides
    assert abs(glide_model - glide_ref) < 0.35 * glide_ref  # ... and so does the model, by about as much
    assert abs(cents(model_late, ref_late)) < 3.0
