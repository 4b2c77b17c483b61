"""Modal FNO family: sine transform, stable poles, the modal method against the solvers, any grid / rate,
trainer (report, resume), instrument map, animation; export + engine playback marked slow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from eigentone.cli import main as eigentone_main
from training.models.modal_fno import ModalFNO, ModalFNOConfig, sine_basis

torch.set_num_threads(1)


def test_sine_basis_is_the_exact_dst_on_uniform_grids_and_any_grid_agrees():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=12)
    for points in (16, 33, 128):  # grids including both fixed ends
        x = np.linspace(0, 1, points)
        fwd, inv = sine_basis(x, 12)
        u = coef @ inv  # (P,) band-limited field
        np.testing.assert_allclose(u @ fwd, coef, atol=1e-10)
    # interior-only and non-uniform grids: quadrature, still close for a smooth field
    x = np.sort(rng.uniform(0.0, 1.0, 400))
    fwd, inv = sine_basis(x, 12)
    np.testing.assert_allclose((coef @ inv) @ fwd, coef, atol=2e-2)


def _plate_cfg(**kw) -> ModalFNOConfig:
    return ModalFNOConfig(kind="plate", modes=4, param_names=["h", "Lx", "Ly"], param_log=[True] * 3,
                          param_mean=[math.log(1e-3), math.log(0.4), math.log(0.3)], param_std=[0.3, 0.2, 0.2],
                          param_min=[5e-4, 0.3, 0.2], param_max=[2e-3, 0.6, 0.5], **kw)


def test_poles_are_stable_for_any_weights_and_parameters():
    torch.manual_seed(0)
    model = ModalFNO(_plate_cfg(modulation=True))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    low, high = torch.tensor([5e-5, 0.03, 0.02]), torch.tensor([2e-2, 6.0, 5.0])  # 10x past the training range
    params = torch.exp(torch.log(low) + torch.rand(256, 3) * torch.log(high / low))
    poles = model.poles(params)
    assert torch.all(poles["sigma"] > 0) and torch.all(torch.isfinite(poles["sigma"]))
    assert torch.all(poles["omega"] > 0) and torch.all(torch.isfinite(poles["omega"]))
    assert torch.all(poles["mod_alpha"] >= 0) and torch.all(poles["mod_beta"] >= 0)


def test_plate_field_shapes_on_any_grid():
    model = ModalFNO(_plate_cfg(fourier_layers=1, channels=4))
    u0 = torch.randn(2, 9, 11) * 1e-3  # (B, ny, nx) on a 11 x 9 grid
    grid_in = (np.linspace(0, 1, 11), np.linspace(0, 1, 9))
    grid_out = (np.linspace(0, 1, 21), np.linspace(0, 1, 17))
    params = torch.tensor([[1e-3, 0.4, 0.3], [1.5e-3, 0.5, 0.35]])
    u = model(u0, torch.zeros_like(u0), params, torch.arange(5) / 8000.0, grid_out, in_grid=grid_in)
    assert u.shape == (2, 5, 17, 21)
    assert torch.isfinite(u).all()


def _simulate(tmp_path, name, *args):
    path = tmp_path / f"{name}.h5"
    assert eigentone_main(["simulate", *args, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def string_data(tmp_path_factory):
    """Linear strings over a range of tensions/lengths/damping: 16-point grid at 8 kHz, plus the same
    strings on a 31-point grid at 24 kHz (explicit mode count so both hold identical physics)."""
    tmp = tmp_path_factory.mktemp("fno_string")
    common = ["string", "--count", "10", "--duration", "0.1", "--seed", "4", "--modes", "6"]
    coarse = _simulate(tmp, "coarse", *common, "--grid", "16", "--sample-rate", "8000")
    fine = _simulate(tmp, "fine", *common, "--grid", "31", "--sample-rate", "24000")
    return coarse, fine


def test_modal_method_matches_the_linear_solver_on_any_grid_and_rate(string_data):
    from training import metrics
    from training.data.field_data import load_field_data
    from training.families.modal_fno_eval import predict
    from training.families.modal_fno_init import build_model, initialise_poles, make_config

    coarse, fine = (load_field_data(p) for p in string_data)
    assert coarse.fields.shape[2] == 16 and fine.fields.shape[2] == 31
    seen, held_out = np.arange(7), np.arange(7, 10)
    model = build_model(make_config(coarse, 6, 0, False), coarse)
    initialise_poles(model, coarse.subset(seen), horizon=80, quiet=True)  # 10 ms of 7 strings: a tenth of each
    native = metrics.field_nmse(predict(model, coarse, 800), coarse.fields)
    resampled = metrics.field_nmse(predict(model, fine, 2400), fine.fields)  # other grid and 3x the rate
    assert native < 1e-4, native
    assert resampled < max(2 * native, 1e-6), (native, resampled)
    # strings the initialisation never saw: partials of the pole network vs the solver's
    from training.families.modal_fno_eval import parameter_generalisation

    report = parameter_generalisation(model, coarse.subset(held_out))
    print("held-out strings, partial error vs the solver (cents):", report)
    assert report["partial_cents_vs_solver_max"] < 1.0


@pytest.fixture(scope="module")
def string_run(string_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fno_run") / "run"
    assert eigentone_main(["train", "fno", str(string_data[0]), "--out", str(run_dir), "--steps", "4", "--modes", "6",
                           "--quiet"]) == 0
    return run_dir


def test_train_writes_report_and_resumes(string_data, string_run, capsys):
    metrics = json.loads((string_run / "metrics.json").read_text())
    for key in ("field_nmse_in_horizon", "field_nmse_extrapolated", "pickup_rel_mse", "partial_cents_vs_solver_max"):
        assert np.isfinite(metrics[key]), key
    assert metrics["field_nmse_extrapolated"] < 1e-3
    assert (string_run / "report.png").stat().st_size > 1000
    assert json.loads((string_run / "config.json").read_text())["family"] == "modal_fno"
    capsys.readouterr()
    assert eigentone_main(["train", "fno", str(string_data[0]), "--out", str(string_run), "--steps", "6", "--modes",
                           "6"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len(json.loads((string_run / "history.json").read_text())) >= 2


def test_data_only_fno_extrapolates_the_linear_string_and_is_not_exported_yet(string_data, tmp_path, capsys):
    """--init data: the transform is the data's own mode shapes and the input the observed first snapshot; a linear
    string comes out exact from a tenth of its recording. Strings of different parameters are refused (one
    instrument only); export refuses a data-only run with one line (no note control yet)."""
    capsys.readouterr()
    assert eigentone_main(["train", "fno", str(string_data[0]), "--out", str(tmp_path / "mixed"), "--init", "data"]) == 2
    assert "--init data learns one instrument" in capsys.readouterr().err
    one = _simulate(tmp_path, "one", "string", "--preset", "diaz2024-linear", "--count", "10", "--duration", "0.1",
                    "--grid", "33", "--modes", "6", "--sample-rate", "8000")
    run_dir = tmp_path / "data-run"
    assert eigentone_main(["train", "fno", str(one), "--out", str(run_dir), "--steps", "4", "--init", "data",
                           "--quiet"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["architecture"]["transform"] == "data" and config["model"]["architecture"]["points"] == 33
    assert metrics["field_nmse_extrapolated"] < 1e-6, metrics["field_nmse_extrapolated"]
    capsys.readouterr()
    assert eigentone_main(["export", str(run_dir), "--out", str(tmp_path / "x.etone")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init data" in err[0] and not (tmp_path / "x.etone").exists()


def test_excite_graph_plays_the_note_and_fills_the_contract(string_run):
    from training.run_folder import load_run

    run = load_run(string_run)
    graphs = run.graphs()
    excite, readout, field = graphs.excite, graphs.readout, graphs.field
    assert readout is None and run.family.name == "modal_fno"
    controls = torch.tensor([[48.0, 0.9, 0.3, 0.5], [64.5, 0.4, 0.7, 0.5]])
    with torch.no_grad():
        out = excite(controls)
        u = field(out["z0"])
    n = graphs.info.modes
    assert out["sigma"].shape == (2, n) and out["z0"].shape == (2, n, 2) and out["c"].shape == (2, n, 2)
    assert torch.all(out["sigma"] > 0)
    f1 = out["omega"][:, 0].double() / (2 * math.pi)
    target = 440.0 * 2 ** ((controls[:, 0].double() - 69) / 12)
    assert torch.all(torch.abs(1200 * torch.log2(f1 / target)) < 0.05)
    assert u.shape[0] == 2 and torch.isfinite(u).all()
    # louder velocity -> larger initial state (same position would scale exactly)
    with torch.no_grad():
        soft = excite(torch.tensor([[48.0, 0.3, 0.3, 0.5]]))
    np.testing.assert_allclose(soft["z0"].numpy() * 3, out["z0"][:1].numpy(), rtol=1e-4, atol=1e-9)


def test_animate_writes_a_gif_with_frames(string_data, string_run, tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "string.gif"
    assert eigentone_main(["animate", str(string_run), str(string_data[0]), "--example", "1", "--out", str(out),
                           "--frames", "5"]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 5 and frames[0].ndim == 3


@pytest.mark.slow
def test_export_refuses_an_excite_graph_that_breaks_parity(string_run, tmp_path, monkeypatch):
    """The excite graph's omega 1% off its torch module (a wrong pitch): refused, nothing written."""
    from parity_helpers import scale_exported_output

    from eigentone.errors import EigentoneError
    from export.cli import export_run

    scale_exported_output(monkeypatch, "omega")
    with pytest.raises(EigentoneError, match="excite graph parity failed"):
        export_run(string_run, tmp_path / "broken.etone", verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_struck_plate_modal_method_and_animation(tmp_path):
    import imageio.v2 as imageio

    from training import metrics
    from training.data.field_data import load_field_data
    from training.families.modal_fno_eval import predict
    from training.families.modal_fno_init import build_model, initialise_poles, make_config

    path = _simulate(tmp_path, "plate", "plate", "--count", "6", "--grid", "9", "--sample-rate", "8000",
                     "--duration", "0.05", "--modes", "8", "--seed", "1")
    data = load_field_data(path)
    model = build_model(make_config(data, 6, 0, False), data)
    initialise_poles(model, data, horizon=40, quiet=True)
    assert metrics.field_nmse(predict(model, data, 400), data.fields) < 1e-4
    run_dir = tmp_path / "plate_run"
    assert eigentone_main(["train", "fno", str(path), "--out", str(run_dir), "--steps", "2", "--modes", "6",
                           "--quiet"]) == 0
    out = tmp_path / "plate.gif"
    assert eigentone_main(["animate", str(run_dir), str(path), "--out", str(out), "--frames", "4"]) == 0
    assert len(imageio.mimread(out)) == 4


@pytest.mark.slow
def test_exported_bundle_plays_in_the_engine(string_run, tmp_path):
    from engine.render import render_note
    from export.cli import export_run
    from training.modal_analysis import esprit

    bundle = tmp_path / "fno.etone"
    manifest = export_run(string_run, bundle, verbose=False)
    assert manifest["family"] == "modal_fno" and set(manifest["graphs"]) == {"excite", "field"}
    assert set(manifest["parity"]) == {"excite", "field"}  # both graphs checked (its refusal: test_export_refuses_...)
    assert manifest["plugin_ready"]  # inside the native plugin's op subset (export/op_subset.py)
    y = render_note(bundle, 57.0, 0.8, 0.5, 48000)
    assert np.isfinite(y).all() and np.abs(y).max() > 1e-3
    est = esprit(y[:8192].astype(np.float64), 48000.0).strongest(4)  # fundamental + first overtones
    assert abs(1200 * np.log2(est.freqs_hz.min() / 220.0)) < 1.0
