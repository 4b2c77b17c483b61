"""The one train / validation / test split of every family, so families are compared on the same examples.

Field datasets: a seeded permutation, the first tenth held out as the test set, the next tenth as the
validation set (model selection), the rest trained on; fewer than 3 examples are all trained on.
Labelled recordings: every note is trained on unless ``hold_out`` notes are asked for; those are spread
evenly inside the note range (never the lowest or highest note, so a held-out note is interpolated).
"""

from __future__ import annotations

import numpy as np

Split = dict[str, np.ndarray]
"""{"train", "val", "test"} -> int index arrays into the examples (or recordings)."""


def split_indices(examples: int, seed: int) -> Split:
    """80/10/10 train/val/test split of ``examples`` (at least one in val and test when there are >= 3)."""
    order = np.random.default_rng(seed).permutation(examples)
    if examples < 3:
        return {"train": order, "val": order[:0], "test": order[:0]}
    n = max(1, examples // 10)
    return {"test": order[:n], "val": order[n : 2 * n], "train": order[2 * n :]}


def hold_out_notes(notes: list[float] | np.ndarray, hold_out: int) -> Split:
    """Split labelled recordings by note: ``hold_out`` of them (evenly spaced by rank, inside the range) as test."""
    notes = np.asarray(notes, dtype=np.float64)
    order = np.argsort(notes, kind="stable")
    if hold_out <= 0:
        return {"train": np.sort(order), "val": order[:0], "test": order[:0]}
    if hold_out > len(notes) - 2:
        raise ValueError(f"cannot hold out {hold_out} of {len(notes)} notes (the lowest and highest are always trained on)")
    ranks = np.round(np.linspace(0, len(notes) - 1, hold_out + 2)[1:-1]).astype(int)  # interior ranks
    test = np.sort(order[ranks])
    return {"train": np.setdiff1d(np.arange(len(notes)), test), "val": order[:0], "test": test}
