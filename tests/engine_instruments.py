"""Small bundles the engine tests play (tests only): an attack component with a non-finite note, a modulated bundle
with a readout graph, and the shipped Koopman bundle; and the largest allocation of a call (``peak_allocation``)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from engine.instrument import Instrument
from export.modal_bundle import write_modal_bundle


def engine_instruments(folder: Path) -> dict[str, Instrument]:
    """{"attack", "modulated", "hard-pluck"} -> Instrument; the first two are written into ``folder``."""
    write_modal_bundle(folder / "attack.etone", modes=48, attack_samples=40, nan_notes=(61,))
    write_modal_bundle(folder / "modulated.etone", modes=32, modulation=True, readout=True)
    return {"attack": Instrument.load(folder / "attack.etone"),
            "modulated": Instrument.load(folder / "modulated.etone"),
            "hard-pluck": Instrument.load("hard-pluck")}


def peak_allocation(call, *args) -> int:
    """Bytes by which memory traced by tracemalloc (which must be tracing) peaked above its level before
    ``call(*args)``: the largest allocation the call made and held at once."""
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    call(*args)
    return tracemalloc.get_traced_memory()[1] - start
