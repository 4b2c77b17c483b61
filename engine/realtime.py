"""Real time: a sounddevice (PortAudio) output stream whose callback runs the signal chain, fed by MIDI input.

MIDI input never runs Python on a thread of its own: python-rtmidi's thread queues each message in C with
its timestamp, and the audio callback drains that queue at its start (:class:`MidiInput`, ``poll``). A thread
that entered Python per message would take the GIL from the audio callback once per message (the soak counted
a wait in ~37 % of the callbacks that way). ``push`` (any thread) still queues a message stamped now: the
hand-off is a ``collections.deque``, whose ``append`` and ``popleft`` are each atomic in CPython, so the audio
side never takes a lock; it is bounded (``maxlen``): a flood drops the oldest events instead of growing memory.

Live events are placed by the audio stream's own clock, with a constant latency of one block
(the usual plugin-host scheme). Each message carries its arrival time on the stream clock
(``Stream.time``, PortAudio's clock; under JACK the server's frame clock): ``push`` stamps it then; a
drained message gets ``anchor + elapsed``, where ``elapsed`` is its time since the input's first message by
rtmidi's own timestamps and ``anchor`` is the stream time of that first message, estimated like the origin
below: the last message drained by a callback arrived before the callback's start, so
``callback start - elapsed`` is never earlier than the anchor and the smallest value seen is kept. Each callback
gets that clock's time at its start (``time_info.currentTime``) and knows how many frames it has
rendered, which gives the stream time of frame 0; a callback that starts late only makes that
estimate larger, so the smallest value seen is kept (when every callback of a half second was more
than half a block late, frames were lost in an xrun: the estimate moves to that window's smallest).
An event stamped ``t`` is then given to the synth at frame ``round((t - origin) * fs) + block``:
one block after its arrival on the audio clock, whatever the jitter of the callbacks' start
(:func:`live_frame`), and sounds the synth's look-ahead later (``Synth.lookahead``: ``realtime_lookahead(period)``,
at least 128 samples, in `eigentone play`; docs/engine-semantics.md section 6). An event that arrives too late
for that is given at the start of the next block.

A MIDI file can also be played "live": its schedule is walked inside the callback by frame
count, exactly as the offline renderer does, so a recording taken from the callback is
sample-identical to ``eigentone render`` of the same file.

The callback writes into preallocated arrays and measures its own duration into a
preallocated ring of timings (ns) for percentiles.

A synth with an excite worker (engine/excite_worker.py) gets it woken by the callback's last call, and, once the
first callback has run, moved next to the callback's thread (its CPUs, SCHED_FIFO one step below it):
``worker_placement`` says what was done. Both keep the worker from holding the GIL when the callback needs it.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from eigentone.errors import EigentoneError
from engine.midi_file import MidiSchedule
from engine.signal_chain import SignalChain

MIDI_BACKENDS = ("LINUX_ALSA", "UNIX_JACK")
"""python-rtmidi APIs tried in order for MIDI input (ALSA sequencer, then JACK MIDI)."""


@contextlib.contextmanager
def no_garbage_collection() -> Iterator[None]:
    """No cyclic garbage collection while the block is run: what is alive is collected once and frozen (never
    scanned again), and collection stays off until the block ends, so none can start inside an audio callback (a
    collection pauses the thread that happens to allocate, for up to milliseconds with a large heap). Used by
    ``eigentone play`` and by the real-time benches, which time what play does."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


CPU_LATENCY_DEVICE = "/dev/cpu_dma_latency"
"""Linux's PM QoS request file: while a process holds it open with a value written, no CPU enters an idle state
slower to leave than that many microseconds."""


@contextlib.contextmanager
def cpu_wakeup_latency(microseconds: int = 0, device: str = CPU_LATENCY_DEVICE) -> Iterator[str]:
    """Hold a PM QoS request that CPUs wake within ``microseconds`` while the block runs (the usual low-latency
    audio setting, as in tuned's latency-performance profile); yields a one-line description of what was done.

    Why: an audio callback sleeps between periods. If the CPU idles deeply meanwhile (on a virtual machine the
    guest halts its vCPU and the host may run something else on it), the next callback starts on cold caches and
    a slower clock: measured on this project's 2-core KVM guest (haltpoll idle driver), a 128 voices x 256 modes
    block with the default effects cost ~340 us of thread CPU time after a 0.8 ms sleep and ~215 us with the
    request held at 0, the same as blocks run back to back. The price is power: the idle CPUs poll instead of
    halting. Not permitted (not root, no access to the device) or not Linux: nothing is requested, and the
    description says so. The request ends when the device is closed, at the end of the block."""
    try:
        fd = os.open(device, os.O_WRONLY)
    except OSError as exc:
        yield f"CPU wake-up latency: not requested ({device}: {exc.strerror or exc})"
        return
    try:
        try:
            os.write(fd, struct.pack("i", int(microseconds)))
            described = f"CPU wake-up latency: held at {int(microseconds)} us while running (PM QoS, {device})"
        except OSError as exc:
            described = f"CPU wake-up latency: not requested ({device}: {exc.strerror or exc})"
        yield described
    finally:
        os.close(fd)


def wakeup_latency_unless(idle: bool) -> contextlib.AbstractContextManager[str]:
    """:func:`cpu_wakeup_latency` at 0 us, or (``idle``: the user's ``--cpu-idle``) nothing requested."""
    if idle:
        return contextlib.nullcontext("CPU wake-up latency: not requested (--cpu-idle: CPUs may idle deeply)")
    return cpu_wakeup_latency(0)


class RealtimeEngine:
    """Plays a SignalChain on a PortAudio output device.

    ``schedule``: optional MIDI file events played from frame 0; ``record_s``: seconds of the
    output kept (preallocated) in ``recording`` (channels, samples).
    """

    def __init__(
        self,
        chain: SignalChain,
        *,
        sample_rate: int,
        block_size: int,
        max_voices: int,
        device: str | int | None = None,
        schedule: MidiSchedule | None = None,
        record_s: float = 0.0,
        timing_slots: int = 1 << 16,
    ):
        self.chain = chain
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.device = device
        self.schedule = schedule
        self.queue: collections.deque[tuple[float, int, int, int]] = collections.deque(maxlen=4096)  # (s, st, d1, d2)
        self.clock: Callable[[], float] = self._stream_time
        """Stream clock in seconds stamping MIDI arrivals (replaceable in tests, like ``time_info``)."""
        self.midi_latency = block_size
        """Frames from a live MIDI event's arrival (on the audio clock) to the frame it is given to the synth."""
        self.lookahead = getattr(chain.synth, "lookahead", 0)
        """Frames from an event given to the synth to its sound (the synth's look-ahead)."""
        self.origin = math.inf
        """Stream time (s) of frame 0, estimated from the callbacks (see the module doc)."""
        self._window = max(1, round(0.5 * sample_rate / block_size))  # callbacks in 0.5 s
        self._window_origin, self._window_callbacks = math.inf, 0
        chain.prepare(sample_rate, block_size, max_voices)
        self.durations_ns = np.zeros(timing_slots, np.int64)
        self.live_log = np.zeros((timing_slots, 3))
        """Per live event: (arrival stamp on the stream clock in s, frame it sounds at, the clock's origin then);
        ``live_events`` rows."""
        self.live_events = 0
        self.callbacks = 0
        self.xruns = 0
        self.frame = 0
        self.max_voices_seen = 0
        self.audio_thread = 0
        """Linux thread id of the audio callback (0 until its first call)."""
        self.worker_placement = ""
        """Where ``start`` put the synth's excite worker (ExciteWorker.follow's description; "" without a worker)."""
        self.recording = np.zeros((chain.channels, int(record_s * sample_rate)), np.float32)
        self.latency = getattr(chain, "latency", 0)
        """Samples the chain's output trails the events it is given (the synth's and the output guard's
        look-ahead). The recording leaves them out, so it lines up sample for sample with ``eigentone render``: its
        first ``frame - latency`` samples are filled."""
        self._events: list[tuple[int, int, int, int]] = []
        self._stream = None
        self._worker = getattr(chain.synth, "_worker", None)  # the synth's excite worker (engine/excite_worker.py)
        if self._worker is not None:
            self._worker.deferred = True  # woken at the end of each callback (ExciteWorker.wake)
        self.midi_in: MidiInput | None = None
        """MIDI input drained at the start of each callback (see the module doc), or None."""
        self._midi_elapsed = 0.0  # s from the input's first message to its latest, by rtmidi's timestamps
        self._midi_anchor = math.inf  # stream time (s) of the input's first message, estimated
        self._drained: list[tuple[float, int, int, int]] = []

    def push(self, status: int, data1: int, data2: int, stamp: float | None = None) -> None:
        """Queue a MIDI channel message (any thread), stamped with its arrival time.

        ``stamp``: arrival time on the stream clock (s, ``self.clock()``); None stamps it now.
        """
        self.queue.append((self.clock() if stamp is None else stamp, status, data1, data2))

    def _stream_time(self) -> float:
        """The output stream's clock (PortAudio ``Pa_GetStreamTime``), s; -inf before the stream exists."""
        stream = self._stream
        return stream.time if stream is not None else -math.inf

    def _callback(self, outdata, frames, time_info, status) -> None:
        started = time.perf_counter_ns()
        if not self.audio_thread:
            self.audio_thread = threading.get_native_id()
        if status.output_underflow or status.output_overflow:
            self.xruns += 1
        rate = self.sample_rate
        origin = time_info.currentTime - self.frame / rate  # >= the true value: this callback may have started late
        self.origin = min(self.origin, origin)
        self._window_origin = min(self._window_origin, origin)
        self._window_callbacks += 1
        if self._window_callbacks == self._window:
            if self._window_origin > self.origin + 0.5 * self.block_size / rate:
                self.origin = self._window_origin  # every callback of the window was late: frames were lost (xrun)
            self._window_origin, self._window_callbacks = math.inf, 0
        if self.midi_in is not None:
            self._drain(time_info.currentTime)
        events = self._events
        queue = self.queue
        done = 0
        while done < frames:  # one pass unless the host asks for more than the prepared block size
            n = min(self.block_size, frames - done)
            events.clear()
            ordered = True
            latest = 0
            first = self.frame
            while queue:
                message = queue[0]
                frame = live_frame(message[0], self.origin, rate, self.midi_latency)
                if frame >= first + n:
                    break  # sounds in a later block
                queue.popleft()
                offset = max(frame - first, 0)  # too late: as soon as possible
                ordered = ordered and offset >= latest
                latest = offset
                events.append((offset, message[1], message[2], message[3]))
                if self.live_events < len(self.live_log):
                    self.live_log[self.live_events] = (message[0], first + offset + self.lookahead, self.origin)
                    self.live_events += 1
            if self.schedule is not None:
                live = len(events)
                events.extend(self.schedule.block_events(self.frame, n))
                ordered = ordered and (live == 0 or live == len(events))
            if not ordered:
                events.sort(key=_offset)  # stable: live before scheduled at the same offset
            block = self.chain.process(events, n)
            outdata[done : done + n] = block.T
            start = self.frame - self.latency  # the recording is on the song's timeline (see ``latency``)
            skip = min(max(-start, 0), n)
            room = self.recording.shape[1] - (start + skip)
            if room > 0 and skip < n:
                kept = min(room, n - skip)
                self.recording[:, start + skip : start + skip + kept] = block[:, skip : skip + kept]
            self.frame += n
            done += n
        voices = self.chain.synth.voices
        self.max_voices_seen = max(self.max_voices_seen, voices)
        self.durations_ns[self.callbacks % len(self.durations_ns)] = time.perf_counter_ns() - started
        self.callbacks += 1
        if self._worker is not None:
            self._worker.wake()  # last: the worker starts when this callback no longer needs the GIL

    def _drain(self, now: float) -> None:
        """Queue the MIDI input's waiting channel messages, stamped on the stream clock (``now``: this callback's
        start on it; see the module doc)."""
        drained = self._drained
        drained.clear()
        elapsed = self._midi_elapsed
        while True:
            event = self.midi_in.poll()
            if event is None:
                break
            elapsed += event[1]
            message = channel_message(event[0])
            if message is not None:
                drained.append((elapsed, message[0], message[1], message[2]))
        if elapsed == self._midi_elapsed and not drained:
            return
        self._midi_elapsed = elapsed
        self._midi_anchor = min(self._midi_anchor, now - elapsed)
        for stamp, status, data1, data2 in drained:
            self.queue.append((self._midi_anchor + stamp, status, data1, data2))

    def start(self) -> None:
        """Open and start the output stream (EigentoneError for a bad device or a refused rate)."""
        import sounddevice as sd

        try:
            sd.check_output_settings(device=self.device, channels=self.chain.channels, samplerate=self.sample_rate,
                                     dtype="float32")
        except ValueError as exc:
            raise EigentoneError(f"output device {self.device!r}: {exc}") from None
        except sd.PortAudioError as exc:
            raise EigentoneError(
                f"output device {self.device!r} refuses {self.sample_rate} Hz, {self.chain.channels} channels ({exc})"
            ) from None
        try:
            self._stream = sd.OutputStream(samplerate=self.sample_rate, blocksize=self.block_size, device=self.device,
                                           channels=self.chain.channels, dtype="float32", callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise EigentoneError(f"could not open output device {self.device!r} ({exc})") from None
        self.worker_placement = self._place_worker()

    def _place_worker(self) -> str:
        """Once the callback has run, move the synth's excite worker next to it (``ExciteWorker.follow``: the
        callback's CPUs, SCHED_FIFO one step below it); returns what was done ("" without a worker)."""
        worker = self._worker
        if worker is None:
            return ""
        deadline = time.monotonic() + 2.0
        while not self.audio_thread and time.monotonic() < deadline:
            time.sleep(0.002)
        if not self.audio_thread:
            return "excite worker: left where it was (no audio callback within 2 s)"
        return worker.follow(self.audio_thread)

    def stop(self) -> None:
        """Stop and close the stream (PortAudio stays initialised; see ``terminate_portaudio``)."""
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    @property
    def cpu_load(self) -> float:
        """PortAudio's estimate of the callback's share of the available time (0..1)."""
        return float(self._stream.cpu_load) if self._stream is not None else 0.0

    def timings(self) -> np.ndarray:
        """Callback durations recorded so far, in seconds."""
        n = min(self.callbacks, len(self.durations_ns))
        return self.durations_ns[:n] / 1e9

    def live_latencies(self) -> np.ndarray:
        """(live_events,) int: frames from each live event's arrival on the stream clock to the frame it sounds at
        (``midi_latency + lookahead`` unless it arrived too late for that)."""
        stamps, frames, origins = self.live_log[: self.live_events].T
        return frames.astype(np.int64) - np.round((stamps - origins) * self.sample_rate).astype(np.int64)

    def percentiles(self, *qs: float) -> list[float]:
        """Callback-duration percentiles as a fraction of the block budget (block_size / sample_rate)."""
        times = self.timings()
        if not len(times):
            return [0.0 for _ in qs]
        budget = self.block_size / self.sample_rate
        return [float(np.percentile(times, q)) / budget for q in qs]


def live_frame(stamp: float, origin: float, sample_rate: float, latency: int) -> int:
    """Stream frame at which a live MIDI event stamped ``stamp`` (s, stream clock) sounds: ``latency`` frames
    after its arrival, ``round((stamp - origin) * sample_rate) + latency``, with ``origin`` the stream time of
    frame 0 (s). A stamp from before the stream existed (-inf) gives -1: played at once.

    >>> live_frame(10.001, 10.0, 48000, 64)   # 1 ms after frame 0's time, one 64-frame block of latency
    112
    """
    if not math.isfinite(stamp) or not math.isfinite(origin):
        return -1
    return round((stamp - origin) * sample_rate) + latency


def _offset(event: tuple[int, int, int, int]) -> int:
    return event[0]


def output_device(name: str | None) -> str | int | None:
    """A PortAudio output device from a name (substring) or index; EigentoneError listing devices if unknown."""
    import sounddevice as sd

    if name is None:
        return None
    target: str | int = int(name) if name.isdigit() else name
    try:
        sd.query_devices(target, "output")
    except (ValueError, sd.PortAudioError):
        outputs = [d["name"] for d in sd.query_devices() if d["max_output_channels"] > 0]
        raise EigentoneError(
            f"unknown output device {name!r} (available: {', '.join(outputs) if outputs else 'none'})"
        ) from None
    return target


def channel_message(data: Sequence[int]) -> tuple[int, int, int] | None:
    """(status, data1, data2) of one MIDI channel message given as raw bytes, data2 = 0 for the two-byte ones
    (program change, channel pressure); None for anything else (system messages, a wrong length, a data byte
    >= 0x80), which the engine ignores.

    >>> channel_message([0x91, 60, 100]), channel_message([0xC0, 5]), channel_message([0xF8])
    ((145, 60, 100), (192, 5, 0), None)
    """
    status = data[0]
    if status < 0x80 or status >= 0xF0:
        return None
    if 0xC0 <= status < 0xE0:
        return (status, data[1], 0) if len(data) == 2 and data[1] < 0x80 else None
    return (status, data[1], data[2]) if len(data) == 3 and data[1] < 0x80 and data[2] < 0x80 else None


class MidiInput:
    """An open python-rtmidi input port. ``poll()`` -> (raw bytes, seconds since the previous message) or None:
    the next message rtmidi queued (it queues them in C, with timestamps, on its own thread, so no Python runs
    per message outside the audio callback that drains it). ``name``: the port's name; ``close()`` when done."""

    def __init__(self, midi, name: str):
        self.name = name
        self._midi = midi
        self.poll = midi.get_message

    def close(self) -> None:
        self._midi.close_port()
        self._midi.delete()


def open_midi_input(port: str | None) -> MidiInput:
    """Open a MIDI input (ALSA sequencer, else JACK MIDI) to be polled (``RealtimeEngine.midi_in``).

    ``port``: name or substring of an existing port; None opens a virtual input named "eigentone".
    System messages (clock, active sensing, sysex) are dropped by rtmidi before they reach Python.
    Returns the open :class:`MidiInput` (close it when done). EigentoneError if nothing can be opened.
    """
    import rtmidi

    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    seen: list[str] = []
    problems: list[str] = []
    apis = [api for api in MIDI_BACKENDS if api != "LINUX_ALSA" or os.path.exists("/dev/snd/seq")]
    for api in apis:
        rtapi = getattr(rtmidi, f"API_{api}")
        if rtapi not in rtmidi.get_compiled_api():
            problems.append(f"{api}: not compiled into python-rtmidi")
            continue
        midi = None
        try:
            midi = rtmidi.MidiIn(rtapi=rtapi)
            if port is None:
                midi.open_virtual_port("eigentone")
                return MidiInput(midi, "eigentone")
            names = midi.get_ports()
            seen += names
            match = next((n for n in names if n == port), None) or next((n for n in names if port in n), None)
            if match is not None:
                midi.open_port(names.index(match))
                return MidiInput(midi, match)
        except Exception as exc:  # noqa: BLE001 - rtmidi raises its own types when an API has no server/device
            problems.append(f"{api}: {str(exc).strip() or type(exc).__name__}")
        if midi is not None:
            midi.delete()
    if port is None:
        raise EigentoneError(f"could not open a MIDI input ({'; '.join(problems)})")
    raise EigentoneError(f"MIDI input {port!r} not found (available: {', '.join(seen) if seen else 'none'})")


def wait(seconds: float | None, stop: threading.Event, tick: Callable[[], None], period: float = 0.25) -> None:
    """Call ``tick`` every ``period`` s until ``seconds`` elapsed (None: until ``stop`` is set)."""
    end = None if seconds is None else time.monotonic() + seconds
    while not stop.is_set():
        remaining = period if end is None else min(period, end - time.monotonic())
        if remaining <= 0:
            break
        stop.wait(remaining)
        tick()
