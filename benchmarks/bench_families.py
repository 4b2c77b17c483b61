"""``eigentone bench families``: every family trained from recordings alone, side by side.

Part 1, held-out notes: ``eigentone simulate string --nonlinear --excitation pluck`` writes 16 plucked notes of
a tension-modulated (Kirchhoff-Carrier) nylon string as labelled WAVs (one gain for the folder, labels.csv:
note, velocity, position); each family trains on 12 of them (``--hold-out 4``: four notes inside the range,
evenly spaced) from the audio alone and plays the 4 it never heard, through the graphs it exports, as the
engine plays them. Per family, means over the held-out notes of:

* fundamental error, cents: |median f0 of the model's note - median f0 of the recording| (f0 tracks by
  short-window ESPRIT, ``training.metrics.fundamental_trajectory``: the recording's lowest strong partial,
  the model's partial nearest the recording's pitch unless a strong partial lies at 1/2 or 1/3 of it, so a
  model playing an octave off scores an octave off);
* pitch-glide error, cents: max |cents| between the two f0 tracks, frame by frame (the glide of a hard
  pluck's first frames and the settled pitch after it);
* log-spectral distance (dB) and multi-resolution STFT distance of the whole note.

Baseline measured in the same run: the classic sampler answer, the nearest training note resampled to the
held-out pitch (its glide and decays come from a note that was really played). Ratios are family / baseline.

Part 2, one real recording: each family fitted to ``assets/audio/nylon_b3.flac`` and rendered at its
labelled note: partial error (cents, mean over matched partials), T60 error (relative, mean) and LSD.

Floors (exit 1 when missed): on held-out notes every family's fundamental error <= 5 cents and glide error
<= 10 cents; on the recording every family's mean partial error <= 5 cents.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

HELP = "every family trained from recordings alone: held-out notes (pitch, glide, LSD, MR-STFT) and nylon_b3.flac"
EXAMPLE = "eigentone bench families --steps 300"

FAMILIES = ("ssm", "koopman", "fno")
FLOORS = {"fundamental_cents": 5.0, "glide_cents": 10.0, "recording_partial_cents": 5.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=300, help="gradient steps per family (default 300)")
    parser.add_argument("--recording-steps", type=int, default=100,
                        help="gradient steps per family on nylon_b3.flac (default 100)")
    parser.add_argument("--seed", type=int, default=4,
                        help="simulation seed (default 4: two of the held-out notes glide, by 8 and 25 cents)")
    parser.add_argument("--out", default=None, help="keep the WAVs and run folders here (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _nearest_resampled(train, rec) -> np.ndarray:
    """The sampler baseline: the training note nearest in pitch, resampled to ``rec``'s note, its length."""
    import librosa

    near = min(train, key=lambda r: abs(r.note - rec.note))
    ratio = 2.0 ** ((rec.note - near.note) / 12.0)  # play it faster by this factor
    shifted = librosa.resample(near.audio.astype(np.float64), orig_sr=near.sample_rate * ratio,
                               target_sr=near.sample_rate, res_type="soxr_hq")
    out = np.zeros(rec.audio.size)
    out[: min(out.size, shifted.size)] = shifted[: out.size]
    return out * (rec.velocity / near.velocity)


def held_out(work: Path, args: argparse.Namespace) -> dict:
    """Part 1: simulate, train each family on 12 notes, score the 4 held-out ones (and the baseline)."""
    from eigentone.cli import main as eigentone_main
    from eigentone.contract.reference import midi_to_hz
    from training.data.sources import load_training_data
    from training.families.recordings import note_report, render_note, settled_pitch
    from training.fit import train
    from training.metrics import cents
    from training.run_folder import load_run

    wavs = work / "notes"
    if not wavs.exists():
        argv = ["simulate", "string", "--nonlinear", "--excitation", "pluck", "--count", "16", "--sample-rate", "16000",
                "--duration", "1.0", "--seed", str(args.seed), "--out", str(work / "notes.h5"), "--wav-dir", str(wavs)]
        if eigentone_main(argv) != 0:
            raise RuntimeError("eigentone " + " ".join(argv) + " failed")
    data = load_training_data(wavs, hold_out=4)
    test, trained = data.subset("test"), data.subset("train")
    glides = [settled_pitch(rec, float(midi_to_hz(rec.note))) for rec in test]
    results: dict = {"notes": [r.note for r in test], "families": {},
                     "glide_ref_cents": [float(cents(early, late)) for early, _, late, _ in glides]}
    base = [note_report(_nearest_resampled(trained, rec), rec.audio.astype(np.float64), rec.sample_rate) for rec in test]
    results["baseline"] = {k: float(np.mean([b[k] for b in base])) for k in base[0]}
    for family in FAMILIES:
        run_dir = work / f"run-{family}"
        started = time.perf_counter()
        train(family, data, run_dir, steps=args.steps, seed=0, hold_out=4, quiet=True)
        seconds = time.perf_counter() - started
        graphs = load_run(run_dir).graphs()
        scores = [note_report(render_note(graphs, rec), rec.audio.astype(np.float64), rec.sample_rate) for rec in test]
        results["families"][family] = {**{k: float(np.mean([s[k] for s in scores])) for k in scores[0]},
                                       "per_note": scores, "train_seconds": seconds}
    return results


def recording(work: Path, args: argparse.Namespace) -> dict:
    """Part 2: each family fitted to the shipped nylon B3 recording, rendered at its labelled note."""
    import assets
    from training import metrics as M
    from training.data.sources import load_training_data
    from training.families.recordings import render_note
    from training.fit import train
    from training.run_folder import load_run

    path = assets.path("audio/nylon_b3.flac")
    data = load_training_data(path)
    rec = data.recordings[0]
    out = {}
    for family in FAMILIES:
        run_dir = work / f"nylon-{family}"
        train(family, data, run_dir, steps=args.recording_steps, seed=0, quiet=True)
        pred = render_note(load_run(run_dir).graphs(), rec)
        report = M.audio_report(pred, rec.audio.astype(np.float64), rec.sample_rate)
        out[family] = {k: report[k] for k in ("partial_cents_mean", "partial_cents_max", "t60_rel_error_mean",
                                               "t60_broadband_rel_error", "lsd_db") if k in report}
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-families-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        part1 = held_out(work, args)
        part2 = recording(work, args)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    base = part1["baseline"]
    print(f"\nheld-out notes {', '.join(f'{n:.0f}' for n in part1['notes'])} of 16 simulated nonlinear plucks "
          f"(trained on the other 12, audio only, {args.steps} steps); their glides "
          f"{', '.join(f'{g:.1f}' for g in part1['glide_ref_cents'])} cents")
    print(f"{'family':22s} {'fundamental (cents)':>20s} {'glide (cents)':>14s} {'LSD (dB)':>10s} {'MR-STFT':>9s} "
          f"{'LSD / base':>11s} {'MR-STFT / base':>15s}")
    for name, r in [("nearest note resampled", base), *part1["families"].items()]:
        print(f"{name:22s} {r['fundamental_cents']:20.2f} {r['glide_cents']:14.2f} {r['lsd_db']:10.2f} "
              f"{r['mr_stft']:9.3f} {r['lsd_db'] / base['lsd_db']:11.2f} {r['mr_stft'] / base['mr_stft']:15.2f}")
    print(f"\nassets/audio/nylon_b3.flac fitted by each family ({args.recording_steps} steps), rendered at B3")
    print(f"{'family':22s} {'partial error (cents)':>22s} {'T60 error (rel.)':>17s} {'LSD (dB)':>10s}")
    for name, r in part2.items():
        print(f"{name:22s} {r.get('partial_cents_mean', float('nan')):22.2f} "
              f"{r.get('t60_rel_error_mean', float('nan')):17.3f} {r['lsd_db']:10.2f}")
    missed = [f"{name}: {key} {r[key]:.2f} > {FLOORS[key]:g}" for name, r in part1["families"].items()
              for key in ("fundamental_cents", "glide_cents") if not r[key] <= FLOORS[key]]
    missed += [f"{name} on nylon_b3: partial error {r.get('partial_cents_mean', float('nan')):.2f} > "
               f"{FLOORS['recording_partial_cents']:g}" for name, r in part2.items()
               if not r.get("partial_cents_mean", float("inf")) <= FLOORS["recording_partial_cents"]]
    print(f"\nfloors: held-out fundamental <= {FLOORS['fundamental_cents']:g} cents, glide <= "
          f"{FLOORS['glide_cents']:g} cents, recording partials <= {FLOORS['recording_partial_cents']:g} cents: "
          f"{'missed: ' + '; '.join(missed) if missed else 'met'} ({time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"held_out": part1, "nylon_b3": part2}, indent=1, default=float))
    return 1 if missed else 0
