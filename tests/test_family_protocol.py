"""The family protocol end to end with a tiny family (tests/tiny_family.py): register, train, export, play.

A new family is one module plus one ``register`` line: the shared trainer, the run folder, export with
its parity check, eval and the engine take it without a change.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_family import Tiny

from eigentone.errors import EigentoneError
from engine.render import render_note
from export.cli import export_run
from training.data.splits import hold_out_notes, split_indices
from training.eval_cli import evaluate
from training.fit import train
from training.registry import families, get_family, register
from training.run_folder import load_run

torch.set_num_threads(1)
FS = 16000


def _decaying_tone(freq: float, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return 0.5 * np.exp(-3.0 * t) * np.sin(2 * np.pi * freq * t)


def test_a_new_family_is_one_module_and_one_registry_line(tmp_path):
    register(Tiny())
    assert get_family("tiny").name == "tiny" and "diag_ssm" in families()
    wav = tmp_path / "A3_v100.wav"  # A3 = 220 Hz, labelled by its name
    sf.write(wav, _decaying_tone(221.0), FS)
    metrics = train("tiny", wav, tmp_path / "run", steps=3, quiet=True)
    assert metrics["note"]["partial_cents_max"] < 1.0  # ESPRIT start: the partial is where the recording has it
    run = load_run(tmp_path / "run")
    assert run.family.name == "tiny" and run.config["data_kind"] == "recording"
    manifest = export_run(tmp_path / "run", tmp_path / "tiny.etone", verbose=False)
    assert manifest["family"] == "tiny" and manifest["parity"]["excite"]["max_rel_error"] <= 1e-4
    y = render_note(tmp_path / "tiny.etone", 69.0, 100 / 127, 0.5, 48000)  # an octave up, at another rate
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert abs(np.argmax(spectrum) * 48000 / y.size - 442.0) < 4.0
    assert evaluate(tmp_path / "tiny.etone", wav)["in_horizon"][wav.name]["partial_cents_max"] < 1.0
    with pytest.raises(EigentoneError, match="learns from recording"):
        train("tiny", tmp_path, tmp_path / "run2", steps=1, quiet=True)


def test_one_split_definition():
    split = split_indices(20, seed=3)
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(20))
    assert len(split["test"]) == len(split["val"]) == 2
    assert split_indices(20, seed=3)["test"].tolist() == split["test"].tolist()  # seeded
    notes = [40, 43, 45, 48, 50, 52, 55, 57, 60, 62, 64, 67, 69, 72, 74, 76]
    held = hold_out_notes(notes, 4)
    assert len(held["test"]) == 4 and len(held["train"]) == 12
    assert 0 not in held["test"] and 15 not in held["test"]  # never the range's ends
    with pytest.raises(ValueError):
        hold_out_notes(notes[:3], 2)
