"""Offline rendering: single notes (for model tests) and whole MIDI files (the `render` command).

>>> audio = render_note("modal.etone", note=60, velocity=0.8, duration_s=1.0)      # (48000,) float32
>>> result = render_midi("song.mid", "modal.etone")                                  # result.audio: (2, samples)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf

from eigentone import limits
from eigentone.contract import CONTROL_NAMES, DEFAULT_CONTROLS
from eigentone.errors import EigentoneError, first_line, printable
from eigentone.files import atomic_path
from engine.instrument import Instrument
from engine.midi_file import MidiSchedule, read_midi
from engine.modal_bank import ModalBank
from engine.signal_chain import OutputGuard, SignalChain, describe_guard
from engine.synth import LOOKAHEAD, Synth
from plugins.effects import EffectsChain

WAV_SUBTYPES = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}


def _instrument(model: str | Path | Instrument) -> Instrument:
    return model if isinstance(model, Instrument) else Instrument.load(model)


def render_note(
    bundle_path_or_instrument: str | Path | Instrument,
    note: float,
    velocity: float,
    duration_s: float,
    sample_rate: float = 48000,
    position: float = DEFAULT_CONTROLS["position"],
    position_y: float = DEFAULT_CONTROLS["position_y"],
    block_size: int = 64,
) -> np.ndarray:
    """One held note, rendered by the engine's modal bank: (round(duration_s * sample_rate),) float32.

    note: fractional MIDI note; velocity: 0..1 (the excite graph's control, not MIDI 0..127);
    position, position_y: excitation point 0..1. No gain, no limiter, no release: the raw model
    output y[k] = sum Re(c z[k]), with readout and pole modulation evaluated every ``block_size`` samples
    (the first block uses the excite graph's c, like a note starting at a block start in the synth).
    """
    instrument = _instrument(bundle_path_or_instrument)
    values = {"note": note, "velocity": velocity, "position": position, "position_y": position_y}
    controls = np.array([[values[name] for name in CONTROL_NAMES]], dtype=np.float32)
    outputs = instrument.excite_raw(controls)
    if not all(np.all(np.isfinite(v)) for v in outputs.values()):
        raise EigentoneError(f"{instrument.name}: excite returned non-finite values for note {note}")
    n_samples = round(duration_s * sample_rate)
    bank = ModalBank(1, instrument.modes, sample_rate, block_size, instrument.modulation)
    bank.load(0, outputs, 0, 1.0, note)
    active = np.zeros(1, np.int32)
    audio = np.zeros(n_samples, np.float32)
    for start in range(0, n_samples, block_size):
        stop = min(start + block_size, n_samples)
        if start:  # block boundaries after the first: as the synth does for a note started at offset 0
            if instrument.has_readout:
                bank.apply_readout(instrument, active, 1)
            if instrument.modulation:
                bank.poles(active, 1, new_energy=True)
            bank.start_block(active, 1)
        bank.advance(active, 1, audio, start, stop)
        bank.move_to(active, 1, stop - start)
    return audio


@dataclass
class RenderResult:
    """audio: (channels, samples) float32 (empty when the blocks went to a ``sink``); frames: samples rendered;
    seconds / cpu_seconds: wall and process CPU time of the rendering (they differ when other processes share
    the CPU); stats: voices, faults (muted voices), the output guard's counts and effect block-length faults."""

    audio: np.ndarray
    sample_rate: float
    seconds: float
    cpu_seconds: float
    max_voices_used: int
    faults: list[tuple[str, str, int, int]] = field(default_factory=list)
    frames: int = 0
    guard: OutputGuard | None = None
    length_faults: int = 0

    @property
    def realtime_factor(self) -> float:
        """Audio duration / wall time."""
        return self.frames / self.sample_rate / max(self.seconds, 1e-9)

    @property
    def cpu_realtime_factor(self) -> float:
        """Audio duration / CPU time of this process."""
        return self.frames / self.sample_rate / max(self.cpu_seconds, 1e-9)

    def warnings(self) -> list[str]:
        """One line per problem met while rendering: muted voices, the output guard acting, effects that
        changed the block length. Names from bundles are made safe to print."""
        lines = [f"muted a voice of {printable(instrument, 80)} (channel {channel + 1}, note {note}): {problem}"
                 for problem, instrument, channel, note in self.faults]
        if self.guard is not None and (guarded := describe_guard(self.guard, self.sample_rate)):
            lines.append(guarded)
        if self.length_faults:
            lines.append(f"an effect returned {self.length_faults} blocks of another length (zero-padded or cut)")
        return lines


def instruments_for_channels(
    models: Sequence[str | Path | Instrument], per_channel: Mapping[int, str | Path | Instrument] | None = None
) -> dict[int, Instrument]:
    """Channel (0-15) -> Instrument: ``models[i]`` plays channel i and ``models[0]`` every channel not
    otherwise given; ``per_channel`` overrides. Each distinct path is loaded once."""
    cache: dict[str, Instrument] = {}

    def load(model: str | Path | Instrument) -> Instrument:
        if isinstance(model, Instrument):
            return model
        key = str(model)
        if key not in cache:
            cache[key] = Instrument.load(model)
        return cache[key]

    if not models:
        raise EigentoneError("no instrument to play (give --model)")
    loaded = [load(m) for m in models]
    mapping = {ch: loaded[ch] if ch < len(loaded) else loaded[0] for ch in range(16)}
    for channel, model in (per_channel or {}).items():
        mapping[channel] = load(model)
    return mapping


def render_frames(schedule: MidiSchedule, sample_rate: float, tail_s: float, effects_tail_s: float,
                  effects: bool) -> int:
    """Upper bound of the samples ``render_midi`` writes for a schedule (song, voice tails, effect tails)."""
    return schedule.length + int(tail_s * sample_rate) + (int(effects_tail_s * sample_rate) if effects else 0)


def render_midi(
    song: str | Path | MidiSchedule,
    models: str | Path | Instrument | Sequence[str | Path | Instrument] | Mapping[int, Instrument],
    *,
    sample_rate: float = 48000,
    block_size: int = 64,
    max_voices: int = 64,
    effects: EffectsChain | None = None,
    tail_s: float = 10.0,
    effects_tail_s: float = 2.0,
    progress: Callable[[int], None] | None = None,
    sink: Callable[[np.ndarray], None] | None = None,
    limit: bool = True,
    **synth_options,
) -> RenderResult:
    """Render a MIDI file (or schedule) offline through the same block loop as real time.

    Renders until the song's end and every voice has decayed (at most ``tail_s`` after the end, checked
    every call), plus ``effects_tail_s`` of effect tails when ``effects`` is given; at least one block past
    the last event. Calls are the largest multiple of ``block_size`` up to 4096 samples: the synth's output
    does not depend on how the stream is cut into calls (internal 64-sample blocks), so this gives the samples
    a real-time stream in ``block_size`` blocks plays, with less overhead per sample.
    ``progress(frames)`` is called per call. ``sink(block)``: each (channels, n) block
    goes there instead of into ``result.audio`` (memory stays bounded whatever the song's length).
    The synth receives each event ``lookahead`` samples (``synth_options``, default LOOKAHEAD) before it sounds,
    as in real time, and every block passes the output guard (engine/signal_chain.py; ``limit=False`` skips its
    limiter); both delays are removed, so sample k of the result is sample k of the song, whatever the look-ahead.
    Deterministic: the same inputs give the same samples.
    """
    schedule = song if isinstance(song, MidiSchedule) else read_midi(song, sample_rate)
    if isinstance(models, Mapping):
        channel_map = dict(models)
    elif isinstance(models, (str, Path, Instrument)):
        channel_map = instruments_for_channels([models])
    else:
        channel_map = instruments_for_channels(list(models))
    synth_options.setdefault("lookahead", LOOKAHEAD)
    chain = SignalChain(Synth(channel_map, **synth_options), effects, limit=limit)
    lead = chain.synth.lookahead
    call = block_size * max(1, 4096 // block_size)
    limit_frames = schedule.length + int(tail_s * sample_rate)
    extra = int(effects_tail_s * sample_rate) if effects is not None else 0
    if sink is None:
        limits.check_memory(f"rendering {schedule.length / sample_rate:.0f} s into memory",
                            chain.channels * 4 * (limit_frames + extra + call))
    chain.prepare(sample_rate, call, max_voices)
    audio = np.zeros((chain.channels, 0 if sink else limit_frames + extra + call), np.float32)
    last_event = int(schedule.frames[-1]) if len(schedule.frames) else -1
    frame, end, written = 0, None, 0  # frame: the song's sample now sounding in the synth
    skip = chain.latency  # the synth's and the guard's look-ahead: the first output samples precede the song

    def emit(block: np.ndarray) -> None:
        nonlocal skip, written
        if skip:
            dropped = min(skip, block.shape[1])
            block, skip = block[:, dropped:], skip - dropped
        if sink is None:
            audio[:, written : written + block.shape[1]] = block
        elif block.shape[1]:
            sink(block)
        written += block.shape[1]

    started, cpu_started = time.perf_counter(), time.process_time()
    if lead:  # the song's first ``lead`` samples of events, received before any of them sounds
        emit(chain.process(schedule.block_events(0, lead), lead))
    while True:
        if end is None and (frame >= limit_frames
                            or (frame >= schedule.length and frame > last_event and chain.synth.voices == 0)):
            end = frame + extra
        if end is not None and frame >= end:
            break
        n = call if end is None else min(call, end - frame)
        emit(chain.process(schedule.block_events(frame + lead, n), n))  # sound at frame, frame + n
        frame += n
        if progress is not None:
            progress(n)
    for flush in range(0, chain.guard.latency, call):  # what the guard's look-ahead still holds
        emit(chain.process((), min(call, chain.guard.latency - flush)))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return RenderResult(audio[:, :written], float(sample_rate), seconds, cpu_seconds, chain.synth.peak_voices,
                        list(chain.synth.faults), written, chain.guard, chain.length_faults)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: float, fmt: str = "pcm24") -> None:
    """Write (channels, samples) audio to a WAV atomically (no partial file on error)."""
    with WavWriter(path, sample_rate, audio.shape[0], fmt) as wav:
        wav.write(audio)


class WavWriter:
    """A WAV written block by block to a temporary file renamed onto ``path`` when the ``with`` block succeeds.

    RF64 is used past 4 GB (``expected_frames``). Write errors (full disk, file-size limit) become one
    EigentoneError line naming the file; the temporary file is removed on any error or signal.
    Tracks the peak |sample| written (``peak``).
    """

    def __init__(self, path: str | Path, sample_rate: float, channels: int, fmt: str = "pcm24",
                 expected_frames: int = 0):
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.fmt = fmt
        self.container = "RF64" if expected_frames * channels * 4 >= 4_000_000_000 else "WAV"
        self.peak = 0.0
        self.frames = 0

    def __enter__(self) -> Self:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = sf.SoundFile(str(tmp), "w", self.sample_rate, self.channels, WAV_SUBTYPES[self.fmt],
                                      format=self.container)
        except Exception as exc:  # noqa: BLE001 - libsndfile reports OS errors as its own type
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise EigentoneError(f"{self.path}: cannot write the WAV ({first_line(exc)})") from None
        return self

    def write(self, block: np.ndarray) -> None:
        """Append a (channels, n) float32 block."""
        if block.shape[1]:
            self.peak = max(self.peak, float(np.max(np.abs(block))))
        try:
            self._file.write(np.ascontiguousarray(block.T))
        except Exception as exc:  # noqa: BLE001 - libsndfile reports ENOSPC/EFBIG as its own error type
            raise EigentoneError(f"{self.path}: could not write the WAV ({_write_problem(exc)})") from None
        self.frames += block.shape[1]

    def __exit__(self, kind, exc, tb) -> bool:
        original = exc
        try:
            self._file.close()
        except Exception as close_exc:  # noqa: BLE001 - the final header write can fail on a full disk
            if exc is None:
                exc = EigentoneError(f"{self.path}: could not finish the WAV ({_write_problem(close_exc)})")
                kind, tb = EigentoneError, None
        if exc is None:
            self._atomic.__exit__(None, None, None)  # rename into place (an error here is already one line)
            return False
        self._atomic.__exit__(kind, exc, tb)  # removes the temporary file
        if exc is not original:
            raise exc
        return False


def _write_problem(exc: BaseException) -> str:
    """A write error in words: libsndfile hides errno, so ask the OS what a full disk/limit looks like."""
    text = first_line(exc)
    if "System error" in text or "Error" in text:
        import errno

        return f"{text}; is the disk full ({os.strerror(errno.ENOSPC)}) or the file too large?"
    return text
