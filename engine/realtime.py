"""Real time: a sounddevice (PortAudio) output stream whose callback runs the signal chain, fed by MIDI input.

Thread hand-off, MIDI thread -> audio thread: a ``collections.deque``. In CPython
``deque.append`` (producer: the MIDI callback thread) and ``deque.popleft`` (consumer: the
audio callback) are each atomic with respect to each other (single bytecode-level C calls,
documented thread-safe), so the audio side never takes a lock; the deque is bounded
(``maxlen``), so a flood of MIDI drops the oldest events instead of growing memory.
Live events land sample-accurately with a constant latency of one block period (the usual
plugin-host scheme): the MIDI thread stamps each message with ``time.perf_counter_ns`` on
arrival, and the callback, entered at time ``t_entry`` for ``frames`` samples, places an event
stamped ``t`` at offset ``round((t - (t_entry - frames / fs)) * fs)`` of the block it renders
(:func:`live_offset`): every event sounds exactly one block period after it arrived. Events
that arrive too late for that (a late callback) land at offset 0, events stamped after the
callback's entry at the last sample.

A MIDI file can also be played "live": its schedule is walked inside the callback by frame
count, exactly as the offline renderer does, so a recording taken from the callback is
sample-identical to ``eigentone render`` of the same file.

The callback allocates only what cannot be avoided in Python (the event tuples, the
onnxruntime/pedalboard outputs), writes into preallocated arrays, and measures its own
duration into a preallocated ring of timings (ns) for percentiles.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable

import numpy as np

from eigentone.errors import EigentoneError
from engine.midi_file import MidiSchedule
from engine.signal_chain import SignalChain

MIDI_BACKENDS = ("LINUX_ALSA", "UNIX_JACK")
"""python-rtmidi APIs tried in order for MIDI input (ALSA sequencer, then JACK MIDI)."""


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
        self.queue: collections.deque[tuple[int, int, int, int]] = collections.deque(maxlen=4096)  # (ns, status, d1, d2)
        self.clock: Callable[[], int] = time.perf_counter_ns
        """Monotonic clock in ns stamping MIDI arrivals and callback entries (replaceable in tests)."""
        chain.prepare(sample_rate, block_size, max_voices)
        self.durations_ns = np.zeros(timing_slots, np.int64)
        self.callbacks = 0
        self.xruns = 0
        self.frame = 0
        self.max_voices_seen = 0
        self.recording = np.zeros((chain.channels, int(record_s * sample_rate)), np.float32)
        self.latency = getattr(chain, "latency", 0)
        """Samples the chain's output trails the synth (the output guard's look-ahead). The recording leaves them
        out, so it lines up sample for sample with ``eigentone render``: its first ``frame - latency`` samples
        are filled."""
        self._events: list[tuple[int, int, int, int]] = []
        self._stream = None

    def push(self, status: int, data1: int, data2: int, stamp_ns: int | None = None) -> None:
        """Queue a MIDI channel message (any thread), stamped with its arrival time.

        ``stamp_ns``: arrival time on the ``time.perf_counter_ns`` clock (ns); None stamps it now.
        """
        self.queue.append((self.clock() if stamp_ns is None else stamp_ns, status, data1, data2))

    def _callback(self, outdata, frames, time_info, status) -> None:
        started = self.clock()
        if status.output_underflow or status.output_overflow:
            self.xruns += 1
        events = self._events
        queue = self.queue
        rate = self.sample_rate
        previous_start = started - frames * 1_000_000_000 // rate  # the callback time one block earlier (ns)
        done = 0
        while done < frames:  # one pass unless the host asks for more than the prepared block size
            n = min(self.block_size, frames - done)
            last = done + n == frames
            events.clear()
            ordered = True
            latest = 0
            while queue:
                message = queue[0]
                offset = live_offset(message[0], previous_start, rate, frames) - done
                if offset >= n and not last:
                    break  # belongs to a later sub-block of this callback
                queue.popleft()
                offset = min(max(offset, 0), n - 1)
                ordered = ordered and offset >= latest
                latest = offset
                events.append((offset, message[1], message[2], message[3]))
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
        self.durations_ns[self.callbacks % len(self.durations_ns)] = self.clock() - started
        self.callbacks += 1

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

    def percentiles(self, *qs: float) -> list[float]:
        """Callback-duration percentiles as a fraction of the block budget (block_size / sample_rate)."""
        times = self.timings()
        if not len(times):
            return [0.0 for _ in qs]
        budget = self.block_size / self.sample_rate
        return [float(np.percentile(times, q)) / budget for q in qs]


def live_offset(stamp_ns: int, previous_start_ns: int, sample_rate: int, n_frames: int) -> int:
    """Sample offset, in [0, n_frames), at which a live MIDI event lands in the current block.

    ``stamp_ns``: the event's arrival time (ns, ``time.perf_counter_ns`` clock); ``previous_start_ns``:
    the callback entry time minus one block period (ns), so the event sounds exactly one block period
    after arriving. Too late (arrived before ``previous_start_ns``): 0; stamped after the callback's
    entry: ``n_frames - 1``.

    >>> live_offset(1_000_000, 0, 48000, 64)   # 1 ms after the previous block start -> sample 48
    48
    """
    offset = ((stamp_ns - previous_start_ns) * sample_rate + 500_000_000) // 1_000_000_000
    return min(max(offset, 0), n_frames - 1)


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


def open_midi_input(port: str | None, on_message: Callable[[int, int, int, int], None]):
    """Open a MIDI input (ALSA sequencer, else JACK MIDI) calling ``on_message(status, d1, d2, stamp_ns)``.

    ``stamp_ns``: the message's arrival time, ``time.perf_counter_ns()`` taken first thing in the MIDI thread.

    ``port``: name or substring of an existing port; None opens a virtual input named "eigentone".
    Returns the open mido port (close it when done). EigentoneError if nothing can be opened.
    """
    import mido

    os.environ.setdefault("JACK_NO_START_SERVER", "1")

    def callback(message) -> None:
        stamp = time.perf_counter_ns()
        data = message.bytes()
        if len(data) == 3 and 0x80 <= data[0] < 0xF0:
            on_message(data[0], data[1], data[2], stamp)
        elif len(data) == 2 and 0xC0 <= data[0] < 0xE0:
            on_message(data[0], data[1], 0, stamp)

    seen: list[str] = []
    problems: list[str] = []
    apis = [api for api in MIDI_BACKENDS if api != "LINUX_ALSA" or os.path.exists("/dev/snd/seq")]
    for api in apis:
        backend = mido.Backend(f"mido.backends.rtmidi/{api}", load=True)
        try:
            if port is None:
                return backend.open_input("eigentone", virtual=True, callback=callback)
            names = backend.get_input_names()
            seen += names
            match = next((n for n in names if n == port), None) or next((n for n in names if port in n), None)
            if match is not None:
                return backend.open_input(match, callback=callback)
        except Exception as exc:  # noqa: BLE001 - rtmidi raises its own types when an API has no server/device
            problems.append(f"{api}: {str(exc).strip() or type(exc).__name__}")
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
