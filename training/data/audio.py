"""Recordings as training data: load, mono-mix, onset-trim, loudness-normalise, label.

One note per file, WAV or FLAC (anything libsndfile reads), any sample rate, mono or stereo.
Labels come from a sidecar ``labels.csv`` (``file,note,velocity[,position]``; note as a MIDI
number or a name like ``C#4``, ``Fs3``, ``Gb3``, ``A4+10`` (cents); velocity 1..127) or from file
names: ``A2_v100.wav``, ``Cs4_v64.flac``, ``57.wav`` (velocity defaults to 100, position to 0.2).
A single file without a note in its name gets the note pYIN finds (``estimate_note``).

Libraries: soundfile reads the files (exact samples, clear errors), librosa parses note names,
estimates pitch (pYIN) and resamples (soxr). The onset trim stays a few lines of numpy: each file
holds one note, and the models need its first sample, not a frame-accurate onset among many.

Every problem becomes an ``EigentoneError`` naming the file: not audio, silent, too short.

Example::

    rec = load_recording("assets/audio/nylon_b3.flac")
    rec.audio.shape, rec.sample_rate   # ((samples,), 44100.0)
    recs = load_folder("my-recordings/")  # shared gain, so velocity differences survive
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from eigentone.errors import EigentoneError
from eigentone.limits import check_recording_content, check_recording_file

AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg")
MIN_SECONDS = 0.1
"""Shortest usable note after onset trimming."""
SILENCE_PEAK = 1e-4
"""Peak absolute sample value (full scale 1.0) below which a file counts as silent."""
TARGET_PEAK = 0.5
"""Peak after normalisation (loudest file of a folder)."""

_NAME = re.compile(r"^(?P<note>[A-Ga-g][#bs]?-?\d+|\d+(?:\.\d+)?)(?:[_-]v(?P<vel>\d+))?(?:[_-]p(?P<pos>0?\.\d+))?")
_SHARP_S = re.compile(r"^([A-Ga-g])s(?=[-+]?\d)")


@dataclass
class Recording:
    """One labelled note.

    audio : (samples,) float32 mono, onset at sample 0, normalised
    sample_rate : Hz
    note : MIDI note number (float)
    velocity : 0..1 (MIDI velocity / 127)
    position : 0..1 excitation position
    path : source file
    gain : factor applied to the file's samples (after mono mixing)
    """

    audio: np.ndarray
    sample_rate: float
    note: float
    velocity: float
    position: float
    path: str
    gain: float = 1.0


def note_number(text: str) -> float:
    """MIDI number of ``"C#4"``, ``"Fs3"`` (s = sharp, for file names), ``"Bb2"``, ``"A4"`` (= 69), ``"A4+10"``
    (cents) or a plain number ``"57"``; ValueError for anything else."""
    import librosa

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(librosa.note_to_midi(_SHARP_S.sub(r"\1#", text), round_midi=False))
    except librosa.ParameterError:
        raise ValueError(f"not a note name: {text!r}") from None


def estimate_note(audio: np.ndarray, sample_rate: float) -> float:
    """Fractional MIDI note of a recorded note by pYIN (median over the voiced frames of its first 2 s); nan when
    no frame is voiced."""
    import librosa

    x = np.asarray(audio, np.float32)[: int(2 * sample_rate)]
    f0, voiced, _ = librosa.pyin(x, fmin=librosa.note_to_hz("A0"), fmax=min(librosa.note_to_hz("C8"), 0.45 * sample_rate),
                                 sr=sample_rate, frame_length=4096 if sample_rate > 30000 else 2048)
    f0 = f0[voiced & np.isfinite(f0)]
    return float(librosa.hz_to_midi(np.median(f0))) if f0.size else float("nan")


def read_audio(path: str | Path) -> tuple[np.ndarray, float]:
    """Read an audio file, mono-mixed: ((samples,) float64, sample_rate). EigentoneError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise EigentoneError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise EigentoneError(f"{path}: not a readable audio file (WAV/FLAC expected): {str(exc).splitlines()[0]}") from None
    if data.size == 0:
        raise EigentoneError(f"{path}: audio file has no samples")
    if not np.all(np.isfinite(data)):
        raise EigentoneError(f"{path}: audio contains NaN or Inf samples")
    return data.mean(axis=1), float(rate)


def onset_index(x: np.ndarray, sample_rate: float, threshold: float = 0.05, pre_roll_s: float = 0.0) -> int:
    """First sample of the note in x (samples,): the last quiet sample (|x| <= 1e-3 peak) before |x| first exceeds
    ``threshold`` x peak, plus one, minus ``pre_roll_s``."""
    mag = np.abs(x)
    peak = mag.max()
    first = int(np.argmax(mag >= threshold * peak))
    # back up to the last zero crossing / quiet sample before the threshold crossing
    quiet = np.nonzero(mag[:first] <= 1e-3 * peak)[0]
    first = int(quiet[-1]) + 1 if quiet.size else 0
    return max(0, first - int(pre_roll_s * sample_rate))


def trim_onset(x: np.ndarray, sample_rate: float, threshold: float = 0.05, pre_roll_s: float = 0.0) -> np.ndarray:
    """Drop leading silence: start at ``onset_index``; trailing near-silence (below 1e-4 of the peak) is dropped too."""
    first = onset_index(x, sample_rate, threshold, pre_roll_s)
    loud = np.nonzero(np.abs(x) >= 1e-4 * np.abs(x).max())[0]
    last = int(loud[-1]) + 1 if loud.size else x.size
    return x[first:last]


def load_recording(path: str | Path, *, min_seconds: float = MIN_SECONDS, normalise: bool = True,
                   estimate: bool = True) -> Recording:
    """Load one file: mono mix, onset trim, peak-normalise to ``TARGET_PEAK``; labels from the file name (the note
    by pYIN when the name has none and ``estimate``)."""
    path = Path(path)
    check_recording_file(path)  # length limit, before the samples are read
    x, rate = read_audio(path)
    check_recording_content(path, x, rate)
    peak = float(np.max(np.abs(x)))
    if peak < SILENCE_PEAK:
        raise EigentoneError(f"{path}: audio is silent (peak {peak:.1e} of full scale)")
    x = trim_onset(x, rate)
    if x.size < min_seconds * rate:
        raise EigentoneError(f"{path}: too short after trimming silence ({x.size / rate:.3f} s, need >= {min_seconds} s)")
    gain = TARGET_PEAK / peak if normalise else 1.0
    note, velocity, position = labels_from_name(path.name)
    if estimate and not np.isfinite(note):
        note = estimate_note(x, rate)
    return Recording((x * gain).astype(np.float32), rate, note, velocity, position, str(path), gain)


def labels_from_name(name: str) -> tuple[float, float, float]:
    """(note, velocity 0..1, position) from ``C4_v100_p0.3.wav``-style names; note nan if absent."""
    m = _NAME.match(Path(name).stem)
    if not m:
        return float("nan"), 100 / 127, 0.2
    note = note_number(m.group("note"))
    vel = int(m.group("vel")) / 127 if m.group("vel") else 100 / 127
    pos = float(m.group("pos")) if m.group("pos") else 0.2
    return note, vel, pos


def _read_labels(folder: Path) -> dict[str, tuple[float, float, float]]:
    csv_path = folder / "labels.csv"
    if not csv_path.exists():
        return {}
    labels = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "note"} <= set(reader.fieldnames):
            raise EigentoneError(f"{csv_path}: needs a header with at least 'file,note' (optional velocity, position)")
        for line, row in enumerate(reader, start=2):
            try:
                note = note_number(row["note"])
                vel = float(row.get("velocity") or 100) / 127
                pos = float(row.get("position") or 0.2)
            except ValueError as exc:
                raise EigentoneError(f"{csv_path}:{line}: {exc}") from None
            labels[row["file"].strip()] = (note, vel, pos)
    return labels


def load_folder(folder: str | Path, *, min_seconds: float = MIN_SECONDS) -> list[Recording]:
    """Load every audio file in ``folder`` with labels; one shared gain (loudest file peaks at TARGET_PEAK).

    All recordings are resampled to the most common sample rate of the folder.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise EigentoneError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
    labels = _read_labels(folder)
    recs = [load_recording(p, min_seconds=min_seconds, normalise=False, estimate=False) for p in files]
    for rec in recs:
        name = Path(rec.path).name
        if name in labels:
            rec.note, rec.velocity, rec.position = labels[name]
        if not np.isfinite(rec.note):
            raise EigentoneError(f"{rec.path}: no note label; name it like C4_v100.wav or add it to labels.csv")
    rates = [r.sample_rate for r in recs]
    rate = max(set(rates), key=rates.count)
    peak = max(float(np.max(np.abs(r.audio))) for r in recs)
    for rec in recs:
        audio = at_rate(rec.audio, rec.sample_rate, rate)
        rec.sample_rate = rate
        rec.gain = TARGET_PEAK / peak
        rec.audio = (audio * rec.gain).astype(np.float32)
    return recs


def at_rate(x: np.ndarray, rate: float, target: float) -> np.ndarray:
    """(samples at ``target`` Hz,) float64: ``x`` recorded at ``rate`` Hz, resampled (soxr) when the rates differ.
    A folder's or a sample bank's recordings can come at several rates (freepats' xylophone: 20000 and 44100 Hz);
    taking samples of one rate for samples of another would put the note off by the ratio."""
    x = np.asarray(x, np.float64)
    if rate == target:
        return x
    import librosa

    return librosa.resample(x, orig_sr=rate, target_sr=target, res_type="soxr_hq")
