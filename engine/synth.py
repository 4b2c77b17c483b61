"""The polyphonic synthesiser: ``prepare`` -> ``process(events, n_frames)`` -> ``release``.

The same ``process`` serves the real-time callback (engine/realtime.py), offline MIDI
rendering (engine/render.py) and a plugin host. Events are raw MIDI channel messages
with a sample offset inside the call::

    events: sequence of (offset, status, data1, data2), sorted by offset, 0 <= offset < n_frames

and are applied sample-accurately (an offset past the call's end is applied at its last sample, an
offset below the previous event's at the previous event's). docs/engine-semantics.md is the full
specification; the native plugin core follows it sample for sample.

Internal blocks: block-rate work happens every ``BLOCK`` (64) samples of the stream, counted from
the first ``process`` call, whatever ``n_frames`` the caller uses: at a block start the readout
graph (if any) and the pole modulation (if declared) are evaluated for the sounding voices; at a
block end the level bounds are updated and silent voices freed. So the output does not depend on
how the stream is cut into calls. Note-ons of a call share one batched excite call (a pure function
of the controls in effect at each note-on's own offset).

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

Player options (keyword arguments; the defaults reproduce the bundle as exported): ``gain``,
``bend_range``, ``release_time`` (T60 after note-off, default the bundle's), ``decay_scale`` (x every
mode's T60), ``brightness`` (spectral tilt of the readout), ``position``/``position_y``.

Safety: a voice whose excite outputs or samples are NaN/Inf is muted and reported once in
``faults``; voices whose level bound falls below -100 dBFS (and whose attack has ended) are freed;
the mix goes through a peak limiter (ceiling -0.2 dBFS) unless ``limiter=False``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence

import numpy as np

from engine.instrument import Instrument
from engine.modal_bank import ModalBank, limit
from engine.voices import VoicePool

Event = tuple[int, int, int, int]
"""(offset in samples inside the block, MIDI status byte, data1, data2)."""

SILENCE = 1e-5
"""-100 dBFS: voices whose level bound (times the output gain) is below this are freed."""

CUT_SIGMA = math.log(1000.0) / 0.005
"""Decay rate (1/s) of a voice cut by mono mode or stolen: 60 dB in 5 ms."""

BLOCK = 64
"""Internal block (samples): block-rate work every BLOCK samples from the stream start, at every sample rate."""

DECAY_SCALE_RANGE = (0.25, 4.0)
BRIGHTNESS_RANGE = (-1.0, 1.0)


def release_sigma(release_time: float) -> float:
    """Decay rate in 1/s of a release lasting ``release_time`` seconds to -60 dB (T60)."""
    return math.log(1000.0) / max(release_time, 1e-3)


def fade_slots(max_voices: int) -> int:
    """Spare slots in which stolen voices fade out: a quarter of ``max_voices``, at least 4."""
    return max(4, max_voices // 4)


class _Part:
    """One instrument with its voice slots and modal bank."""

    def __init__(self, synth: Synth, instrument: Instrument, sample_rate: float, max_voices: int):
        self.synth = synth
        self.instrument = instrument
        self.pool = VoicePool(max_voices, fade_slots(max_voices) if synth.steal_fade else 0)
        self.bank = ModalBank(self.pool.slots, instrument.modes, sample_rate, BLOCK, instrument.modulation,
                              instrument.output_gain, attack_samples=instrument.attack_samples,
                              attack_rate=instrument.attack_rate, decay_scale=synth.decay_scale,
                              brightness=synth.brightness)
        release_time = instrument.release_time if synth.release_time is None else synth.release_time
        self.release_sigma = release_sigma(release_time)
        self.controls = np.zeros((16, 4), np.float32)
        self.pending = 0
        self.cursor = 0
        self.excited: dict[str, np.ndarray] = {}
        self.finite = np.ones(0, np.bool_)
        self.selection = np.zeros(self.pool.slots, np.int32)

    def warm_up(self) -> None:
        """Pay first-call costs here, not on the audio thread: kernel loading, and onnxruntime's first run
        for each batch size (up to ~4 ms for a new shape) of excite (1..32 note-ons) and readout (1..max_voices)."""
        self.bank.warm_up()
        rows = np.tile(np.array([[60.0, 0.5, self.synth.position, self.synth.position_y]], np.float32), (32, 1))
        for n in range(1, 33):
            self.instrument.excite_raw(rows[:n])
        if self.instrument.has_readout:
            for n in range(1, self.pool.slots + 1):
                self.instrument.readout(self.bank.zbuf[:n])

    def queue_note(self, note: int, velocity: int, position: float, position_y: float) -> None:
        """Add a note-on of this call with the controls in effect at its offset (excited in ``excite_queued``)."""
        if self.pending == len(self.controls):
            self.controls = np.concatenate([self.controls, np.zeros_like(self.controls)])
        row = self.controls[self.pending]
        row[0] = note
        row[1] = velocity / 127.0
        row[2] = position
        row[3] = position_y
        self.pending += 1

    def excite_queued(self) -> None:
        """One batched excite call for the note-ons queued in this call."""
        self.cursor = 0
        if self.pending:
            self.excited = self.instrument.excite_raw(self.controls[: self.pending])
            rows = self.pending
            self.finite = np.ones(rows, np.bool_)
            for value in self.excited.values():
                self.finite &= np.isfinite(value.reshape(rows, -1)).all(axis=1)
            self.pending = 0

    def begin_block(self) -> None:
        """Block-rate work at an internal block start: readout graph and pole modulation of the sounding voices."""
        pool, bank = self.pool, self.bank
        if pool.count:
            if self.instrument.has_readout:
                bank.apply_readout(self.instrument, pool.active, pool.count)
            if self.instrument.modulation:
                bank.poles(pool.active, pool.count, new_energy=True)
            bank.start_block(pool.active, pool.count)

    def note_on(self, channel: int, note: int) -> None:
        """Start the next queued note of this call (its excite row was computed in ``excite_queued``)."""
        row = self.cursor
        self.cursor += 1
        self._start(channel, note, self.excited, row, bool(self.finite[row]))

    def strike_now(self, channel: int, note: int, velocity: int) -> None:
        """Start a note that was not queued (mono mode returning to a held key): one extra excite call."""
        controls = np.array([[note, velocity / 127.0, self.synth.position, self.synth.position_y]], np.float32)
        outputs = self.instrument.excite_raw(controls)
        finite = all(bool(np.isfinite(value).all()) for value in outputs.values())
        self._start(channel, note, outputs, 0, finite)

    def _start(self, channel: int, note: int, outputs: dict[str, np.ndarray], row: int, finite: bool) -> None:
        if not finite:
            self.synth.report("non-finite excite output", self.instrument.name, channel, note)
            return
        pool = self.pool
        if self.synth.mono:
            n = pool.on_channel(channel, self.selection)
            for j in range(n):
                self._release(int(self.selection[j]), CUT_SIGMA)
        slot, stolen = pool.allocate(self.bank.level)
        if stolen >= 0:
            self._release(stolen, CUT_SIGMA)
        pool.start(slot, note, channel)
        self.bank.load(slot, outputs, row, self.synth.bend_factor[channel], note, self.synth.block_offset)

    def note_off(self, channel: int, note: int) -> None:
        pool = self.pool
        for j in range(pool.count - 1, -1, -1):
            slot = int(pool.active[j])
            if pool.channel[slot] == channel and pool.note[slot] == note and pool.key_down[slot]:
                pool.key_down[slot] = False
                if self.synth.sustain[channel]:
                    pool.sustained[slot] = True
                else:
                    self._release(slot, self.release_sigma)

    def _release(self, slot: int, sigma: float) -> None:
        pool = self.pool
        pool.key_down[slot] = False
        pool.sustained[slot] = False
        pool.releasing[slot] = True
        self.bank.release(slot, sigma, self.synth.block_offset)

    def pedal_up(self, channel: int) -> None:
        n = self.pool.on_channel(channel, self.selection)
        for j in range(n):
            slot = int(self.selection[j])
            if self.pool.sustained[slot]:
                self._release(slot, self.release_sigma)

    def all_notes_off(self, channel: int) -> None:
        n = self.pool.on_channel(channel, self.selection)
        for j in range(n):
            slot = int(self.selection[j])
            if not self.pool.releasing[slot]:
                self._release(slot, self.release_sigma)

    def all_sound_off(self, channel: int) -> None:
        n = self.pool.on_channel(channel, self.selection)
        for j in range(n):
            self.pool.free(int(self.selection[j]))

    def bend(self, channel: int, factor: float) -> None:
        n = self.pool.on_channel(channel, self.selection)
        if n:
            self.bank.bend(self.selection, n, factor, self.synth.block_offset)

    def render(self, out: np.ndarray, start: int, stop: int) -> None:
        if self.pool.count:
            self.bank.advance(self.pool.active, self.pool.count, out, start, stop)

    def end_block(self, threshold: float) -> None:
        """Internal block end: level bounds, flush silent modes, free ended voices (reporting bad ones)."""
        pool, bank = self.pool, self.bank
        if not pool.count:
            return
        n_ended = bank.settle(pool.active, pool.count, threshold)
        for j in range(n_ended):
            slot = int(bank.ended[j])
            if bank.bad[slot]:
                self.synth.report("non-finite samples", self.instrument.name, int(pool.channel[slot]), int(pool.note[slot]))
            pool.free(slot)


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
    * ``mono``, ``limiter``, ``steal_fade``: see the module doc.

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
    ):
        if isinstance(instruments, Instrument):
            channel_map = {ch: instruments for ch in range(16)}
        elif isinstance(instruments, Mapping):
            channel_map = dict(instruments)
        else:
            instruments = list(instruments)
            channel_map = {ch: instruments[ch] if ch < len(instruments) else instruments[0] for ch in range(16)}
        check_options(release_time=release_time, decay_scale=decay_scale, brightness=brightness, position=position,
                      position_y=position_y)
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
        self.sample_rate = float(sample_rate)
        self.block_size = int(block_size)
        self.max_voices = int(max_voices)
        parts: dict[int, _Part] = {}
        self._part_of: list[_Part | None] = [None] * 16
        for channel, instrument in self.channel_map.items():
            if id(instrument) not in parts:
                parts[id(instrument)] = _Part(self, instrument, sample_rate, max_voices)
            self._part_of[channel] = parts[id(instrument)]
        self.parts = list(parts.values())
        for part in self.parts:
            part.warm_up()
        self.sustain = [False] * 16
        self.held: list[list[tuple[int, int]]] = [[] for _ in range(16)]  # mono mode: (note, velocity) stack
        self.bend_factor = [1.0] * 16
        self._mix = np.zeros(block_size, np.float32)
        self._limiter_gain = np.ones(1)
        self._release_coef = 1.0 - math.exp(-1.0 / (0.05 * sample_rate))  # 50 ms limiter release
        self.frames = 0
        self.block_offset = 0  # sample of the internal block at which the event being applied happens
        self._begun = -1  # index of the last internal block whose start work was done
        self.prepared = True

    def release(self) -> None:
        """Free the buffers allocated by ``prepare``."""
        self.parts = []
        self._mix = np.zeros(0, np.float32)
        self.prepared = False

    @property
    def voices(self) -> int:
        """Sounding voices across all instruments (stolen voices still fading out included)."""
        return sum(part.pool.count for part in self.parts)

    def report(self, problem: str, instrument: str, channel: int, note: int) -> None:
        """Record a muted voice once per (problem, instrument, channel, note) in ``faults``."""
        key = (problem, instrument, channel, note)
        if key not in self._reported:
            self._reported.add(key)
            self.faults.append(key)

    def process(self, events: Sequence[Event], n_frames: int) -> np.ndarray:
        """Render the next ``n_frames`` samples of the stream: (n_frames,) float32 mono, a view valid until the
        next call.

        ``events`` as described in the module doc; ``n_frames`` <= the prepared block size.
        """
        if n_frames > self.block_size:
            raise ValueError(f"process: n_frames {n_frames} exceeds the prepared block size {self.block_size}")
        mix = self._mix[:n_frames]
        mix[:] = 0.0
        self._threshold = SILENCE / max(abs(self.gain), 1e-12)
        part_of = self._part_of
        position = self.position
        for event in events:  # note-on controls as in effect at each note-on's offset
            kind = event[1] & 0xF0
            if kind == 0x90 and event[3] > 0:
                part = part_of[event[1] & 0x0F]
                if part is not None:
                    part.queue_note(event[2], event[3], position, self.position_y)
            elif kind == 0xB0 and event[2] == 1:
                position = event[3] / 127.0
        for part in self.parts:
            part.excite_queued()
        now = 0
        last = max(n_frames - 1, 0)
        for event in events:
            offset = min(max(int(event[0]), now), last)
            self._render(mix, now, offset)
            now = offset
            self._begin_block_if_due(now)
            self.block_offset = (self.frames + now) % BLOCK
            self._apply(event[1], event[2], event[3])
        self._render(mix, now, n_frames)
        if self.gain != 1.0:
            mix *= self.gain
        if self.limiter:
            limit(mix, n_frames, self._limiter_gain, 0.977, self._release_coef)
        self.frames += n_frames
        return mix

    def _begin_block_if_due(self, now: int) -> None:
        """Do the block-start work if stream frame ``self.frames + now`` starts an internal block not yet begun."""
        frame = self.frames + now
        if frame % BLOCK == 0 and frame // BLOCK != self._begun:
            self._begun = frame // BLOCK
            for part in self.parts:
                part.begin_block()

    def _render(self, mix: np.ndarray, start: int, stop: int) -> None:
        """Render mix[start:stop] in pieces that do not cross internal block boundaries; block ends settle."""
        while start < stop:
            self._begin_block_if_due(start)
            piece = min(stop, start + BLOCK - (self.frames + start) % BLOCK)
            for part in self.parts:
                part.render(mix, start, piece)
            start = piece
            if (self.frames + start) % BLOCK == 0:
                for part in self.parts:
                    part.end_block(self._threshold)

    def _apply(self, status: int, data1: int, data2: int) -> None:
        kind, channel = status & 0xF0, status & 0x0F
        part = self._part_of[channel]
        if kind == 0x90 and data2 > 0:
            if part is not None:
                if self.mono:
                    self._hold(channel, data1, data2)
                part.note_on(channel, data1)
        elif kind == 0x80 or kind == 0x90:
            if part is not None:
                if self.mono and self._return_to_held(part, channel, data1):
                    return
                part.note_off(channel, data1)
        elif kind == 0xE0:
            semitones = ((data2 << 7 | data1) - 8192) / 8192.0 * self.bend_range
            self.bend_factor[channel] = 2.0 ** (semitones / 12.0)
            for each in self.parts:
                each.bend(channel, self.bend_factor[channel])
        elif kind == 0xB0:
            self._control(channel, data1, data2)

    def _hold(self, channel: int, note: int, velocity: int) -> None:
        stack = self.held[channel]
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == note:
                del stack[i]
        stack.append((note, velocity))

    def _return_to_held(self, part: _Part, channel: int, note: int) -> bool:
        """Mono mode note-off: True if it made the channel return to a still-held key."""
        stack = self.held[channel]
        was_sounding = bool(stack) and stack[-1][0] == note
        self.held[channel] = stack = [entry for entry in stack if entry[0] != note]
        if not (was_sounding and stack) or self.sustain[channel]:
            return False
        part.strike_now(channel, *stack[-1])
        return True

    def _control(self, channel: int, number: int, value: int) -> None:
        if number == 1:
            self.position = value / 127.0
        elif number == 64:
            down = value >= 64
            was_down, self.sustain[channel] = self.sustain[channel], down
            if was_down and not down:
                for part in self.parts:
                    part.pedal_up(channel)
        elif number == 120:
            self.held[channel] = []
            for part in self.parts:
                part.all_sound_off(channel)
        elif number == 121:
            self._apply(0xE0 | channel, 0, 64)
            self._control(channel, 64, 0)
        elif number == 123:
            self.held[channel] = []
            for part in self.parts:
                part.all_notes_off(channel)


def check_options(*, release_time: float | None = None, decay_scale: float = 1.0, brightness: float = 0.0,
                  position: float = 0.2, position_y: float = 0.37) -> None:
    """ValueError naming the first player option out of its range (see :class:`Synth`)."""
    lo, hi = DECAY_SCALE_RANGE
    if not lo <= decay_scale <= hi:
        raise ValueError(f"decay_scale {decay_scale}: expected {lo}..{hi}")
    lo, hi = BRIGHTNESS_RANGE
    if not lo <= brightness <= hi:
        raise ValueError(f"brightness {brightness}: expected {lo}..{hi}")
    if release_time is not None and not release_time > 0:
        raise ValueError(f"release_time {release_time}: expected seconds > 0")
    for name, value in (("position", position), ("position_y", position_y)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} {value}: expected 0..1")
