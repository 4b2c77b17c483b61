"""`eigentone render`: a MIDI file through the engine to a WAV, offline and deterministic."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eigentone.errors import EigentoneError
from engine.bundle import MODELS_DIR
from engine.midi_file import read_midi
from engine.render import WAV_SUBTYPES, instruments_for_channels, render_midi, write_wav
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
    """Synth keyword arguments from the options of ``add_synth_arguments`` (EigentoneError for a value out of range)."""
    options = {name: getattr(args, name) for name in SYNTH_FLAGS}
    try:
        check_options(**options)
    except ValueError as exc:
        name = str(exc).split()[0]
        raise EigentoneError(f"{SYNTH_FLAGS[name]} {str(exc).split(' ', 1)[1]}") from None
    return {"gain": 10 ** (args.gain_db / 20), "bend_range": args.bend_range, "mono": args.mono, **options}


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
    try:
        entries = json.loads(sidecar.read_text(encoding="utf-8"))
        mapping = {int(channel) - 1: str(model) for channel, model in entries.items()}
    except (ValueError, AttributeError, OSError) as exc:
        raise EigentoneError(f"{sidecar}: not a channel -> instrument map ({exc})") from None
    if not all(0 <= ch < 16 for ch in mapping):
        raise EigentoneError(f"{sidecar}: MIDI channels must be 1..16")
    return mapping


def run(args: argparse.Namespace) -> int:
    if args.sample_rate < 8000 or args.sample_rate > 384000:
        raise EigentoneError(f"--sample-rate {args.sample_rate}: expected 8000..384000 Hz")
    if not 1 <= args.block <= 8192:
        raise EigentoneError(f"--block {args.block}: expected 1..8192 samples")
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
    bar = tqdm(total=schedule.length, unit="smp", unit_scale=True, desc=Path(args.midi).name, leave=False,
               file=sys.stderr, disable=None)
    try:
        result = render_midi(schedule, channel_map, sample_rate=args.sample_rate, block_size=args.block,
                             max_voices=args.voices, effects=effects, progress=bar.update, **synth_options(args))
    finally:
        bar.close()
    write_wav(args.out, result.audio, args.sample_rate, args.format)
    if args.spectrogram:
        from engine.spectrogram import save_spectrogram

        save_spectrogram(result.audio, args.sample_rate, args.spectrogram, title=Path(args.midi).name)
    for problem, instrument, channel, note in result.faults:
        print(f"eigentone: warning: muted a voice of {instrument} (channel {channel + 1}, note {note}): {problem}",
              file=sys.stderr)
    peak = float(np.max(np.abs(result.audio))) if result.audio.size else 0.0
    peak_db = 20 * np.log10(peak) if peak > 0 else float("-inf")
    lufs = integrated_loudness(result.audio, args.sample_rate)
    seconds = result.audio.shape[1] / args.sample_rate
    print(f"rendered {args.midi} -> {args.out}: {seconds:.1f} s at {args.sample_rate} Hz in {result.seconds:.2f} s "
          f"({result.realtime_factor:.1f}x real time; CPU {result.cpu_seconds:.2f} s = {result.cpu_realtime_factor:.1f}x), "
          f"{result.max_voices_used} voices max, peak {peak_db:.1f} dBFS, loudness {lufs:.1f} LUFS, "
          f"{len(result.faults)} muted voices")
    return 0


def integrated_loudness(audio: np.ndarray, sample_rate: float) -> float:
    """ITU-R BS.1770-4 integrated loudness in LUFS of (channels, samples) audio (-inf when silent or too short)."""
    import pyloudnorm

    if audio.shape[1] < int(0.4 * sample_rate) or not np.any(audio):
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio.T.astype(np.float64)))
