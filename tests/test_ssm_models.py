"""The diagonal-SSM modules satisfy the excite contract and are stable by construction."""

import math

import numpy as np
import pytest
import torch

from eigentone.contract import EXCITE_OUTPUTS
from eigentone.contract.reference import ModalVoices, render_modal
from training.models.diag_ssm import ConditionedSSM, FieldReadout, FieldSSM, RecordingSSM

torch.set_num_threads(1)


def models():
    return [
        FieldSSM(6, torch.linspace(0, 1, 11), (11,)),
        RecordingSSM(6, base_note=60.0),
        ConditionedSSM(6),
    ]


def controls(v: int) -> torch.Tensor:
    return torch.tensor([[48 + 3 * i, 0.3 + 0.1 * (i % 5), 0.2 + 0.05 * (i % 5), 0.37] for i in range(v)])


@pytest.mark.parametrize("model", models(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("voices", [1, 5])
def test_forward_returns_the_contract(model, voices):
    torch.manual_seed(0)
    for p in model.parameters():  # any parameter values, including wild ones
        p.data.normal_(0, 3.0)
    out = model(controls(voices))
    assert set(out) == set(EXCITE_OUTPUTS)
    n = out["sigma"].shape[1]
    assert out["sigma"].shape == out["omega"].shape == (voices, n)
    assert out["z0"].shape == out["c"].shape == (voices, n, 2)
    assert torch.all(out["sigma"] > 0) and torch.all(out["omega"] > 0)
    voices_np = ModalVoices.from_graph_outputs({k: v.detach().numpy() for k, v in out.items()})
    y = render_modal(voices_np, 8000.0, 8000 * 4)  # long rollout: free decay, never grows
    first, last = np.abs(y[:, :4000]).max(axis=1), np.abs(y[:, -4000:]).max(axis=1)
    assert np.all(np.isfinite(y)) and np.all(last <= first + 1e-12)


def test_recording_model_transposes_and_scales_with_velocity():
    model = RecordingSSM(4, base_note=60.0, base_velocity=0.5)
    with torch.no_grad():
        model.amplitude.fill_(1.0)
    out = model(torch.tensor([[60.0, 0.5, 0.2, 0.37], [72.0, 1.0, 0.2, 0.37]]))
    torch.testing.assert_close(out["omega"][1], 2 * out["omega"][0])
    torch.testing.assert_close(out["z0"][1], 2 * out["z0"][0])


def test_conditioned_model_partials_follow_the_stiff_string_law():
    model = ConditionedSSM(8)
    f0, ratios = model.pitch(torch.tensor([[69.0]]))
    b = ratios[0, 0] ** 2 - 1  # r_1 = sqrt(1 + B)
    n = torch.arange(1, 9, dtype=torch.float32)
    torch.testing.assert_close(ratios[0], n * torch.sqrt(1 + b * n**2), rtol=2e-3, atol=0)
    assert 400 < float(f0.detach()) < 480


def test_field_model_pluck_and_field_graph_shapes():
    model = FieldSSM(5, torch.linspace(0, 1, 21), (21,), pluck_width=0.2, pluck_amplitude=2e-3)
    u0 = model.pluck_field(torch.tensor([[60.0, 0.8, 0.5, 0.37]]))
    assert u0.shape == (1, 21) and float(u0.max()) == pytest.approx(2e-3) and float(u0[0, 0]) == 0.0
    assert int(torch.argmax(u0)) == 10
    assert FieldReadout(model)(torch.randn(3, 5, 2)).shape == (3, 21)
    sigma, omega = model.poles()
    assert torch.all(sigma > 0) and math.isfinite(float(omega.sum().detach()))
