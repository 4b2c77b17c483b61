"""`eigentone bench engine`: every scenario prints its row, and the exit code follows the floors it prints.

Timing is not asserted here (a busy machine is not a quiet one): the floors are set out of reach, or trivially
met, to check that a miss makes the command fail and a pass lets it succeed.
"""

from __future__ import annotations

import argparse
import gc
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import bench_engine
from engine.realtime import no_garbage_collection
from engine.synth import realtime_lookahead

ARGS = argparse.Namespace(blocks=20, voices=8, koopman_voices=4, song_seconds=1.0, no_effects=False, native=False,
                          no_worker=False, cpu_idle=False)


@pytest.mark.parametrize("reachable", [True, False])
def test_exit_code_follows_the_floors(monkeypatch, capsys, reachable):
    if reachable:
        monkeypatch.setattr(bench_engine, "NOTE_ON_FLOOR", 1e9)
        monkeypatch.setattr(bench_engine, "CHORD_FLOOR", 1e9)
        monkeypatch.setattr(bench_engine, "RENDER_FLOOR", 0.0)
    else:
        monkeypatch.setattr(bench_engine, "CHORD_FLOOR", 0.0)
    code = bench_engine.run(ARGS)
    out = capsys.readouterr().out
    for row in ("sustained 8 voices", "1 note-on per block", "8 note-ons per block", "16-note chord every 100 ms",
                "chord windows (reception..sound)", "pitch-bend sweep", "hard-pluck (Koopman", "same-run baseline",
                "same-run machine baseline", "offline render"):
        assert row in out, row
    assert f"note-on look-ahead {realtime_lookahead(64)} samples" in out.splitlines()[0]
    windows = next(line for line in out.splitlines() if "chord windows" in line)
    assert windows.endswith(f"(1 chords x {realtime_lookahead(64) // 64 + 1} blocks)"), windows  # 20 blocks: one chord
    assert "excite worker thread (normal priority, same core)" in out.splitlines()[0]
    for line in out.splitlines():  # every row with note-ons prints its excite cache's hit rate
        if line.startswith(("string-256: 1 note-on", "string-256: 8 note-ons", "string-256: 16-note", "hard-pluck")):
            assert "excite cache hits" in line, line
        if line.startswith(("string-256", "hard-pluck")):  # and every row the worker's CPU time and late note-ons
            assert re.search(r"worker CPU \d+\.\d%/block, \d+ late$", line), line
    if reachable:
        assert code == 0 and "NOT met" not in out
    else:
        assert code == 1 and "16-note chord's reception to its sound: max" in out and "NOT met" in out and "floor(s) missed" in out


def test_the_machine_baseline_is_paced_constant_work():
    """The fixed-work loop is paced at block rate (the run lasts the blocks' budget) and times only the loop: each
    block's time is a small part of the period, none of the sleep."""
    blocks, budget = 30, 64 / 48000
    bench_engine.paced_reference_times(4, 16, 64, 48000, 1)  # the loop compiled (or loaded) before timing
    started = time.perf_counter()
    times = bench_engine.paced_reference_times(4, 16, 64, 48000, blocks)
    elapsed = time.perf_counter() - started
    assert times.shape == (blocks,) and (times > 0).all()
    assert elapsed >= (blocks - 1) * budget, elapsed
    assert np.median(times) < budget / 2, times


class _SleepingChain:
    """A chain whose every block sleeps 2 ms: wall time without CPU time, as when the thread is preempted."""

    synth = SimpleNamespace(voices=0, queued=0)

    def process(self, events, frames):
        time.sleep(0.002)


def test_block_times_separate_wall_time_from_cpu_time():
    scenario = bench_engine.Scenario("sustained", lambda b: [])
    times, cpu, marked = bench_engine.time_scenario(_SleepingChain(), scenario, 5, 0, np.arange(24, 25), 64, 48000)
    assert times.min() >= 0.002 and cpu.max() < 0.001, (times, cpu)
    assert not marked.any()


def test_rows_print_wall_and_cpu_columns_and_the_floor_is_on_wall_time(monkeypatch, capsys):
    """A run whose blocks sleep past the budget while using little CPU misses the floors: they are deadlines."""

    def slow_wall(chain, scenario, blocks, *args):
        wall = np.full(blocks, 0.002)  # 150% of the 1.333 ms budget
        marked = np.zeros(blocks, bool) if scenario.marked is None else np.array([scenario.marked(b)
                                                                                  for b in range(blocks)])
        return wall, np.full(blocks, 1e-5), marked

    monkeypatch.setattr(bench_engine, "time_scenario", slow_wall)
    monkeypatch.setattr(bench_engine, "RENDER_FLOOR", 0.0)
    code = bench_engine.run(argparse.Namespace(**{**vars(ARGS), "song_seconds": 0.0}))
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("string-256: 1 note-on"))
    figures = row.split()[row.split().index("8") + 1:][:6]  # after the voices column
    assert figures == ["150.0%", "150.0%", "150.0%", "150.0%", "0.8%", "0.8%"], row
    assert code == 1 and "p99.9 = 150.0% of the budget (<= 50%): NOT met (CPU time p99.9 0.8%)" in out
    assert "hypervisor steal while the rows ran" in out


def test_the_rows_are_timed_without_garbage_collection_as_play_runs(monkeypatch):
    """`eigentone play` turns cyclic garbage collection off while it plays (engine.realtime.no_garbage_collection);
    the bench times its rows the same way, so a collection never lands in a timed block."""
    seen = []

    def recording_blocks(blocks, budget):
        for b in range(blocks):
            seen.append(gc.isenabled())
            yield b

    monkeypatch.setattr(bench_engine, "paced_blocks", recording_blocks)
    monkeypatch.setattr(bench_engine, "paced_reference_times", lambda *args: np.full(args[-1], 1e-5))
    bench_engine.run(argparse.Namespace(**{**vars(ARGS), "song_seconds": 0.0}))
    assert seen and not any(seen)
    assert gc.isenabled()


def test_no_garbage_collection_freezes_what_lives_and_restores_collection_after(monkeypatch):
    assert gc.isenabled()
    with pytest.raises(RuntimeError), no_garbage_collection():
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        raise RuntimeError("the block fails")
    assert gc.isenabled() and gc.get_freeze_count() == 0
