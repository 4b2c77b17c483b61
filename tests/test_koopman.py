"""Deep Koopman family: stability by construction, encode/decode, training run, export parity, bundle playback."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from training.models.koopman import (
    ContinuousPoles,
    KoopmanConfig,
    KoopmanModel,
    PoleModulation,
    build_model,
    sine_basis,
)

torch.set_num_threads(1)
FS = 16000.0


@pytest.fixture(scope="module")
def tiny_string():
    """6 Kirchhoff-Carrier plucks from the project's solver: 21 points, 8 modes, 640 samples at 16 kHz."""
    from training.physics.modal import Excitation
    from training.physics.string_linear import StringParams
    from training.physics.string_nonlinear import simulate_string_nonlinear

    params = StringParams()
    rng = np.random.default_rng(0)
    fields, pickups = [], []
    for amp in np.linspace(1e-3, 6e-3, 6):
        exc = Excitation(kind="pluck", shape="gaussian", amplitude=float(amp),
                         position=rng.uniform(0.3, 0.7) * params.L, width=0.05)
        res = simulate_string_nonlinear(params, exc, FS, 640 / FS, 21, [0.2 * params.L], 8)
        fields.append(res.field)
        pickups.append(res.pickups[0])
    return np.stack(fields).astype(np.float32), np.stack(pickups).astype(np.float32)


def _train(fields, pickups, run_dir):
    from training.data.dataset import FieldDataset
    from training.data.sources import from_dataset
    from training.fit import train

    ds = FieldDataset("string", True, FS, fields, pickups, np.linspace(0.0, 0.65, fields.shape[2]),
                      {"L": np.full(len(fields), 0.65)}, {})
    return train("koopman", from_dataset(ds), run_dir, steps=20, latent=10, horizon=128, batch=4, hidden=16,
                 block=32, quiet=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_string):
    run_dir = tmp_path_factory.mktemp("koopman-run")
    return run_dir, _train(*tiny_string, run_dir)


def test_poles_stable_for_any_raw_parameters():
    gen = torch.Generator().manual_seed(0)
    poles = ContinuousPoles(torch.ones(64), torch.full((64,), 1000.0))
    mod = PoleModulation(np.ones(64), np.ones(64))
    for scale in (1.0, 1e3, 1e6):
        with torch.no_grad():
            for p in (*poles.parameters(), *mod.parameters()):
                p.copy_(torch.randn(p.shape, generator=gen) * scale)  # extreme values, either sign
        sigma, omega = poles()
        assert torch.all(sigma > 0)
        for fs in (16000.0, 48000.0):
            assert torch.all(torch.exp(-sigma.double() / fs) < 1.0)  # |exp(lambda / fs)| = exp(-sigma / fs)
            finite = torch.isfinite(omega)  # exp(log_omega) overflows float32 beyond ~88; the engine mutes those
            lam = torch.complex(-sigma.double()[finite], omega.double()[finite]) / fs
            assert torch.all(torch.exp(lam).abs() < 1.0)
        alpha, beta = mod()
        assert torch.all(alpha >= 0) and torch.all(beta >= 0)


def test_modulated_rollout_never_grows():
    cfg = KoopmanConfig(grid_shape=[11], latent=6, sample_rate=FS, hidden=8, block_size=16)
    model = KoopmanModel(cfg, np.full(6, 0.5), 2 * math.pi * 200.0 * np.arange(1, 7), np.full(6, 1e6), np.full(6, 1e6))
    z0 = torch.randn(3, 6, 2) * 10.0
    with torch.no_grad():
        z, _ = model.rollout(z0, 512)  # (V, N, T, 2)
    mag = (z**2).sum(-1).sqrt()  # (V, N, T)
    assert torch.isfinite(z).all()
    assert torch.all(mag[..., 1:] <= mag[..., :-1] * (1 + 1e-5))


def test_sine_basis_is_orthogonal_on_the_grid():
    basis, _ = sine_basis([33], 8)
    gram = basis.T @ basis
    assert np.allclose(gram, np.diag(np.diag(gram)), atol=1e-9)
    plate, numbers = sine_basis([9, 11], 12)
    assert plate.shape == (99, 12) and np.all(np.diff((numbers**2).sum(1)) >= 0)


def test_encode_decode_round_trip(tiny_string):
    fields, _ = tiny_string
    model = build_model(fields, FS, 8)
    u = torch.as_tensor(fields[:, ::37].reshape(-1, fields.shape[-1]))  # (E*k, P) snapshots
    v = torch.as_tensor(model.estimate_velocity(fields)[:, ::37].reshape(-1, fields.shape[-1]))
    with torch.no_grad():
        rec = model.decoder(model.encoder(u, v * model.config.velocity_scale))
    rel = float(((rec - u) ** 2).sum() / (u**2).sum())
    assert rel < 1e-4, rel


def test_initialised_model_tracks_the_nonlinear_string_and_modulation_helps(tiny_string):
    from training.families.koopman import evaluate

    fields, pickups = tiny_string
    with_mod = evaluate(build_model(fields, FS, 8), fields, pickups, 640, FS)
    without = evaluate(build_model(fields, FS, 8, modulation=False), fields, pickups, 640, FS)
    assert with_mod["field_nmse_in_horizon"] < without["field_nmse_in_horizon"]
    assert with_mod["field_nmse_in_horizon"] < 0.05


def test_data_only_start_uses_no_solver_parameters_and_tracks_the_string(tiny_string):
    """--init data: shapes, poles and pole law from the fields alone; per-voice poles start as no correction."""
    from training.models.koopman import build_data_model

    fields, pickups = tiny_string
    model, info = build_data_model(fields, FS, 32)
    assert model.config.init == "data" and model.config.latent == info["modes"] == 8  # the data hold 8 modes
    from training.families.koopman import evaluate

    closed_form = evaluate(model, fields, pickups, 640, FS)["field_nmse_in_horizon"]
    assert closed_form < 0.05, closed_form
    z0 = model.encoder(torch.as_tensor(fields[:, 0]), torch.zeros_like(torch.as_tensor(fields[:, 0])))
    per_voice, shared = model.coefficients(z0), model.coefficients()
    assert per_voice["omega"].shape == (6, 8)
    for key, value in shared.items():
        assert torch.allclose(per_voice[key], value.expand_as(per_voice[key])), key


def test_data_only_training_run_keeps_the_better_weights(tmp_path, tiny_string):
    from training.data.dataset import FieldDataset
    from training.data.sources import from_dataset
    from training.fit import train

    fields, pickups = tiny_string
    ds = FieldDataset("string", True, FS, fields, pickups, np.linspace(0.0, 0.65, 21), {},
                      {"kind": np.zeros(6), "width": np.full(6, 0.05)})
    metrics = train("koopman", from_dataset(ds), tmp_path / "run", init="data", hidden=0, steps=8, batch=4, horizon=128,
                    quiet=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["init"] == "data" and config["model"]["voice_poles"]
    assert config["fit"]["selection"]["kept"] in ("init", "trained") and config["fit"]["init"]["modes"] == 8
    assert math.isfinite(metrics["field_nmse_in_horizon"])


def test_training_run_writes_report_and_resumes(tiny_run, tiny_string):
    run_dir, metrics = tiny_run
    assert (run_dir / "report.png").stat().st_size > 1000
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(saved["field_nmse_in_horizon"]) and saved == pytest.approx(metrics)
    assert json.loads((run_dir / "config.json").read_text())["family"] == "koopman"
    history = json.loads((run_dir / "history.json").read_text())
    fields, pickups = tiny_string
    again = _train(fields, pickups, run_dir)  # already complete: no new steps
    assert json.loads((run_dir / "history.json").read_text()) == history
    assert again["field_nmse_in_horizon"] == pytest.approx(metrics["field_nmse_in_horizon"], rel=1e-5)


def test_export_writes_three_graphs_and_the_bundle_plays(tiny_run, tmp_path):
    """`eigentone export` path: ONNX graphs, engine validation; then the engine plays it."""
    from eigentone.contract.reference import render_modal
    from engine.instrument import Instrument
    from engine.synth import Synth
    from export.cli import export_run

    run_dir, _ = tiny_run
    path = tmp_path / "koopman.etone"
    manifest = export_run(run_dir, path, verbose=False)
    assert set(manifest["graphs"]) == {"excite", "readout", "field"} and manifest["modulation"]
    assert set(manifest["parity"]) == {"excite", "readout", "field"}  # every graph was checked
    assert manifest["plugin_ready"]  # inside the native plugin's op subset (export/op_subset.py)
    instrument = Instrument.load(path)
    assert instrument.has_readout
    voices = instrument.excite(np.array([[59.0, 1.0, 0.3, 0.37]], np.float32))
    reference = render_modal(voices, 48000.0, 4800, block_size=128)
    assert np.isfinite(reference).all() and np.abs(reference).max() > 0
    synth = Synth(instrument)
    synth.prepare(48000, 128, 16)
    audio = np.concatenate([synth.process([(0, 0x90, 59, 110)] if i == 0 else [], 128).copy() for i in range(40)])
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


@pytest.mark.slow
def test_export_refuses_a_field_graph_that_breaks_parity(tiny_run, tmp_path, monkeypatch):
    """The field graph's u 1% off its torch module: `export` refuses, names the graph, writes nothing."""
    from parity_helpers import scale_exported_output

    from eigentone.errors import EigentoneError
    from export.cli import export_run

    scale_exported_output(monkeypatch, "u")
    out = tmp_path / "broken.etone"
    with pytest.raises(EigentoneError, match="field graph parity failed"):
        export_run(tiny_run[0], out, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_excite_graph_transposes_and_scales_with_velocity(tiny_run):
    from training.run_folder import load_run

    graphs = load_run(tiny_run[0]).graphs()
    excite, field = graphs.excite, graphs.field
    note0 = excite.note0
    controls = torch.tensor([[note0, 0.2, 0.4, 0.5], [note0 + 12, 0.2, 0.4, 0.5], [note0, 1.0, 0.4, 0.5]])
    with torch.no_grad():
        out = excite(controls)
        u = field(out["z0"])  # (V, P) field decoded from the initial latent
    assert torch.allclose(out["omega"][1], 2 * out["omega"][0], rtol=1e-5)  # an octave up
    peak = u.abs().amax(dim=1)
    assert peak[2] > 2 * peak[0]  # velocity 1.0 plucks harder than 0.2
    assert graphs.info.modes == out["z0"].shape[1]


def test_physics_prior_matches_the_solvers_modes():
    from dataclasses import asdict

    from training.families.koopman import physics_prior
    from training.physics.plate_linear import PlateParams, plate_mode_indices, plate_modes
    from training.physics.plate_nonlinear import modulation_coefficients as plate_modulation
    from training.physics.string_linear import StringParams, string_modes
    from training.physics.string_nonlinear import modulation_coefficients as string_modulation

    sp, pp = StringParams(), PlateParams()
    got = physics_prior("string", {k: np.full(3, v) for k, v in asdict(sp).items()})(np.arange(1, 9)[:, None])
    sigma, omega = string_modes(sp, 8)
    alpha, beta = string_modulation(sp, 8)
    for key, want in (("sigma", sigma), ("omega", omega), ("alpha", alpha), ("beta", beta)):
        assert np.allclose(got[key], want, rtol=1e-9), key
    numbers = np.stack(plate_mode_indices(pp, 12), axis=1)  # (N, 2) = (m, n)
    got = physics_prior("plate", asdict(pp))(numbers)
    sigma, omega = plate_modes(pp, 12)
    alpha, beta = plate_modulation(pp, 12)
    for key, want in (("sigma", sigma), ("omega", omega), ("alpha", alpha), ("beta", beta)):
        assert np.allclose(got[key], want, rtol=1e-9), key
