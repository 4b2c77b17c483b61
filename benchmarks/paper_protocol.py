"""The protocol of arXiv 2408.16650 as `eigentone bench koopman-paper` and `bench fno-paper` run it.

Diaz, De La Vega Martin & Sandler, "Towards Efficient Modelling of String Dynamics: A Comparison of State
Space and Koopman based Deep Learning Methods", DAFx24 (https://arxiv.org/abs/2408.16650; code and results
table: github.com/rodrigodzf/physmodjax, ``nbs/results.qmd``):

* data: the nylon B string (``eigentone simulate --preset diaz2024-linear / diaz2024-nonlinear``), 101 grid
  points, 16 kHz, 25 modes, 1000 Gaussian plucks at rest, 4000 steps each, split 80/10/10;
* task: roll the field out from its initial condition over all 4000 steps;
* metric: relative MSE sum(err^2) / sum(u^2) of the displacement field.

Where we differ, and why:

1. **Training window.** The paper trains on all 4000 steps. We train on steps 0-1000 only and score
   in-horizon [0, 1000), beyond the window [1000, 4000) (never seen in training) and the full [0, 4000).
   The full figure is the one set beside the paper's; ours is the harder task (3/4 of it extrapolated).
2. **Scored set.** The paper reports its validation split (mean over batches of 50); we score the test split
   (the validation split selects between initial and trained weights), summing over all its examples.
3. **Seeds.** The paper: mean (std) over 5 training seeds; we: mean (std) over the seeds given (3 by
   default), the data and split fixed (seed 0), so the spread is the training's.
4. **Solver.** Ours is an energy-conserving modal scheme stepped finer than 16 kHz where tension raises the
   top mode (``training/physics``); theirs integrates the same modal ODE with DOP853. Same parameters.
5. **Plates.** arXiv 2507.12563 (von Karman plates, relative MAE per block) publishes no figure under this
   protocol; our Berger-plate preset (plate2025: 200 strikes, 21 x 21 grid, 40 modes) gets the same three
   kinds of row with no published figure beside it.

Published figures (Gaussian plucks, 16 kHz, 4000 steps; mean (std) over 5 seeds), relative MSE:
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAPER = {
    "nonlinear": [("Koopman, amplitude-dependent (paper's best)", 0.0094, 0.0046), ("S5", 0.0224, 0.0013),
                  ("LRU", 0.0390, 0.0187), ("Koopman, linear", 0.0971, 0.0029), ("DMD", 1.0938, 0.1311)],
    "linear": [("DMD (paper's best)", 0.0001, 0.0000), ("LRU", 0.0010, 0.0002),
               ("Koopman, amplitude-dependent", 0.0013, 0.0012), ("Koopman, linear", 0.0048, 0.0009),
               ("S5", 0.0156, 0.0102)],
}
"""arXiv 2408.16650 results (physmodjax nbs/results.qmd), the Gaussian 16 kHz column: (model, mean, std)."""

PRESETS = {"nonlinear": "diaz2024-nonlinear", "linear": "diaz2024-linear", "plate": "plate2025"}
TITLES = {"nonlinear": "nonlinear (Kirchhoff-Carrier) string, diaz2024-nonlinear", "linear": "linear string, diaz2024-linear",
          "plate": "nonlinear (Berger) plate, plate2025 (strikes)"}
_STRING_NOTE = ("(ours: trained on steps 0-1000 only, scored on the test split; the paper's models were trained on "
                "all 4000 steps and scored on the validation split)")
NOTES = {"nonlinear": _STRING_NOTE, "linear": _STRING_NOTE,
         "plate": "(no published figure under this protocol: arXiv 2507.12563 reports von Karman plates by relative "
                  "MAE per block)"}
TOTAL_STEPS = 4000
TRAIN_STEPS = 1000


@dataclass
class ProtocolData:
    """One preset's data under the protocol.

    training: TrainingData whose fields are cut to the training window (every example, so the trainer's
    train/val split applies); test: a FieldDataset of the test examples over all their samples;
    test_at_rest: plucks (no initial velocity) or not."""

    name: str
    training: object
    test: object
    test_at_rest: bool
    train_steps: int

    @property
    def test_fields(self) -> np.ndarray:
        """(E_test, 4000, points...) float32, m."""
        return self.test.fields


def simulate(work: Path, preset: str, count: int, seed: int = 0) -> Path:
    """`eigentone simulate KIND --preset PRESET --count COUNT --seed SEED` into WORK (reused if present)."""
    from eigentone.cli import main as eigentone_main
    from training.data.simulate_cli import PRESETS as SIMULATE_PRESETS

    path = work / f"{preset}-{count}-{seed}.h5"
    if not path.exists():
        argv = ["simulate", SIMULATE_PRESETS[preset].kind, "--preset", preset, "--count", str(count), "--seed",
                str(seed), "--out", str(path)]
        if eigentone_main(argv) != 0:
            raise RuntimeError("eigentone " + " ".join(argv) + " failed")
    return path


def load(path: Path, name: str, train_steps: int = TRAIN_STEPS, split_seed: int = 0) -> ProtocolData:
    """Read a simulated preset: the training window of every example and the whole of the test examples."""
    import h5py

    from training.data.dataset import FieldDataset
    from training.data.sources import from_dataset
    from training.data.splits import split_indices

    with h5py.File(path, "r") as f:
        count = int(f["fields"].shape[0])
        test = np.sort(split_indices(count, split_seed)["test"])
        header = (str(f.attrs["kind"]), bool(f.attrs["nonlinear"]), float(f.attrs["sample_rate"]))
        grid, params = f["grid"][...], {k: v[...] for k, v in f["params"].items()}
        excitation = {k: v[...] for k, v in f["excitation"].items()}
        window = FieldDataset(*header, np.asarray(f["fields"][:, :train_steps], np.float32),
                              np.asarray(f["pickups"][:, :train_steps], np.float32), grid, params, excitation)
        whole = FieldDataset(*header, np.asarray(f["fields"][test], np.float32), np.asarray(f["pickups"][test], np.float32),
                             grid, {k: v[test] for k, v in params.items()}, {k: v[test] for k, v in excitation.items()})
    at_rest = bool(np.all(np.asarray(excitation.get("kind", np.zeros(count)))[test] == 0))
    return ProtocolData(name, from_dataset(window, path, seed=split_seed), whole, at_rest, train_steps)


def scores(pred: np.ndarray, ref: np.ndarray, horizon: int) -> dict[str, float]:
    """Relative MSE of fields (E, T, ...) in-horizon [0, H), beyond [H, T) and full [0, T), over all examples."""
    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum((a.astype(np.float64) - b) ** 2) / np.sum(b.astype(np.float64) ** 2))

    return {"in_horizon": rel(pred[:, :horizon], ref[:, :horizon]), "beyond": rel(pred[:, horizon:], ref[:, horizon:]),
            "full": rel(pred, ref)}


def spread(values: list[float]) -> str:
    """'mean (std)' of seed results, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{np.mean(values):.3g} ({np.std(values):.2g})"


@dataclass
class Row:
    """One printed row: a label and per-seed scores (dicts of ``scores``)."""

    label: str
    runs: list[dict[str, float]]
    seconds: float = 0.0
    init: str = "data"
    """"data" (learned from the fields alone) or "physics" (given the solver's parameters)."""

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.runs]

    def mean(self, key: str) -> float:
        return float(np.mean(self.column(key)))


def _print_rows(rows: list[Row]) -> None:
    print(f"{'model':78s} {'seeds':>5s} {'in-horizon 0-1000':>20s} {'beyond 1000-4000':>20s} {'full 0-4000':>20s}")
    for row in rows:
        print(f"{row.label:78s} {len(row.runs):5d} {spread(row.column('in_horizon')):>20s} "
              f"{spread(row.column('beyond')):>20s} {spread(row.column('full')):>20s}")


def print_table(title: str, rows: list[Row], paper: list[tuple[str, float, float]] | None, note: str) -> None:
    """Two tables: the data-only rows with the paper's figures beside the full column, then, apart, the
    physics-informed rows (given the solver's parameters, so not comparable with either)."""
    print(f"\n{title}")
    print("learned from data alone (no solver parameter anywhere):")
    _print_rows([r for r in rows if r.init == "data"])
    for name, mean, std in paper or []:
        print(f"{'arXiv 2408.16650: ' + name:78s} {5:5d} {'':>20s} {'(trained on all)':>20s} "
              f"{f'{mean:.4f} ({std:.4f})':>20s}")
    print(note)
    physics = [r for r in rows if r.init == "physics"]
    if physics:
        print("physics-informed (given the solver's parameters; not comparable with the rows above or the paper's):")
        _print_rows(physics)


def rows_for(family: str, seeds: list[int], steps: dict[str, int],
             train_one: Callable[[int, str, int], tuple[dict, dict, str]], data_options: str = "") -> list[Row]:
    """The four rows of one data set: for ``init`` in data, physics, the trained model over the seeds and its
    closed-form start. ``train_one(seed, init, steps)`` -> (scores of the kept model, scores of the start,
    "trained" or "init": which the trainer kept on the validation examples). ``data_options``: what else the
    data-only row's label names (its further training options)."""
    rows = []
    for init, label in (("data", f"learned from data alone (--init data{data_options})"),
                        ("physics", "physics-informed prior (--init physics)")):
        start, trained, initial, kept = time.time(), [], [], []
        for seed in seeds:
            t, i, k = train_one(seed, init, steps[init])
            trained.append(t)
            initial.append(i)
            kept.append(k)
        rows.append(Row(f"{family}, {label}, {steps[init]} steps (kept: {kept.count('trained')}x trained)", trained,
                        time.time() - start, init))
        rows.append(Row("  closed-form initialisation of that row (before training)", initial[:1], init=init))
    return rows


def elapsed(start: float) -> str:
    return f"{time.time() - start:.0f} s"
