"""`eigentone bench soak`: minutes of real-time play under a MIDI flood on a JACK server, beside a do-nothing client.

The command starts its own JACK server (dummy backend: a sound-card-free clock that drives real callbacks),
then plays two phases of ``--seconds`` each through PortAudio on that server, with the same MIDI flood
arriving over JACK MIDI from a separate process (chords, sustain pedal, pitch-bend sweeps, sweeps over all 128
notes):

1. baseline: a callback that does nothing but write silence (and drains the same MIDI input);
2. engine: ``eigentone play``'s real-time engine (RealtimeEngine + SignalChain with the default effects
   chain and the output guard) at ``--block`` samples per callback, with its excite worker thread (look-ahead
   ``engine.synth.realtime_lookahead(--block)``); the worker's CPU time and the note-ons it did not serve in
   time (excited in the callback instead) are printed.

The flood is sent by a separate process (as a keyboard or a sequencer would be), so no thread of the
bench itself competes with the audio callback for Python's GIL.

Every xrun is attributed to a cause from per-callback evidence, because on a shared machine the raw
counts of two phases differ by luck (the host stalls when it likes). PortAudio reports an xrun on a later
callback than the late cycle (JACK notifies its clients from a non-real-time thread), so each xrun
looks back over the callbacks of the ``ATTRIBUTION_WINDOW`` seconds before it and is charged to:

* **engine, too slow**: a callback there used more *CPU time* than the period;
* **waited**: a callback there took longer than the period in wall time, used less CPU time than the period,
  and made a voluntary context switch: it waited, in practice for Python's GIL, which the callback gives up
  inside onnxruntime and pedalboard and another thread running Python (the excite worker) can take then
  (printed: how many callbacks waited at all; a sleep or a lock taken in the callback would land here too);
* **preempted**: a callback there took longer than the period in wall time but used less CPU time than the
  period and never waited: the OS or the hypervisor took the CPU from it;
* **entered late**: no callback there overran in its own time, but one entered our Python code so late that,
  counted from PortAudio's call, it ended after the period: entry delay + wall time > the period. The entry delay
  is the time from PortAudio's call (its ``time_info.currentTime``, which PortAudio's JACK host API takes from
  ``jack_frame_time`` just before it calls sounddevice's callback) to the first line of our wrapper, read on the
  same JACK frame clock (:class:`JackClock`), less the phase's usual shortest (sounddevice's own per-call work,
  the same in every call; :meth:`CallbackLog.entry_delays`). A wait for the GIL before our code runs shows
  there: sounddevice's cffi callback must take the GIL first, and while another thread of the process holds it
  (the excite worker, the main thread) the callback starts late; so does a host stall in that window (the
  baseline measures those). Resolution: one frame (21 us at 48 kHz).
* **woke late**: none of the above, but a callback there ended after its cycle: the frames since the JACK cycle
  began when our wrapper's first line ran (``jack_frames_since_cycle_start``: the client thread's late wake-up,
  PortAudio and the entry delay together) + its wall time > the period. Only a callback that runs a large part
  of the period can be pushed over this way: the do-nothing baseline's callbacks are too short.
* **outside the callback**: none of the above: the server's timer ran late or another client was late. The do-nothing baseline, whose callbacks never overrun, measures how often this happens on the
  machine during the run; its xruns land here (or under "entered late" when its own entry was delayed).

It prints the attribution for both phases, the JACK server's own late cycles (its timer ran late: host
stalls every client suffers), per phase the entry delays (p99.9, max, how many callbacks entered more than
``LATE_ENTRY`` of the period late) and how many callbacks waited inside our code (a voluntary context switch),
and, for the engine, callback p50 / p99.9 / max in wall and CPU time. Then it checks what left the signal
chain: no NaN/Inf sample, no sample at or above full scale, the guard's counts; and replays the same flood
offline through ``SignalChain.process`` with tracemalloc (no audio or MIDI thread running) to count the
allocations inside ``process`` by source.

Exit 1 when: more than ``TOO_SLOW_SHARE`` (1 %) of the engine's callbacks used more CPU time than the period;
any non-finite or full-scale output sample; an allocation inside ``process`` from a source not named in
``KNOWN_ALLOCATIONS``; the engine stopped early. Why a share and not "none": on a virtual machine a thread's CPU
time is inflated by what shares the physical core and its caches (measured here: the same soak's CPU-time max
60 % of the period on a quiet moment, 131 % with two busy loops running, 0.3 % of callbacks over). An engine
that cannot keep up is over in a steady share of its callbacks (every chord, every note-on block, every block),
which no load takes below 1 %; a host's interference lands on a few. Xruns of the other causes are printed
beside the baseline's and do not fail the run: a do-nothing client suffers them too.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import functools
import math
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np

from eigentone.errors import EigentoneError

HELP = "soak test: real-time play on a JACK dummy server under a MIDI flood, beside a do-nothing baseline"
EXAMPLE = "eigentone bench soak --seconds 600 --block 128"

SAMPLE_RATE = 48000
KEYS_PORT = "eigentone-soak-keys"
ATTRIBUTION_WINDOW = 0.1
"""Seconds of callbacks before the one reporting an xrun that are searched for its cause (see the module doc)."""
CAUSES = ("engine, too slow", "waited", "preempted", "entered late", "woke late", "outside the callback")
LATE_ENTRY = 0.25
"""Entry delays above this share of the period are counted (printed per phase)."""
TOO_SLOW_SHARE = 0.01
"""The run fails when more than this share of the engine's callbacks used more CPU time than the period."""
KNOWN_ALLOCATIONS = {
    "pedalboard": "the effects chain returns a new (channels, frames) float32 array per call (pedalboard has "
                  "no output-buffer argument)",
    "onnxruntime": "onnxruntime's Python binding (run_with_iobinding) creates a few small objects per run; the "
                   "graph's inputs and outputs themselves are preallocated and bound",
    "output guard": "numba's dispatcher boxes the guard kernel's arguments and result (Python objects, pymalloc)",
    "engine (Python and numba)": "numba's dispatcher boxes the arguments of every call into a compiled kernel "
                                 "(measured: ~50 bytes per argument; the synth makes 3 such calls per block), plus "
                                 "the Python objects of the per-call glue (the stream position); small blocks from "
                                 "CPython's pymalloc pools, no system allocator call",
}
"""Sources of allocations inside ``process`` that are known, with the reason they cannot be avoided here."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="length of each phase (default 600 = 10 min)")
    parser.add_argument("--block", type=int, default=128, help="JACK period and callback size (default 128)")
    parser.add_argument("--voices", type=int, default=64, help="voice slots (default 64)")
    parser.add_argument("--model", help="bundle to play (default: an analytic 256-mode string)")
    parser.add_argument("--cpu-idle", action="store_true",
                        help="let the CPUs idle deeply between callbacks (as `eigentone play --cpu-idle`); by default "
                             "both phases hold CPU wake-up latency at 0 as play does")


def flood(seconds: float, seed: int = 0) -> list[tuple[float, int, int, int]]:
    """The MIDI flood: (time s, status, data1, data2), sorted. Every 100 ms a chord of 12 notes (released 80 ms
    later), the sustain pedal down 2 s / up 2 s, a pitch-bend message every 5 ms sweeping +-2 semitones, a mod-wheel
    sweep, and every 10 s a run over all 128 notes (one every 5 ms)."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, int, int, int]] = []
    t = 0.0
    while t < seconds:
        notes = rng.choice(128, 12, replace=False)
        for k, note in enumerate(notes):
            events.append((t + 0.0005 * k, 0x90, int(note), int(rng.integers(1, 128))))
            events.append((t + 0.08, 0x80, int(note), 0))
        t += 0.1
    for k in range(int(seconds / 2)):
        events.append((2.0 * k, 0xB0, 64, 127 if k % 2 == 0 else 0))
    for k in range(int(seconds / 0.005)):
        value = int(8192 + 8191 * math.sin(2 * math.pi * k * 0.005 / 1.5))
        events.append((0.005 * k, 0xE0, value & 0x7F, value >> 7))
        if k % 20 == 0:
            events.append((0.005 * k, 0xB0, 1, int(64 + 60 * math.sin(2 * math.pi * k * 0.005 / 7))))
    for start in np.arange(5.0, seconds, 10.0):
        for note in range(128):
            events.append((start + 0.005 * note, 0x90, note, 100))
            events.append((start + 0.005 * note + 0.2, 0x80, note, 0))
    return sorted(e for e in events if e[0] < seconds)


@numba.njit(cache=True)
def scan(block, stats):  # pragma: no cover - compiled
    """stats[0] = max(stats[0], max |x| of the finite samples), stats[1] += non-finite samples; block (n, ch)."""
    for k in range(block.shape[0]):
        for c in range(block.shape[1]):
            x = block[k, c]
            if not np.isfinite(x):
                stats[1] += 1
            elif abs(x) > stats[0]:
                stats[0] = abs(x)


class JackServer:
    """A private jackd (dummy backend) for the soak, stopped by its process id."""

    def __init__(self, block: int, log: Path):
        jackd = shutil.which("jackd")
        if jackd is None:
            raise EigentoneError("bench soak needs jackd (apt-get install jackd2)")
        self.name = f"eigentone-soak-{os.getpid()}"
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1",
                    "JACK_NO_START_SERVER": "1"}
        realtime = ["-R", "-P", "70"] if os.geteuid() == 0 else ["-r"]
        self.log = log
        with open(log, "w") as handle:
            self.process = subprocess.Popen([jackd, "-n", self.name, *realtime, "-d", "dummy", "-r", str(SAMPLE_RATE),
                                             "-p", str(block)], env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if subprocess.run(["jack_lsp"], env=self.env, capture_output=True, check=False).returncode == 0:
                os.environ.update({k: self.env[k] for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")})
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise EigentoneError(f"jackd did not start: {log.read_text()[-300:]}")

    def log_size(self) -> int:
        return self.log.stat().st_size

    def stalls(self, since: int, until: int) -> tuple[int, int]:
        """(late cycles of the server's own timer, clients reported unfinished) logged between two log sizes."""
        text = self.log.read_bytes()[since:until].decode(errors="replace")
        return text.count("JackTimedDriver::Process XRun"), text.count("was not finished")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def send_flood(seconds: float) -> None:
    """The flood sender (run in its own process by ``FloodSender``): opens the JACK MIDI output ``KEYS_PORT``,
    prints "ready", waits for a line on stdin, then sends ``flood(seconds)`` in real time and exits."""
    import mido

    keys = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True).open_output(KEYS_PORT, virtual=True)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    for t, status, d1, d2 in flood(seconds):
        delay = started + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        keys.send(mido.Message.from_bytes([status, d1, d2]))
    time.sleep(0.2)  # the last messages leave with the next JACK cycles
    keys.close()


class FloodSender:
    """A separate process sending the flood over JACK MIDI (no thread of this process competes with the audio
    callback for the GIL, as with a real keyboard). ``start`` after the input is connected; ``wait`` for the end."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        root = Path(__file__).resolve().parent.parent  # -c puts the working folder first on sys.path
        code = f"from benchmarks.bench_soak import send_flood; send_flood({seconds!r})"
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise EigentoneError(f"bench soak: the MIDI flood sender did not start: {self.process.stderr.read()[-300:]}")

    def start(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def wait(self) -> None:
        """Block until the sender exits (at most ``seconds`` + 15 s, then kill it). One wait in the kernel, without
        the GIL: ``Popen.wait(timeout)`` would wake every 50 ms and take the GIL from the audio callback."""
        exited = os.pidfd_open(self.process.pid)
        try:
            ready, _, _ = select.select([exited], [], [], self.seconds + 15)
        finally:
            os.close(exited)
        if not ready:
            self.process.kill()
        self.process.wait()


class JackClock:
    """JACK's frame clock, read through a JACK client of our own (opened, never activated: it joins no process
    cycle) with ``ctypes.PyDLL``, whose calls keep the GIL: reading the clock in the callback hands the GIL to no
    other thread (sounddevice's ``Stream.time`` goes through cffi, which releases the GIL around each C call)."""

    def __init__(self, name: str = "eigentone-soak-clock"):
        try:
            jack = ctypes.PyDLL("libjack.so.0")
        except OSError as exc:
            raise EigentoneError(f"bench soak needs libjack.so.0 (apt-get install jackd2): {exc}") from None
        jack.jack_client_open.restype = ctypes.c_void_p
        jack.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        jack.jack_client_close.argtypes = [ctypes.c_void_p]
        for function in (jack.jack_frame_time, jack.jack_frames_since_cycle_start):
            function.restype = ctypes.c_uint32
            function.argtypes = [ctypes.c_void_p]
        status = ctypes.c_int(0)
        self._client = jack.jack_client_open(name.encode(), 1, ctypes.byref(status))  # 1: JackNoStartServer
        if not self._client:
            raise EigentoneError(f"bench soak: could not open a JACK client to read the frame clock (status "
                                 f"{status.value:#x})")
        self._jack = jack
        self.frame_time = functools.partial(jack.jack_frame_time, self._client)
        """() -> int: JACK's estimate of the current time in frames (``jack_frame_time``)."""
        self.frames_since_cycle_start = functools.partial(jack.jack_frames_since_cycle_start, self._client)
        """() -> int: JACK's estimate of the frames since the current process cycle began."""

    def close(self) -> None:
        self._jack.jack_client_close(self._client)


class CallbackLog:
    """Per callback, in preallocated arrays: wall time (ns), CPU time of the callback's thread (ns), voluntary context
    switches made inside it (it waited on something), whether PortAudio flagged an xrun on it, ``entry`` (frames):
    JACK's frame time at the wrapper's first line less PortAudio's ``time_info.currentTime`` in frames (the entry
    delay plus a constant: :meth:`entry_delays`), and ``cycle`` (frames): JACK's frames since the cycle began, read
    at the wrapper's first line (both zero without a ``clock``)."""

    def __init__(self, callbacks: int, clock: JackClock | None = None):
        self.wall_ns = np.zeros(callbacks, np.int64)
        self.cpu_ns = np.zeros(callbacks, np.int64)
        self.waits = np.zeros(callbacks, np.int64)
        self.xrun = np.zeros(callbacks, np.bool_)
        self.entry = np.zeros(callbacks, np.int64)
        self.cycle = np.zeros(callbacks, np.int64)
        self.count = 0
        self.clock = clock

    def measure(self, callback):
        """``callback`` wrapped to log each call (the wrapper's own work is outside the timed span)."""
        frame_time = self.clock.frame_time if self.clock is not None else _no_clock
        in_cycle = self.clock.frames_since_cycle_start if self.clock is not None else _no_clock

        def measured(outdata, frames, time_info, status) -> None:
            entered, cycle = frame_time(), in_cycle()
            waits = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
            wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
            callback(outdata, frames, time_info, status)
            cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
            i = self.count
            if i < len(self.xrun):
                self.wall_ns[i], self.cpu_ns[i] = wall, cpu
                self.waits[i] = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - waits
                self.xrun[i] = status.output_underflow or status.output_overflow
                self.entry[i] = entered - round(time_info.currentTime * SAMPLE_RATE)
                self.cycle[i] = cycle
                self.count = i + 1

        return measured

    def seconds(self, which: str) -> np.ndarray:
        return getattr(self, which)[: self.count] / 1e9

    def entry_delays(self) -> np.ndarray:
        """(count,) s: each callback's entry delay, from PortAudio's call to the wrapper's first line, less the
        phase's usual shortest (PortAudio's stream time counts from the stream's first frame, and sounddevice's
        per-call work is the same in every call), at least 0. The usual shortest is the 1st percentile, not the
        minimum: in some runs one callback's difference came out tens of periods below all the others (2 of the
        first 4 engine phases of 90 s, never more than one callback), which would make every other callback look
        late. ``jack_frame_time`` is an estimate extrapolated from the start of the current cycle; when the server's
        own timer is late it overshoots and then steps back, which can explain it (not proven)."""
        entry = self.entry[: self.count]
        if self.clock is None or not len(entry):
            return np.zeros(len(entry))
        return np.maximum(entry - np.percentile(entry, 1), 0) / SAMPLE_RATE


def _no_clock() -> int:
    return 0


def attribute(log: CallbackLog, budget: float, window: int) -> dict[str, int]:
    """Xruns by cause (``CAUSES``, see the module doc): each xrun flagged on callback k is charged from the
    ``window`` callbacks before k (the late cycle precedes the report), worst cause first.

    >>> log = CallbackLog(4); log.count = 4; log.wall_ns[:] = [1, 9, 1, 1]; log.cpu_ns[:] = [1, 2, 1, 1]
    >>> log.xrun[2] = True; attribute(log, 5e-9, 2)["preempted"]
    1
    """
    n = log.count
    wall, cpu = log.wall_ns[:n] / 1e9, log.cpu_ns[:n] / 1e9
    over = wall > budget
    entered_late = log.entry_delays() + wall > budget
    woke_late = log.cycle[:n] / SAMPLE_RATE + wall > budget
    causes = np.select([cpu > budget, over & (log.waits[:n] > 0), over, entered_late, woke_late], range(5), 5)
    counts = dict.fromkeys(CAUSES, 0)
    for k in np.flatnonzero(log.xrun[:n]):
        before = causes[max(0, k - window):k]
        counts[CAUSES[int(before.min(initial=5))]] += 1
    return counts


def _percent(values: np.ndarray, budget: float, q: float) -> float:
    return float(np.percentile(values, q)) / budget if len(values) else 0.0


def run(args: argparse.Namespace) -> int:
    if not 16 <= args.block <= 8192 or not args.seconds > 0 or not 1 <= args.voices <= 4096:
        raise EigentoneError("bench soak: --block 16..8192, --seconds > 0, --voices 1..4096")
    from engine.realtime import wakeup_latency_unless

    with tempfile.TemporaryDirectory() as tmp, wakeup_latency_unless(args.cpu_idle) as wakeup:
        print(f"bench soak: {wakeup} in both phases (as in play)")
        server = JackServer(args.block, Path(tmp) / "jackd.log")
        try:
            return _soak(args, server, Path(tmp))
        finally:
            import sounddevice as sd

            with contextlib.suppress(Exception):  # PortAudio's JACK client must close before jackd goes
                sd._terminate()
            server.stop()


def _instrument(args: argparse.Namespace, tmp: Path):
    from engine.instrument import Instrument
    from export.modal_bundle import write_modal_bundle

    if args.model:
        return Instrument.load(args.model)
    write_modal_bundle(tmp / "soak.etone", modes=256, name="soak-string-256", inharmonicity=1e-6)
    return Instrument.load(tmp / "soak.etone")


def _chain(instrument, block: int, worker: bool = True):
    """The signal chain `eigentone play --block BLOCK --effects assets/effects/default.json` runs (``worker``
    False: the received note-ons are excited in the receiving call instead of on the excite worker thread)."""
    from engine.signal_chain import SignalChain
    from engine.synth import Synth, realtime_lookahead
    from plugins.effects import DEFAULT_CHAIN, EffectsChain

    return SignalChain(Synth(instrument, lookahead=realtime_lookahead(block), excite_worker=worker),
                       EffectsChain.from_json(DEFAULT_CHAIN))


def _soak(args: argparse.Namespace, server: JackServer, tmp: Path) -> int:
    import sounddevice as sd

    sd._terminate()  # PortAudio lists devices when it starts: start it again now that the server runs
    sd._initialize()
    clock = JackClock()
    try:
        return _phases(args, server, tmp, clock)
    finally:
        clock.close()


def _phases(args: argparse.Namespace, server: JackServer, tmp: Path, clock: JackClock) -> int:
    import sounddevice as sd

    from engine.realtime import RealtimeEngine, no_garbage_collection, open_midi_input

    instrument = _instrument(args, tmp)
    chain = _chain(instrument, args.block)
    events = flood(args.seconds)
    budget = args.block / SAMPLE_RATE
    slots = int((args.seconds + 20) / budget)
    window = math.ceil(ATTRIBUTION_WINDOW / budget)
    print(f"eigentone bench soak: JACK dummy server, {SAMPLE_RATE} Hz, {args.block}-sample periods (budget "
          f"{budget * 1e3:.2f} ms), {args.seconds:.0f} s per phase, MIDI flood over JACK MIDI from another process: "
          f"{len(events)} messages per phase ({len(events) / args.seconds:.0f}/s)")

    # phase 1: the do-nothing baseline, same MIDI traffic, drained from the input as the engine does
    received = [0]  # messages the baseline's callback drained
    base_log = CallbackLog(slots, clock)
    sender = FloodSender(args.seconds)
    midi_in = open_midi_input(KEYS_PORT)
    poll = midi_in.poll

    def nothing(outdata, frames, time_info, status) -> None:
        while poll() is not None:
            received[0] += 1
        outdata.fill(0.0)

    mark = server.log_size()
    stream = sd.OutputStream(samplerate=SAMPLE_RATE, blocksize=args.block, device="system", channels=2,
                             dtype="float32", callback=base_log.measure(nothing))
    stream.start()
    sender.start()
    sender.wait()
    stream.stop()
    stream.close()
    midi_in.close()
    base_timer, _ = server.stalls(mark, server.log_size())

    # phase 2: the engine
    engine = RealtimeEngine(chain, sample_rate=SAMPLE_RATE, block_size=args.block, max_voices=args.voices,
                            device="system", timing_slots=max(slots, len(events) + 4096))  # logs every event
    stats = np.zeros(2)
    callback = engine._callback

    def checked(outdata, frames, time_info, status) -> None:  # the engine's callback, then the output checks
        callback(outdata, frames, time_info, status)
        scan(outdata, stats)

    log = CallbackLog(slots, clock)
    engine._callback = log.measure(checked)
    scan(np.zeros((1, 2), np.float32), stats)  # compiled here, for the callback's (frames, 2) arrays
    sender = FloodSender(args.seconds)
    midi_in = open_midi_input(KEYS_PORT)
    engine.midi_in = midi_in  # drained at the start of each callback
    mark = server.log_size()
    with no_garbage_collection():  # as `eigentone play` does: no collection inside the audio callback
        try:
            engine.start()
            sender.start()
            sender.wait()
        finally:
            engine.stop()
            midi_in.close()
    synth = chain.synth
    worker_cpu, late_notes = synth.worker_cpu_seconds, synth.late_note_ons
    chain.release()  # ends the excite worker thread
    timer, _ = server.stalls(mark, server.log_size())
    walls, cpus = log.seconds("wall_ns"), log.seconds("cpu_ns")
    slow = int(np.sum(cpus > budget))
    overran = (walls > budget) & (cpus <= budget)
    waited = int(np.sum(overran & (log.waits[: log.count] > 0)))
    preempted = int(np.sum(overran)) - waited
    played = engine.frame / SAMPLE_RATE
    phases = [("baseline", base_log.count * budget, base_log, base_timer), ("engine", played, log, timer)]
    print(f"xruns by cause (each charged from the callbacks of the {ATTRIBUTION_WINDOW:g} s before it; the rule: "
          f"docs/realtime.md):")
    print(f"{'phase':<9} {'played':>7} {'callbacks':>9} {'xruns':>5} | " + " | ".join(CAUSES) + " | server timer late")
    for name, seconds, phase_log, timer_late in phases:
        counts = attribute(phase_log, budget, window)
        cells = " | ".join(f"{counts[c]:>{len(c)}}" for c in CAUSES)
        print(f"{name:<9} {seconds:>6.0f}s {phase_log.count:>9} {int(phase_log.xrun[: phase_log.count].sum()):>5} | "
              f"{cells} | {timer_late:>17}")
    for name, _, phase_log, _ in phases:
        delays = phase_log.entry_delays()
        print(f"{name}: entry delay (PortAudio's call to our first line, on JACK's frame clock, less the usual shortest) "
              f"p99.9 {_percent(delays, budget, 99.9):.1%} max {delays.max(initial=0) / budget:.1%} of the budget, "
              f"{int(np.sum(delays > LATE_ENTRY * budget))} callbacks entered more than {LATE_ENTRY:.0%} of it late; "
              f"frames since the cycle began, at entry: p99.9 {_percent(phase_log.cycle[: phase_log.count], args.block, 99.9):.1%} "
              f"of the period; "
              f"{int(np.sum(phase_log.waits[: phase_log.count] > 0))} callbacks waited inside (voluntary context "
              f"switch)")
    print(f"engine ({instrument.name}, {args.voices} voices, {engine.max_voices_seen} sounding at most, effects + "
          f"guard): callback p50 {_percent(walls, budget, 50):.1%} p99.9 {_percent(walls, budget, 99.9):.1%} "
          f"max {walls.max(initial=0) / budget:.1%} of the budget (wall time); CPU time p99.9 "
          f"{_percent(cpus, budget, 99.9):.1%}, max {cpus.max(initial=0) / budget:.1%}; callbacks over the period: "
          f"{slow} in CPU time ({slow / max(log.count, 1):.2%}; the run fails above {TOO_SLOW_SHARE:.0%}), {waited} in wall time after waiting, {preempted} in wall time only (preempted); "
          f"MIDI messages received of {len(events)} sent: engine {engine.live_events}, baseline {received[0]}; "
          f"dropped events {synth.dropped_events}; excite worker (look-ahead {engine.lookahead} samples): CPU "
          f"{worker_cpu:.2f} s ({worker_cpu / max(played, 1e-9):.1%} of the played time), {late_notes} note-ons "
          f"excited late, in the callback; {engine.worker_placement}")
    guard = chain.guard
    print(f"output after the guard: peak {stats[0]:.4f} (full scale 1.0), {int(stats[1])} non-finite samples; guard "
          f"replaced {guard.nonfinite} non-finite samples, limited {guard.limited} samples; muted voices "
          f"{len(synth.faults)}")
    failures = []
    if played < 0.95 * args.seconds:
        failures.append(f"the engine played {played:.1f} s of {args.seconds:.0f} s")
    if slow > TOO_SLOW_SHARE * log.count:
        failures.append(f"the engine is too slow: {slow} of {log.count} callbacks used more CPU time than the period "
                        f"(more than {TOO_SLOW_SHARE:.0%})")
    if stats[1] or stats[0] >= 1.0:
        failures.append("non-finite or full-scale output samples")
    failures += allocations(args, instrument, events)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def allocations(args: argparse.Namespace, instrument, events: list[tuple[float, int, int, int]]) -> list[str]:
    """Replay the flood through SignalChain.process block by block (no audio or MIDI thread: every traced
    allocation is process's) under tracemalloc; print the allocating calls by source; failures for sources
    not in KNOWN_ALLOCATIONS."""
    from engine import instrument as instrument_module
    from engine import signal_chain as chain_module
    from plugins import effects as effects_module

    chain = _chain(instrument, args.block, worker=False)  # the graph runs inside process: its allocations count
    chain.prepare(SAMPLE_RATE, args.block, args.voices)
    tracker = AllocationTracker()
    wrapped = [(instrument_module.BoundGraph, "run", "onnxruntime"),
               (effects_module.EffectsChain, "process", "pedalboard"),
               (chain_module.OutputGuard, "process", "output guard")]
    originals = [getattr(owner, name) for owner, name, _ in wrapped]
    for (owner, name, source), original in zip(wrapped, originals):
        setattr(owner, name, tracker.wrap(source, original))
    frames = [round(t * SAMPLE_RATE) for t, *_ in events]
    blocks = int(args.seconds * SAMPLE_RATE) // args.block
    calls, i = 0, 0
    tracemalloc.start(1)
    try:
        for b in range(blocks):
            block_events = []
            while i < len(events) and frames[i] < (b + 1) * args.block:
                block_events.append((frames[i] - b * args.block, *events[i][1:]))  # as the real-time callback does
                i += 1
            tracker.enter("engine (Python and numba)")
            chain.process(block_events, args.block)
            tracker.exit()
            calls += 1
    finally:
        tracemalloc.stop()
        for (owner, name, _), original in zip(wrapped, originals):
            setattr(owner, name, original)
    failures = []
    allocating = sum(tracker.calls.values())
    print(f"allocations inside SignalChain.process: the flood replayed for {calls} calls under tracemalloc (no other "
          f"thread running: no excite worker, the excite graph runs inside process and is counted); calls that "
          f"allocated, by source: {allocating or 'none'}")
    for source, count in tracker.calls.most_common():
        reason = KNOWN_ALLOCATIONS.get(source)
        print(f"  {source}: {count} of {tracker.entries[source]} calls, up to {tracker.largest[source]} bytes at once"
              + (f" -- {reason}" if reason else " -- NOT EXPLAINED"))
        if reason is None:
            failures.append(f"{count} allocating calls inside process from {source}")
    return failures


class AllocationTracker:
    """Charges each traced allocation to the innermost tracked source running (tracemalloc's peak, reset at every
    switch): per source, how many of its calls allocated and the most bytes one call had allocated at once."""

    def __init__(self):
        self.stack: list[list] = []  # [source, traced bytes when the current stretch began, most above it]
        self.calls: collections.Counter[str] = collections.Counter()
        self.entries: collections.Counter[str] = collections.Counter()
        self.largest: collections.Counter[str] = collections.Counter()

    def enter(self, source: str) -> None:
        current, peak = tracemalloc.get_traced_memory()
        if self.stack:
            self.stack[-1][2] = max(self.stack[-1][2], peak - self.stack[-1][1])
        tracemalloc.reset_peak()
        self.stack.append([source, current, 0])
        self.entries[source] += 1

    def exit(self) -> None:
        current, peak = tracemalloc.get_traced_memory()
        source, start, most = self.stack.pop()
        most = max(most, peak - start)
        if most > 0:
            self.calls[source] += 1
            self.largest[source] = max(self.largest[source], most)
        tracemalloc.reset_peak()
        if self.stack:
            self.stack[-1][1] = current  # the caller's next stretch starts from here

    def wrap(self, source: str, function):
        def tracked(*args, **kwargs):
            self.enter(source)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit()
        return tracked
