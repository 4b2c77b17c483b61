"""PINN residual of the linear string PDE: zero on the exact modal solution, large for wrong frequencies;
``train fno --pinn-weight`` trains, reports the residual, and refuses plate and nonlinear data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eigentone.cli import main as eigentone_main
from training.physics.string_linear import StringParams, params_for_f0, pluck_modal_state, string_modes
from training.physics_residual import STRING_PDE_PARAMS, modal_field, string_pde_residual

torch.set_num_threads(1)


def _exact_field(strings: list[StringParams], n_modes: int, detune: float = 1.0):
    """Exact plucked-string modal expansion (float64) with every omega scaled by ``detune``."""
    sigma, omega, z0 = [], [], []
    for p in strings:
        s, w = string_modes(p, n_modes)
        z = pluck_modal_state(p, n_modes, position=0.2 * p.L, width=0.05, amplitude=2e-3)
        sigma.append(s)
        omega.append(w * detune)
        z0.append(np.stack([z.real, z.imag], axis=-1))
    length = torch.tensor([p.L for p in strings], dtype=torch.float64)
    sigma_t, omega_t, z0_t = (torch.tensor(np.array(a), dtype=torch.float64) for a in (sigma, omega, z0))
    return modal_field(sigma_t, omega_t, z0_t, length), length


def _rms(r: torch.Tensor) -> np.ndarray:
    return r.detach().pow(2).mean(dim=1).sqrt().numpy()


def test_residual_vanishes_on_the_exact_solution_and_not_on_detuned_frequencies():
    strings = [params_for_f0(82.4), params_for_f0(440.0), StringParams(), StringParams(d1=2e-3, d3=5e-5, L=0.4)]
    params = {n: torch.tensor([getattr(p, n) for p in strings], dtype=torch.float64) for n in STRING_PDE_PARAMS}
    gen = torch.Generator().manual_seed(0)
    exact, length = _exact_field(strings, 24)
    detuned, _ = _exact_field(strings, 24, detune=1.02)
    x = torch.rand(len(strings), 128, generator=gen, dtype=torch.float64) * length[:, None]
    t = torch.rand(len(strings), 128, generator=gen, dtype=torch.float64) * 0.05
    r_exact = _rms(string_pde_residual(exact, params, x, t))
    r_wrong = _rms(string_pde_residual(detuned, params, x, t))
    print(f"residual RMS exact {r_exact}, omega x 1.02 {r_wrong}")
    assert np.all(r_exact < 1e-4), r_exact
    assert np.all(r_wrong > 100 * r_exact), (r_exact, r_wrong)
    assert np.all(np.abs(r_wrong - 0.04) < 0.01), r_wrong  # |r| ~ 2 x 2% for a 2% frequency error
    # amplitude-invariant (no pull towards u = 0)
    halved = string_pde_residual(lambda xx, tt: 0.5 * detuned(xx, tt), params, x, t)
    np.testing.assert_allclose(_rms(halved), r_wrong, rtol=1e-10)


def _simulate(path, *args) -> str:
    assert eigentone_main(["simulate", *args, "--out", str(path)]) == 0
    return str(path)


@pytest.fixture(scope="module")
def string_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pinn")
    return _simulate(tmp / "s.h5", "string", "--count", "10", "--duration", "0.1", "--seed", "4", "--modes", "6",
                     "--grid", "16", "--sample-rate", "8000")


def _train(data: str, run_dir, *extra: str) -> dict:
    assert eigentone_main(["train", "fno", data, "--out", str(run_dir), "--steps", "60", "--modes", "6", "--quiet",
                           "--lr", "1e-2", "--pole-lr-scale", "1", *extra]) == 0
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_physics_term_teaches_strings_the_data_do_not_cover(tmp_path):
    """Few data points: 6 strings of random notes (4 trained on, one validation, one test). Their partials do not
    determine how tension, length and damping set the poles, so the data-only fit is hundreds of cents off on
    the held-out strings; the PDE residual, asked also of strings drawn over the training range, teaches the
    pole network the physics there. Same seed, same steps: the physics term must change the result."""
    data = _simulate(tmp_path / "few.h5", "string", "--count", "6", "--duration", "0.1", "--seed", "4", "--modes",
                     "6", "--grid", "16", "--sample-rate", "8000")
    plain = _train(data, tmp_path / "plain")
    pinn = _train(data, tmp_path / "pinn", "--pinn-weight", "1")
    keys = ("partial_cents_vs_solver_max", "field_nmse_in_horizon")
    print("held-out string, data only:", {k: plain[k] for k in keys}, "with the PDE residual:", {k: pinn[k] for k in keys})
    assert plain["partial_cents_vs_solver_max"] > 50  # the data alone do not pin the held-out string down
    for key in keys:
        assert pinn[key] < plain[key] / 2, key
    assert "pinn_residual_mse" not in plain and pinn["pinn_weight"] == 1 and pinn["pinn_residual_mse"] < 0.1
    config = json.loads((tmp_path / "pinn" / "config.json").read_text())
    assert config["options"]["pinn_weight"] == 1 and "--pinn-weight" in config["command"]
    history = json.loads((tmp_path / "pinn" / "history.json").read_text())
    assert all(np.isfinite(h["pinn_residual"]) for h in history if "pinn_residual" in h)


@pytest.mark.parametrize("kind", ["plate", "nonlinear"])
def test_pinn_weight_is_refused_on_plates_and_nonlinear_strings(kind, tmp_path, capsys):
    if kind == "plate":
        data = _simulate(tmp_path / "p.h5", "plate", "--count", "3", "--grid", "5", "--sample-rate", "8000",
                         "--duration", "0.02", "--modes", "4")
    else:
        data = _simulate(tmp_path / "n.h5", "string", "--nonlinear", "--count", "3", "--grid", "9",
                         "--sample-rate", "8000", "--duration", "0.02", "--modes", "4")
    capsys.readouterr()
    code = eigentone_main(["train", "fno", data, "--out", str(tmp_path / "run"), "--steps", "2", "--quiet",
                           "--pinn-weight", "1e-3"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "--pinn-weight supports linear string datasets only" in err, err
    assert not (tmp_path / "run").exists()


def test_residual_loss_alone_pulls_detuned_poles_back_to_the_physics(string_file):
    from training.data.field_data import load_field_data
    from training.families.modal_fno_init import build_model, initialise_poles, make_config
    from training.families.modal_fno_pinn import pinn_loss

    torch.manual_seed(0)
    data = load_field_data(string_file)
    model = build_model(make_config(data, 6, 0, False), data)
    initialise_poles(model, data, horizon=80, quiet=True)
    with torch.no_grad():
        model.poles.affine.bias[0] += 0.2  # log c1 + 0.2: every tension-driven frequency ~10% sharp
    u0, v0 = (torch.as_tensor(a, dtype=torch.float32) for a in (data.u0, data.v0))
    params = torch.as_tensor(data.params, dtype=torch.float32)

    def residual() -> float:
        return float(pinn_loss(model, u0, v0, params, data.input_grid, 0.01, torch.Generator().manual_seed(9)).detach())

    before = residual()
    opt = torch.optim.Adam(model.poles.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        opt.zero_grad()
        pinn_loss(model, u0, v0, params, data.input_grid, 0.01, gen).backward()
        opt.step()
    after = residual()
    print(f"detuned poles: residual mse {before:.3g} -> {after:.3g} after 40 residual-only steps")
    assert before > 1e-3 and after < before / 10, (before, after)
