"""`eigentone devset build`: the development set of real recordings, rebuilt from Debian's sample banks.

The project ships no recordings of its own instruments; the fidelity bench (``eigentone bench
fidelity``) measures the learned models on real sampled notes that nobody here recorded:

* ``freepats`` (GUS patches, GPL-2+ with a composition exception; /usr/share/doc/freepats/copyright)
* ``fluid-soundfont-gm`` (FluidR3_GM.sf2, MIT licence; /usr/share/doc/fluid-soundfont-gm/copyright)

Each selected instrument becomes a folder ``OUT/GROUP/INSTRUMENT/`` of FLAC notes (``NOTE.flac``,
its sample rate, mono or stereo as in the bank) plus a ``labels.csv`` (note as a fractional MIDI
number from the bank's root pitch and tuning, velocity 100), so every folder is directly a
``eigentone train ssm`` folder and every file a single-recording fit. Looped samples are cut at
their loop start (the rest is a playback loop, not a recording). ``OUT/devset.json`` lists every
file with its group, part and licence.

The split is fixed here, by file, and never changes: every file of an instrument marked
``holdout`` belongs to the part that no analysis or fit setting was tuned on; benches report
both parts. Duplicate samples (same PCM data) are kept once.

One recording per note: sample banks often fill a key range with a copy of a neighbouring note's
sample, pitch-shifted offline (FluidR3's marimba and xylophone are one bar each, repitched), and
such a copy is not a recording of its note (a sampler reproduces it exactly). Walking each
instrument's samples from the lowest note up, a sample is dropped when its waveform above 3 f0
matches a lower sample of the instrument within an octave, resampled to its pitch (``repitch_similarity``
>= ``COPY_SIMILARITY``): the lowest sample of each chain of copies stays.
The same holds across instruments and banks: FluidR3's steel guitar plays a nylon-guitar sample for its
top note, and freepats' harp is FluidR3's harp takes (so it is not in the set). A sample that matches a kept
sample of an instrument listed earlier in its group (``copy_elsewhere``: both ways, each resampled to the
other's pitch) is dropped, so a holdout instrument holds no take of a tune instrument (tune instruments come
first in each group).
Every entry of devset.json names its bank sample (``sample``: bank file and sample index), and
``dropped`` lists each dropped sample with the kept one it copies (``copy_of_instrument`` names its
instrument) and the similarity.

Nothing of this is committed: the set is rebuilt on any machine (the packages are installed with
apt-get when running as root; otherwise the command names them and stops).

Debian's other sample banks add no instrument to the plucked and bar groups (checked for issue 14):
``musescore-general-soundfont-lossless`` (and its lossy ``.sf3`` forms) plays FluidR3's own recordings for
every plucked and bar preset with five or more notes (some with 50 ms of silence prepended and the loop
removed, which ``repitch_similarity``'s 10 ms lag would not catch), apart from a music box of five 0.2 s
samples; ``timgm6mb-soundfont`` and ``csound-soundfont`` hold under 0.15 s of attack before a
sustain loop (no recorded decay survives ``MIN_SECONDS``); ``fluid-soundfont-gs`` holds sound effects only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfiltfilt

from eigentone.contract.reference import midi_to_hz
from eigentone.errors import EigentoneError
from training.data.audio import at_rate
from training.data.soundbanks import BankSample, SoundFont, read_gus_patch

HELP = "rebuild the development set of real recordings (Debian's freepats and FluidR3 sample banks)"
EXAMPLE = "eigentone devset build --out runs/devset"

FREEPATS = Path("/usr/share/midi/freepats")
FLUID = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PACKAGES = {"freepats": "freepats", "fluid": "fluid-soundfont-gm"}
LICENCES = {"freepats": "GPL-2+ (freepats; composition exception)", "fluid": "MIT (FluidR3_GM, Frank Wen)"}
GROUPS = ("plucked", "bars", "cymbals-bells")
MIN_SECONDS = 0.15
"""Notes shorter than this once cut at their loop start are left out (too little decay to analyse)."""
COPY_SIMILARITY = 0.85
"""A sample this similar to a kept one played at its pitch (``repitch_similarity``) is a repitched copy. Measured
on the banks here: copies 0.89-1.00 (FluidR3 marimba, xylophone, the nylon guitar's top "Extension" sample),
different recordings of neighbouring notes 0.01-0.78."""
COPY_SECONDS = 0.25
"""Length of the compared onsets (s): the pluck or strike, where two recordings differ most."""
COPY_OCTAVES = 1.0
"""Only samples within this many octaves of each other are compared (further apart, resampling loses the band)."""


@dataclass(frozen=True)
class DevInstrument:
    """One instrument of the set: where its samples come from and which part it belongs to.

    source : "freepats" (path = patch file under /usr/share/midi/freepats) or "fluid" (path = "bank:program")
    name_filter : keep only samples whose bank name contains this (freepats' xylophone patch also holds marimba)
    keys : SoundFont drum kits: only the zones on these keys
    """

    name: str
    group: str
    source: str
    path: str
    part: str  # "tune" or "holdout"
    name_filter: str = ""
    keys: tuple[int, int] | None = None


INSTRUMENTS: tuple[DevInstrument, ...] = (
    # plucked strings
    DevInstrument("fluid-nylon-guitar", "plucked", "fluid", "0:24", "tune"),
    DevInstrument("freepats-steel-guitar", "plucked", "freepats", "Tone_000/025_Steel_Guitar.pat", "tune"),
    DevInstrument("fluid-harp", "plucked", "fluid", "0:46", "tune"),
    DevInstrument("freepats-pizzicato", "plucked", "freepats", "Tone_000/045_Pizzicato_Strings.pat", "tune"),
    DevInstrument("fluid-banjo", "plucked", "fluid", "0:105", "tune"),
    DevInstrument("fluid-sitar", "plucked", "fluid", "0:104", "tune"),
    DevInstrument("freepats-nylon-guitar", "plucked", "freepats", "Tone_000/024_Nylon_Guitar.pat", "holdout"),
    DevInstrument("fluid-steel-guitar", "plucked", "fluid", "0:25", "holdout"),
    # no freepats harp: its 14 samples are FluidR3's harp takes (the same 14 notes; 11 of them 0.88-1.00 similar to
    # a channel of FluidR3's, the top three 0.47-0.81), so it would put fluid-harp's tune takes in the holdout part
    DevInstrument("fluid-pizzicato", "plucked", "fluid", "0:45", "holdout"),
    DevInstrument("fluid-shamisen", "plucked", "fluid", "0:106", "holdout"),
    DevInstrument("fluid-koto", "plucked", "fluid", "0:107", "holdout"),
    DevInstrument("freepats-dulcimer", "plucked", "freepats", "Tone_000/015_Dulcimer.pat", "holdout"),
    # tuned bars
    DevInstrument("fluid-marimba", "bars", "fluid", "0:12", "tune"),
    DevInstrument("freepats-xylophone", "bars", "freepats", "Tone_000/013_Xylophone.pat", "tune", name_filter="ylo"),
    DevInstrument("fluid-glockenspiel", "bars", "fluid", "0:9", "tune"),
    DevInstrument("fluid-xylophone", "bars", "fluid", "0:13", "holdout"),
    DevInstrument("freepats-marimba", "bars", "freepats", "Tone_000/013_Xylophone.pat", "holdout", name_filter="Mmba"),
    DevInstrument("freepats-glockenspiel", "bars", "freepats", "Tone_000/009_Glockenspiel.pat", "holdout"),
    DevInstrument("fluid-celesta", "bars", "fluid", "0:8", "holdout"),
    # cymbals, bells, struck plates
    DevInstrument("fluid-crash-1", "cymbals-bells", "fluid", "128:0", "tune", keys=(49, 49)),
    DevInstrument("fluid-ride-1", "cymbals-bells", "fluid", "128:0", "tune", keys=(51, 51)),
    DevInstrument("fluid-china", "cymbals-bells", "fluid", "128:0", "tune", keys=(52, 52)),
    DevInstrument("fluid-ride-bell", "cymbals-bells", "fluid", "128:0", "tune", keys=(53, 53)),
    DevInstrument("freepats-crash", "cymbals-bells", "freepats", "Drum_000/049_Cymbal_Crash_1.pat", "tune"),
    DevInstrument("freepats-ride-1", "cymbals-bells", "freepats", "Drum_000/051_Cymbal_Ride_1.pat", "tune"),
    DevInstrument("freepats-tubular-bells", "cymbals-bells", "freepats", "Tone_000/014_Tubular_Bells.pat", "tune"),
    DevInstrument("fluid-steel-drums", "cymbals-bells", "fluid", "0:114", "tune"),
    DevInstrument("fluid-crash-2", "cymbals-bells", "fluid", "128:0", "holdout", keys=(57, 57)),
    DevInstrument("fluid-ride-2", "cymbals-bells", "fluid", "128:0", "holdout", keys=(59, 59)),
    DevInstrument("fluid-splash", "cymbals-bells", "fluid", "128:0", "holdout", keys=(55, 55)),
    DevInstrument("freepats-chinese-cymbal", "cymbals-bells", "freepats", "Drum_000/052_Cymbal_Chinese.pat", "holdout"),
    DevInstrument("freepats-ride-bell", "cymbals-bells", "freepats", "Drum_000/053_Cymbal_Ride_Bell.pat", "holdout"),
    DevInstrument("freepats-splash", "cymbals-bells", "freepats", "Drum_000/055_Cymbal_Splash.pat", "holdout"),
    DevInstrument("fluid-tubular-bells", "cymbals-bells", "fluid", "0:14", "holdout"),
    DevInstrument("freepats-steel-drums", "cymbals-bells", "freepats", "Tone_000/114_Steel_Drums.pat", "holdout"),
    DevInstrument("fluid-cowbell", "cymbals-bells", "fluid", "128:0", "holdout", keys=(56, 56)),
)

NOTE_NAMES = ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")


def note_file_name(note: float) -> str:
    """File stem for a MIDI note: nearest note name in the ``Fs3`` spelling (60 -> ``C4``)."""
    n = round(note)
    return f"{NOTE_NAMES[n % 12]}{n // 12 - 1}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build"], help="build: (re)write the set")
    parser.add_argument("--out", default="runs/devset", help="folder to write (default runs/devset)")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get; fail if the packages are missing")


def ensure_packages(install: bool = True) -> None:
    """Install freepats and fluid-soundfont-gm with apt-get when root; otherwise a one-line error if missing."""
    missing = [pkg for src, pkg in PACKAGES.items() if not (FREEPATS if src == "freepats" else FLUID).exists()]
    if not missing:
        return
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EigentoneError(f"the development set needs the Debian packages {' '.join(missing)}: "
                             f"run as root, or: sudo apt-get install -y {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        if subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode != 0:
            raise EigentoneError(f"{' '.join(cmd[:2])} {' '.join(missing)} failed (no network to the Debian mirrors?)")


def _mono(audio: np.ndarray) -> np.ndarray:
    return np.asarray(audio, np.float64).mean(axis=1) if audio.ndim == 2 else np.asarray(audio, np.float64)


def repitch_similarity(kept: BankSample, other: BankSample, seconds: float = COPY_SECONDS,
                       common_band: bool = False) -> float:
    """How well ``kept``, resampled to play at ``other``'s pitch and rate, matches ``other``: the peak normalised
    cross-correlation (lags up to 10 ms) of their first ``seconds`` above 3x the higher fundamental, in 0..1.

    Above 3 f0 a note is its upper partials and its pluck or strike noise, which differ between two recordings
    (partial phases, inharmonicity, decays) and survive a pitch shift of one recording unchanged.
    ``common_band``: compare only up to the band both hold (90% of it): ``kept`` played lower holds nothing above its
    Nyquist frequency times the pitch ratio, which ``other`` may fill with noise (a copy would score low this way),
    and resample at the exact ratio (soxr; ``limit_denominator(200)`` can be 1e-4 off, which drifts a 5 kHz partial
    by 0.8 rad over 0.25 s).
    """
    ratio = 2.0 ** ((other.note - kept.note) / 12.0) * kept.sample_rate / other.sample_rate
    step = Fraction(ratio).limit_denominator(200)
    n = int(seconds * other.sample_rate)
    a = _mono(kept.recording())[: int(n * ratio) + 64]
    if common_band:  # soxr takes the exact ratio
        a = at_rate(a, ratio * other.sample_rate, other.sample_rate)[:n]
    else:
        a = resample_poly(a, step.denominator, step.numerator)[:n]
    b = _mono(other.recording())[:n]
    n = min(a.size, b.size)
    cut = 3.0 * float(midi_to_hz(max(kept.note, other.note)))
    if n < 64 or cut >= 0.45 * other.sample_rate:
        return 0.0
    top = 0.45 * min(ratio, 1.0) * other.sample_rate
    if common_band and top < 0.45 * other.sample_rate:
        if top <= 1.2 * cut:
            return 0.0
        sos = butter(4, [cut, top], "bandpass", fs=other.sample_rate, output="sos")
    else:
        sos = butter(4, cut, "highpass", fs=other.sample_rate, output="sos")
    a, b = sosfiltfilt(sos, a[:n]), sosfiltfilt(sos, b[:n])
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lag = int(0.01 * other.sample_rate)
    peak = np.max(np.abs(np.r_[corr[-lag:], corr[: lag + 1]]))
    return float(peak / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def drop_repitched(samples: list[BankSample]) -> tuple[list[BankSample], list[tuple[BankSample, BankSample, float]]]:
    """(kept samples, [(dropped, the kept sample whose copy it is, similarity)]) of one instrument's samples, lowest
    first: a sample at least ``COPY_SIMILARITY`` similar to an earlier one within ``COPY_OCTAVES`` is dropped. Chains
    are followed (a copy of a dropped copy is a copy of the kept sample it came from), so each chain keeps one sample."""
    root: list[tuple[BankSample, BankSample]] = []  # (earlier sample, the kept sample of its chain)
    kept, dropped = [], []
    for sample in samples:
        near = [(repitch_similarity(prev, sample), origin) for prev, origin in root
                if abs(sample.note - prev.note) <= 12.0 * COPY_OCTAVES]
        similarity, origin = max(near, key=lambda pair: pair[0], default=(0.0, sample))
        if similarity >= COPY_SIMILARITY:
            dropped.append((sample, origin, similarity))
        else:
            kept.append(sample)
            origin = sample
        root.append((sample, origin))
    return kept, dropped


def copy_elsewhere(sample: BankSample, earlier: list[tuple[BankSample, str, str]]) -> tuple[BankSample, str, str, float] | None:
    """(kept sample, its instrument, its bank, similarity) when ``sample`` is a copy of one of ``earlier`` (kept
    samples of other instruments, each with its instrument and bank names), else None.

    Across instruments the similarity must hold both ways (the lower of ``repitch_similarity`` each way): two
    different plucks' onsets can match one way only (FluidR3's harp C#3 played 10 semitones up against its
    nylon guitar's B4: 0.86, and 0.17 the other way), while a copy matches both ways (0.999 and 1.000).
    A stereo sample is compared with a mono one channel by channel (best channel): another bank may have kept one
    channel of a stereo take (freepats' harp A#1: 0.99 against either channel of FluidR3's, 0.91 against their mix)."""
    best = None
    for other, name, bank in earlier:
        if abs(other.note - sample.note) > 12.0 * COPY_OCTAVES:
            continue
        for a, b in _channel_pairs(other, sample):
            similarity = repitch_similarity(a, b, common_band=True)
            if similarity >= COPY_SIMILARITY:  # else the lower of both ways is below it: spare the second
                similarity = min(similarity, repitch_similarity(b, a, common_band=True))
            if similarity >= COPY_SIMILARITY and (best is None or similarity > best[3]):
                best = (other, name, bank, similarity)
    return best


def _channel_pairs(a: BankSample, b: BankSample) -> list[tuple[BankSample, BankSample]]:
    """[(a, b)] when both have as many channels; else each channel of the stereo one with the mono one."""
    if a.data.ndim == b.data.ndim:
        return [(a, b)]
    if a.data.ndim == 2:
        return [(replace(a, data=np.ascontiguousarray(a.data[:, c])), b) for c in range(a.data.shape[1])]
    return [(a, replace(b, data=np.ascontiguousarray(b.data[:, c]))) for c in range(b.data.shape[1])]


def _dropped_entry(instrument: str, bank: str, sample: BankSample, copy_instrument: str, copy_bank: str,
                   copy: BankSample, similarity: float) -> dict:
    """devset.json's ``dropped`` entry: ``sample`` of ``instrument`` left out as a copy of ``copy``."""
    return {"instrument": instrument, "note": round(sample.note, 3), "sample": f"{bank}#{sample.sample_id}",
            "bank_name": sample.name, "copy_of": f"{copy_bank}#{copy.sample_id}", "copy_of_note": round(copy.note, 3),
            "copy_of_instrument": copy_instrument, "similarity": round(similarity, 3)}


def instrument_samples(inst: DevInstrument, fluid: SoundFont | None) -> list[BankSample]:
    """The usable samples of one instrument, lowest note first."""
    if inst.source == "freepats":
        samples = read_gus_patch(FREEPATS / inst.path)
    else:
        bank, program = (int(v) for v in inst.path.split(":"))
        samples = fluid.preset_samples(program, bank, keys=inst.keys)
    samples = [s for s in samples if inst.name_filter in s.name]
    samples = [s for s in samples if s.recording().shape[0] >= MIN_SECONDS * s.sample_rate and np.isfinite(s.note)]
    return sorted(samples, key=lambda s: s.note)


def build(out: str | Path, install: bool = True, instruments: tuple[DevInstrument, ...] = INSTRUMENTS) -> list[dict]:
    """Write the set under ``out``; returns the file list (also written to out/devset.json)."""
    ensure_packages(install)
    out = Path(out)
    fluid = SoundFont(FLUID) if any(i.source == "fluid" for i in instruments) else None
    seen: set[str] = set()
    files: list[dict] = []
    dropped: list[dict] = []
    earlier: dict[str, list[tuple[BankSample, str, str]]] = {}  # group -> kept samples of the instruments so far
    for inst in instruments:
        folder = out / inst.group / inst.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        labels = []
        bank = FLUID.name if inst.source == "fluid" else inst.path
        samples, copies = drop_repitched(instrument_samples(inst, fluid))
        dropped += [_dropped_entry(inst.name, bank, s, inst.name, bank, k, sim) for s, k, sim in copies]
        group = earlier.setdefault(inst.group, [])
        own = []
        for sample in samples:
            found = copy_elsewhere(sample, group)
            if found is None:
                own.append(sample)
                continue
            other, name, other_bank, sim = found
            dropped.append(_dropped_entry(inst.name, bank, sample, name, other_bank, other, sim))
        group += [(sample, inst.name, bank) for sample in own]
        for sample in own:
            audio = sample.recording()
            digest = hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            stem = note_file_name(sample.note)
            while (folder / f"{stem}.flac").exists():  # two samples of one note (kits): keep both
                stem += "b"
            sf.write(folder / f"{stem}.flac", audio, round(sample.sample_rate), subtype="PCM_16")
            labels.append((f"{stem}.flac", f"{sample.note:.3f}"))
            files.append({"file": str((folder / f"{stem}.flac").relative_to(out)), "group": inst.group,
                          "instrument": inst.name, "part": inst.part, "note": round(sample.note, 3),
                          "seconds": round(audio.shape[0] / sample.sample_rate, 3), "bank_name": sample.name,
                          "sample": f"{bank}#{sample.sample_id}",
                          "looped": sample.loop_start is not None, "licence": LICENCES[inst.source]})
        with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "note", "velocity"])
            writer.writerows([(name, note, 100) for name, note in labels])
    (out / "devset.json").write_text(json.dumps({"sources": LICENCES, "files": files, "dropped": dropped}, indent=1))
    return files


def instrument_named(name: str) -> DevInstrument:
    """The instrument of the set called ``name``; EigentoneError if there is none."""
    for inst in INSTRUMENTS:
        if inst.name == name:
            return inst
    raise EigentoneError(f"instrument {name}: not an instrument of the development set (training/data/devset.py "
                         "INSTRUMENTS)")


def extract_instrument(name: str, out: str | Path) -> Path:
    """Build the set for instrument ``name`` alone under ``out``; returns the folder of its recordings (WAVs and
    labels.csv, as ``training.data.audio.load_folder`` reads them)."""
    inst = instrument_named(name)
    build(out, instruments=(inst,))
    return Path(out) / inst.group / inst.name


def load_index(root: str | Path) -> list[dict]:
    """The file list of a built set (out/devset.json); EigentoneError naming the command if absent."""
    path = Path(root) / "devset.json"
    if not path.is_file():
        raise EigentoneError(f"{root}: no development set here (devset.json missing); run: eigentone devset build --out {root}")
    return json.loads(path.read_text())["files"]


def run(args: argparse.Namespace) -> int:
    files = build(args.out, install=not args.no_install)
    dropped = json.loads((Path(args.out) / "devset.json").read_text())["dropped"]
    print(f"wrote {len(files)} recordings to {args.out}; left out {len(dropped)} repitched copies of another note's sample")
    for name in dict.fromkeys(d["instrument"] for d in dropped):
        notes = [f"{d['note']:g} (copy of {d['copy_of_note']:g}"
                 + (f" of {d['copy_of_instrument']})" if d["copy_of_instrument"] != name else ")")
                 for d in dropped if d["instrument"] == name]
        print(f"  {name}: {len(notes)}: {', '.join(notes)}")
    for group in GROUPS:
        for part in ("tune", "holdout"):
            sel = [f for f in files if f["group"] == group and f["part"] == part]
            names = sorted({f["instrument"] for f in sel})
            print(f"  {group:14s} {part:8s} {len(sel):3d} files, {len(names)} instruments")
    return 0
