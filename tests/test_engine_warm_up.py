"""Warm-up: O(log slots) graph calls (one per batch size), and no graph call or allocation size left for the first
note-ons; a voice count in the tens of thousands prepares in seconds."""

from __future__ import annotations

import numpy as np

from engine.instrument import INVARIANCE_ROWS, BoundGraph, Instrument
from engine.synth import ROWS, Synth, batch_sizes, excite_batch_sizes, fade_slots


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
    assert len(runs) == Synth.warm_up_calls(instrument, slots) == len(excite_batch_sizes(ROWS)) + 1 + len(batch_sizes(slots))
    assert len(runs) <= 30  # was 32 + slots: one readout call per voice count
    runs.clear()
    chord = [(0, 0x90, note, 100) for note in range(50, 66)]
    synth.process(chord, 64)  # 16 note-ons: a batch size warmed up already
    synth.process([], 64)
    assert synth.voices == 16 and len(runs) == 2  # one excite call, one readout call
    assert np.isfinite(synth.process([], 64)).all()


def test_the_warm_up_estimate_runs_no_graph_and_counts_the_batch_check(monkeypatch):
    """The load-time limit multiplies this count by the probe call's duration before any warm-up call: counting must
    not call the graph itself (the batch check's 65 calls of a 1 s graph took a minute before any limit was checked)."""
    instrument = Instrument.load("hard-pluck")
    calls: list[int] = []
    original = instrument._excite.run
    monkeypatch.setattr(instrument._excite, "run", lambda *args: calls.append(1) or original(*args))
    slots = 64 + fade_slots(64)
    before = Synth.warm_up_calls(instrument, slots)
    assert calls == []
    assert before == instrument.pending_check_calls + len(excite_batch_sizes(ROWS)) + 1 + len(batch_sizes(slots))
    assert instrument.excite_batch_invariant and len(calls) == 1 + INVARIANCE_ROWS  # now the check ran
    assert instrument.pending_check_calls == 0
    assert Synth.warm_up_calls(instrument, slots) == len(excite_batch_sizes(ROWS)) + 1 + len(batch_sizes(slots))
