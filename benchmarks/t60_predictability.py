"""``eigentone bench t60-bounds``: how well can ANY law smooth across notes predict a held-out note's decays?

A diagnostic, not a floor: it always exits 0 (bad input: one line, exit 2). It answers the question behind the
conditioned T60 floor of ``eigentone bench fidelity --conditioned`` (held-out T60 error <= 20% median) on the
recordings themselves, without fitting any model. For every instrument the fidelity bench's conditioned part
takes (``--conditioned all``: at least ``ELIGIBLE_NOTES`` distinct notes; its split: notes sorted, the 1st, 3rd,
5th, ... trained on, the 2nd, 4th, ... held out; every note at the trained notes' common sample rate), each
held-out note's *scored partials* are the ones ``training.metrics.recording_scores`` scores on the recording
(``spectral_peaks`` over the first ``SCORE_SECONDS``, within ``PARTIAL_RANGE_DB`` of the strongest, at most
``MAX_SCORED_PARTIALS``, with a finite measured T60), and their measured T60s are compared with:

1. **neighbour oracle**: the two recorded neighbours' *measured* T60s, log T60 interpolated in log frequency
   within each neighbour (held at the end values outside its partials), the two combined in log T60 weighted by
   1 / note distance (one neighbour for the top note when it has none above). No model has these numbers.
2. **in-sample smooth bound**: ``law_features`` fitted to the scored partials of ALL the instrument's notes,
   held-out ones included (least absolute deviations in log T60), scored on the held-out notes. Two families:
   ``smooth``: log T60 = P(log f, note), a tensor-product polynomial of degree ``F_DEGREE`` in log f and
   ``NOTE_DEGREE`` in note (``--f-degree``, ``--note-degree``) (a smooth decay law, a smooth per-note damping level and their interaction);
   ``+partial``: the same plus, for every partial number (the partial's frequency over the note's, in semitone
   bins, so a bar's inharmonic modes are numbered too) found on at least 3 notes, its own offset and slope in
   note. Being fitted to the notes it is scored on, it is optimistic: when it misses 20%, the law of that family
   that best fits the whole instrument misses the floor, and one fitted to the trained notes alone cannot be
   expected to meet it. Strictly, a law of the family picked for the held-out notes alone (ignoring the trained
   ones) could score lower; the ``within`` figure is where that ends when the law's level may change freely from
   note to note. It fits a mean absolute log error, not the median it is scored by, so a fit aimed at the median
   itself could do somewhat better. A fit with fewer than
   ``MIN_POINTS_PER_COEFFICIENT`` partials per coefficient nearly interpolates them: it is marked ``*``. Under 20%
   an in-sample figure proves nothing (a richer family, ``--note-degree 4``, gets lower still); over 20% it is
   the evidence, for that family.
   ``trained``: the ``smooth`` family fitted to the trained notes only, scored on the held-out ones: what that
   law actually predicts (out of sample; its note polynomial extrapolates for a held-out top note).
3. **within-note**: a quadratic in log f fitted to the held-out note's own partials, on notes with at least
   ``WITHIN_MIN_PARTIALS`` (context: how smooth one note's decays are across its partials).

and the measurement's own repeatability on the same recording, ways of measuring that should agree:

* ``5 ms``: ``recording_scores`` of the recording started 5 ms late against itself (its T60 error median);
* ``halves``: each scored partial's T60 over the first and the second half of the span it was measured over
  (a two-stage decay or a slow beat shows here as well as noise);
* ``L/R``: left against right channel (stereo files only), each measured with the mono mix's windows and spans.

Every figure: median over a note's scored partials of |T60_predicted / T60_measured - 1|, then median over the
held-out notes. ``--fidelity FILE`` adds the model's held-out T60 error from a JSON written by
``eigentone bench fidelity --conditioned``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path
from training.metrics import MAX_SCORED_PARTIALS, SCORE_SECONDS, NoteDecays, note_decays, recording_scores
from training.modal_analysis import SpectralPeaks, peak_t60, spectral_peaks

HELP = "diagnostic: how predictable each held-out note's partial T60s are from the other notes (no model fitted)"
EXAMPLE = "eigentone bench t60-bounds --devset runs/devset --out runs/t60-bounds.json"

F_DEGREE = 3
"""Degree in log frequency of the smooth bound's polynomial."""
NOTE_DEGREE = 2
"""Degree in note of the smooth bound's polynomial (and its interaction with log f)."""
PARTIAL_MIN_NOTES = 3
"""``+partial``: a partial number gets its own offset and slope in note when found on at least this many notes."""
MIN_POINTS_PER_COEFFICIENT = 2
"""An in-sample fit with fewer partials than this many per coefficient is flagged (and left out of the counts)."""
WITHIN_DEGREE = 2
"""Degree in log f of the within-note law."""
WITHIN_MIN_PARTIALS = 8
"""The within-note law is fitted to notes with at least this many scored partials only: a least-absolute-deviations
fit passes exactly through as many partials as it has coefficients, which on a few partials is most of them."""
SHIFT_SECONDS = 0.005
"""``5 ms``: the recording measured against itself started this much later."""
FLOOR = 0.2
"""The conditioned T60 floor of ``eigentone bench fidelity`` (median held-out T60 error), for the counts only."""
FIGURES = ("oracle", "smooth", "partial", "trained", "within", "shift", "halves", "stereo")
"""Per held-out note, in the order printed."""
TITLES = ("oracle", "smooth", "+partial", "trained", "within", "5 ms", "halves", "L/R")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devset", default="runs/devset", help="folder written by `eigentone devset build`")
    parser.add_argument("--out", default="runs/t60-bounds.json", help="JSON results (default runs/t60-bounds.json)")
    parser.add_argument("--part", choices=["tune", "holdout", "both"], default="both")
    parser.add_argument("--instrument", action="append", help="only these instruments (repeatable; default: every "
                        "instrument `eigentone bench fidelity --conditioned all` takes)")
    parser.add_argument("--f-degree", type=int, default=F_DEGREE, help="degree in log f of the smooth laws "
                        f"(default {F_DEGREE})")
    parser.add_argument("--note-degree", type=int, default=NOTE_DEGREE, help="degree in note of the smooth laws "
                        f"(default {NOTE_DEGREE})")
    parser.add_argument("--fidelity", default=None, help="JSON of `eigentone bench fidelity --conditioned`: print "
                        "the model's held-out T60 error beside the bounds")


# ---------------------------------------------------------------- one note's scored partials (``training.metrics.note_decays``)


def t60_error(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Median over partials of |predicted / measured - 1| (nan when no partial has both)."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    ok = np.isfinite(p) & np.isfinite(m) & (m > 0)
    return float(np.median(np.abs(p[ok] / m[ok] - 1.0))) if ok.any() else float("nan")


# ---------------------------------------------------------------- 1. neighbour oracle


def neighbour_oracle(held: NoteDecays, neighbours: list[NoteDecays]) -> np.ndarray:
    """(P,) T60 s predicted for ``held``'s partials from its recorded neighbours' measured T60s.

    Within each neighbour, log T60 is interpolated linearly in log f (held at its end values outside its
    partials); the neighbours' predictions are averaged in log T60 with weights 1 / |note distance|.
    """
    logs, weights = [], []
    for nb in neighbours:
        if nb.freqs_hz.size == 0:
            continue
        order = np.argsort(nb.freqs_hz)
        logs.append(np.interp(np.log(held.freqs_hz), np.log(nb.freqs_hz[order]), np.log(nb.t60[order])))
        weights.append(1.0 / max(abs(nb.note - held.note), 1e-6))
    if not logs:
        return np.full(held.freqs_hz.size, np.nan)
    return np.exp(np.average(np.stack(logs), axis=0, weights=weights))


# ---------------------------------------------------------------- 2. in-sample smooth bound


def partial_numbers(freqs_hz: np.ndarray, note: float) -> np.ndarray:
    """(P,) each partial's number: its frequency over the note's (MIDI ``note``) in semitones, rounded."""
    f_note = 440.0 * 2.0 ** ((note - 69.0) / 12.0)
    return np.rint(12.0 * np.log2(np.asarray(freqs_hz) / f_note)).astype(int)


def law_features(log_f: np.ndarray, notes: np.ndarray, numbers: np.ndarray | None, scale: dict,
                 degrees: tuple[int, int] = (F_DEGREE, NOTE_DEGREE)) -> np.ndarray:
    """(points, terms) design matrix of the smooth bound's law at partials (log f, note, partial number).

    Legendre polynomials of log f (degree ``degrees[0]``) times those of note (``degrees[1]``), both mapped to
    [-1, 1] over ``scale`` ("log_f" and "note": (low, high)); with ``numbers`` (and ``scale["numbers"]``: the
    partial numbers that get terms), an offset and a slope in note for each of those numbers.
    """
    from numpy.polynomial import legendre

    def unit(x: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
        lo, hi = lo_hi
        return 2.0 * (x - lo) / max(hi - lo, 1e-9) - 1.0

    u, v = unit(log_f, scale["log_f"]), unit(notes, scale["note"])
    pu = legendre.legvander(u, degrees[0])  # (points, degrees[0] + 1)
    pv = legendre.legvander(v, degrees[1])  # (points, degrees[1] + 1)
    cols = [(pu[:, :, None] * pv[:, None, :]).reshape(u.size, -1)]
    if numbers is not None:
        for k in scale["numbers"]:
            on = (numbers == k).astype(np.float64)
            cols.append(np.stack([on, on * v], axis=1))
    return np.concatenate(cols, axis=1)


def least_absolute(a: np.ndarray, y: np.ndarray, rounds: int = 30) -> np.ndarray:
    """(terms,) coefficients minimising sum |a @ x - y| (iteratively reweighted least squares, min-norm)."""
    w = np.ones(y.size)
    x = np.zeros(a.shape[1])
    for _ in range(rounds):
        x = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)[0]
        w = 1.0 / np.sqrt(np.maximum(np.abs(a @ x - y), 1e-4))
    return x


@dataclass
class LawFit:
    """A smooth law's T60s at some notes' partials: t60 per note (P,) s; points and coefficients (the rank of its
    design matrix) of the fit."""

    t60: list[np.ndarray]
    points: int
    coefficients: int


def smooth_law(fit_to: list[NoteDecays], notes: list[NoteDecays], per_partial: bool,
               degrees: tuple[int, int] = (F_DEGREE, NOTE_DEGREE)) -> LawFit:
    """``law_features`` without or with the per-partial-number terms (``per_partial``), fitted (least absolute
    deviations in log T60) to the partials of ``fit_to``, evaluated at the partials of ``notes``."""
    log_f = np.concatenate([np.log(n.freqs_hz) for n in fit_to])
    note_of = np.concatenate([np.full(n.freqs_hz.size, n.note) for n in fit_to])
    log_t = np.concatenate([np.log(n.t60) for n in fit_to])
    numbers = np.concatenate([partial_numbers(n.freqs_hz, n.note) for n in fit_to])
    scale: dict = {"log_f": (log_f.min(), log_f.max()), "note": (note_of.min(), note_of.max())}
    if per_partial:
        found: dict[int, set[float]] = {}
        for k, n in zip(numbers, note_of):
            found.setdefault(int(k), set()).add(float(n))
        scale["numbers"] = sorted(k for k, seen in found.items() if len(seen) >= PARTIAL_MIN_NOTES)
    design = law_features(log_f, note_of, numbers if per_partial else None, scale, degrees)
    coef = least_absolute(design, log_t)
    out = []
    for n in notes:
        feats = law_features(np.log(n.freqs_hz), np.full(n.freqs_hz.size, n.note),
                             partial_numbers(n.freqs_hz, n.note) if per_partial else None, scale, degrees)
        out.append(np.exp(feats @ coef))
    return LawFit(out, int(log_t.size), int(np.linalg.matrix_rank(design)))


def within_note(note: NoteDecays) -> np.ndarray:
    """(P,) T60 s of a polynomial of degree ``WITHIN_DEGREE`` in log f fitted (least absolute deviations in log
    T60) to the note's own partials; nan when it has fewer than ``WITHIN_MIN_PARTIALS``."""
    if note.freqs_hz.size < WITHIN_MIN_PARTIALS:
        return np.full(note.freqs_hz.size, np.nan)
    a = np.vander(np.log(note.freqs_hz) - np.log(note.freqs_hz).mean(), WITHIN_DEGREE + 1)
    return np.exp(a @ least_absolute(a, np.log(note.t60)))


# ---------------------------------------------------------------- 3. the measurement measured twice


def shifted_self(audio: np.ndarray, sample_rate: float) -> float:
    """``recording_scores``' T60 error median of the recording started ``SHIFT_SECONDS`` late against itself."""
    x = np.asarray(audio, np.float64)
    shift = round(SHIFT_SECONDS * sample_rate)
    later = np.concatenate([x[shift:], np.zeros(shift)])
    n = int(min(x.size, round(SCORE_SECONDS * sample_rate)))
    ref_pk = spectral_peaks(x[:n], sample_rate, count=MAX_SCORED_PARTIALS, decay_seconds=SCORE_SECONDS)
    return recording_scores(later, x, sample_rate, ref_peaks=ref_pk)["t60_error_median"]


def halves(audio: np.ndarray, sample_rate: float, note: NoteDecays) -> float:
    """Median over the scored partials of |T60(second half) / T60(first half) - 1|, the halves of the time span
    each partial's T60 was measured over (same envelope window); partials whose span is too short are skipped."""
    pk = note.peaks
    if pk.freqs_hz.size == 0:
        return float("nan")
    spans = np.asarray(pk.span_s)
    mid = spans.mean(axis=1)
    hop_s = np.maximum(np.asarray(pk.window_s) / 4.0, 1.0 / sample_rate)
    long_enough = (spans[:, 1] - spans[:, 0]) >= 8.0 * hop_s  # at least 4 envelope frames in each half
    first = SpectralPeaks(pk.freqs_hz, pk.level_db, pk.t60, pk.window_s, np.stack([spans[:, 0], mid], axis=1))
    second = SpectralPeaks(pk.freqs_hz, pk.level_db, pk.t60, pk.window_s, np.stack([mid, spans[:, 1]], axis=1))
    x = np.asarray(audio, np.float64)
    t1 = peak_t60(x, sample_rate, pk.freqs_hz, seconds=SCORE_SECONDS, like=first)
    t2 = peak_t60(x, sample_rate, pk.freqs_hz, seconds=SCORE_SECONDS, like=second)
    return t60_error(np.where(long_enough, t2, np.nan), t1)


def stereo(left: np.ndarray, right: np.ndarray, sample_rate: float, note: NoteDecays) -> float:
    """Median over the scored partials of |T60(right) / T60(left) - 1|, each channel measured with the envelope
    window and over the time span the (mono) recording's partial was measured with."""
    if note.freqs_hz.size == 0:
        return float("nan")
    t = [peak_t60(np.asarray(ch, np.float64), sample_rate, note.freqs_hz, seconds=SCORE_SECONDS, like=note.peaks)
         for ch in (left, right)]
    return t60_error(t[1], t[0])


# ---------------------------------------------------------------- one instrument


@dataclass
class Take:
    """One recorded note at the instrument's common rate: note (MIDI), audio (samples,), channels: (2, samples)
    left and right when the file is stereo, else None."""

    note: float
    audio: np.ndarray
    channels: np.ndarray | None = None
    file: str = ""


def instrument_bounds(takes: list[Take], sample_rate: float, degrees: tuple[int, int] = (F_DEGREE, NOTE_DEGREE)) -> dict:
    """Every figure of the module doc for one instrument: ``takes`` sorted by note, the 2nd, 4th, ... held out;
    the smooth laws of degrees (log f, note) ``degrees``.

    Returns {"notes": per held-out note {"file", "note", "partials", figure: value for ``FIGURES``, "freqs_hz",
    "t60", "predicted": {figure: (P,)}}, figure: median over held-out notes, "fits": {law: {"points",
    "coefficients"}}}.
    """
    takes = sorted(takes, key=lambda t: t.note)
    decays = [note_decays(t.audio, sample_rate, t.note) for t in takes]
    held = decays[1::2]
    fitted = {"smooth": smooth_law(decays, held, False, degrees), "partial": smooth_law(decays, held, True, degrees),
              "trained": smooth_law(decays[0::2], held, False, degrees)}
    rows = []
    for h, i in enumerate(range(1, len(takes), 2)):
        d = decays[i]
        predicted = {"oracle": neighbour_oracle(d, [decays[j] for j in (i - 1, i + 1) if j < len(takes)]),
                     **{k: fit.t60[h] for k, fit in fitted.items()}, "within": within_note(d)}
        row = {"file": takes[i].file, "note": d.note, "partials": int(d.freqs_hz.size),
               **{k: t60_error(p, d.t60) for k, p in predicted.items()},
               "shift": shifted_self(takes[i].audio, sample_rate), "halves": halves(takes[i].audio, sample_rate, d),
               "stereo": (stereo(*takes[i].channels, sample_rate, d) if takes[i].channels is not None
                          else float("nan")),
               "freqs_hz": d.freqs_hz.tolist(), "t60": d.t60.tolist(),
               "predicted": {k: p.tolist() for k, p in predicted.items()}}
        rows.append(row)
    return {"notes": rows, **{k: _median([r[k] for r in rows]) for k in FIGURES},
            "fits": {k: {"points": fit.points, "coefficients": fit.coefficients} for k, fit in fitted.items()}}


def _median(values: list[float]) -> float:
    v = np.asarray(values, np.float64)
    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")


# ---------------------------------------------------------------- the dev set, as the fidelity bench loads it


def common_rate(paths: list[Path]) -> float:
    """The sample rate ``load_folder`` resamples a folder of these files to: the most common one."""
    import soundfile as sf

    rates = [float(sf.info(str(p)).samplerate) for p in paths]
    return max(set(rates), key=rates.count)


def load_take(root: Path, entry: dict, rate: float) -> Take:
    """The dev-set file of index ``entry`` as ``eigentone bench fidelity --conditioned`` scores it
    (``load_recording``: mono mix, onset trimmed, at ``rate``), plus its two channels trimmed alike when stereo."""
    import soundfile as sf

    from training.data.audio import at_rate, load_recording, onset_index

    path = root / entry["file"]
    rec = load_recording(path, estimate=False)  # the note is the index's
    take = Take(float(entry["note"]), at_rate(rec.audio, rec.sample_rate, rate), file=entry["file"])
    data, file_rate = sf.read(str(path), dtype="float64", always_2d=True)
    if data.shape[1] == 2:
        first = onset_index(data.mean(axis=1), file_rate)
        take.channels = np.stack([at_rate(data[first:, c], file_rate, rate) for c in (0, 1)])
    return take


def split_of(files: list[dict], instrument: str) -> tuple[list[dict], list[dict]]:
    """(trained, held-out) index entries of ``instrument``, as ``benchmarks.bench_fidelity.conditioned`` splits
    them: sorted by note, the 1st, 3rd, ... trained, the 2nd, 4th, ... held out."""
    notes = sorted((f for f in files if f["instrument"] == instrument), key=lambda f: f["note"])
    return notes[0::2], notes[1::2]


def model_t60(path: Path | None) -> dict[str, float]:
    """instrument -> the model's held-out T60 error median from a ``bench fidelity --conditioned`` JSON."""
    if path is None:
        return {}
    try:
        cond = json.loads(Path(path).read_text())["conditioned"]
        return {c["instrument"]: _median([r["model"].get("t60_error_median", np.nan) for r in c["notes"]])
                for c in cond}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EigentoneError(f"{path}: not a JSON written by `eigentone bench fidelity --conditioned` ({exc})") from None


def print_table(results: list[dict], model: dict[str, float]) -> None:
    print("\nT60 error, median over each held-out note's scored partials, then over held-out notes (%)")
    print("  from the other notes: oracle = the two recorded neighbours' measured T60s; smooth / +partial = a smooth"
          " law fitted IN-SAMPLE to all notes (optimistic); trained = the smooth law fitted to the trained notes only")
    print("  context: within = smooth in log f fitted to the note's own partials; measured twice: 5 ms later start,"
          " first vs second half of the span, left vs right channel; points/coefficients of the +partial fit")
    print(f"  {'instrument':24s} {'part':8s} {'held':>4s} " + " ".join(f"{t:>7s} " for t in TITLES)
          + f" {'pts/coef':>8s}" + (f" {'model':>8s}" if model else ""))
    for r in results:
        cells = " ".join(_percent(r[k]) + ("*" if not informative(r, k) else " ") for k in FIGURES)
        fit = r["fits"]["partial"]
        m = model.get(r["instrument"], float("nan"))
        print(f"  {r['instrument']:24s} {r['part']:8s} {len(r['notes']):4d} {cells} "
              f"{fit['points']:>4d}/{fit['coefficients']:<3d}" + (f" {_percent(m)}" if model else ""))
    print(f"  * in-sample fit with fewer than {MIN_POINTS_PER_COEFFICIENT} points per coefficient: it nearly "
          "interpolates the notes it is scored on")
    print(f"\nper part: instruments at or under the conditioned T60 floor ({100 * FLOOR:.0f}% median) from the other "
          "notes; instruments where even the in-sample law misses it (the law of that family that best fits the whole "
          "instrument misses it; an in-sample figure under it proves nothing)")
    for part in dict.fromkeys(r["part"] for r in results):
        sel = [r for r in results if r["part"] == part]
        print(f"  {part:8s} at or under: " + "  ".join(f"{t} {sum(r[k] <= FLOOR for r in sel)}/{len(sel)}"
                                                     for k, t in (("oracle", "oracle"), ("trained", "trained"),
                                                                  ("within", "within")))
              + ";  in-sample law misses: " + "  ".join(f"{t} {sum(r[k] > FLOOR for r in sel)}/{len(sel)}"
                                                        for k, t in (("smooth", "smooth"), ("partial", "+partial"))))


def _percent(value: float) -> str:
    """A 7-character percentage cell ("-" for nan; a law extrapolated far off prints as >999%)."""
    if not np.isfinite(value):
        return f"{'-':>7s}"
    return f"{100 * value:6.1f}%" if value < 9.995 else f"{'>999%':>7s}"


def informative(result: dict, figure: str) -> bool:
    """False for an in-sample figure whose fit has fewer than ``MIN_POINTS_PER_COEFFICIENT`` points a coefficient
    (marked ``*``)."""
    fit = result["fits"].get(figure) if figure in ("smooth", "partial") else None
    return fit is None or fit["points"] >= MIN_POINTS_PER_COEFFICIENT * fit["coefficients"]


def run(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from benchmarks.bench_fidelity import eligible_instruments
    from training.data.devset import load_index

    if args.f_degree < 0 or args.note_degree < 0:
        raise EigentoneError(f"--f-degree {args.f_degree} --note-degree {args.note_degree}: give degrees of 0 or more")
    threadpool_limits(1)
    root = Path(args.devset)
    files = load_index(root)
    model = model_t60(args.fidelity)
    wanted = eligible_instruments(files, args.part)
    if args.instrument:
        unknown = sorted(set(args.instrument) - set(wanted))
        if unknown:
            raise EigentoneError(f"--instrument {' '.join(unknown)}: not an instrument with >= 5 distinct notes in "
                                 f"{root} (part {args.part}); eligible: {', '.join(wanted)}")
        wanted = [w for w in wanted if w in args.instrument]
    print(f"T60 predictability of held-out notes, {len(wanted)} instruments of {root} "
          "(a diagnostic: no floor, exit status 0)")
    start = time.perf_counter()
    results = []
    for i, name in enumerate(wanted, 1):
        trained, held = split_of(files, name)
        rate = common_rate([root / f["file"] for f in trained])
        takes = [load_take(root, f, rate) for f in trained + held]
        entry = {"instrument": name, "part": trained[0]["part"], "group": trained[0]["group"], "sample_rate": rate,
                 **instrument_bounds(takes, rate, (args.f_degree, args.note_degree))}
        results.append(entry)
        print(f"  [{i}/{len(wanted)}] {name}: oracle {100 * entry['oracle']:.1f}%, smooth bound "
              f"{100 * entry['smooth']:.1f}% / +partial {100 * entry['partial']:.1f}%", flush=True)
    print_table(results, model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    family = (f"log T60 = Legendre tensor product, degree {args.f_degree} in log f x {args.note_degree} in note; +partial: "
              f"plus offset + slope in note per partial number (semitone bin of f / f_note) on >= "
              f"{PARTIAL_MIN_NOTES} notes; least absolute deviations in log T60")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"diagnostic": "no floor; exit status 0", "bound_family": family,
                                   "floor_for_counts": FLOOR, "instruments": results,
                                   "model_t60_error": model, "seconds": time.perf_counter() - start},
                                  indent=1, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    import sys

    from eigentone.cli import main

    sys.exit(main(["bench", "t60-bounds", *sys.argv[1:]]))
