"""The excite cache (engine/excite_cache.py): a note-on served from it sounds bit for bit like one that ran the graph,
a full cache evicts its least recently used row or is bypassed, it is bounded, and a call allocates no arrays."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from engine_instruments import engine_instruments, peak_allocation

from engine import excite_cache as ec
from engine.instrument import Instrument
from engine.synth import LOOKAHEAD, ROWS, Synth

FS = 48000
BLOCK = 64


@pytest.fixture(scope="module")
def instruments(tmp_path_factory) -> dict[str, Instrument]:
    return engine_instruments(tmp_path_factory.mktemp("cache"))


def performance(blocks: int, seed: int = 3) -> list[list[tuple[int, int, int, int]]]:
    """Per block: note-ons at moving offsets with few velocities (so controls repeat), chords, note-offs, the mod
    wheel (position, part of the controls) and pitch bends."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(blocks):
        events = []
        if b % 2:
            events.append((int(rng.integers(0, BLOCK)), 0x90, int(rng.integers(55, 67)), int(rng.choice([40, 80, 120]))))
        if b % 25 == 0:
            events += [(int(rng.integers(0, BLOCK)), 0x90, int(rng.integers(55, 67)), int(rng.choice([40, 80])))
                       for _ in range(6)]
        if b % 7 == 0:
            events.append((int(rng.integers(0, BLOCK)), 0x80, int(rng.integers(55, 67)), 0))
        if b % 40 == 0:
            events.append((int(rng.integers(0, BLOCK)), 0xB0, 1, int(rng.choice([0, 64, 127]))))
        if b % 90 == 0:
            events.append((int(rng.integers(0, BLOCK)), 0xE0, 0, int(rng.integers(32, 96))))
        out.append(sorted(events, key=lambda e: e[0]))
    return out


def render(instrument: Instrument, blocks: list, monkeypatch, rows: int | None = None,
           voices: int = 12) -> tuple[np.ndarray, np.ndarray, list]:
    """The performance's samples, the cache's stats and the reported faults, with a cache of ``rows`` entries."""
    if rows is not None:
        monkeypatch.setattr(ec, "CACHE_ROWS", rows)
    synth = Synth(instrument)
    synth.prepare(FS, BLOCK, voices)
    out = np.concatenate([synth.process(events, BLOCK).copy() for events in blocks])
    monkeypatch.undo()
    return out, synth.parts[0].cache.stats.copy(), list(synth.faults)


@pytest.mark.parametrize("name", ["attack", "modulated", "hard-pluck"])
def test_a_cached_row_sounds_like_a_computed_one(instruments, monkeypatch, name):
    blocks = performance(500)
    cached, stats, faults = render(instruments[name], blocks, monkeypatch)
    computed, none, plain_faults = render(instruments[name], blocks, monkeypatch, rows=0)
    assert stats[ec.HITS] > 100 and stats[ec.BYPASSED] == 0
    assert none[ec.HITS] == 0 and none[ec.MISSES] == none[ec.BYPASSED] == stats[ec.HITS] + stats[ec.MISSES]
    np.testing.assert_array_equal(cached, computed)
    assert faults == plain_faults
    if name == "attack":
        assert faults and faults[0][3] == 61  # the non-finite note is muted and reported, from the cache too


def test_a_full_cache_evicts_or_bypasses_without_changing_a_sample(instruments, monkeypatch):
    blocks = performance(300, seed=8)
    small, stats, _ = render(instruments["attack"], blocks, monkeypatch, rows=3)
    computed, _, _ = render(instruments["attack"], blocks, monkeypatch, rows=0)
    assert stats[ec.HITS] > 0 and stats[ec.BYPASSED] > 0  # 6-note chords need more than 3 entries in one call
    np.testing.assert_array_equal(small, computed)


def keys(*rows: tuple[float, ...]) -> np.ndarray:
    controls = np.zeros((ROWS, 4), np.float32)
    controls[: len(rows)] = rows
    return controls


OUTPUTS = (np.zeros((ROWS + 8, 4), np.float32),) + (np.zeros((0, 0), np.float32),) * 6


def lookup(cache: ec.ExciteCache, controls: np.ndarray, start: bool = True) -> int:
    """The graph rows a call with these note-on controls runs; its rows are staged (pinned) for its notes, which
    then (``start``) start, unpinning them, as in the kernel."""
    n = int(np.count_nonzero(controls[:, 0]))
    OUTPUTS[0][:] = np.arange(ROWS + 8)[:, None] + 1000 * cache.stats[ec.CALL] + 1000  # graph row r of this call
    misses = ec.lookup(controls, controls.view(np.int64), n, cache.keys, cache.used, cache.pins, cache.pending,
                       cache.source, cache.stats)
    entry_of = np.full(ROWS, -9, np.int64)
    ec.stage(OUTPUTS, cache.rows, cache.pending, cache.pins, cache.source, n, entry_of, np.arange(ROWS)[::-1].copy())
    assert entry_of[::-1][:n].tolist() == cache.source[:n].tolist()  # each note-on's queue slot gets its entry
    for entry in entry_of[entry_of >= 0] if start else ():
        cache.pins[entry] -= 1
    return misses


def test_lookup_keeps_the_most_recently_used_rows():
    cache = ec.ExciteCache(OUTPUTS, ROWS, 2)
    a, b, c = (60, 0.5, 0.2, 0.37), (62, 0.5, 0.2, 0.37), (60, 0.5, 0.2, 0.38)  # c differs from a in position_y
    assert lookup(cache, keys(a)) == 1 and lookup(cache, keys(b)) == 1
    assert cache.rows[0][:, 0].tolist() == [1000, 2000]  # each entry holds the graph row of its own call
    assert lookup(cache, keys(a)) == 0  # a hit; now b is the least recently used
    assert lookup(cache, keys(c)) == 1  # takes b's entry
    assert lookup(cache, keys(a)) == 0 and lookup(cache, keys(b)) == 1  # a kept, b evicted (it takes c's entry)
    assert lookup(cache, keys(c)) == 1
    controls = keys(b, (64, 0.5, 0.2, 0.37), b, (65, 0.5, 0.2, 0.37))
    assert lookup(cache, controls) == 1  # b is a hit (twice); 64 runs the graph, moved to the front; 65 bypasses
    assert controls[:1, 0].tolist() == [64] and (controls[1:8] == controls[0]).all()  # padded to 8 rows
    assert cache.source[0] == cache.source[2] >= 0  # b from its entry
    assert cache.source[1] >= 0 and cache.source[3] == -1  # 64 took the entry not used in the call; 65 has none
    assert cache.stats[ec.BYPASSED] == 1 and cache.pins.tolist() == [0, 0]
    assert lookup(cache, keys((70, 0.5, 0.2, 0.37)), start=False) == 1  # its note waits to sound: pinned
    pinned = int(np.flatnonzero(cache.pins)[0])
    assert cache.rows[0][pinned, 0] == 1000 * cache.stats[ec.CALL]
    for note in (71, 72, 73):  # later misses never take the pinned entry
        assert lookup(cache, keys((note, 0.5, 0.2, 0.37))) == 1
        assert cache.keys[pinned].tolist() == keys((70, 0.5, 0.2, 0.37)).view(np.int64)[0].tolist()
    cache.pins[pinned] = 0  # it sounded
    assert lookup(cache, keys((74, 0.5, 0.2, 0.37))) == 1 and lookup(cache, keys((75, 0.5, 0.2, 0.37))) == 1
    assert cache.keys[pinned].tolist() != keys((70, 0.5, 0.2, 0.37)).view(np.int64)[0].tolist()


def test_the_cache_is_bounded():
    assert ec.cache_rows(6 * 4 * 256) == ec.CACHE_ROWS  # 256 modes: 6 kB per row
    rows = ec.cache_rows(6 * 4 * 4096 + 4 * 48000)  # 4096 modes and a 1 s attack table at 48 kHz
    assert 0 < rows < ec.CACHE_ROWS and rows * (6 * 4 * 4096 + 4 * 48000) <= ec.CACHE_BYTES
    assert ec.cache_rows(ec.CACHE_BYTES + 1) == 0


def test_the_allocation_probe_sees_an_array():
    """peak_allocation (used by the no-allocation tests) does see a call that allocates."""
    tracemalloc.start()
    try:
        assert peak_allocation(np.zeros, 100_000) >= 800_000
        assert peak_allocation(len, "abc") < 1024
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("lookahead", [0, LOOKAHEAD])
def test_note_ons_allocate_no_arrays(instruments, lookahead):
    """Hits, misses and the graph runs of a call allocate no array (a copy of a row would be > 6 kB here), with or
    without the look-ahead's queue; the remaining bytes are the numba dispatcher's boxed arguments (see the soak's
    allocation table)."""
    synth = Synth(instruments["hard-pluck"], lookahead=lookahead)
    synth.prepare(FS, BLOCK, 32)
    blocks = performance(200, seed=1)
    for events in blocks[:100]:
        synth.process(events, BLOCK)
    largest = 0
    tracemalloc.start()
    try:
        for events in blocks[100:]:
            largest = max(largest, peak_allocation(synth.process, events, BLOCK))
    finally:
        tracemalloc.stop()
    stats = synth.parts[0].cache.stats
    assert stats[ec.HITS] > 0 and stats[ec.MISSES] > 0
    assert largest < 4096, largest
