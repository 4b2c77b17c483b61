"""`eigentone play`: real-time synthesis from MIDI input (or a MIDI file) to an audio device."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading

from eigentone import limits
from eigentone.errors import EigentoneError, printable
from engine.midi_file import read_midi
from engine.realtime import (
    RealtimeEngine,
    no_garbage_collection,
    open_midi_input,
    output_device,
    wait,
    wakeup_latency_unless,
)
from engine.render import WAV_SUBTYPES, instruments_for_channels, write_wav
from engine.render_cli import add_synth_arguments, default_models, parse_channel_models, synth_options
from engine.signal_chain import SignalChain, describe_guard
from engine.synth import Synth, realtime_lookahead
from plugins.effects import EffectsChain

HELP = "play instrument bundles in real time from MIDI input (PortAudio/JACK output)"
EXAMPLE = "eigentone play --model modal-string --midi-in 'my keyboard' --block 64"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="BUNDLE",
                        help="bundle path or name in assets/models/ (repeat: the k-th plays MIDI channel k)")
    parser.add_argument("--model-for-channel", action="append", default=[], metavar="CH=BUNDLE",
                        help="bundle for MIDI channel CH (1-16)")
    parser.add_argument("--midi-in", metavar="PORT",
                        help="MIDI input port name or substring (ALSA sequencer or JACK MIDI); default: a virtual "
                             "input named 'eigentone' (none when --midi-file is given)")
    parser.add_argument("--midi-file", help="also play this MIDI file, scheduled inside the audio callback")
    parser.add_argument("--device", help="output device name (substring) or index, e.g. 'system' under JACK")
    add_synth_arguments(parser)
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C, or the "
                                                       "end of --midi-file plus 2 s)")
    parser.add_argument("--cpu-idle", action="store_true",
                        help="let the CPUs idle deeply between callbacks (saves power; by default play asks the "
                             "kernel, when permitted, to keep CPU wake-up latency at 0: callbacks start on warm "
                             "caches, see docs/realtime.md)")
    parser.add_argument("--record", help="write what the callback played to this WAV")
    parser.add_argument("--record-format", choices=sorted(WAV_SUBTYPES), default="pcm24", help="WAV sample format")


def run(args: argparse.Namespace) -> int:
    if not 16 <= args.block <= 8192:
        raise EigentoneError(f"--block {args.block}: expected 16..8192 samples")
    models = args.model or default_models()
    if not models:
        raise EigentoneError("no --model given and assets/models/ has no .etone bundles")
    channel_map = instruments_for_channels(models, parse_channel_models(args.model_for_channel))
    effects = EffectsChain.from_json(args.effects) if args.effects else None
    schedule = read_midi(args.midi_file, args.sample_rate) if args.midi_file else None
    duration = args.duration
    if duration is not None:
        if not math.isfinite(duration) or duration <= 0:
            raise EigentoneError(f"--duration {duration}: expected seconds > 0")
        limits.check("song-seconds", duration, "--duration")
    if duration is None and schedule is not None:
        duration = schedule.length / args.sample_rate + 2.0
    if args.record and duration is None:
        raise EigentoneError("--record needs --duration or --midi-file (the recording buffer is preallocated)")
    synth = Synth(channel_map, lookahead=realtime_lookahead(args.block), excite_worker=True, **synth_options(args))
    device = output_device(args.device)
    engine = RealtimeEngine(SignalChain(synth, effects), sample_rate=args.sample_rate, block_size=args.block,
                            max_voices=args.voices, device=device, schedule=schedule,
                            record_s=duration if args.record else 0.0)
    midi_port = None
    if args.midi_in is not None or schedule is None:
        midi_port = open_midi_input(args.midi_in)
        engine.midi_in = midi_port  # drained by the audio callback
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    interactive = sys.stderr.isatty()

    def status() -> None:
        if interactive:
            p50, p99 = engine.percentiles(50, 99)
            print(f"\rvoices {synth.voices:3d}  callback p50 {p50:5.1%} p99 {p99:5.1%} of block  "
                  f"xruns {engine.xruns}  muted {len(synth.faults)}   ", end="", file=sys.stderr, flush=True)

    # no collection can start inside the audio callback while it plays; no CPU idles deeply between callbacks
    with no_garbage_collection(), wakeup_latency_unless(args.cpu_idle) as wakeup:
        try:
            engine.start()
            print(wakeup, file=sys.stderr)
            latency = args.block + engine.lookahead + engine.chain.guard.latency
            print(f"note-on to sound: {latency} samples ({1000 * latency / args.sample_rate:.2f} ms) = one period "
                  f"({args.block}) + the look-ahead ({engine.lookahead}; received note-ons are excited on a worker "
                  f"thread meanwhile) + the output guard ({engine.chain.guard.latency})", file=sys.stderr)
            if engine.worker_placement:
                print(engine.worker_placement, file=sys.stderr)
            if midi_port is not None:
                print(f"listening on MIDI input '{midi_port.name}' (Ctrl-C stops)", file=sys.stderr)
            wait(duration, stop, status, period=0.25 if interactive else 3600.0)
        finally:
            engine.stop()
            engine.chain.release()  # ends the excite worker thread
            if midi_port is not None:
                midi_port.close()
            signal.signal(signal.SIGINT, previous)
            if interactive:
                print(file=sys.stderr)
    if args.record:
        write_wav(args.record, engine.recording[:, : max(engine.frame - engine.latency, 0)], args.sample_rate,
                  args.record_format)
    guarded = describe_guard(engine.chain.guard, args.sample_rate, "the played output")
    if guarded:
        print(f"eigentone: warning: {guarded}", file=sys.stderr)
    for problem, instrument, channel, note in synth.faults:
        print(f"eigentone: warning: muted a voice of {printable(instrument, 80)} (channel {channel + 1}, note {note}): "
              f"{problem}",
              file=sys.stderr)
    if engine.live_events:
        latency = engine.live_latencies()
        print(f"live MIDI: {engine.live_events} events, each sounded {latency.min()}..{latency.max()} frames after it "
              f"arrived on the stream clock (target {engine.midi_latency + engine.lookahead}: one block to place it, "
              f"{engine.lookahead} of look-ahead; the output guard adds {engine.chain.guard.latency})", file=sys.stderr)
    p50, p99, p999 = engine.percentiles(50, 99, 99.9)
    budget_ms = 1000 * args.block / args.sample_rate
    print(f"played {engine.frame / args.sample_rate:.1f} s at {args.sample_rate} Hz, {args.block}-sample blocks on "
          f"{'the default device' if device is None else repr(device)}: {engine.xruns} xruns, "
          f"{engine.max_voices_seen} voices max, callback p50 {p50:.1%} p99 {p99:.1%} p99.9 {p999:.1%} of the "
          f"{budget_ms:.2f} ms budget, max {engine.timings().max(initial=0) * 1000:.2f} ms ({engine.callbacks} callbacks)")
    return 0
