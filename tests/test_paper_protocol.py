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


def test_rows_name_the_data_only_options_on_the_data_only_row_only():
    """The Koopman bench's data-only row uses the (not exportable) matrix pole law; its label must say so and
    the physics-informed row, which does not use it, must not."""
    calls = []

    def train_one(seed, init, steps):
        calls.append((seed, init, steps))
        run = {"in_horizon": 1.0, "beyond": 2.0, "full": 3.0}
        return run, run, "trained"

    rows = protocol.rows_for("Koopman", [0, 1], {"data": 7, "physics": 5}, train_one, " --law matrix: not exportable")
    data_row, _, physics_row, _ = rows
    assert "(--init data --law matrix: not exportable), 7 steps (kept: 2x trained)" in data_row.label
    assert "--law" not in physics_row.label and "5 steps" in physics_row.label
    assert calls == [(0, "data", 7), (1, "data", 7), (0, "physics", 5), (1, "physics", 5)]
