"""The polyphonic synthesiser: ``prepare`` -> ``process(events, n_frames)`` -> ``release``.

The same ``process`` serves the real-time callback (engine/realtime.py), offline MIDI
rendering (engine/render.py) and a plugin host. Events are raw MIDI channel messages
with a sample offset inside the call::

    events: sequence of (offset, status, data1, data2), sorted by offset, 0 <= offset < n_frames

(or an (n, 4) integer array of the same) and are applied sample-accurately (an offset past the call's
end is applied at its last sample, an offset below the previous event's at the previous event's), ``lookahead``
samples after they are received (0 by default; ``LOOKAHEAD`` = 64 in `eigentone render`, ``realtime_lookahead(period)``
(at least 128) in `play` and the benches):
an event received at stream sample ``k`` sounds at sample ``k + lookahead``, so the output is the zero-look-ahead
output delayed by exactly ``lookahead`` samples. What a note-on needs that does not depend on the state when it
sounds (its excite graph row) is computed when it is received: a chord's excite work and its voices' starts
fall in different blocks. docs/engine-semantics.md is the full specification; the native plugin core follows it
sample for sample (with no look-ahead).

Internal blocks: block-rate work happens every ``BLOCK`` (64) samples of the stream, counted from
the first ``process`` call, whatever ``n_frames`` the caller uses: at a block start the readout
graph (if any) and the pole modulation (if declared) are evaluated for the sounding voices; at a
block end the level bounds are updated and silent voices freed. So the output does not depend on
how the stream is cut into calls. Note-ons received in a call share one batched excite call per instrument
(a pure function of the controls in effect at each note-on's own offset).

How a call runs: the compiled :func:`engine.synth_kernel.receive` queues the call's events and lists the excite
rows of its note-ons; the excite cache (engine/excite_cache.py) serves the rows it keeps and onnxruntime runs
the excite graph on the others (arrays bound once, one row alone, more rounded up to powers of two from 8); the
rows are kept (pinned) in the cache until their notes sound; :func:`engine.synth_kernel.due` takes the events
that sound in the call from the queue; then for each piece of an internal block inside the call and each
instrument, the compiled :func:`engine.synth_kernel.play` applies them and renders the voices (at a block start
after the readout graph ran on the state gathered at the previous block end). A note-on whose controls changed
between reception and sounding (a ``position`` or ``position_y`` written in between) or that found no free cache
entry runs the graph alone when it sounds, so the look-ahead never changes a sample. With ``excite_worker=True``
(real time: `eigentone play` and the benches) the cache lookup, the graph and the pinning run on a worker thread
after the call returns (engine/excite_worker.py); the note-ons it has not served when they sound run the graph
then, on the audio thread (one call for the call's late note-ons of an instrument).
Python does no per-event or per-voice work, and a call allocates nothing.

Handled messages: note on/off (velocity -> control 0..1), CC1 (mod wheel: ``position`` = value / 127),
CC64 sustain pedal, CC120 all sound off, CC121 reset controllers (bend, pedal), CC123 all notes off,
pitch bend (+-``bend_range`` semitones). ``mono=True`` keeps one voice per channel: a new note fades
the previous one out in 5 ms, and releasing the sounding key returns to the most recent key still
held (last-note priority; one extra excite call). Several instruments play on different MIDI
channels; slots (``max_voices``) are per instrument.

Voice stealing (all ``max_voices`` busy; order in engine/voices.py): the stolen voice fades out
like a mono cut (60 dB in 5 ms) in a spare slot (``fade_slots(max_voices)`` of them) while the new
note starts at once in another slot, so a steal does not click. ``steal_fade=False`` cuts the
stolen voice instead (no spare slots: at most ``max_voices`` voices are ever rendered).

Safety: a voice whose excite outputs or samples are NaN/Inf is muted and reported once in
``faults``; voices whose level bound falls below -100 dBFS (and whose attack has ended) are freed;
the mix goes through a peak limiter (ceiling -0.2 dBFS) unless ``limiter=False``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence

import numpy as np

from engine import excite_cache as ec
from engine import synth_kernel as sk
from engine.buffers import prefaulted
from engine.excite_worker import CONSUMED, ExciteWorker, late_rows
from engine.instrument import BoundGraph, Instrument
from engine.modal_bank import LANES, PLANES, STEP_PLANES, ModalBank, limit
from engine.voices import FIELDS as VOICE_FIELDS
from engine.voices import VoicePool

Event = tuple[int, int, int, int]
"""(offset in samples inside the call, MIDI status byte, data1, data2)."""

SILENCE = 1e-5
"""-100 dBFS: voices whose level bound (times the output gain) is below this are freed."""

CUT_SIGMA = sk.CUT_SIGMA
"""Decay rate (1/s) of a voice cut by mono mode or stolen: 60 dB in 5 ms."""

BLOCK = 64
"""Internal block (samples): block-rate work every BLOCK samples from the stream start, at every sample rate."""

LOOKAHEAD = 64
"""The look-ahead (samples) `eigentone render` uses: one internal block (1.33 ms at 48 kHz).
A multiple of BLOCK, so the delayed stream keeps the same internal blocks."""


def realtime_lookahead(block_size: int) -> int:
    """The look-ahead (samples) of a real-time synth with the excite worker and calls of up to ``block_size``
    samples (`eigentone play`, the benches): ``block_size`` rounded up to BLOCK, and at least two internal blocks
    (128 samples), so every note-on sounds in a later call than the one receiving it and its excite work can go to
    the worker, which runs while the audio thread is idle. At 64-sample periods the two blocks give it two idle
    gaps of ~0.9 ms rather than one: with one (a 64-sample look-ahead) the worker had not finished 5 of 267 16-note
    chords in a run of `eigentone bench engine` on a quiet 2-core VM, each costing its sounding block 1.1-2x the
    budget, and none with two."""
    return max(2 * BLOCK, -(-block_size // BLOCK) * BLOCK)


ROWS = 256
"""Note-ons per instrument received in one call that get an excite row (more are dropped and counted)."""

MAX_EVENTS = 4096
"""Events per call (more are dropped and counted)."""

QUEUE = 2 * MAX_EVENTS
"""Events received and not yet applied (calls of at least ``lookahead`` samples keep at most two calls' events;
an event that finds the queue full is dropped and counted)."""

EXCITE_OUTPUTS = ("sigma", "omega", "z0", "c", "mod_alpha", "mod_beta", "attack")
"""The excite graph's outputs in the order of the synth's excite buffers (absent ones are empty placeholders)."""

DECAY_SCALE_RANGE = (0.25, 4.0)
BRIGHTNESS_RANGE = (-1.0, 1.0)

PROBLEMS = {sk.NON_FINITE_EXCITE: "non-finite excite output", sk.NON_FINITE_SAMPLES: "non-finite samples"}


def fade_slots(max_voices: int) -> int:
    """Spare slots in which stolen voices fade out: a quarter of ``max_voices``, at least 4."""
    return max(4, max_voices // 4)


def release_sigma(release_time: float) -> float:
    """Decay rate in 1/s of a release lasting ``release_time`` seconds to -60 dB (T60)."""
    return math.log(1000.0) / max(release_time, 1e-3)


def excite_batch_sizes(capacity: int) -> list[int]:
    """The excite graph's batch sizes (batch-invariant graphs): 1, then ``batch_sizes``. A lone note-on, the common
    case in real time, runs one row (about a third of the 8-row call's time); the batch check
    (``Instrument.excite_batch_invariant``) compared each of its rows alone with the batch, so the bits are the same."""
    return [1, *batch_sizes(capacity)]


def excite_row_bytes(instrument: Instrument) -> int:
    """Bytes of one row of the excite graph's outputs (sigma, omega, z0, c, modulation, attack)."""
    return 4 * instrument.modes * (6 + (2 if instrument.modulation else 0)) + 4 * instrument.attack_samples


def batch_sizes(capacity: int) -> list[int]:
    """The batch sizes graphs run with, up to ``capacity`` rows (see ``buffers.batch_rows``)."""
    sizes = [8]
    while sizes[-1] < capacity:
        sizes.append(sizes[-1] * 2)
    return sizes


class _Part:
    """One instrument: its voice slots, modal bank, graph buffers and kernel state."""

    def __init__(self, synth: Synth, index: int, instrument: Instrument, sample_rate: float, max_voices: int):
        self.instrument = instrument
        self.index = index
        self.pool = VoicePool(max_voices, fade_slots(max_voices) if synth.steal_fade else 0)
        slots, modes = self.pool.slots, instrument.modes
        self.bank = ModalBank(slots, modes, sample_rate, BLOCK, instrument.modulation, instrument.output_gain,
                              attack_samples=instrument.attack_samples, attack_rate=instrument.attack_rate,
                              decay_scale=synth.decay_scale, brightness=synth.brightness)
        # excite: rows [0, ROWS) for the call's note-ons, the last 8 rows for a mono return (strike)
        outputs = instrument.excite_buffers(ROWS + 8)
        self.excite = tuple(outputs.get(name, np.zeros((0, 0), np.float32)) for name in EXCITE_OUTPUTS)
        controls = synth._controls[index]
        self.controls, self.control_bits = controls, synth._control_bits[index]
        self.entry_of, self.row_event = synth._entry_of, synth._row_event[index]  # where queued note-ons get rows
        self.strike_controls = controls[ROWS:]
        # with the excite worker the excite graph reads the worker's own rows (the audio thread's receive writes
        # the synth's rows meanwhile); the strike graph always reads the synth's rows [ROWS, ROWS + 8)
        self.worker_controls, self.worker_bits = synth._worker_controls[index], synth._worker_bits[index]
        graph_controls = self.worker_controls if synth.excite_worker else controls
        spare = ROWS if synth.excite_worker else 0  # the late rows (see excite_late)
        self.cache = ec.ExciteCache(self.excite, ROWS, ec.cache_rows(excite_row_bytes(instrument)), spare)
        per_row = not instrument.excite_batch_invariant  # then one graph call per note-on (see Instrument)
        self.excite_graph = BoundGraph(instrument.excite_session, {"controls": graph_controls}, outputs,
                                       excite_batch_sizes(ROWS), per_row=per_row)
        # one row, the last (a third of an 8-row call's time; the same bits: a batch-invariant graph's row alone is
        # its row in any batch, and a graph that is not runs one row per call anyway)
        self.strike_graph = BoundGraph(instrument.excite_session, {"controls": controls}, outputs, [1],
                                       first=ROWS + 7)
        if synth.excite_worker:  # the audio thread's own graph binding: its late rows into the cache's spare rows
            base = self.cache.entries
            self.late_controls = prefaulted((base + spare, 4))
            self.late_graph = BoundGraph(instrument.excite_session, {"controls": self.late_controls},
                                         {name: self.cache.rows[k] for k, name in enumerate(EXCITE_OUTPUTS)
                                          if name in outputs}, excite_batch_sizes(ROWS), first=base, per_row=per_row)
        if instrument.has_readout:
            rows = batch_sizes(slots)[-1]
            z, c = prefaulted((rows, modes, 2)), prefaulted((rows, modes, 2))
            self.readout_graph = BoundGraph(instrument.readout_session, {"z": z}, {"c": c}, batch_sizes(slots))
        else:
            z = c = np.zeros((0, modes, 2), np.float32)
        self.readout = (z, c)
        self.part_i = np.zeros(sk.PART_I, np.int64)
        self.part_f = np.zeros(sk.PART_F)
        self.part_i[sk.MONO] = synth.mono
        self.part_i[sk.MAX_VOICES] = max_voices
        self.part_i[sk.HAS_READOUT] = instrument.has_readout
        release_time = instrument.release_time if synth.release_time is None else synth.release_time
        self.part_f[sk.RELEASE_SIGMA] = release_sigma(release_time)
        self.part_f[sk.BEND_RANGE] = synth.bend_range
        self.part_f[sk.BEND : sk.BEND + 16] = 1.0
        self.faults = np.zeros((64, 3), np.int64)
        # with the excite worker, pins are the worker's: the kernel's unpins go to an array nobody reads (the
        # worker unpins what sounded, engine/excite_worker.py)
        pins = np.zeros(self.cache.entries + spare, np.int64) if synth.excite_worker else self.cache.pins
        self.state = ((self.pool.flags, self.pool.active, self.pool.counts), self.bank.arrays, self.excite,
                      (pins, self.cache.rows), self.readout, self.part_i, self.part_f, self.faults)

    def warm_up(self, synth: Synth) -> None:
        """Pay first-call costs here, not on the audio thread: compiled kernels (loaded from numba's cache), and
        onnxruntime's first run of each batch size: log2(capacity) calls per graph, not one per size."""
        for size in self.excite_graph.sizes:
            self.excite_graph.run(size)  # one call of each shape (a single row's when the graph runs per row)
        self.excite_rows(0)
        self.strike_graph.run(1)
        if hasattr(self, "late_graph"):
            for size in self.late_graph.sizes:
                self.late_graph.run(size)
            self.excite_late(synth, 0)  # the compiled late_rows, loaded now
        if self.instrument.has_readout:
            for size in self.readout_graph.sizes:
                self.readout_graph.run(size)
        sk.play(synth._events, 0, 0, 0, BLOCK, 0, True, synth._mix, *self.state)
        self.part_i[sk.READOUT_ROWS] = 0

    def excite_rows(self, rows: int) -> None:
        """The ``rows`` note-on rows received in the call: served from the excite cache, the misses computed by the
        graph and kept in the cache; each queued note-on gets its entry (``entry_of[row_event[r]]``)."""
        cache = self.cache
        misses = ec.lookup(self.controls, self.control_bits, rows, cache.keys, cache.used, cache.pins, cache.pending,
                           cache.source, cache.stats)
        if misses:
            self.excite_graph.run(misses)
        ec.stage(self.excite, cache.rows, cache.pending, cache.pins, cache.source, rows, self.entry_of,
                 self.row_event)

    def excite_late(self, synth: Synth, n_events: int) -> None:
        """With the excite worker: the call's note-ons of this instrument that have no usable row run the graph
        together here (one call, rows into the cache's spare rows), not one strike each."""
        rows = late_rows(synth._events, n_events, synth._part_of, self.index, self.late_controls, self.cache.entries,
                         ROWS, synth._event_position, synth.position_y)
        if rows:
            self.late_graph.run(rows)

    def play(self, synth: Synth, n_events: int, n_frames: int, begin: bool) -> None:
        """This call's events and samples for this instrument (``sk.play``), running the graphs it stops for."""
        part_i = self.part_i
        status = sk.play(synth._events, 0, n_events, 0, n_frames, synth.frames, begin, synth._mix, *self.state)
        while status != sk.DONE:
            if status == sk.READOUT:  # a block start: c from the readout graph on the state gathered at its end
                self.readout_graph.run(int(part_i[sk.READOUT_ROWS]))
                part_i[sk.READOUT_READY] = 1
                event, begin = int(part_i[sk.RESUME_EVENT]), True
            else:  # a mono return to a held key, or a note-on without a usable row: excite it, go on from there
                event, begin = int(part_i[sk.STRIKE_EVENT]), False
                controls = self.strike_controls
                controls[:] = (part_i[sk.STRIKE_NOTE], part_i[sk.STRIKE_VELOCITY] / 127.0,
                               synth._event_position[event], synth.position_y)
                self.strike_graph.run(1)
                part_i[sk.STRIKE_READY] = 1
            status = sk.play(synth._events, event, n_events, int(part_i[sk.RESUME_AT]), n_frames, synth.frames,
                             begin, synth._mix, *self.state)
        if part_i.item(sk.FAULTS):
            for problem, channel, note in self.faults[: part_i[sk.FAULTS]]:
                synth.report(PROBLEMS[int(problem)], self.instrument.name, int(channel), int(note))
            part_i[sk.FAULTS] = 0


class Synth:
    """Polyphonic modal synthesiser for one or several instruments.

    ``instruments``: one Instrument (plays every channel), a list (item i plays MIDI channel i,
    0-based; channels past the list's end play item 0), or a dict {channel: Instrument}
    (unlisted channels are silent). Player options (docs/engine-semantics.md):

    * ``gain``: linear output gain; ``bend_range``: pitch-bend range in semitones;
    * ``release_time``: T60 in seconds after note-off (None: each bundle's own ``release_time``);
    * ``decay_scale`` (0.25..4): multiplies every mode's T60 (the release is not scaled);
    * ``brightness`` (-1..1): readout tilt ``clamp((omega_n / omega_note) ** brightness, 1/16, 16)``;
    * ``position``, ``position_y`` (0..1): excitation point controls sent to the excite graphs
      (MIDI CC1 also sets ``position``);
    * ``mono``, ``limiter``, ``steal_fade``: see the module doc;
    * ``lookahead``: samples from an event's reception to its sound (a multiple of BLOCK; see the module doc);
    * ``excite_worker``: received note-ons are excited on a worker thread (engine/excite_worker.py; needs
      ``lookahead`` >= the prepared block size, so every note sounds in a later call than it is received).

    >>> synth = Synth(Instrument.load("modal.etone"))
    >>> synth.prepare(48000, 64, 32)
    >>> block = synth.process([(0, 0x90, 60, 100)], 64)   # (64,) float32, valid until the next call
    """

    def __init__(
        self,
        instruments: Instrument | Sequence[Instrument] | Mapping[int, Instrument],
        *,
        bend_range: float = 2.0,
        mono: bool = False,
        gain: float = 1.0,
        limiter: bool = True,
        position: float = 0.2,
        position_y: float = 0.37,
        steal_fade: bool = True,
        release_time: float | None = None,
        decay_scale: float = 1.0,
        brightness: float = 0.0,
        lookahead: int = 0,
        excite_worker: bool = False,
    ):
        if isinstance(instruments, Instrument):
            channel_map = {ch: instruments for ch in range(16)}
        elif isinstance(instruments, Mapping):
            channel_map = dict(instruments)
        else:
            instruments = list(instruments)
            channel_map = {ch: instruments[ch] if ch < len(instruments) else instruments[0] for ch in range(16)}
        check_options(release_time=release_time, decay_scale=decay_scale, brightness=brightness, position=position,
                      position_y=position_y, gain=gain, bend_range=bend_range)
        if lookahead < 0 or lookahead % BLOCK:
            raise ValueError(f"lookahead {lookahead}: expected a multiple of {BLOCK} samples >= 0")
        self.lookahead = int(lookahead)
        """Samples from an event's reception to its sound (the output trails the events by this much)."""
        self.excite_worker = bool(excite_worker)
        """Compute received note-ons' excite rows on a worker thread (needs ``lookahead`` >= the block size)."""
        self._worker: ExciteWorker | None = None
        self.channel_map = channel_map
        self.bend_range = bend_range
        self.mono = mono
        self.gain = gain
        self.limiter = limiter
        self.position = position
        self.position_y = position_y
        self.steal_fade = steal_fade
        self.release_time = release_time
        self.decay_scale = decay_scale
        self.brightness = brightness
        self.faults: collections.deque[tuple[str, str, int, int]] = collections.deque(maxlen=256)
        self._reported: set[tuple[str, str, int, int]] = set()
        self.prepared = False

    def prepare(self, sample_rate: float, block_size: int, max_voices: int) -> None:
        """Allocate everything for calls of up to ``block_size`` samples at ``sample_rate`` Hz; the stream
        (and its internal blocks) starts at the next ``process`` call."""
        if self.excite_worker and self.lookahead < block_size:
            raise ValueError(f"excite_worker needs lookahead >= the block size: lookahead {self.lookahead}, block "
                             f"size {block_size} (a note would sound in the call that receives it)")
        self._stop_worker()
        self.sample_rate = float(sample_rate)
        self.block_size = int(block_size)
        self.max_voices = int(max_voices)
        instruments: list[Instrument] = []
        self._part_of = np.full(16, -1, np.int64)
        for channel, instrument in self.channel_map.items():
            if all(instrument is not known for known in instruments):
                instruments.append(instrument)
            self._part_of[channel] = next(i for i, known in enumerate(instruments) if known is instrument)
        self._controls = prefaulted((len(instruments), ROWS + 8, 4))
        self._control_bits = self._controls.view(np.int64)
        self._worker_controls = prefaulted((len(instruments), ROWS + 8, 4)) if self.excite_worker else self._controls
        self._worker_bits = self._worker_controls.view(np.int64)
        self._rows = np.zeros(len(instruments), np.int64)
        self._row_event = prefaulted((len(instruments), ROWS), np.int64)
        self._incoming = prefaulted((MAX_EVENTS, 4), np.int64)
        self._queue = prefaulted((QUEUE, sk.QUEUE_COLUMNS), np.int64)
        self._queue_state = np.zeros(sk.QUEUE_STATE, np.int64)
        self._entry_of = self._queue[:, sk.ENTRY]
        self._events = prefaulted((QUEUE, sk.EVENT_COLUMNS), np.int64)
        self._event_position = prefaulted(QUEUE, np.float64)
        self._positions = np.full(2, float(self.position))
        self._position_written = False
        self._check = np.zeros(4, np.float32)
        self._check_bits = self._check.view(np.int64)
        self._mix = prefaulted(max(block_size, BLOCK))
        self._views: dict[int, np.ndarray] = {}
        self._limiter_gain = np.ones(1)
        self._release_coef = 1.0 - math.exp(-1.0 / (0.05 * sample_rate))  # 50 ms limiter release
        self.parts = [_Part(self, i, instrument, sample_rate, max_voices) for i, instrument in enumerate(instruments)]
        for index, part in enumerate(self.parts):
            part.part_i[sk.MAPPED : sk.MAPPED + 16] = self._part_of == index
            part.warm_up(self)
        limit(self._mix, 0, self._limiter_gain, 0.977, self._release_coef)
        self.frames = 0
        self._receive(0, 0)
        self._due(0)
        self._mix[:] = 0.0
        self.dropped_events = 0
        self._begun = -1  # index of the last internal block whose start work was done
        if self.excite_worker:
            self._worker = ExciteWorker(self)
            self._worker.start()
        self.prepared = True

    def release(self) -> None:
        """Stop the excite worker and free the buffers allocated by ``prepare``."""
        self._stop_worker()
        self.parts = []
        self._mix = np.zeros(0, np.float32)
        self.prepared = False

    @staticmethod
    def warm_up_calls(instrument: Instrument, slots: int) -> int:
        """Graph calls ``prepare`` makes for one instrument with ``slots`` voice slots: one per excite batch size,
        one for the mono strike, one per readout batch size (powers of two up to ``slots``), plus the batch
        invariance check's calls while it has not run. Counted without calling the graph: a load-time limit checks
        this count before any of these calls."""
        if instrument.pending_check_calls:  # the check, then the larger of its two outcomes' warm-ups
            return instrument.pending_check_calls + Synth._calls_after_check(instrument, slots, True)
        return Synth._calls_after_check(instrument, slots, instrument.excite_batch_invariant)

    @staticmethod
    def _calls_after_check(instrument: Instrument, slots: int, batch_invariant: bool) -> int:
        excite = len(excite_batch_sizes(ROWS)) if batch_invariant else 1
        return excite + 1 + (len(batch_sizes(slots)) if instrument.has_readout else 0)

    @staticmethod
    def part_bytes(instrument: Instrument, slots: int) -> int:
        """Bytes ``prepare`` allocates for one instrument with ``slots`` voice slots (all written at once)."""
        width = -(-instrument.modes // LANES) * LANES
        levels = BLOCK.bit_length()
        bank = slots * width * ((PLANES + STEP_PLANES) * 4 + 8 + levels * 2 * 4) + slots * (5 * 8 + 4 * 8 + VOICE_FIELDS * 8 + 8)
        attack = slots * (instrument.attack_samples + 1) * 4
        excite_row = excite_row_bytes(instrument)
        readout = 2 * batch_sizes(slots)[-1] * instrument.modes * 2 * 4 if instrument.has_readout else 0
        cache = ec.ExciteCache.bytes(excite_row, ROWS, ec.cache_rows(excite_row), ROWS)  # with the worker's late rows
        return bank + attack + (ROWS + 8) * excite_row + readout + cache

    @property
    def position(self) -> float:
        """The mod-wheel position (0..1) of later note-ons: the player's option, or the value of the last CC1 that
        sounded (last writer wins). A write applies to note-ons that sound after it."""
        return self._position

    @position.setter
    def position(self, value: float) -> None:
        self._position = value
        self._position_written = True

    @property
    def late_note_ons(self) -> int:
        """Note-ons that sounded without a row computed at reception and were excited when they sounded (the
        strike path): a position written in between, no free cache entry, or the excite worker not done in time."""
        return int(self._queue_state[sk.LATE]) if self.prepared else 0

    @property
    def worker_cpu_seconds(self) -> float:
        """CPU time (s) the excite worker thread has used since ``prepare`` (0 without the worker)."""
        return self._worker.cpu_seconds if self._worker is not None else 0.0

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    @property
    def queued(self) -> int:
        """Events received and not yet applied (at most ``lookahead`` samples old)."""
        return int(self._queue_state[sk.TAIL] - self._queue_state[sk.HEAD]) if self.prepared else 0

    @property
    def voices(self) -> int:
        """Sounding voices across all instruments (stolen voices still fading out included)."""
        return sum(part.pool.count for part in self.parts)

    @property
    def peak_voices(self) -> int:
        """Most voices that sounded at once since ``prepare`` (per instrument, summed over instruments)."""
        return sum(int(part.part_i[sk.PEAK]) for part in self.parts)

    def report(self, problem: str, instrument: str, channel: int, note: int) -> None:
        """Record a muted voice once per (problem, instrument, channel, note) in ``faults``."""
        key = (problem, instrument, channel, note)
        if key not in self._reported:
            self._reported.add(key)
            self.faults.append(key)

    def process(self, events: Sequence[Event] | np.ndarray, n_frames: int) -> np.ndarray:
        """Render the next ``n_frames`` samples of the stream: (n_frames,) float32 mono, a view valid until the
        next call.

        ``events`` as described in the module doc; ``n_frames`` <= the prepared block size.
        """
        if n_frames > self.block_size:
            raise ValueError(f"process: n_frames {n_frames} exceeds the prepared block size {self.block_size}")
        n_in = self._take_events(events)
        mix = self._views.get(n_frames)
        if mix is None:  # one view object per call size, made once (a new view per call is an allocation)
            mix = self._views[n_frames] = self._mix[:n_frames]
        mix[:] = 0.0
        threshold = SILENCE / max(abs(self.gain), 1e-12)
        if self._position_written:  # sounds from now on; later note-ons are received with it too
            self._positions.fill(self._position)
            self._position_written = False
        self._receive(n_in, n_frames)
        worker, wake = self._worker, False
        for index, part in enumerate(self.parts):
            rows = self._rows.item(index)
            part.part_f[sk.THRESHOLD] = threshold
            if rows:
                if worker is None:
                    part.excite_rows(rows)
                else:
                    wake = True
        late = self._queue_state.item(sk.LATE)
        n_events = self._due(n_frames)
        if worker is not None and self._queue_state.item(sk.LATE) != late:
            for part in self.parts:
                part.excite_late(self, n_events)
        begin = self.frames % BLOCK == 0 and self.frames // BLOCK != self._begun
        for part in self.parts:
            part.play(self, n_events, n_frames, begin)
        if n_frames or begin:  # the block holding the call's last sample has begun
            self._begun = (self.frames + max(n_frames - 1, 0)) // BLOCK
        self._position = self._positions.item(sk.SOUNDED)
        if worker is not None:  # the notes taken by due have started: their entries may be unpinned
            worker.shared[CONSUMED] = self._queue_state[sk.HEAD]
            if wake:
                worker.post()
        if self._queue_state.item(sk.OVERFLOW):
            self.dropped_events += self._queue_state.item(sk.OVERFLOW)
            self._queue_state[sk.OVERFLOW] = 0
        for part in self.parts:
            if part.part_i.item(sk.DROPPED):
                self.dropped_events += part.part_i.item(sk.DROPPED)
                part.part_i[sk.DROPPED] = 0
        if self.gain != 1.0:
            mix *= self.gain
        if self.limiter:
            limit(mix, n_frames, self._limiter_gain, 0.977, self._release_coef)
        self.frames += n_frames
        return mix

    def _receive(self, n_in: int, n_frames: int) -> None:
        """Queue the ``n_in`` events taken in (see ``sk.receive``); list the excite rows of their note-ons."""
        sk.receive(self._incoming, n_in, self._part_of, self._controls, self._control_bits, self._rows,
                   self._row_event, ROWS, max(n_frames - 1, 0), self.frames, self.lookahead, self._positions,
                   self.position_y, self._queue, self._queue_state)

    def _due(self, n_frames: int) -> int:
        """Move the events that sound in this call from the queue to ``_events`` (see ``sk.due``); how many."""
        return sk.due(self._queue, self._queue_state, self._events, self._event_position, self.frames, n_frames,
                      self._positions, self.position_y, self._check, self._check_bits, self._part_of)

    def _take_events(self, events: Sequence[Event] | np.ndarray) -> int:
        """Copy the call's events into the preallocated (MAX_EVENTS, 4) array; returns how many were taken."""
        n = len(events)
        if n > MAX_EVENTS:
            self.dropped_events += n - MAX_EVENTS
            n = MAX_EVENTS
        buffer = self._incoming
        if isinstance(events, np.ndarray):
            buffer[:n] = events[:n]
            return n
        for i in range(n):
            buffer[i] = events[i]
        return n


def check_options(*, release_time: float | None = None, decay_scale: float = 1.0, brightness: float = 0.0,
                  position: float = 0.2, position_y: float = 0.37, gain: float = 1.0, bend_range: float = 2.0) -> None:
    """ValueError naming the first player option out of its range (see :class:`Synth`)."""
    for name, value in (("gain", gain), ("bend_range", bend_range)):
        if not math.isfinite(value):
            raise ValueError(f"{name} {value}: expected a finite number")
    lo, hi = DECAY_SCALE_RANGE
    if not lo <= decay_scale <= hi:
        raise ValueError(f"decay_scale {decay_scale}: expected {lo}..{hi}")
    lo, hi = BRIGHTNESS_RANGE
    if not lo <= brightness <= hi:
        raise ValueError(f"brightness {brightness}: expected {lo}..{hi}")
    if release_time is not None and not (release_time > 0 and math.isfinite(release_time)):
        raise ValueError(f"release_time {release_time}: expected seconds > 0")
    for name, value in (("position", position), ("position_y", position_y)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} {value}: expected 0..1")
