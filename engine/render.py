"""Offline rendering: single notes (for model tests) and whole MIDI files (the `render` command).

>>> audio = render_note("modal.etone", note=60, velocity=0.8, duration_s=1.0)      # (48000,) float32
>>> result = render_midi("song.mid", "modal.etone")                                  # result.audio: (2, samples)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from eigentone.contract import CONTROL_NAMES, DEFAULT_CONTROLS
from eigentone.errors import EigentoneError
from eigentone.files import atomic_path
from engine.instrument import Instrument
from engine.midi_file import MidiSchedule, read_midi
from engine.modal_bank import ModalBank
from engine.signal_chain import SignalChain
from engine.synth import Synth
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
    """audio: (channels, samples) float32; seconds / cpu_seconds: wall and process CPU time of the rendering
    (they differ when other processes share the CPU); stats: voices and faults."""

    audio: np.ndarray
    sample_rate: float
    seconds: float
    cpu_seconds: float
    max_voices_used: int
    faults: list[tuple[str, str, int, int]] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        """Audio duration / wall time."""
        return self.audio.shape[1] / self.sample_rate / max(self.seconds, 1e-9)

    @property
    def cpu_realtime_factor(self) -> float:
        """Audio duration / CPU time of this process."""
        return self.audio.shape[1] / self.sample_rate / max(self.cpu_seconds, 1e-9)


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
    **synth_options,
) -> RenderResult:
    """Render a MIDI file (or schedule) offline through the same block loop as real time.

    Renders until the song's end and every voice has decayed (at most ``tail_s`` after the end),
    plus ``effects_tail_s`` of effect tails when ``effects`` is given. ``progress(frames)`` is called
    per block. Deterministic: the same inputs give the same samples.
    """
    schedule = song if isinstance(song, MidiSchedule) else read_midi(song, sample_rate)
    if isinstance(models, Mapping):
        channel_map = dict(models)
    elif isinstance(models, (str, Path, Instrument)):
        channel_map = instruments_for_channels([models])
    else:
        channel_map = instruments_for_channels(list(models))
    chain = SignalChain(Synth(channel_map, **synth_options), effects)
    chain.prepare(sample_rate, block_size, max_voices)
    limit_frames = schedule.length + int(tail_s * sample_rate)
    extra = int(effects_tail_s * sample_rate) if effects is not None else 0
    audio = np.zeros((chain.channels, limit_frames + extra + block_size), np.float32)
    frame, most, end = 0, 0, None
    started, cpu_started = time.perf_counter(), time.process_time()
    while True:
        if end is None and (frame >= limit_frames or (frame >= schedule.length and chain.synth.voices == 0)):
            end = frame + extra
        if end is not None and frame >= end:
            break
        n = block_size if end is None else min(block_size, end - frame)
        block = chain.process(schedule.block_events(frame, n), n)
        audio[:, frame : frame + n] = block
        frame += n
        most = max(most, chain.synth.voices)
        if progress is not None:
            progress(n)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return RenderResult(audio[:, :frame], float(sample_rate), seconds, cpu_seconds, most, list(chain.synth.faults))


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: float, fmt: str = "pcm24") -> None:
    """Write (channels, samples) audio to a WAV atomically (no partial file on error)."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.ascontiguousarray(audio.T), int(sample_rate), subtype=WAV_SUBTYPES[fmt], format="WAV")
