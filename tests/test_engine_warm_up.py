"""Warm-up: O(log slots) graph calls (one per batch size), and no graph call or allocation size left for the first
note-ons; a voice count in the tens of thousands prepares in seconds."""

from __future__ import annotations

import numpy as np

from engine.instrument import BoundGraph, Instrument
from engine.synth import ROWS, Synth, batch_sizes, fade_slots


def test_warm_up_runs_each_batch_size_once(monkeypatch):
    instrument = Instrument.load("hard-pluck")  # excite and readout graphs
    runs: list[int] = []
    original = BoundGraph.run

    def counted(self, rows):
        runs.append(rows)
        return original(self, rows)

    monkeypatch.setattr(BoundGraph, "run", counted)
    voices = 20000
    synth = Synth(instrument)
    synth.prepare(48000, 64, voices)
    slots = voices + fade_slots(voices)
    assert len(runs) == Synth.warm_up_calls(instrument, slots) == len(batch_sizes(ROWS)) + 1 + len(batch_sizes(slots))
    assert len(runs) <= 30  # was 32 + slots: one readout call per voice count
    runs.clear()
    chord = [(0, 0x90, note, 100) for note in range(50, 66)]
    synth.process(chord, 64)  # 16 note-ons: a batch size warmed up already
    synth.process([], 64)
    assert synth.voices == 16 and len(runs) == 2  # one excite call, one readout call
    assert np.isfinite(synth.process([], 64)).all()
