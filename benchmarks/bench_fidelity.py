"""``eigentone bench fidelity``: learned instruments against classic resynthesis on real recordings.

For every recording of the development set (``eigentone devset build``), in the same run:

* **model**: ``eigentone train ssm FILE`` (the user's command, report included; wall time measured), its
  note rendered by the exported model's contract in float64 at the file's label (with its attack component
  when the bundle has one, and once more without it);
* **classic**: non-learned sinusoidal resynthesis, the bar to beat: the 40 strongest spectral peaks of the
  same recording (``training.modal_analysis.spectral_peaks``), each with its frequency and decay, and
  amplitudes and phases by joint least squares over the scored segment, summed.

The fits are independent and single-threaded: ``--jobs N`` runs N at a time in separate processes, with the
same scores as one at a time (the wall times then include the other fits' turns). Both are scored by
``training.metrics.recording_scores`` (first 3 s, level-matched; partials by
independent peak matching) and summarised per group and part (``tune``: what settings were tuned on;
``holdout``: never tuned on) as medians over files.

Conditioned instruments (``--conditioned``): the instrument's notes of the dev set (one recording per note:
repitched copies of another note's sample are left out by ``eigentone devset build``) sorted by note, the
1st, 3rd, 5th, ... trained on (laws fitted across notes, ``training.conditioned_laws``, its default laws: pitch,
decay and body, each partial's deviations from them moved part of the way toward the other neighbour's, and the
nearest trained note's 0.5 s residual resampled to the pitch) and the 2nd, 4th, ...
held out; the held-out notes are played by (a) that model, (b) the single-note model of the nearest trained note transposed,
(c) a plain sampler: the nearest trained recording resampled to the held-out pitch.
``--conditioned all`` does this for every instrument with at least 5 distinct notes in the parts chosen by
``--part`` (both by default), and prints per part how many instruments meet each floor.

Floors (exit status 1 when any is missed, each printed with its value): on the holdout part, per group,
the model's median MR-STFT and LSD at most the classic's, with its attack component and without it (the modes
alone), T60 error <= 10% median, partials <= 1 cent median, no failed fit; in both parts, every recording of at most 4 s fitted within 20 s of wall time (the CPU seconds of
the fit are printed beside it: on a shared machine wall time also counts the other jobs' turns); conditioned: held-out fundamental within 5 cents (median), partials within 3 cents and T60 within
20% (medians), and MR-STFT and LSD medians below both baselines'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

HELP = "fit every recording of the dev set; score the models against classic sinusoidal resynthesis"
EXAMPLE = "eigentone bench fidelity --devset runs/devset --out runs/fidelity.json"

CLASSIC_PEAKS = 40
FIT_RECORDING_SECONDS = 4.0
FIT_SECONDS = 20.0
"""Speed floor: every recording up to 4 s fitted (``train ssm``, report included) within 20 s of wall time."""
CONDITIONED = ("fluid-nylon-guitar", "fluid-glockenspiel", "freepats-nylon-guitar", "fluid-celesta")
"""Instruments trained on every other note by default: a guitar and a bar instrument of each part. The bars are
those of each part with the most distinct recordings (FluidR3's marimba and xylophone are one bar each,
repitched)."""
ELIGIBLE_NOTES = 5
"""``--conditioned all``: every dev-set instrument with at least this many distinct notes (every other one held out
leaves 2 or more to score) in the parts chosen by ``--part``."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devset", default="runs/devset", help="folder written by `eigentone devset build`")
    parser.add_argument("--out", default=None, help="JSON results (default: WORK/fidelity.json)")
    parser.add_argument("--work", default="runs/fidelity", help="run directories of the fits (default runs/fidelity)")
    parser.add_argument("--group", action="append", help="only these groups (repeatable)")
    parser.add_argument("--part", choices=["tune", "holdout", "both"], default="both")
    parser.add_argument("--instrument", action="append", help="only these instruments (repeatable)")
    parser.add_argument("--max-per-instrument", type=int, default=0, help="at most N notes per instrument, spread "
                        "over its range (default 0 = all)")
    parser.add_argument("--conditioned", nargs="*", default=None, help="instruments for the held-out-note test "
                        f"(default: {' '.join(CONDITIONED)}; 'all': every instrument with >= {ELIGIBLE_NOTES} "
                        "distinct notes in the parts chosen by --part; give none to skip)")
    parser.add_argument("--no-single", action="store_true", help="skip the per-recording fits")
    parser.add_argument("--jobs", type=int, default=1, help="fit N recordings at a time, one process and one "
                        "thread each (default 1; the scores do not depend on it, the wall times do)")


# ---------------------------------------------------------------- baselines


def classic_resynthesis(x: np.ndarray, sample_rate: float, n_samples: int, peaks: int = CLASSIC_PEAKS) -> np.ndarray:
    """(n_samples,) sum of the ``peaks`` strongest spectral peaks of x, decays from each peak's envelope,
    amplitudes and phases by joint least squares over the first n_samples of x."""
    from training.modal_analysis import fit_amplitudes, spectral_peaks

    seg = np.asarray(x, np.float64)[:n_samples]
    pk = spectral_peaks(seg, sample_rate, count=peaks, floor_db=-80.0, decay_seconds=n_samples / sample_rate)
    sigma = np.maximum(pk.sigma, 1e-3)
    amps = fit_amplitudes(seg, sample_rate, pk.freqs_hz, sigma)
    poles = -sigma + 2j * np.pi * pk.freqs_hz
    t = np.arange(n_samples) / sample_rate
    return np.real(np.exp(np.outer(t, poles)) @ amps)


def sampler(x: np.ndarray, from_note: float, to_note: float, n_samples: int) -> np.ndarray:
    """A plain sampler: recording x played at another pitch (resampled by 2^((to - from)/12)), (n_samples,)."""
    ratio = 2.0 ** ((to_note - from_note) / 12.0)
    src = np.arange(n_samples) * ratio
    out = np.interp(src, np.arange(x.size), np.asarray(x, np.float64), right=0.0)
    return out


# ---------------------------------------------------------------- fitting through the user's command


def _label_link(folder: Path, source: Path, note: float) -> Path:
    """A link to ``source`` named by its fractional MIDI note, so the trainer reads the label from the name."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"{note:.3f}{source.suffix}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source.resolve())
    return link


def fit(data: Path, run_dir: Path) -> tuple[Any, dict, float]:
    """``eigentone train ssm DATA --out RUN_DIR`` (fresh run, output captured): (excite module, bundle manifest
    extras, seconds)."""
    import shutil

    from training.fit import train
    from training.run_folder import load_run

    if run_dir.exists():
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train("ssm", data, run_dir, quiet=True)
    seconds = time.perf_counter() - start
    graphs = load_run(run_dir).graphs()
    return graphs.excite, graphs.info.extra, seconds


def render(excite: Any, note: float, velocity: float, sample_rate: float, n_samples: int, attack: bool = True) -> np.ndarray:
    """(n_samples,) the model's note in float64 closed form (+ its attack table when it has one and ``attack``)."""
    import torch

    from training.report import controls_tensor, render_contract

    with torch.no_grad():
        out = excite(controls_tensor(note, velocity))
    y = render_contract(out, sample_rate, n_samples)[0]
    if attack and "attack" in out:
        table = out["attack"][0].double().numpy()
        y[: table.size] += table[: n_samples]
    return y


# ---------------------------------------------------------------- the bench


def select(files: list[dict], args: argparse.Namespace) -> list[dict]:
    """Files of the chosen groups, parts and instruments (at most N per instrument, spread over the range)."""
    chosen = [f for f in files if (not args.group or f["group"] in args.group)
              and (args.part == "both" or f["part"] == args.part)
              and (not args.instrument or f["instrument"] in args.instrument)]
    if args.max_per_instrument > 0:
        out = []
        for name in dict.fromkeys(f["instrument"] for f in chosen):
            notes = [f for f in chosen if f["instrument"] == name]
            idx = np.unique(np.linspace(0, len(notes) - 1, args.max_per_instrument).round().astype(int))
            out += [notes[i] for i in idx]
        chosen = out
    return chosen


def single_recording(root: Path, entry: dict, work: Path) -> dict:
    """Fit, render and score one dev-set file; classic resynthesis beside it. The row: the index entry plus
    ``model`` (and ``model_no_attack``) and ``classic`` scores, fit wall and CPU seconds; a fit that fails is
    kept as ``model_error`` (one line) and counted as a failure, never dropped."""
    from training.data.audio import load_recording
    from training.metrics import SCORE_SECONDS, recording_scores

    rec = load_recording(root / entry["file"])
    fs = rec.sample_rate
    ref = rec.audio.astype(np.float64)
    n = int(min(ref.size, SCORE_SECONDS * fs))
    name = entry["file"].replace("/", "_").rsplit(".", 1)[0]
    row = {**entry}
    try:
        cpu = time.process_time()
        excite, manifest, seconds = fit(_label_link(work / "links" / name, root / entry["file"], entry["note"]),
                                        work / "single" / name)
        pred = render(excite, entry["note"], rec.velocity, fs, n)
        row["model"] = recording_scores(pred, ref, fs, note=entry["note"])
        if manifest.get("attack"):
            row["model_no_attack"] = recording_scores(render(excite, entry["note"], rec.velocity, fs, n, attack=False),
                                                      ref, fs, note=entry["note"])
        row["fit_seconds"] = seconds
        row["fit_cpu_seconds"] = time.process_time() - cpu  # this process only, all its threads
        row["recording_seconds"] = ref.size / fs
    except EigentoneError as exc:
        row["model_error"] = str(exc)
    row["classic"] = recording_scores(classic_resynthesis(ref, fs, n), ref, fs, note=entry["note"])
    return row


def _one_thread() -> None:
    """Worker start-up: one torch and one BLAS thread per process, as in the bench's own process."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def single_recordings(root: Path, files: list[dict], work: Path, jobs: int = 1) -> list[dict]:
    """``single_recording`` of every file, in the order given, in ``jobs`` processes (1: in this process).

    Each file's fit is independent of the others and single-threaded, so the rows are the same for any
    ``jobs``; only the wall and CPU seconds differ.
    """
    def report(i: int, row: dict) -> None:
        m, a, nan = row.get("model", {}), row.get("model_no_attack", {}), float("nan")
        print(f"  [{i}/{len(files)}] {row['file']:48s} fit {row.get('fit_seconds', nan):5.1f} s  "
              f"LSD {m.get('lsd_db', nan):5.2f}/{row['classic']['lsd_db']:5.2f} (no attack {a.get('lsd_db', nan):5.2f})  "
              f"MR-STFT {m.get('mr_stft', nan):5.2f}/{row['classic']['mr_stft']:5.2f} (no attack {a.get('mr_stft', nan):5.2f})  "
              f"cents {m.get('partial_cents_median', nan):5.2f}  T60 {m.get('t60_error_median', nan):5.2f}"
              + (f"  ERROR {row['model_error']}" if "model_error" in row else ""), flush=True)

    rows = []
    if jobs <= 1:
        for i, entry in enumerate(files, 1):
            rows.append(single_recording(root, entry, work))
            report(i, rows[-1])
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent has started torch's thread pools, which a forked child cannot use safely
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        for i, row in enumerate(pool.map(single_recording, [root] * len(files), files, [work] * len(files)), 1):
            rows.append(row)
            report(i, row)
    return rows


def eligible_instruments(files: list[dict], part: str = "both", min_notes: int = ELIGIBLE_NOTES) -> list[str]:
    """Instruments of the dev-set index with at least ``min_notes`` distinct notes, in ``part`` ("tune", "holdout"
    or "both"), tune part first, then by name."""
    notes: dict[tuple[str, str], set[float]] = {}
    for f in files:
        if part in ("both", f["part"]):
            notes.setdefault((f["part"], f["instrument"]), set()).add(round(float(f["note"]), 2))
    return [name for (p, name), n in sorted(notes.items(), key=lambda kv: (kv[0][0] != "tune", kv[0][1]))
            if len(n) >= min_notes]


def conditioned(root: Path, files: list[dict], instrument: str, work: Path) -> dict:
    """Train on every other note of ``instrument``; play the notes between three ways and score them.

    model: the laws fitted across the trained notes (``training.conditioned_laws``); transposed: the nearest
    trained note's single-recording model (``eigentone train ssm FILE``) played at the held-out note;
    sampler: the nearest trained recording resampled.
    """
    from training.conditioned_laws import fit_instrument
    from training.data.audio import at_rate, load_folder, load_recording
    from training.metrics import SCORE_SECONDS, recording_scores

    notes = sorted((f for f in files if f["instrument"] == instrument), key=lambda f: f["note"])
    if len(notes) < 3:
        raise EigentoneError(f"{instrument}: needs at least 3 notes for a held-out-note test, has {len(notes)}")
    trained, held = notes[0::2], notes[1::2]
    folder = work / "conditioned" / instrument / "train"
    for f in trained:
        _label_link(folder, root / f["file"], f["note"])
    start = time.perf_counter()
    chosen: dict = {}
    excite = fit_instrument(load_folder(folder), report=chosen)
    seconds = time.perf_counter() - start
    fs = excite.sample_rate  # the trained recordings' common rate (load_folder): every note is scored at it
    print(f"  laws: {'+'.join(chosen['laws']) or 'transposed'}", flush=True)
    singles = {}
    out = {"instrument": instrument, "group": notes[0]["group"], "part": notes[0]["part"], "fit_seconds": seconds,
           "trained_notes": [f["note"] for f in trained], "laws": chosen, "sample_rate": fs, "notes": []}
    for f in held:
        rec = load_recording(root / f["file"])
        ref = at_rate(rec.audio, rec.sample_rate, fs)
        n = int(min(ref.size, SCORE_SECONDS * fs))
        near = min(trained, key=lambda t: abs(t["note"] - f["note"]))
        near_rec = load_recording(root / near["file"])
        near_audio = at_rate(near_rec.audio, near_rec.sample_rate, fs)
        if near["file"] not in singles:
            name = near["file"].replace("/", "_").rsplit(".", 1)[0]
            source = root / near["file"]
            if near_rec.sample_rate != fs:  # the single-note model is fitted at the rate it is played at
                source = work / "conditioned" / instrument / f"{name}-{fs:g}Hz.wav"
                sf.write(source, near_audio, int(fs), subtype="FLOAT")
            singles[near["file"]] = fit(_label_link(work / "links" / name, source, near["note"]),
                                        work / "conditioned" / instrument / f"single-{name}")[0]
        row = {"file": f["file"], "note": f["note"], "nearest": near["file"],
               "model": recording_scores(render(excite, f["note"], rec.velocity, fs, n), ref, fs, note=f["note"]),
               "transposed": recording_scores(render(singles[near["file"]], f["note"], rec.velocity, fs, n), ref, fs,
                                              note=f["note"]),
               "sampler": recording_scores(sampler(near_audio, near["note"], f["note"], n), ref, fs, note=f["note"])}
        out["notes"].append(row)
        print(f"  {instrument} held-out {f['file'].rsplit('/', 1)[-1]:10s} f0 {row['model']['f0_cents']:+6.2f} c  "
              "MR-STFT " + " / ".join(f"{row[w]['mr_stft']:.2f}" for w in ("model", "transposed", "sampler"))
              + "  LSD " + " / ".join(f"{row[w]['lsd_db']:.2f}" for w in ("model", "transposed", "sampler"))
              + "  (model / transposed / sampler)", flush=True)
    return out


METRICS = ("partial_cents_median", "t60_error_median", "partials_present", "mr_stft", "lsd_db")


def _median(rows: list[dict], who: str, key: str) -> float:
    values = [r[who][key] for r in rows if who in r and np.isfinite(r[who].get(key, np.nan))]
    return float(np.median(values)) if values else float("nan")


def summarise(rows: list[dict]) -> dict:
    """Per group and part: file count and medians of the model's and the classic's scores."""
    table: dict = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        for part in ("tune", "holdout"):
            sel = [r for r in rows if r["group"] == group and r["part"] == part]
            if not sel:
                continue
            entry = {"files": len(sel), "failed": sum("model_error" in r for r in sel)}
            for who in ("model", "model_no_attack", "classic"):
                entry[who] = {k: _median(sel, who, k) for k in METRICS}
            fits = [r["fit_seconds"] for r in sel if "fit_seconds" in r]
            entry["fit_seconds_median"] = float(np.median(fits)) if fits else float("nan")
            entry["fit_seconds_max"] = float(np.max(fits)) if fits else float("nan")
            short = [r["fit_seconds"] for r in sel if "fit_seconds" in r and r["recording_seconds"] <= FIT_RECORDING_SECONDS]
            entry["fit_seconds_max_short"] = float(np.max(short)) if short else float("nan")
            cpu = [r["fit_cpu_seconds"] for r in sel if "fit_cpu_seconds" in r]
            entry["fit_cpu_seconds_max"] = float(np.max(cpu)) if cpu else float("nan")
            entry["lsd_model_better"] = sum(r["model"]["lsd_db"] <= r["classic"]["lsd_db"] for r in sel if "model" in r)
            table.setdefault(part, {})[group] = entry
    return table


def floors(table: dict, conditioned_results: list[dict]) -> list[tuple[str, float, float, bool]]:
    """(what, value, floor, passed) for every floor of the issue that this run measured."""
    checks = []
    for group, entry in table.get("holdout", {}).items():
        m, c = entry["model"], entry["classic"]
        checks += [
            (f"holdout {group}: MR-STFT model <= classic", m["mr_stft"], c["mr_stft"], m["mr_stft"] <= c["mr_stft"]),
            (f"holdout {group}: LSD model <= classic", m["lsd_db"], c["lsd_db"], m["lsd_db"] <= c["lsd_db"]),
            (f"holdout {group}: T60 error median", m["t60_error_median"], 0.10, m["t60_error_median"] <= 0.10),
            (f"holdout {group}: partial cents median", m["partial_cents_median"], 1.0, m["partial_cents_median"] <= 1.0),
        ]
        a = entry["model_no_attack"]
        for key, label in (("mr_stft", "MR-STFT"), ("lsd_db", "LSD")):
            if np.isfinite(a[key]):  # the models have an attack component: the modes alone must beat classic too
                checks.append((f"holdout {group}: {label} model without its attack <= classic", a[key], c[key],
                               a[key] <= c[key]))
        if entry["failed"]:
            checks.append((f"holdout {group}: failed fits", entry["failed"], 0, False))
    for part, groups in table.items():
        for group, entry in groups.items():
            value = entry.get("fit_seconds_max_short", float("nan"))
            if np.isfinite(value):
                checks.append((f"{part} {group}: slowest fit of a recording <= {FIT_RECORDING_SECONDS:g} s, wall s",
                               value, FIT_SECONDS, value <= FIT_SECONDS))
    for inst in conditioned_results:
        checks += [(f"conditioned {inst['instrument']}: {what}", value, floor, ok)
                   for _, what, value, floor, ok in conditioned_checks(inst)]
    return checks


CONDITIONED_FLOORS = ("f0", "partials", "T60", "MR-STFT", "LSD")
"""Short names of the conditioned floors, in the order ``conditioned_checks`` gives them."""


def conditioned_checks(inst: dict) -> list[tuple[str, str, float, float, bool]]:
    """(floor, what, value, floor value, passed) for one conditioned instrument's held-out notes (medians)."""
    rows = inst["notes"]
    f0 = float(np.median([abs(r["model"]["f0_cents"]) for r in rows]))
    cents_, t60 = _median(rows, "model", "partial_cents_median"), _median(rows, "model", "t60_error_median")
    checks = [("f0", "held-out f0 cents median", f0, 5.0, f0 <= 5.0),
              ("partials", "partial cents median", cents_, 3.0, cents_ <= 3.0),
              ("T60", "T60 error median", t60, 0.2, t60 <= 0.2)]
    for short, key in (("MR-STFT", "mr_stft"), ("LSD", "lsd_db")):
        best = min(_median(rows, "transposed", key), _median(rows, "sampler", key))
        checks.append((short, f"{key} model < both baselines", _median(rows, "model", key), best,
                       _median(rows, "model", key) < best))
    return checks


def conditioned_counts(conditioned_results: list[dict]) -> dict:
    """Per part: {"instruments": n, floor: how many instruments meet it (``CONDITIONED_FLOORS``), "all": how many
    meet every one}."""
    counts: dict = {}
    for inst in conditioned_results:
        entry = counts.setdefault(inst["part"], {"instruments": 0, **dict.fromkeys(CONDITIONED_FLOORS, 0), "all": 0})
        checks = conditioned_checks(inst)
        entry["instruments"] += 1
        for short, *_, ok in checks:
            entry[short] += bool(ok)
        entry["all"] += all(ok for *_, ok in checks)
    return counts


def print_tables(table: dict, conditioned_results: list[dict]) -> None:
    head = (f"  {'group':14s} {'files':>5s} {'cents':>6s} {'T60 err':>7s} {'present':>7s} {'MR-STFT model/classic':>22s} "
            f"{'LSD dB model/classic':>21s} {'LSD better':>10s} {'fit s wall med/max':>18s}")
    for part, title in (("tune", "tuned-on part"), ("holdout", "held-out part (never tuned on)")):
        if part not in table:
            continue
        print(f"\n{title}: medians over files, first 3 s, level-matched")
        print(head)
        for group, e in table[part].items():
            m, c = e["model"], e["classic"]
            print(f"  {group:14s} {e['files']:5d} {m['partial_cents_median']:6.2f} {100 * m['t60_error_median']:6.0f}% "
                  f"{100 * m['partials_present']:6.0f}% {m['mr_stft']:10.2f} / {c['mr_stft']:<9.2f} "
                  f"{m['lsd_db']:9.2f} / {c['lsd_db']:<9.2f} {e['lsd_model_better']:4d}/{e['files']:<5d} "
                  f"{e['fit_seconds_median']:5.1f}/{e['fit_seconds_max']:<5.1f} (CPU max {e['fit_cpu_seconds_max']:.1f})"
                  + (f"  ({e['failed']} failed)" if e["failed"] else ""))
            if not all(math.isnan(v) for v in e["model_no_attack"].values()):
                a = e["model_no_attack"]
                print(f"  {'  no attack':14s} {'':5s} {a['partial_cents_median']:6.2f} {100 * a['t60_error_median']:6.0f}% "
                      f"{100 * a['partials_present']:6.0f}% {a['mr_stft']:10.2f} {'':11s} {a['lsd_db']:9.2f}")
    if conditioned_results:
        print("\nconditioned instruments, every other note held out: medians over held-out notes")
        print(f"  {'instrument':24s} {'part':8s} {'f0 cents':>8s} {'cents':>6s} {'T60 err':>7s} "
              f"{'MR-STFT model/transposed/sampler':>33s} {'LSD dB model/transposed/sampler':>32s}")
        for inst in conditioned_results:
            rows = inst["notes"]
            f0 = float(np.median([abs(r["model"]["f0_cents"]) for r in rows]))
            print(f"  {inst['instrument']:24s} {inst['part']:8s} {f0:8.2f} {_median(rows, 'model', 'partial_cents_median'):6.2f} "
                  f"{100 * _median(rows, 'model', 't60_error_median'):6.0f}%  "
                  + " / ".join(f"{_median(rows, w, 'mr_stft'):5.2f}" for w in ("model", "transposed", "sampler"))
                  + "       "
                  + " / ".join(f"{_median(rows, w, 'lsd_db'):5.2f}" for w in ("model", "transposed", "sampler")))
            f0_of = {w: float(np.nanmedian([abs(r[w]["f0_cents"]) for r in rows])) for w in ("transposed", "sampler")}
            print(f"  {'':24s} {'':8s} (f0 cents transposed {f0_of['transposed']:.2f}, sampler {f0_of['sampler']:.2f}; "
                  f"T60 err transposed {100 * _median(rows, 'transposed', 't60_error_median'):.0f}%, "
                  f"sampler {100 * _median(rows, 'sampler', 't60_error_median'):.0f}%; cents transposed "
                  f"{_median(rows, 'transposed', 'partial_cents_median'):.2f}, sampler "
                  f"{_median(rows, 'sampler', 'partial_cents_median'):.2f})")
        print("\nconditioned instruments meeting each floor, per part (f0 <= 5 cents, partials <= 3 cents, "
              "T60 <= 20%, MR-STFT and LSD below both baselines)")
        for part, entry in conditioned_counts(conditioned_results).items():
            n = entry["instruments"]
            print(f"  {part:8s} " + "  ".join(f"{short} {entry[short]}/{n}" for short in (*CONDITIONED_FLOORS, "all")))


def run(args: argparse.Namespace) -> int:
    import torch
    from threadpoolctl import threadpool_limits

    from training.data.devset import load_index

    if args.jobs < 1:
        raise EigentoneError(f"--jobs {args.jobs}: give the number of recordings to fit at a time, 1 or more")
    torch.set_num_threads(1)
    threadpool_limits(1)  # one BLAS thread: many small factorisations, and the machine is shared
    root, work = Path(args.devset), Path(args.work)
    files = load_index(root)
    chosen = select(files, args)
    start = time.perf_counter()
    rows = []
    if not args.no_single:
        print(f"fitting {len(chosen)} recordings of {root} (model / classic per file)")
        rows = single_recordings(root, chosen, work, args.jobs)
    wanted = CONDITIONED if args.conditioned is None else args.conditioned
    if wanted == ["all"]:
        wanted = eligible_instruments(files, args.part)
    cond = []
    for i, name in enumerate(wanted, 1):
        if args.instrument and name not in args.instrument:
            continue
        print(f"conditioned [{i}/{len(wanted)}]: {name}")
        cond.append(conditioned(root, files, name, work))
    table = summarise(rows)
    print_tables(table, cond)
    checks = floors(table, cond)
    print("\nfloors:")
    for what, value, floor, ok in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {what}: {value:.3g} (floor {floor:.3g})")
    elapsed = time.perf_counter() - start
    print(f"bench time {elapsed / 60:.1f} min")
    out = Path(args.out) if args.out else work / "fidelity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"files": rows, "summary": table, "conditioned": cond,
                                   "conditioned_counts": conditioned_counts(cond), "seconds": elapsed,
                                   "floors": [{"what": w, "value": v, "floor": f, "passed": bool(p)}
                                              for w, v, f, p in checks]}, indent=1, default=float))
    print(f"wrote {out}")
    return 0 if all(ok for *_, ok in checks) else 1
