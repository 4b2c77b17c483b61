"""`eigentone render`: a MIDI file through the engine to a WAV, offline and deterministic."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eigentone import limits
from eigentone.errors import EigentoneError, first_line, printable
from eigentone.files import check_output, register_input
from eigentone.limits import finite_number
from engine.bundle import MODELS_DIR
from engine.loudness import LoudnessMeter
from engine.midi_file import read_midi
from engine.render import WAV_SUBTYPES, WavWriter, instruments_for_channels, render_frames, render_midi
from engine.synth import check_options
from plugins.effects import EffectsChain

HELP = "render a MIDI file offline with one or more instrument bundles to a WAV"
EXAMPLE = "eigentone render song.mid --model modal-string --effects assets/effects/default.json --out song.wav"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("midi", help="Standard MIDI file to render")
    parser.add_argument("--model", action="append", default=[], metavar="BUNDLE",
                        help="bundle path or name in assets/models/; repeat: the k-th plays MIDI channel k, the first "
                             "also every other channel (default: SONG.instruments.json beside the MIDI file, "
                             "else every bundle in assets/models/)")
    parser.add_argument("--model-for-channel", action="append", default=[], metavar="CH=BUNDLE",
                        help="bundle for MIDI channel CH (1-16), overriding --model")
    parser.add_argument("--out", required=True, help="output WAV (stereo)")
    add_synth_arguments(parser)
    parser.add_argument("--format", choices=sorted(WAV_SUBTYPES), default="pcm24", help="WAV sample format")
    parser.add_argument("--no-limit", action="store_true",
                        help="float WAVs only: no output limiter (samples may exceed full scale; NaN/Inf are still "
                             "zeroed)")
    parser.add_argument("--spectrogram", help="also save a spectrogram PNG of the result")


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the synth and its effects chain, shared by `render` and `play`."""
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument("--block", type=int, default=64, help="block size in samples (default 64)")
    parser.add_argument("--voices", type=int, default=64, help="voice slots per instrument (default 64)")
    parser.add_argument("--effects", help="effects chain JSON (e.g. assets/effects/default.json)")
    parser.add_argument("--gain-db", type=float, default=0.0, help="output gain before the limiter, dB")
    parser.add_argument("--bend-range", type=float, default=2.0, help="pitch-bend range in semitones (default 2)")
    parser.add_argument("--mono", action="store_true", help="one voice per MIDI channel")
    parser.add_argument("--position", type=float, default=0.2,
                        help="excitation point 0..1 sent to the models (MIDI CC1 also sets it; default 0.2)")
    parser.add_argument("--position-y", type=float, default=0.37, help="second excitation coordinate 0..1 (plates)")
    parser.add_argument("--release-time", type=float, metavar="SECONDS",
                        help="T60 after note-off (default: each bundle's own)")
    parser.add_argument("--decay-scale", type=float, default=1.0,
                        help="multiply every mode's T60 by this, 0.25..4 (default 1)")
    parser.add_argument("--brightness", type=float, default=0.0,
                        help="spectral tilt -1..1: +1 = +6 dB per octave above each note's fundamental (default 0)")


SYNTH_FLAGS = {"release_time": "--release-time", "decay_scale": "--decay-scale", "brightness": "--brightness",
               "position": "--position", "position_y": "--position-y"}


def synth_options(args: argparse.Namespace) -> dict:
    """Synth keyword arguments from the options of ``add_synth_arguments``, validated (EigentoneError naming
    the option: non-finite numbers, values out of range or past a limit of eigentone/limits.py)."""
    check_synth_arguments(args)
    options = {name: getattr(args, name) for name in SYNTH_FLAGS}
    try:
        check_options(**options)
    except ValueError as exc:
        name = str(exc).split()[0]
        raise EigentoneError(f"{SYNTH_FLAGS[name]} {str(exc).split(' ', 1)[1]}") from None
    return {"gain": 10 ** (args.gain_db / 20), "bend_range": args.bend_range, "mono": args.mono, **options}


def check_synth_arguments(args: argparse.Namespace) -> None:
    """Validate the numbers of ``add_synth_arguments`` before anything is loaded or allocated."""
    finite_number("--sample-rate", args.sample_rate, 8000, 384000, integer=True)
    finite_number("--block", args.block, 1, 8192, integer=True)
    finite_number("--voices", args.voices, 1, None, integer=True)
    limits.check("voices", args.voices, "--voices")
    finite_number("--gain-db", args.gain_db, -200.0, None)
    limits.check("gain-db", args.gain_db, "--gain-db")
    finite_number("--bend-range", args.bend_range, 0.0, None)
    limits.check("bend-range", args.bend_range, "--bend-range")
    finite_number("--position", args.position, 0.0, 1.0)
    if getattr(args, "release_time", None) is not None:
        finite_number("--release-time", args.release_time, 1e-3, 600.0)


def parse_channel_models(entries: list[str]) -> dict[int, str]:
    mapping = {}
    for entry in entries:
        channel, sep, model = entry.partition("=")
        if not sep or not channel.strip().isdigit() or not 1 <= int(channel) <= 16 or not model:
            raise EigentoneError(f"--model-for-channel {entry!r}: expected CH=BUNDLE with CH in 1..16")
        mapping[int(channel) - 1] = model
    return mapping


def default_models() -> list[str]:
    """Every shipped bundle in assets/models/, sorted by name."""
    return sorted(str(p) for p in MODELS_DIR.glob("*.etone")) if MODELS_DIR.is_dir() else []


def arrangement_for(midi_path: str | Path) -> dict[int, str]:
    """The song's own channel -> bundle map, from ``SONG.instruments.json`` beside ``SONG.mid``, if any.

    The file maps MIDI channels 1-16 (as strings) to bundle paths or shipped names, e.g.
    ``{"1": "nylon-string", "2": "steel-string"}``. Returns 0-based channels; {} when there is no file.
    """
    sidecar = Path(midi_path).with_suffix(".instruments.json")
    if not sidecar.is_file():
        return {}
    if sidecar.stat().st_size > 1 << 16:
        raise EigentoneError(f"{sidecar}: too big for a channel -> instrument map (64 kB at most)")
    register_input(sidecar)
    try:
        entries = json.loads(sidecar.read_text(encoding="utf-8"))
        mapping = {int(channel) - 1: str(model) for channel, model in entries.items()}
    except (ValueError, AttributeError, OSError, RecursionError) as exc:
        raise EigentoneError(f"{sidecar}: not a channel -> instrument map ({first_line(exc)})") from None
    if not all(0 <= ch < 16 for ch in mapping):
        raise EigentoneError(f"{sidecar}: MIDI channels must be 1..16")
    return mapping


LONG_RENDER_S = 120.0
"""Songs longer than this (seconds of audio) get a one-line estimate before the render and progress lines."""

PROGRESS_EVERY_S = 10.0
"""Wall-clock seconds between progress lines when stderr is not a terminal (a terminal gets a live bar)."""

FIRST_ESTIMATE_S = 2.0
"""Wall-clock seconds after which the first progress line gives the time left at the speed measured so far."""


def run(args: argparse.Namespace) -> int:
    check_synth_arguments(args)
    if args.no_limit and args.format != "float":
        raise EigentoneError("--no-limit needs --format float (pcm16/pcm24 cannot hold samples at or above full scale)")
    check_output(args.out, "--out")
    schedule = read_midi(args.midi, args.sample_rate)
    per_channel = parse_channel_models(args.model_for_channel)
    models = args.model
    if not models:
        arrangement = arrangement_for(args.midi)
        models = [arrangement[min(arrangement)]] if arrangement else default_models()
        per_channel = {**arrangement, **per_channel}
    if not models:
        raise EigentoneError("no --model given and assets/models/ has no .etone bundles")
    channel_map = instruments_for_channels(models, per_channel)
    effects = EffectsChain.from_json(args.effects) if args.effects else None
    frames = render_frames(schedule, args.sample_rate, 10.0, 2.0, effects is not None)
    if args.spectrogram:
        check_output(args.spectrogram, "--spectrogram")
        if os.path.abspath(args.spectrogram) == os.path.abspath(args.out):
            raise EigentoneError(f"{args.spectrogram}: --spectrogram and --out are the same file")
        limits.check_memory(f"{args.spectrogram}: spectrogram of {frames / args.sample_rate:.0f} s",
                            spectrogram_bytes(frames))
    song_s = schedule.length / args.sample_rate
    if song_s > LONG_RENDER_S:
        size = frames * 2 * {"pcm16": 2, "pcm24": 3, "float": 4}[args.format]
        print(f"eigentone: rendering {song_s / 60:.1f} min of audio from {args.midi} ({len(schedule.frames):,} events, "
              f"up to {size / 1e9:.2f} GB of WAV); progress follows", file=sys.stderr)
    meter = LoudnessMeter(args.sample_rate, 2)
    mono = np.zeros(frames + args.block, np.float32) if args.spectrogram else None
    progress = Progress(schedule.length, args.sample_rate, Path(args.midi).name, song_s > LONG_RENDER_S)
    with WavWriter(args.out, args.sample_rate, 2, args.format, expected_frames=frames) as wav:

        def sink(block: np.ndarray) -> None:
            if mono is not None:
                mono[wav.frames : wav.frames + block.shape[1]] = block.mean(axis=0)
            wav.write(block)
            meter.add(block)

        try:
            result = render_midi(schedule, channel_map, sample_rate=args.sample_rate, block_size=args.block,
                                 max_voices=args.voices, effects=effects, progress=progress.update, sink=sink,
                                 limit=not args.no_limit, **synth_options(args))
        finally:
            progress.close()
    if mono is not None:
        from engine.spectrogram import save_spectrogram

        save_spectrogram(mono[: result.frames], args.sample_rate, args.spectrogram, title=Path(args.midi).name)
    for line in result.warnings():
        print(f"eigentone: warning: {line}", file=sys.stderr)
    peak_db = 20 * np.log10(wav.peak) if wav.peak > 0 else float("-inf")
    seconds = result.frames / args.sample_rate
    print(f"rendered {printable(args.midi)} -> {printable(args.out)}: {seconds:.1f} s at {args.sample_rate} Hz in "
          f"{result.seconds:.2f} s ({result.realtime_factor:.1f}x real time; CPU {result.cpu_seconds:.2f} s = "
          f"{result.cpu_realtime_factor:.1f}x), {result.max_voices_used} voices max, peak {peak_db:.1f} dBFS, "
          f"loudness {meter.integrated():.1f} LUFS, {len(result.faults)} muted voices")
    return 0


def spectrogram_bytes(frames: int) -> int:
    """Memory of ``--spectrogram``: the mono mix (float32) plus the STFT of at most MAX_FRAMES frames."""
    from engine.spectrogram import MAX_FRAMES, N_FFT

    return 4 * frames + 3 * 8 * MAX_FRAMES * N_FFT


class Progress:
    """Render progress on stderr: a tqdm bar on a terminal; otherwise, for long songs, a first estimate after
    FIRST_ESTIMATE_S seconds, then a line every PROGRESS_EVERY_S seconds, each with the share done and the time
    left at the speed so far."""

    def __init__(self, total_frames: int, sample_rate: float, name: str, long: bool):
        self.total = max(total_frames, 1)
        self.rate = sample_rate
        self.done = 0
        self.started = time.monotonic()
        self.next_line = self.started + FIRST_ESTIMATE_S
        self.lines = long and not sys.stderr.isatty()
        self.bar = tqdm(total=total_frames, unit="smp", unit_scale=True, desc=printable(name, 40), leave=False,
                        file=sys.stderr, disable=None)

    def update(self, frames: int) -> None:
        self.done += frames
        self.bar.update(frames)
        if self.lines and (now := time.monotonic()) >= self.next_line:
            self.next_line = now + PROGRESS_EVERY_S
            share = min(self.done / self.total, 1.0)
            left = (now - self.started) * (1 - share) / max(share, 1e-9)
            print(f"eigentone: {share:.0%} rendered ({self.done / self.rate:.0f} of {self.total / self.rate:.0f} s), "
                  f"about {left:.0f} s left", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
