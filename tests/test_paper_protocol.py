"""The scoring and the table layout of the paper benches (benchmarks/paper_protocol.py); fast, no training."""

import numpy as np

from benchmarks import paper_protocol as protocol


def test_scores_split_the_rollout_at_the_training_window():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 40, 5))
    pred = ref.copy()
    pred[:, 10:] *= 1.5  # wrong only after the window: error (0.5 u)^2 there
    s = protocol.scores(pred, ref, horizon=10)
    assert s["in_horizon"] == 0.0
    assert np.isclose(s["beyond"], 0.25)
    assert np.isclose(s["full"], 0.25 * np.sum(ref[:, 10:] ** 2) / np.sum(ref**2))


def test_physics_informed_rows_are_printed_apart_from_the_data_only_rows_and_the_paper(capsys):
    run = {"in_horizon": 1e-4, "beyond": 2e-3, "full": 1e-3}
    rows = [protocol.Row("DATA-ROW", [run, run, run]), protocol.Row("PHYSICS-ROW", [run], init="physics")]
    protocol.print_table("title", rows, protocol.PAPER["nonlinear"], "note")
    out = capsys.readouterr().out
    data_at, paper_at, physics_at = out.index("DATA-ROW"), out.index("arXiv 2408.16650"), out.index("PHYSICS-ROW")
    header_at = out.index("physics-informed (given the solver's parameters")
    assert data_at < paper_at < header_at < physics_at  # the paper's figures sit with the data-only rows only
    assert "0.0001 (0)" in out.splitlines()[out[:data_at].count("\n")]  # 3 seeds: mean (std)
