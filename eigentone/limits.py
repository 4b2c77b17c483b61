"""Documented limits on what eigentone accepts, checked before anything is allocated.

Every input kind has bounds here: command-line numbers, bundle manifests and archive members,
MIDI files, effects chains, training audio, and the memory and time a job may take. A value
past a limit is refused with one line naming the input, the limit and the flag that raises it;
every command takes ``--limit NAME=VALUE`` (repeatable), e.g.::

    eigentone render long.mid --out long.wav --limit song-seconds=7200 --limit memory-mb=4096

Limits are resource bounds (a user with a big machine may raise them). Validity rules that no
flag can lift (a NaN gain, a negative voice count, a tempo of 0) are checked by
:func:`finite_number` and by the modules that read each format.

=====================  ==========  ==========================================================
name                   default     what it bounds
=====================  ==========  ==========================================================
memory-mb              2048        estimated memory of one job (voice state, buffers, graphs)
voices                 1024        voice slots per instrument (``--voices``)
modes                  4096        modes a bundle may declare
manifest-kb            1024        size of a bundle's manifest.json
bundle-member-mb       256         uncompressed size of one graph file in a bundle
graph-call-ms          1000        one graph call while a bundle loads (the call is stopped)
load-seconds           20          all graph calls while a bundle loads and warms up (estimate)
song-seconds           3600        length of a MIDI song, end of track included
midi-events            1000000     events in a MIDI file (notes, controllers, meta)
midi-bpm               60000       fastest tempo in a MIDI file, quarter notes per minute
effects                64          entries in an effects chain
effect-db              100         magnitude of any dB parameter of an effect (gain, drive, ...)
gain-db                40          ``--gain-db`` above 0 dB
bend-range             48          ``--bend-range`` in semitones
recording-seconds      60          length of one training recording (one note)
=====================  ==========  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eigentone.errors import EigentoneError


@dataclass(frozen=True)
class Limit:
    """One documented limit: its flag name, default, unit and what it bounds."""

    name: str
    default: float
    unit: str
    what: str


LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit("memory-mb", 2048, "MB", "estimated memory of one job"),
        Limit("voices", 1024, "voice slots", "voice slots per instrument"),
        Limit("modes", 4096, "modes", "modes declared by a bundle"),
        Limit("manifest-kb", 1024, "kB", "size of manifest.json"),
        Limit("bundle-member-mb", 256, "MB", "uncompressed size of one graph file"),
        Limit("graph-call-ms", 1000, "ms", "one graph call while loading"),
        Limit("load-seconds", 20, "s", "graph calls while loading and warming up"),
        Limit("song-seconds", 3600, "s", "song length"),
        Limit("midi-events", 1_000_000, "events", "events in a MIDI file"),
        Limit("midi-bpm", 60_000, "bpm", "fastest MIDI tempo"),
        Limit("effects", 64, "effects", "entries in an effects chain"),
        Limit("effect-db", 100, "dB", "magnitude of an effect's dB parameter"),
        Limit("gain-db", 40, "dB", "output gain"),
        Limit("bend-range", 48, "semitones", "pitch-bend range"),
        Limit("recording-seconds", 60, "s", "length of one training recording"),
    )
}

_values: dict[str, float] = {}


def value(name: str) -> float:
    """The limit in force for ``name`` (the default unless raised with ``--limit``)."""
    return _values.get(name, LIMITS[name].default)


def configure(entries: list[str] | None) -> None:
    """Apply ``--limit NAME=VALUE`` entries (replacing earlier ones); EigentoneError for a bad entry."""
    _values.clear()
    for entry in entries or []:
        name, sep, text = entry.partition("=")
        name = name.strip()
        if not sep or name not in LIMITS:
            raise EigentoneError(f"--limit {entry!r}: expected NAME=VALUE with NAME one of {', '.join(LIMITS)}")
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise EigentoneError(f"--limit {entry!r}: the value must be a positive number")
        _values[name] = number


def raise_hint(name: str, needed: float | None = None) -> str:
    """``"raise it with --limit NAME=VALUE"``, VALUE being what the input needs (rounded up) if known."""
    wanted = value(name) * 2 if needed is None else needed
    shown = f"{math.ceil(wanted)}" if wanted >= 1 else f"{wanted:.3g}"
    return f"raise it with --limit {name}={shown}"


def check(name: str, amount: float, what: str) -> None:
    """Refuse ``amount`` (in the limit's unit) above the limit ``name``; ``what`` names the input."""
    limit = LIMITS[name]
    if amount > value(name):
        raise EigentoneError(
            f"{what}: {_amount(amount)} {limit.unit} is above the limit of {_amount(value(name))} {limit.unit} "
            f"({limit.what}; {raise_hint(name, amount)})"
        )


def _amount(number: float) -> str:
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.3g}"


def finite_number(what: str, number: object, low: float | None = None, high: float | None = None,
                  *, integer: bool = False) -> float:
    """``number`` as a float if it is a finite number (not bool) within [low, high]; else EigentoneError.

    ``what`` names the input (``"--voices"``, ``"song.etone: manifest 'release_time'"``).
    """
    kind = "a whole number" if integer else "a finite number"
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise EigentoneError(f"{what}: expected {kind}, got {type(number).__name__}")
    if integer and not (isinstance(number, int) or float(number).is_integer()):
        raise EigentoneError(f"{what}: expected {kind}, got {number!r}")
    x = float(number) if not isinstance(number, int) or abs(number) < 2**63 else math.inf
    if not math.isfinite(x):
        raise EigentoneError(f"{what}: expected {kind}, got {number!r}")
    if (low is not None and x < low) or (high is not None and x > high):
        bounds = f"{_bound(low)}..{_bound(high)}" if low is not None and high is not None else (
            f">= {_bound(low)}" if low is not None else f"<= {_bound(high)}")
        raise EigentoneError(f"{what}: {number!r} is out of range (expected {bounds})")
    return x


def _bound(number: float | None) -> str:
    return f"{number:g}"


# ------------------------------------------------------------------ memory estimates (bytes)

MODAL_ARRAYS = 16
"""float32 (slots, modes) arrays of a modal bank (state, poles, block poles, readout, pole parameters,
readout scratch); the estimate counts this many."""

LEVELLING_SAMPLES = 4800
"""Samples of the levelling probe note rendered by the float64 reference when a bundle loads."""


def bundle_load_bytes(modes: int, member_bytes: int) -> int:
    """Memory to load one bundle: its graph files twice (archive bytes and onnxruntime's copy) and the
    levelling render (``LEVELLING_SAMPLES`` x modes complex128, three temporaries)."""
    return 2 * member_bytes + 3 * 16 * LEVELLING_SAMPLES * modes


def synth_bytes(slots: int, modes: int, readout: bool, attack_samples: int = 0) -> int:
    """Memory of one instrument's voices: the modal bank, with a readout graph its (slots, modes, 2) input and
    output per call, and with an attack component a float32 table of ``attack_samples`` per slot (twice: the
    excite output and the voices' copy)."""
    bank = MODAL_ARRAYS * 4 * slots * modes
    return bank + (2 * 8 * slots * modes if readout else 0) + 2 * 4 * slots * attack_samples


def check_memory(what: str, estimate_bytes: float) -> None:
    """Refuse a job whose estimated memory is above ``memory-mb``; ``what`` names the job's input."""
    check("memory-mb", estimate_bytes / 1e6, f"{what}: estimated memory")


# ------------------------------------------------------------------ training audio


def check_recording_length(path: object, frames: int, sample_rate: float) -> None:
    """Refuse a training recording longer than ``recording-seconds`` before its samples are read.

    A recording is one note; a 10-minute file would make the modal analysis build matrices of
    tens of GB. ``frames``/``sample_rate`` come from the file header (soundfile.info).
    """
    if sample_rate <= 0:
        raise EigentoneError(f"{path}: sample rate {sample_rate} in the file header is not positive")
    check("recording-seconds", frames / sample_rate, f"{path}: recording length (trim it to the note)")


def check_recording_file(path: object) -> None:
    """``check_recording_length`` from an audio file's header (soundfile.info); an unreadable header is left
    for the reader to report."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:  # noqa: BLE001 - libsndfile errors: the loader reports them in its own words
        return
    check_recording_length(path, info.frames, info.samplerate)


def check_recording_content(path: object, samples: object, sample_rate: float) -> None:
    """Refuse a training recording with nothing to analyse: constant (a DC offset only) or no oscillation.

    ``samples``: (samples,) mono float array. The AC part (signal minus its mean) must reach 1e-3 of the
    file's peak; otherwise there are no partials to fit and the analysis would search in vain.
    """
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    ac = float(np.max(np.abs(x - x.mean()))) if x.size else 0.0
    if peak > 0 and ac < 1e-3 * peak:
        raise EigentoneError(f"{path}: the recording is a constant level (DC offset only), nothing to learn from; "
                             "record a sounding note")
