"""`eigentone bench soak`'s bookkeeping without a JACK server: how an xrun is charged to a cause
(benchmarks/bench_soak.py ``attribute``; the real-server run is in tests/test_realtime_jack.py)."""

from __future__ import annotations

from benchmarks.bench_soak import SAMPLE_RATE, CallbackLog, attribute

BUDGET = 128 / SAMPLE_RATE


def _log(walls: list[float], cpus: list[float], entries: list[int], xrun_at: int, clock=True,
         cycles: list[int] | None = None) -> CallbackLog:
    """A log of len(walls) callbacks (wall and CPU time in budgets, entry and frames since the cycle began at entry
    in frames) with an xrun reported on callback ``xrun_at``; ``clock`` False: logged without a JACK clock (no
    entry delays)."""
    log = CallbackLog(len(walls), clock=object() if clock else None)
    log.count = len(walls)
    log.wall_ns[:] = [round(w * BUDGET * 1e9) for w in walls]
    log.cpu_ns[:] = [round(c * BUDGET * 1e9) for c in cpus]
    log.entry[:] = entries
    log.cycle[:] = cycles if cycles is not None else [4] * len(walls)
    log.xrun[xrun_at] = True
    return log


def test_an_xrun_after_a_callback_that_entered_late_is_charged_to_it():
    """A callback that ran 60 % of the period but entered our code 64 frames (half a period) after PortAudio called
    it ended after its period: the xrun reported two callbacks later is charged to "entered late"."""
    log = _log([0.3, 0.6, 0.3, 0.3], [0.3, 0.6, 0.3, 0.3], [1000, 1064, 1001, 1000], xrun_at=3)
    assert log.entry_delays()[1] * SAMPLE_RATE == 64
    counts = attribute(log, BUDGET, 3)
    assert counts["entered late"] == 1 and sum(counts.values()) == 1


def test_an_entry_delay_that_leaves_the_callback_inside_its_period_is_not_the_cause():
    log = _log([0.3, 0.3, 0.3, 0.3], [0.3, 0.3, 0.3, 0.3], [1000, 1064, 1001, 1000], xrun_at=3)
    assert attribute(log, BUDGET, 3)["outside the callback"] == 1


def test_without_the_clock_or_before_the_window_nothing_is_charged_to_the_entry():
    late = [1000, 1064, 1001, 1000]
    assert attribute(_log([0.3, 0.6, 0.3, 0.3], [0.3] * 4, late, 3, clock=False), BUDGET, 3)["outside the callback"] == 1
    assert attribute(_log([0.3, 0.6, 0.3, 0.3], [0.3] * 4, late, 3), BUDGET, 1)["outside the callback"] == 1


def test_the_callbacks_own_overrun_is_charged_before_its_entry():
    """Worst cause first: CPU time over the period outranks a late entry in the same window."""
    log = _log([0.3, 0.6, 1.2, 0.3], [0.3, 0.6, 1.1, 0.3], [1000, 1064, 1000, 1000], xrun_at=3)
    assert attribute(log, BUDGET, 3)["engine, too slow"] == 1


def test_one_callback_beside_a_stalled_server_cycle_does_not_shift_every_entry_delay():
    """JACK's frame clock is extrapolated within a cycle and steps back after the server's timer was late, so one
    callback's entry can come out far below the rest: the others' delays are still measured from the usual
    shortest entry (the 1st percentile), and none is negative."""
    entries = [1000 + (k % 3) for k in range(400)]
    entries[7] = -3000
    entries[200] = 1064
    log = _log([0.3] * 400, [0.3] * 400, entries, xrun_at=399)
    delays = log.entry_delays() * SAMPLE_RATE
    assert delays.min() == 0 and delays[200] == 64 and delays.max() == 64
    assert sorted(set(delays.round().astype(int))) == [0, 1, 2, 64]


def test_a_long_callback_whose_thread_woke_late_in_its_cycle_is_charged_to_the_wake_up():
    """Entered as usual (no entry delay) but 40 frames into its cycle, then 80 % of the period of work: it ended
    after its cycle ("woke late"); 4 frames into the cycle it would not have."""
    walls, entries = [0.3, 0.8, 0.3, 0.3], [1000, 1000, 1001, 1000]
    assert attribute(_log(walls, walls, entries, 3, cycles=[4, 40, 4, 4]), BUDGET, 3)["woke late"] == 1
    assert attribute(_log(walls, walls, entries, 3, cycles=[4, 4, 4, 4]), BUDGET, 3)["outside the callback"] == 1
