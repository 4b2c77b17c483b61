"""The matrix pole law (training/models/pole_law.py): recovered from trajectories it made, used by a data-only
Koopman model (``--init data --law matrix``), refused where it does not belong (export, the physics prior)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.models.pole_law import fit_matrix_law, matrix_rollout

torch.set_num_threads(1)
FS = 16000.0


def test_matrix_law_is_recovered_from_the_trajectories_it_made():
    """Three modes whose coupling is not rank one (own-energy terms larger than the cross terms, one negative):
    the fit sees only the real modal series q = Re z and the linear poles."""
    sigma = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)
    omega0 = 2 * math.pi * torch.tensor([200.0, 410.0, 630.0], dtype=torch.float64)
    matrix = torch.tensor([[3.0, 1.0, 0.5], [1.0, 6.0, -0.8], [0.4, 2.0, 9.0]], dtype=torch.float64) * 1e10  # rad^2/s^2/m^2: up to ~30 cents
    rng = np.random.default_rng(0)
    scale = rng.uniform(2e-4, 1.5e-3, (16, 1, 1))
    z0 = torch.as_tensor(rng.normal(size=(16, 3, 2)) * scale * np.array([1.0, 0.6, 0.4])[:, None])
    z, _ = matrix_rollout(sigma, omega0, matrix, z0, FS, 2048, 16)
    q = z[..., 0].transpose(1, 2).numpy()  # (E, T, N)
    found_omega0, found, info = fit_matrix_law(q, sigma.numpy(), omega0.numpy(), FS)
    np.testing.assert_allclose(1200 * np.log2(found_omega0 / omega0.numpy()), 0.0, atol=0.05)  # cents
    np.testing.assert_allclose(found, matrix.numpy(), rtol=0.05, atol=0.05 * float(matrix.abs().max()))
    assert info["matrix_law_rms_cents"] < 0.05


@pytest.fixture(scope="module")
def tiny_string():
    """6 Kirchhoff-Carrier plucks from the project's solver: 21 points, 8 modes, 640 samples at 16 kHz."""
    from training.physics.modal import Excitation
    from training.physics.string_linear import StringParams
    from training.physics.string_nonlinear import simulate_string_nonlinear

    params, rng = StringParams(), np.random.default_rng(0)
    fields, pickups = [], []
    for amp in np.linspace(1e-3, 6e-3, 6):
        exc = Excitation(kind="pluck", shape="gaussian", amplitude=float(amp), position=rng.uniform(0.3, 0.7) * params.L,
                         width=0.05)
        res = simulate_string_nonlinear(params, exc, FS, 640 / FS, 21, [0.2 * params.L], 8)
        fields.append(res.field)
        pickups.append(res.pickups[0])
    return np.stack(fields).astype(np.float32), np.stack(pickups).astype(np.float32)


def test_data_only_koopman_with_the_matrix_law_rolls_out_with_it_and_tracks_the_string_better(tiny_string):
    from training.families.koopman import evaluate
    from training.models.koopman import build_data_model

    fields, pickups = tiny_string
    model, info = build_data_model(fields, FS, 32, law="matrix")
    assert model.config.law == "matrix" and model.voice is None and info["matrix_law_rms_cents"] < 5
    z0 = model.encoder(torch.as_tensor(fields[:, 0]), torch.zeros(fields.shape[0], fields.shape[2]))
    co = model.coefficients()
    expected, _ = matrix_rollout(co["sigma"], co["omega"], model.mod_matrix, z0, FS, 300, model.config.block_size)
    assert torch.allclose(model.rollout(z0, 300)[0], expected)
    rank_one, _ = build_data_model(fields, FS, 32, voice_poles=False)
    errors = [evaluate(m, fields, pickups, 640, FS)["field_nmse_in_horizon"] for m in (model, rank_one)]
    assert errors[0] < 0.5 * errors[1], errors


def test_matrix_law_is_refused_for_export_and_with_the_physics_prior(tmp_path, tiny_string):
    from eigentone.errors import EigentoneError
    from training.data.dataset import FieldDataset
    from training.data.sources import from_dataset
    from training.families.koopman import Koopman
    from training.fit import train
    from training.models.koopman import build_data_model

    fields, pickups = tiny_string
    model, _ = build_data_model(fields, FS, 8, law="matrix")
    with pytest.raises(EigentoneError, match="cannot be exported"):
        Koopman().graphs(model, {})
    ds = FieldDataset("string", True, FS, fields, pickups, np.linspace(0.0, 0.65, 21), {"L": np.full(6, 0.65)}, {})
    with pytest.raises(EigentoneError, match="--init data"):
        train("koopman", from_dataset(ds), tmp_path / "run", law="matrix", steps=1, quiet=True)
    assert not (tmp_path / "run").exists()
