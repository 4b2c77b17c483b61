"""MIDI files as sample-stamped event schedules, played block by block by frame count.

The offline renderer and the real-time callback both walk a ``MidiSchedule`` with
``block_events(first_frame, n_frames)``: that is why the two paths are sample-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from eigentone.errors import EigentoneError

CHANNEL_KINDS = {"note_on", "note_off", "control_change", "pitchwheel"}


@dataclass
class MidiSchedule:
    """Channel events of a song at a sample rate.

    frames: (events,) int64 absolute sample index; messages: (events, 3) int32 (status, data1, data2);
    ``length`` is the frame of the song's last event (end of track included).
    """

    frames: np.ndarray
    messages: np.ndarray
    length: int
    sample_rate: float

    def block_events(self, first_frame: int, n_frames: int) -> list[tuple[int, int, int, int]]:
        """Events with first_frame <= frame < first_frame + n_frames as (offset, status, data1, data2)."""
        lo = int(np.searchsorted(self.frames, first_frame, side="left"))
        hi = int(np.searchsorted(self.frames, first_frame + n_frames, side="left"))
        return [
            (int(self.frames[i]) - first_frame, int(self.messages[i, 0]), int(self.messages[i, 1]),
             int(self.messages[i, 2]))
            for i in range(lo, hi)
        ]

    @property
    def channels(self) -> set[int]:
        """MIDI channels (0-15) that carry notes."""
        notes = (self.messages[:, 0] & 0xF0) == 0x90
        return {int(s) & 0x0F for s in self.messages[notes, 0]}


def schedule_from_messages(timed: list[tuple[float, mido.Message]], sample_rate: float, length_s: float) -> MidiSchedule:
    """Schedule from (seconds, mido channel message) pairs; frames are round(seconds * sample_rate)."""
    frames, messages = [], []
    for seconds, msg in timed:
        if msg.type not in CHANNEL_KINDS:
            continue
        frames.append(round(seconds * sample_rate))
        messages.append(tuple(msg.bytes()[:3]))
    order = np.argsort(np.asarray(frames, np.int64), kind="stable")
    return MidiSchedule(
        frames=np.asarray(frames, np.int64)[order].reshape(-1),
        messages=np.asarray(messages, np.int32).reshape(-1, 3)[order],
        length=round(length_s * sample_rate),
        sample_rate=float(sample_rate),
    )


def read_midi(path: str | Path, sample_rate: float) -> MidiSchedule:
    """Read a Standard MIDI File into a schedule at ``sample_rate`` Hz (tempo changes honoured).

    Raises EigentoneError naming the file for a missing, malformed or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise EigentoneError(f"{path}: no such MIDI file")
    try:
        song = mido.MidiFile(path)
        timed = []
        now = 0.0
        for msg in song:  # merged tracks, msg.time in seconds since the previous message
            now += msg.time
            timed.append((now, msg))
    except EOFError:
        raise EigentoneError(f"{path}: not a readable MIDI file (truncated)") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise EigentoneError(f"{path}: not a readable MIDI file ({str(exc) or type(exc).__name__})") from None
    if song.type == 2:
        raise EigentoneError(f"{path}: MIDI type 2 (asynchronous tracks) is not supported; save it as type 0 or 1")
    schedule = schedule_from_messages(timed, sample_rate, now)
    if not len(schedule.frames):
        raise EigentoneError(f"{path}: the MIDI file has no note or controller events")
    return schedule


def write_demo_song(
    path: str | Path, seconds: float = 60.0, polyphony: int = 16, seed: int = 0, pedal: bool = False,
    note_length: tuple[float, float] = (0.5, 1.5),
) -> Path:
    """Write a generated test song: ``polyphony`` overlapping notes held at all times for ``seconds``.

    Each lane re-strikes a note every ``note_length`` seconds (uniform; note-off 10 ms before), with a
    pitch-bend gesture every 8 s and, if ``pedal``, 2 s of sustain pedal every 8 s; 120 bpm.
    Deterministic for a seed. Used by benchmarks and tests (generated, not shipped).
    """
    rng = np.random.default_rng(seed)
    ticks_per_beat = 480
    ticks_per_s = ticks_per_beat * 2  # 120 bpm
    events: list[tuple[int, mido.Message]] = []
    for lane in range(polyphony):
        t = rng.uniform(0.0, 0.3)
        while t < seconds:
            duration = rng.uniform(*note_length)
            note = int(rng.integers(36, 90))
            velocity = int(rng.integers(40, 127))
            end = min(t + duration, seconds) - 0.01
            if end - t < 0.05:
                break
            events.append((int(t * ticks_per_s), mido.Message("note_on", note=note, velocity=velocity)))
            events.append((int(end * ticks_per_s), mido.Message("note_off", note=note, velocity=0)))
            t += duration
    for k in range(int(seconds // 8)):
        start = k * 8.0 + 4.0
        if pedal:
            events.append((int(start * ticks_per_s), mido.Message("control_change", control=64, value=127)))
            events.append((int((start + 2.0) * ticks_per_s), mido.Message("control_change", control=64, value=0)))
        events.append((int((start + 1.0) * ticks_per_s), mido.Message("pitchwheel", pitch=1024)))
        events.append((int((start + 1.5) * ticks_per_s), mido.Message("pitchwheel", pitch=0)))
    events.sort(key=lambda item: item[0])
    song = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    song.tracks.append(track)
    previous = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - previous))
        previous = tick
    song.save(str(path))
    return Path(path)
