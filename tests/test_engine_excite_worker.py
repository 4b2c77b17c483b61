"""The excite worker (``Synth(lookahead=L, excite_worker=True)``, engine/excite_worker.py): received note-ons are
excited on a worker thread; a note the worker has not served in time is excited when it sounds. Either way the
output is the zero-look-ahead output delayed by exactly L samples; the thread ends with ``release``; the audio
thread's calls allocate nothing."""

from __future__ import annotations

import math
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest
from engine_instruments import engine_instruments, peak_allocation
from test_engine_lookahead import FS, Counter, performance, play

from engine import excite_cache as ec
from engine.instrument import Instrument
from engine.synth import BLOCK, LOOKAHEAD, Synth

CASES = ((LOOKAHEAD, [BLOCK]), (LOOKAHEAD, [37, 64, 5, 1]), (4 * BLOCK, [256, 100]))
"""(look-ahead, call sizes): every call at most the look-ahead, so every note sounds in a later call."""


@pytest.fixture(scope="module")
def instruments(tmp_path_factory) -> dict[str, Instrument]:
    return engine_instruments(tmp_path_factory.mktemp("worker"))


def _played(instruments, name: str):
    return {0: instruments["attack"], 1: instruments["hard-pluck"]} if name == "two instruments" else instruments[name]


def _drain(synth: Synth) -> None:
    synth._worker.drain()


def _hold(synth: Synth) -> None:
    synth._worker.held.set()


def _worker_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "eigentone-excite-worker"]


@pytest.mark.parametrize("name", ["attack", "modulated", "two instruments"])
@pytest.mark.parametrize("entries", [None, 3])
def test_a_served_note_sounds_as_without_the_worker(instruments, monkeypatch, name, entries):
    """The worker given time after every call (``drain``): it serves every note-on a synth without the worker
    serves at reception (the same late count: 0 with the default cache), and the samples are the zero-look-ahead
    ones delayed by L. With a 3-entry cache most note-ons find no free entry and are excited when they sound."""
    if entries is not None:
        monkeypatch.setattr(ec, "CACHE_ROWS", entries)
    events = performance(300)
    frames = BLOCK * 300
    reference = play(Synth(_played(instruments, name)), events, frames, [BLOCK])
    for lookahead, calls in CASES:
        synchronous = Synth(_played(instruments, name), lookahead=lookahead)
        play(synchronous, events, frames, calls)
        synth = Synth(_played(instruments, name), lookahead=lookahead, excite_worker=True)
        delayed = play(synth, events, frames, calls, after=_drain)
        late = synth.late_note_ons
        while synth.queued:
            synth.process([], BLOCK)
        synth._worker.post()  # a wake-up with nothing new: it unpins what sounded
        _drain(synth)
        assert not synth._worker.pins.any()  # every pin taken was given back
        synth.release()
        assert not delayed[:lookahead].any()
        np.testing.assert_array_equal(delayed[lookahead:], reference[: frames - lookahead])
        if entries is None:
            assert late == synchronous.late_note_ons == 0
        else:  # the worker unpins sounded notes before its lookup, the synchronous path after: fewer bypasses
            assert 0 < late <= synchronous.late_note_ons


@pytest.mark.parametrize("name", ["hard-pluck", "two instruments"])
def test_a_held_worker_makes_every_note_late_and_changes_no_sample(instruments, name):
    events = performance(300, seed=7)
    frames = BLOCK * 300
    reference = play(Synth(_played(instruments, name)), events, frames, [BLOCK])
    for lookahead, calls in CASES:
        synth = Synth(_played(instruments, name), lookahead=lookahead, excite_worker=True)
        synth.prepare(FS, max(calls), 8)
        _hold(synth)
        delayed = play(synth, events, frames, calls, prepared=True)
        sounded = [e for e in events if e[0] < frames - lookahead and e[1] & 0xF0 == 0x90 and e[3] > 0]
        assert synth.late_note_ons == len(sounded)
        assert synth.worker_cpu_seconds == 0.0
        synth.release()
        np.testing.assert_array_equal(delayed[lookahead:], reference[: frames - lookahead])


def test_the_late_note_ons_of_a_call_share_one_graph_call(instruments):
    """A held worker: a 16-note chord sounds with one 16-row graph call on the audio thread, no strike per note."""
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    synth.prepare(FS, BLOCK, 32)
    _hold(synth)
    part = synth.parts[0]
    late, strike, worker = Counter(part.late_graph), Counter(part.strike_graph), Counter(part.excite_graph)
    chord = [(10, 0x90, note, 90) for note in range(44, 60)]
    synth.process(chord, BLOCK)
    out = synth.process([], BLOCK).copy()
    late_note_ons = synth.late_note_ons
    synth.release()
    assert (late.calls, late.rows, strike.calls, worker.calls, late_note_ons) == (1, 16, 0, 0, 16)
    reference = Synth(instruments["attack"])
    reference.prepare(FS, BLOCK, 32)
    np.testing.assert_array_equal(out, reference.process(chord, BLOCK))


def test_notes_that_sound_while_the_worker_runs_the_graph_are_excited_late_and_keep_no_pin(instruments):
    """The audio thread plays on while the worker's graph runs (here: the next call is made from inside that graph
    call, so the interleaving is certain): the chord sounds before the worker publishes its rows, is excited late,
    and the worker pins none of the entries it then fills."""
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    synth.prepare(FS, BLOCK, 32)
    part = synth.parts[0]
    run, played = part.excite_graph.run, []

    def audio_thread_plays_on(rows: int) -> None:
        run(rows)
        if not played:
            played.append(synth.process([], BLOCK).copy())

    part.excite_graph.run = audio_thread_plays_on
    chord = [(5, 0x90, note, 90) for note in range(50, 56)]
    assert not synth.process(chord, BLOCK).any()
    _drain(synth)
    late = synth.late_note_ons
    synth._worker.post()  # nothing new: unpins what sounded
    _drain(synth)
    pins = synth._worker.pins.copy()
    synth.release()
    assert late == 6 and not pins.any()
    reference = Synth(instruments["attack"])
    reference.prepare(FS, BLOCK, 32)
    np.testing.assert_array_equal(played[0], reference.process(chord, BLOCK))


def test_the_worker_free_running_changes_no_sample(instruments):
    """No waiting at all: which notes the worker serves in time depends on the machine, the samples do not."""
    events = performance(300, seed=8)
    frames = BLOCK * 300
    reference = play(Synth(instruments["attack"]), events, frames, [BLOCK])
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    delayed = play(synth, events, frames, [BLOCK])
    synth.release()
    np.testing.assert_array_equal(delayed[LOOKAHEAD:], reference[: frames - LOOKAHEAD])


def test_release_and_prepare_leave_no_thread_behind(instruments):
    before = len(_worker_threads())
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    synth.prepare(FS, BLOCK, 8)
    synth.prepare(FS, BLOCK, 8)  # a second prepare replaces the worker
    assert len(_worker_threads()) == before + 1
    _hold(synth)  # requests pending when it stops
    synth.process([(k, 0x90, 50 + k, 90) for k in range(8)], BLOCK)
    synth.release()
    assert len(_worker_threads()) == before
    synth.prepare(FS, BLOCK, 8)
    synth.process([(0, 0x90, 60, 90)], BLOCK)
    _drain(synth)
    assert synth.worker_cpu_seconds > 0.0
    synth.release()
    assert len(_worker_threads()) == before


def test_the_worker_needs_a_lookahead_of_at_least_the_block_size(instruments):
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    with pytest.raises(ValueError, match="lookahead >= the block size"):
        synth.prepare(FS, 2 * LOOKAHEAD, 8)
    assert not _worker_threads()


def test_the_audio_thread_allocates_nothing_with_the_worker(instruments):
    """Measured with the worker held during each call (tracemalloc counts every thread) and drained between; then
    held all along, so that every note-on is excited late (the late path's kernels and graph calls were warmed up
    by prepare)."""
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    synth.prepare(FS, BLOCK, 32)
    blocks = performance(200, seed=1)
    frames = [[(e[0] % BLOCK, *e[1:]) for e in blocks if e[0] // BLOCK == b] for b in range(200)]
    for events in frames[:100]:
        synth.process(events, BLOCK)
        _drain(synth)
    largest = 0
    tracemalloc.start()
    try:
        for events in frames[100:]:
            _hold(synth)
            largest = max(largest, peak_allocation(synth.process, events, BLOCK))
            synth._worker.held.clear()
            _drain(synth)
        late = synth.late_note_ons
        _hold(synth)
        for events in frames[150:]:
            largest = max(largest, peak_allocation(synth.process, events, BLOCK))
    finally:
        tracemalloc.stop()
    stats, held_late = synth.parts[0].cache.stats, synth.late_note_ons
    synth.release()
    assert stats[ec.HITS] > 0 and stats[ec.MISSES] > 0
    assert late == 0 and held_late > 10
    assert largest < 4096, largest


def _thread_at(policy: int, priority: int, cpus: set[int]):
    """A thread standing in for the audio callback: runs with (policy, priority) on ``cpus``; returns (its Linux
    thread id, the event that ends it), or None when the system refuses the policy (not root, no RLIMIT_RTPRIO)."""
    ready, done, found = threading.Event(), threading.Event(), []

    def run():
        try:
            os.sched_setaffinity(0, cpus)
            os.sched_setscheduler(0, policy, os.sched_param(priority))
            found.append(threading.get_native_id())
        except OSError:
            pass
        ready.set()
        done.wait()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    if not found:
        done.set()
        return None
    return found[0], done


@pytest.mark.parametrize("policy", ["fifo", "other"])
def test_the_worker_follows_the_audio_thread(instruments, policy):
    """``follow``: the worker takes the audio thread's CPUs and, when that thread runs at SCHED_FIFO p, SCHED_FIFO
    p - 1 (below it, above every normal process); it stays at normal priority beside a normal thread."""
    cpus = {min(os.sched_getaffinity(0))}
    audio = _thread_at(os.SCHED_FIFO if policy == "fifo" else os.SCHED_OTHER, 40 if policy == "fifo" else 0, cpus)
    if audio is None:
        pytest.skip("the system refuses SCHED_FIFO here (not root, no RLIMIT_RTPRIO)")
    thread_id, done = audio
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True)
    synth.prepare(FS, BLOCK, 8)
    try:
        said = synth._worker.follow(thread_id)
        worker = synth._worker._thread.native_id
        assert os.sched_getaffinity(worker) == cpus, said
        if policy == "fifo":
            assert os.sched_getscheduler(worker) == os.SCHED_FIFO, said
            assert os.sched_getparam(worker).sched_priority == 39, said
            assert "SCHED_FIFO 39" in said
        else:
            assert os.sched_getscheduler(worker) == os.SCHED_OTHER, said
            assert "normal priority" in said
        synth.process([(0, 0x90, 60, 100)], BLOCK)  # the worker still serves note-ons where it now runs
        synth._worker.drain()
        synth.process([], BLOCK)  # the note sounds here
        assert synth.voices == 1 and synth.late_note_ons == 0
    finally:
        synth.release()
        done.set()


def test_the_realtime_callback_wakes_the_worker_only_when_it_returns(instruments):
    """In real time (RealtimeEngine) the worker is woken by the callback's last call (``ExciteWorker.wake``, which
    keeps the GIL), not inside ``Synth.process``: the rest of the callback gives the GIL up (pedalboard does; here a
    50 ms sleep after the synth, standing in for it), and a worker woken already would take the GIL then and make
    the callback wait for it. Checked: no wake-up was handled during the sleep, and after the callback every one is."""
    from types import SimpleNamespace

    from engine.realtime import RealtimeEngine
    from engine.signal_chain import SignalChain

    chain = SignalChain(Synth(instruments["attack"], lookahead=LOOKAHEAD, excite_worker=True))
    engine = RealtimeEngine(chain, sample_rate=FS, block_size=BLOCK, max_voices=8)
    worker, process, seen = chain.synth._worker, chain.process, []

    def process_then_give_up_the_gil(events, frames):
        block = process(events, frames)
        handled = worker.handled
        time.sleep(0.05)
        seen.append((worker.posts, handled, worker.handled))
        return block

    chain.process = process_then_give_up_the_gil
    status = SimpleNamespace(output_underflow=False, output_overflow=False)
    try:
        for k in range(3):
            engine.push(0x90, 60 + k, 100, stamp=-math.inf)  # at once
            engine._callback(np.zeros((BLOCK, 2), np.float32), BLOCK, SimpleNamespace(currentTime=k * BLOCK / FS),
                             status)
            worker.drain()
    finally:
        chain.release()
    assert seen == [(k + 1, k, k) for k in range(3)], seen
    assert worker.handled == 3 and chain.synth.late_note_ons == 0
