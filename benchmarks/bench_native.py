"""`eigentone bench engine --native`: the native plugin core (plugins/native) beside the Python engine, in one run.

1. Graph evaluator vs onnxruntime: every graph of every shipped bundle on random controls/states
   (plugins/native/parity.py); floor: max relative error <= 1e-5 per graph.
2. The demo song (assets/demo/demo.mid, its five instruments, no effects) rendered by one native synth per
   instrument against ``eigentone render``'s engine at 44.1, 48 and 96 kHz; floor: error energy >= 80 dB below
   the signal.
3. Speed: block times of the same workload as `eigentone bench engine` (voices held on the 256-mode analytic
   string or --model, struck again when they decay, 64-sample blocks paced at the block period on one core)
   through the native core and through ``engine.synth.Synth``; floor: the native core at least as fast as the
   engine (median block time) at every voice count.
Exit status 1 when any floor is missed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.bundle import MODELS_DIR


def graph_section() -> bool:
    from plugins.native.parity import graph_parity

    print("1. graph evaluator vs onnxruntime (random controls/states, batches 1, 3, 16)")
    print(f"   {'bundle':<14} {'graph':<8} {'nodes':>5} {'max rel error':>14} {'bit-exact':>10}")
    worst = 0.0
    for bundle in sorted(MODELS_DIR.glob("*.etone")):
        for result in graph_parity(bundle):
            worst = max(worst, result.max_rel_error)
            print(f"   {result.bundle:<14} {result.role:<8} {result.nodes:>5} {result.max_rel_error:>14.2e} "
                  f"{result.bit_exact:>9.1%}")
    met = worst <= 1e-5
    print(f"   floor: max relative error <= 1e-5 for every graph: worst {worst:.2e}: {'met' if met else 'NOT met'}")
    return met


def demo_section() -> bool:
    from plugins.native.parity import demo_parity

    print("2. demo song, native core vs `eigentone render` (no effects; one native synth per instrument)")
    worst = -np.inf
    for rate in (44100, 48000, 96000):
        started = time.perf_counter()
        db, reference, _ = demo_parity(rate)
        worst = max(worst, db)
        print(f"   {rate:>6} Hz: error {db:7.1f} dB below the signal ({reference.shape[0] / rate:.1f} s; "
              f"{time.perf_counter() - started:.1f} s to compare)")
    met = worst <= -80.0
    print(f"   floor: error energy >= 80 dB below the signal at every rate: {'met' if met else 'NOT met'}")
    return met


def speed_section(args: argparse.Namespace) -> bool:
    from benchmarks.bench_engine import _normal_priority, _realtime_priority, _time_engine
    from engine.instrument import Instrument
    from plugins.native.binding import NativeInstrument, NativeSynth

    sample_rate = args.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            path = Path(args.model)
            if not path.exists():
                path = MODELS_DIR / f"{args.model}.etone"
            counts = [int(v) for v in (args.voices or "16").split(",")]
        else:
            from export.modal_bundle import write_modal_bundle

            path = Path(tmp) / "bench.etone"
            write_modal_bundle(path, modes=256, name="bench-string-256", inharmonicity=1e-6, b1=0.2, b3=1e-12)
            counts = [int(v) for v in (args.voices or "16,64,128").split(",")]
        block = args.block or 64
        instrument = Instrument.load(path)
        native_instrument = NativeInstrument(path)
        lo, hi = instrument.note_range
        notes = np.linspace(lo, hi, 12).round().astype(int) if args.model else np.arange(24, 31)
        budget = block / sample_rate
        print(f"3. speed: {instrument.name} ({instrument.modes} modes), {sample_rate} Hz, {block}-sample blocks "
              f"(budget {budget * 1e3:.3f} ms), {args.blocks} blocks per row, paced, one core")
        print(f"   {'voices':>6}  {'native p50':>10} {'p99.9':>7}  {'engine p50':>10} {'p99.9':>7}  "
              f"{'speed-up':>8}  native voices x modes per second")
        met = True
        sustained = 0
        for voices in counts:
            priority = _realtime_priority()
            try:
                engine_times, _, _ = _time_engine(instrument, voices, block, args.blocks, sample_rate, notes)
                synth = NativeSynth(native_instrument, sample_rate, max(voices, 16), 64, max_voices=max(voices, 16))
                native_times, _ = synth.bench_blocks(voices, notes, block, args.blocks)
            finally:
                _normal_priority()
            n50, n999 = (np.percentile(native_times, q) / budget for q in (50, 99.9))
            e50, e999 = (np.percentile(engine_times, q) / budget for q in (50, 99.9))
            speedup = np.median(engine_times) / np.median(native_times)
            rate = voices * instrument.modes * block / np.median(native_times)
            met = met and speedup >= 1.0
            if n999 <= 1.0:
                sustained = max(sustained, voices)
            print(f"   {voices:>6}  {n50:>10.1%} {n999:>7.1%}  {e50:>10.1%} {e999:>7.1%}  {speedup:>7.2f}x  "
                  f"{rate / sample_rate / instrument.modes:>7.0f} voices x {instrument.modes} modes at {sample_rate} Hz "
                  f"(median)")
        print(f"   ({priority}; block times as a share of the block budget; the native core sustains every row "
              f"up to {sustained} voices with p99.9 inside the budget)")
        print(f"   floor: native core at least as fast as the engine (median block time) at every row: "
              f"{'met' if met else 'NOT met'}")
        return met


def run_native(args: argparse.Namespace) -> int:
    """The three sections; exit status 1 if a floor is missed."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from plugins.native.binding import build

    build()
    print("eigentone bench engine --native: the native plugin core (plugins/native) beside the Python engine")
    results = [graph_section(), demo_section(), speed_section(args)]
    load = os.getloadavg()[0]
    print(f"note: load average {load:.1f} on {os.cpu_count()} cores while measuring"
          + ("; other processes shared the CPU, speed figures are noisy" if load > 1.0 else ""))
    return 0 if all(results) else 1
