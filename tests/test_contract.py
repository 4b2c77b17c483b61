"""The contract's three implementations agree: numpy reference, torch twin, compiled modal bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eigentone.contract import (
    CONTROL_NAMES,
    EXCITE_OUTPUTS,
    MODULATION_OUTPUTS,
    NOTE,
    POSITION,
    VELOCITY,
    reference,
    torch_twin,
)
from engine.modal_bank import ModalBank

FS = 16000.0
BLOCK = 64
SAMPLES = 40 * BLOCK + 17  # a partial last block too


def _voices(modulated: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Random excite outputs (float32, graph layout) for 3 voices x 12 modes; one mode per voice is above
    Nyquist (silent after its first sample), and with modulation one more crosses Nyquist as it glides."""
    rng = np.random.default_rng(seed)
    voices, modes = 3, 12
    omega = 2 * np.pi * np.sort(rng.uniform(80.0, 6000.0, (voices, modes)), axis=1)
    omega[:, -1] = 2 * np.pi * 9000.0  # above Nyquist (8 kHz) at 16 kHz
    out = {
        "sigma": rng.uniform(1.0, 30.0, (voices, modes)),
        "omega": omega,
        "z0": rng.standard_normal((voices, modes, 2)) * 0.5,
        "c": rng.standard_normal((voices, modes, 2)),
    }
    if modulated:
        out["omega"][:, -2] = 2 * np.pi * 7990.0  # glides across Nyquist while the voice is loud
        out["mod_alpha"] = rng.uniform(0.0, 2e6, (voices, modes))
        out["mod_beta"] = rng.uniform(0.5, 2.0, (voices, modes))
    return {k: v.astype(np.float32) for k, v in out.items()}


def _bank(outputs: dict[str, np.ndarray], modulated: bool) -> np.ndarray:
    """(voices, SAMPLES) float32 output of the compiled modal bank, one voice at a time, like render_note."""
    voices, modes = outputs["sigma"].shape
    rows = []
    for v in range(voices):
        bank = ModalBank(1, modes, FS, BLOCK, modulated)
        bank.load(0, outputs, v, 1.0)
        active = np.zeros(1, np.int32)
        audio = np.zeros(SAMPLES, np.float32)
        for start in range(0, SAMPLES, BLOCK):
            stop = min(start + BLOCK, SAMPLES)
            if start and modulated:
                bank.poles(active, 1, new_energy=True)
            if start:
                bank.start_block(active, 1)
            bank.advance(active, 1, audio, start, stop)
            bank.move_to(active, 1, stop - start)
        rows.append(audio)
    return np.stack(rows)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.mark.parametrize("modulated", [False, True])
def test_reference_torch_twin_and_modal_bank_agree(modulated):
    outputs = _voices(modulated)
    ref = reference.render_modal(reference.ModalVoices.from_graph_outputs(outputs), FS, SAMPLES, BLOCK)
    twin = torch_twin.render_modal({k: torch.tensor(v, dtype=torch.float64) for k, v in outputs.items()}, FS, SAMPLES,
                                   BLOCK).numpy()
    bank = _bank(outputs, modulated)
    assert _rel(twin, ref) < 1e-9  # same maths in float64
    assert _rel(bank, ref) < 1e-4  # float32 recursion
    # the rules that make the three agree are exercised: the mode above Nyquist sounds at k = 0 only
    silent = dict(outputs, c=outputs["c"].copy())
    silent["c"][:, -1] = 0.0
    without = reference.render_modal(reference.ModalVoices.from_graph_outputs(silent), FS, SAMPLES, BLOCK)
    assert np.abs(without[:, 1:] - ref[:, 1:]).max() < 1e-9 * np.abs(ref).max()
    assert np.abs(without[:, 0] - ref[:, 0]).max() > 1e-3
    if modulated:  # the glide is audible, so the agreement covers it
        plain = {k: v for k, v in outputs.items() if k not in MODULATION_OUTPUTS}
        unmodulated = reference.render_modal(reference.ModalVoices.from_graph_outputs(plain), FS, SAMPLES, BLOCK)
        assert _rel(unmodulated, ref) > 1e-2


def test_torch_twin_is_differentiable_and_float32_close():
    outputs = {k: torch.tensor(v, requires_grad=k == "sigma") for k, v in _voices(True).items()}
    y = torch_twin.render_modal(outputs, FS, SAMPLES, BLOCK)
    y.square().sum().backward()
    assert torch.isfinite(outputs["sigma"].grad).all() and outputs["sigma"].grad.abs().sum() > 0
    ref = reference.render_modal(reference.ModalVoices.from_graph_outputs(_voices(True)), FS, SAMPLES, BLOCK)
    assert _rel(y.detach().double().numpy(), ref) < 1e-3


def test_control_layout_and_tuning():
    assert CONTROL_NAMES[NOTE] == "note" and CONTROL_NAMES[VELOCITY] == "velocity"
    assert CONTROL_NAMES[POSITION] == "position" and len(CONTROL_NAMES) == 4
    assert EXCITE_OUTPUTS == ("sigma", "omega", "z0", "c")
    notes = np.array([21.0, 60.0, 69.0, 69.5])
    np.testing.assert_allclose(reference.midi_to_hz(notes), [27.5, 261.6255653, 440.0, 452.8929841], rtol=1e-9)
    np.testing.assert_allclose(torch_twin.midi_to_hz(torch.tensor(notes)).numpy(), reference.midi_to_hz(notes), rtol=1e-12)
    np.testing.assert_allclose(reference.hz_to_midi(reference.midi_to_hz(notes)), notes)
    c = torch_twin.split_controls(torch.tensor([[60.0, 0.5, 0.2, 0.7]]))
    assert (c.note.item(), c.velocity.item(), c.position_y.item()) == (60.0, 0.5, pytest.approx(0.7))
