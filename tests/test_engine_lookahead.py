"""The note-on look-ahead (``Synth(lookahead=L)``, docs/engine-semantics.md sections 1 and 6): the output is the
zero-look-ahead output delayed by exactly L samples, whatever the host's call sizes; a note-on's excite graph runs in
the call that receives it; a player option written between reception and sounding gives the samples a synth without
look-ahead gives with the same write; `eigentone render` does not change."""

from __future__ import annotations

import numpy as np
import pytest
from engine_instruments import engine_instruments

from engine import excite_cache as ec
from engine.instrument import Instrument
from engine.render import render_midi
from engine.synth import BLOCK, LOOKAHEAD, Synth, realtime_lookahead

FS = 48000


@pytest.fixture(scope="module")
def instruments(tmp_path_factory) -> dict[str, Instrument]:
    return engine_instruments(tmp_path_factory.mktemp("lookahead"))


def performance(blocks: int, seed: int = 5) -> list[tuple[int, int, int, int]]:
    """Stream-frame events: note-ons at moving offsets, 6-note chords (steals at 8 voices), note-offs, the sustain
    pedal, the mod wheel (part of a note-on's controls), pitch bends, all notes off, on two channels."""
    rng = np.random.default_rng(seed)
    events = []
    for b in range(blocks):
        at = BLOCK * b
        channel = int(rng.integers(0, 2))
        if b % 2:
            events.append((at + int(rng.integers(0, BLOCK)), 0x90 | channel, int(rng.integers(55, 67)),
                           int(rng.choice([40, 80, 120]))))
        if b % 25 == 0:
            events += [(at + int(rng.integers(0, BLOCK)), 0x90, int(rng.integers(55, 67)), int(rng.integers(1, 128)))
                       for _ in range(6)]
        if b % 7 == 0:
            events.append((at + int(rng.integers(0, BLOCK)), 0x80 | channel, int(rng.integers(55, 67)), 0))
        if b % 31 == 0:
            events.append((at + int(rng.integers(0, BLOCK)), 0xB0, 64, 127 if b % 62 else 0))
        if b % 40 == 0:
            events.append((at + int(rng.integers(0, BLOCK)), 0xB1, 1, int(rng.choice([0, 64, 127]))))
        if b % 90 == 0:
            events.append((at + int(rng.integers(0, BLOCK)), 0xE0, 0, int(rng.integers(32, 96))))
        if b % 150 == 149:
            events.append((at + int(rng.integers(0, BLOCK)), 0xB0, 123, 0))
    return sorted(events, key=lambda e: e[0])


def play(synth: Synth, events: list, frames: int, calls: list[int], writes: dict | None = None,
         after=None, prepared: bool = False) -> np.ndarray:
    """``frames`` samples of ``synth`` (prepared here unless ``prepared``) given the stream-frame ``events``, in
    calls cycling through ``calls`` sizes; ``writes``: {frame: (name, value)} player options set before the call
    starting at that frame; ``after(synth)`` runs after each call."""
    if not prepared:
        synth.prepare(FS, max(calls), 8)
    out, frame, i, k = [], 0, 0, 0
    while frame < frames:
        n = min(calls[k % len(calls)], frames - frame)
        k += 1
        if writes and frame in writes:
            setattr(synth, *writes[frame])
        given = []
        while i < len(events) and events[i][0] < frame + n:
            given.append((events[i][0] - frame, *events[i][1:]))
            i += 1
        out.append(synth.process(given, n).copy())
        if after is not None:
            after(synth)
        frame += n
    return np.concatenate(out)


@pytest.mark.parametrize("name", ["attack", "modulated", "hard-pluck", "two instruments"])
@pytest.mark.parametrize("mono", [False, True])
@pytest.mark.parametrize("entries", [None, 3])
def test_the_output_is_the_zero_lookahead_output_delayed_by_exactly_the_lookahead(instruments, monkeypatch, name,
                                                                                   mono, entries):
    """Also with a 3-entry excite cache: rows waiting to sound stay pinned, the chords' other note-ons find no free
    entry and are excited when they sound. "two instruments": channel 1 plays attack, channel 2 hard-pluck (one
    queue, a cache each)."""
    if entries is not None:
        monkeypatch.setattr(ec, "CACHE_ROWS", entries)
    events = performance(300)
    frames = BLOCK * 300
    played = {0: instruments["attack"], 1: instruments["hard-pluck"]} if name == "two instruments" else instruments[name]
    reference = play(Synth(played, mono=mono), events, frames, [BLOCK])
    for lookahead, calls in ((LOOKAHEAD, [BLOCK]), (LOOKAHEAD, [37, 64, 5, 200, 1]), (2 * BLOCK, [256])):
        synth = Synth(played, mono=mono, lookahead=lookahead)
        delayed = play(synth, events, frames, calls)
        stats = synth.parts[0].cache.stats
        if entries:
            assert stats[ec.HITS] > 0 and stats[ec.BYPASSED] > 20
        else:
            assert stats[ec.HITS] > 10 and stats[ec.BYPASSED] == 0
        assert not delayed[:lookahead].any()
        np.testing.assert_array_equal(delayed[lookahead:], reference[: frames - lookahead])


class Counter:
    """Counts a graph's calls and the rows asked for."""

    def __init__(self, graph):
        self.run, self.calls, self.rows = graph.run, 0, 0
        graph.run = self

    def __call__(self, rows: int) -> None:
        self.calls += 1
        self.rows += rows
        self.run(rows)


def test_the_excite_graph_runs_when_a_note_on_is_received(instruments):
    synth = Synth(instruments["attack"], lookahead=LOOKAHEAD)
    synth.prepare(FS, BLOCK, 32)
    part = synth.parts[0]
    excite, strike = Counter(part.excite_graph), Counter(part.strike_graph)
    chord = [(10, 0x90, note, 90) for note in range(44, 60)]
    synth.process(chord, BLOCK)  # received: the graph runs on the 16 rows, nothing sounds yet
    assert (excite.calls, excite.rows, synth.voices, synth.queued) == (1, 16, 0, 16)
    assert not synth.process([], BLOCK)[:10].any()
    assert (excite.calls, synth.voices, synth.queued) == (1, 16, 0)  # sounded at sample 10 + 64: no graph call
    synth.process([(0, 0x90, 70, 50)], BLOCK)
    synth.process([], BLOCK)
    assert (excite.calls, excite.rows, strike.calls, synth.voices) == (2, 17, 0, 17)


def test_a_position_written_between_reception_and_sounding_sounds_as_without_lookahead(instruments):
    """The note-on at frame 100 is received with position_y 0.37 and sounds after position_y became 0.8 (and the
    note at 300 after position became 0.9): both are excited again when they sound, as a synth without look-ahead
    excites them then."""
    instrument = instruments["modulated"]
    events = [(0, 0x90, 60, 100), (100, 0x90, 64, 100), (300, 0x90, 67, 90)]
    frames = BLOCK * 40
    writes = {128: ("position_y", 0.8), 320: ("position", 0.9)}  # output frames: inside the two notes' windows
    delayed_synth = Synth(instrument, lookahead=LOOKAHEAD)
    delayed = play(delayed_synth, events, frames, [BLOCK], writes)
    reference = play(Synth(instrument), [(frame + LOOKAHEAD, *rest) for frame, *rest in events], frames, [BLOCK],
                     writes)
    np.testing.assert_array_equal(delayed, reference)
    unchanged = play(Synth(instrument), [(frame + LOOKAHEAD, *rest) for frame, *rest in events], frames, [BLOCK])
    assert np.abs(unchanged - reference).max() > 1e-3 * np.abs(reference).max()  # the writes are audible
    assert delayed_synth.position == 0.9


def test_render_is_unchanged_by_the_lookahead(instruments, tmp_path):
    from engine.midi_file import MidiSchedule

    events = performance(200, seed=9)
    frames = np.array([e[0] for e in events])
    messages = np.array([e[1:] for e in events])
    schedule = MidiSchedule(frames, messages, int(frames[-1]) + 1, FS)
    results = [render_midi(schedule, instruments["attack"], max_voices=8, tail_s=0.5, lookahead=lookahead).audio
               for lookahead in (0, LOOKAHEAD, 3 * BLOCK)]
    assert results[0].shape[1] > frames[-1]
    for audio in results[1:]:
        np.testing.assert_array_equal(audio, results[0])


@pytest.mark.parametrize(("period", "lookahead"), [(1, 128), (64, 128), (100, 128), (128, 128), (256, 256), (300, 320)])
def test_the_realtime_lookahead_is_the_period_in_whole_blocks_and_at_least_two_blocks(period, lookahead):
    """A note-on always sounds in a later call than the one receiving it, with at least two internal blocks for the
    excite worker to run in (docs/engine-semantics.md section 6)."""
    assert realtime_lookahead(period) == lookahead
