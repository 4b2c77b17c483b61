"""`eigentone bench engine`: block-time percentiles of the synth against a plain compiled modal loop.

For 16/64/128 voices of a 256-mode analytic string (or a given bundle) it times
``Synth.process`` block by block (one core: the process is pinned to one CPU), and the
same voices x modes x samples through a reference numba loop, a real second-order
resonator per mode, ``y[k] = a1 y[k-1] - a2 y[k-2]``, output ``sum c y``. Then it renders
a generated 60 s, 16-voice MIDI song offline and prints the real-time factor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from engine.instrument import Instrument
from engine.midi_file import write_demo_song
from engine.render import render_midi
from engine.synth import Synth

HELP = "benchmark the engine: block-time percentiles vs a compiled reference loop, offline real-time factor"
EXAMPLE = "eigentone bench engine --voices 16,64,128"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="bench this bundle instead of the built-in 256-mode string")
    parser.add_argument("--voices", help="comma-separated voice counts (default 16,64,128; with --model 16)")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument("--block", type=int, help="block size (default 64; with --model 128)")
    parser.add_argument("--blocks", type=int, default=2000, help="timed blocks per voice count (default 2000)")
    parser.add_argument("--song-seconds", type=float, default=60.0, help="length of the offline song (0 skips it)")
    parser.add_argument("--native", action="store_true",
                        help="bench the native plugin core instead: graph and demo parity, speed beside the engine "
                             "(benchmarks/bench_native.py)")


@numba.njit(cache=True, fastmath=True)
def reference_loop(y1, y2, a1, a2, c, out, n):  # pragma: no cover - compiled
    """Plain second-order real resonators: y1, y2, a1, a2, c (voices, modes) float32; adds n samples to out."""
    voices, modes = y1.shape
    for v in range(voices):
        for k in range(n):
            acc = np.float32(0.0)
            for m in range(modes):
                y = a1[v, m] * y1[v, m] - a2[v, m] * y2[v, m]
                y2[v, m] = y1[v, m]
                y1[v, m] = y
                acc += c[v, m] * y
            out[k] += acc


def _time_reference(voices: int, modes: int, block: int, blocks: int, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    omega = rng.uniform(100.0, 20000.0, (voices, modes)) / sample_rate
    r = np.exp(-1.0 / sample_rate)
    a1 = (2 * r * np.cos(omega)).astype(np.float32)
    a2 = np.full((voices, modes), r * r, np.float32)
    y1 = rng.standard_normal((voices, modes)).astype(np.float32) * 1e-3
    y2 = y1.copy()
    c = np.ones((voices, modes), np.float32)
    out = np.zeros(block, np.float32)
    reference_loop(y1, y2, a1, a2, c, out, block)
    times = np.empty(blocks)
    for i in range(blocks):
        out[:] = 0.0
        started = time.perf_counter()
        reference_loop(y1, y2, a1, a2, c, out, block)
        times[i] = time.perf_counter() - started
    return times


def _time_engine(instrument: Instrument, voices: int, block: int, blocks: int, sample_rate: int,
                 notes: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Block times (s) of ``voices`` sounding voices, the fewest live modes of a voice at the end, and how
    many notes had to be struck again because they had decayed below -100 dBFS."""
    synth = Synth(instrument, limiter=True)
    synth.prepare(sample_rate, block, max(voices, 16))
    events = [(0, 0x90, int(notes[i % len(notes)]), 100) for i in range(voices)]
    synth.process(events, block)
    times = np.empty(blocks)
    budget = block / sample_rate
    deadline = time.perf_counter()
    restrikes = 0
    for i in range(blocks):  # paced like an audio callback: one block per budget, sleeping in between
        missing = voices - synth.voices  # voices that decayed away are struck again (excite cost included)
        events = [(0, 0x90, int(notes[(i + j) % len(notes)]), 100) for j in range(missing)]
        restrikes += missing
        started = time.perf_counter()
        synth.process(events, block)
        finished = time.perf_counter()
        times[i] = finished - started
        deadline += budget
        if deadline > finished:
            time.sleep(deadline - finished)
        else:
            deadline = finished
    part = synth.parts[0]
    live = int(np.min(part.bank.live[part.pool.active[: part.pool.count]])) if part.pool.count else 0
    return times, live, restrikes


def _realtime_priority() -> str:
    """Run on one core at SCHED_FIFO priority 60 (as an audio thread does) if permitted; describe the result."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(60))
        return "SCHED_FIFO 60"
    except (AttributeError, PermissionError, OSError):
        return "normal priority (SCHED_FIFO not permitted)"


def _normal_priority() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, PermissionError, OSError):
        pass


def run(args: argparse.Namespace) -> int:
    if args.native:
        from benchmarks.bench_native import run_native

        return run_native(args)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sample_rate = args.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            instrument = Instrument.load(args.model)
            block = args.block or 128
            counts = [int(v) for v in (args.voices or "16").split(",")]
            lo, hi = instrument.note_range
            notes = np.linspace(lo, hi, 12).round().astype(int)
        else:
            from export.modal_bundle import write_modal_bundle

            path = Path(tmp) / "bench.etone"
            # low notes, tiny inharmonicity and damping: all 256 modes stay below Nyquist and audible
            write_modal_bundle(path, modes=256, name="bench-string-256", inharmonicity=1e-6, b1=0.2, b3=1e-12)
            instrument = Instrument.load(path)
            block = args.block or 64
            counts = [int(v) for v in (args.voices or "16,64,128").split(",")]
            notes = np.arange(24, 31)
        budget = block / sample_rate
        modes = instrument.modes
        extras = ", readout graph" if instrument.has_readout else ""
        extras += ", pole modulation" if instrument.modulation else ""
        print(f"eigentone bench engine: {instrument.name} ({modes} modes{extras}), {sample_rate} Hz, "
              f"{block}-sample blocks (budget {budget * 1e3:.3f} ms), 1 core, {args.blocks} blocks per row")
        print(f"{'voices':>6} {'p50':>7} {'p99':>7} {'p99.9':>7}  (of budget)  {'engine':>14} {'reference':>14} "
              f"{'ratio':>6}  live modes")
        results = {}
        for voices in counts:
            priority = _realtime_priority()
            try:
                times, live, restrikes = _time_engine(instrument, voices, block, args.blocks, sample_rate, notes)
            finally:
                _normal_priority()
            ref = _time_reference(voices, modes, block, args.blocks, sample_rate)
            p50, p99, p999 = (np.percentile(times, q) / budget for q in (50, 99, 99.9))
            work = voices * modes * block
            engine_rate = work / np.median(times)
            ref_rate = work / np.median(ref)
            results[voices] = p999
            print(f"{voices:>6} {p50:>7.1%} {p99:>7.1%} {p999:>7.1%}  {'':11} {engine_rate / 1e9:>8.2f} G/s "
                  f"{ref_rate / 1e9:>8.2f} G/s {engine_rate / ref_rate:>6.2f}  {live}"
                  + (f"  ({restrikes} decayed notes struck again)" if restrikes else ""))
        print(f"  (block times: Synth.process paced at block rate on one core, {priority}, like an audio callback;\n"
              "   engine, reference: mode-samples per second from median block times; reference = numba "
              "second-order real resonator per mode, same voices x modes x samples, unpaced)")
        if not args.model and 64 in results:
            verdict = "met" if results[64] <= 0.5 else "NOT met"
            print(f"floor: 64 voices x 256 modes p99.9 = {results[64]:.1%} of the block budget (<= 50%): {verdict}")
        if args.song_seconds > 0:
            song = write_demo_song(Path(tmp) / "song.mid", seconds=args.song_seconds, polyphony=16)
            result = min((render_midi(song, instrument, sample_rate=sample_rate, block_size=block) for _ in range(2)),
                         key=lambda r: r.seconds)  # best of two runs
            verdict = "met" if result.realtime_factor >= 20 else "NOT met"
            print(f"offline render: {args.song_seconds:.0f} s, 16-voice song ({result.audio.shape[1] / sample_rate:.1f} s "
                  f"with tails, {result.max_voices_used} voices max incl. release tails) in {result.seconds:.2f} s = "
                  f"{result.realtime_factor:.1f}x real time (floor >= 20x): {verdict}; process CPU time "
                  f"{result.cpu_seconds:.2f} s = {result.cpu_realtime_factor:.1f}x")
    load = os.getloadavg()[0]
    print(f"note: load average {load:.1f} on {os.cpu_count()} cores while measuring"
          + ("; other processes shared the CPU, figures are noisy" if load > 1.0 else ""))
    return 0
