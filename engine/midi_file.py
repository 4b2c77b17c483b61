"""MIDI files as sample-stamped event schedules, played block by block by frame count.

The offline renderer and the real-time callback both walk a ``MidiSchedule`` with
``block_events(first_frame, n_frames)``: that is why the two paths are sample-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from eigentone import limits
from eigentone.errors import EigentoneError
from eigentone.files import register_input

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


class _Bad(Exception):
    """A malformed Standard MIDI File (the message says where)."""


DEFAULT_TEMPO = 500_000
"""µs per quarter note before the first set_tempo event (120 bpm)."""

SMPTE_RATES = {24: 24.0, 25: 25.0, 29: 30000 / 1001, 30: 30.0}
"""Frames per second of an SMPTE time division (its high byte is minus these)."""

_KEPT = {0x80, 0x90, 0xB0, 0xE0}  # note off, note on, control change, pitch bend
_TEMPO, _END = -1, -2  # pseudo statuses for set_tempo and end-of-track / other meta events


@dataclass
class SmfEvents:
    """A Standard MIDI File's events in file order per track, concatenated track after track.

    ticks: (events,) int64 absolute ticks; status: (events,) int64 MIDI status (_TEMPO / _END for meta);
    data: (events, 2) int64 (data bytes; for _TEMPO data[0] is µs per quarter note);
    seconds_per_tick: None for metrical time (tempo map applies), else the SMPTE tick length;
    ticks_per_beat: metrical division (0 for SMPTE); format: 0 or 1.
    """

    ticks: np.ndarray
    status: np.ndarray
    data: np.ndarray
    ticks_per_beat: int
    seconds_per_tick: float | None
    format: int


def _vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable-length quantity (at most 4 bytes) at ``pos``: (value, next position)."""
    value = 0
    for _ in range(4):
        if pos >= end:
            raise _Bad("truncated (inside a variable-length number)")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise _Bad(f"variable-length number longer than 4 bytes at byte {pos}")


def parse_smf(data: bytes, max_events: int) -> SmfEvents:
    """Parse a Standard MIDI File (format 0 or 1) into ``SmfEvents``; raises _Bad on malformed input and
    _TooMany as soon as more than ``max_events`` events are kept (so a huge file is not parsed to its end)."""
    if len(data) < 14 or data[:4] != b"MThd":
        raise _Bad("no MThd header (not a Standard MIDI File)")
    header_len = int.from_bytes(data[4:8], "big")
    if header_len < 6 or 8 + header_len > len(data):
        raise _Bad("truncated header")
    fmt, n_tracks, division = (int.from_bytes(data[i : i + 2], "big") for i in (8, 10, 12))
    if fmt == 2:
        raise _Bad("MIDI type 2 (asynchronous tracks) is not supported; save it as type 0 or 1")
    if fmt not in (0, 1):
        raise _Bad(f"unknown MIDI file format {fmt}")
    seconds_per_tick = None
    if division & 0x8000:
        fps, per_frame = 256 - (division >> 8), division & 0xFF
        if fps not in SMPTE_RATES or per_frame == 0:
            raise _Bad(f"SMPTE time division {-fps} fps x {per_frame} ticks is not valid")
        seconds_per_tick = 1.0 / (SMPTE_RATES[fps] * per_frame)
    elif division == 0:
        raise _Bad("0 ticks per beat in the header (time division); the file cannot be timed")
    ticks: list[int] = []
    status: list[int] = []
    d1: list[int] = []
    d2: list[int] = []
    pos = 8 + header_len
    found = 0
    while found < n_tracks:
        if pos + 8 > len(data):
            raise _Bad(f"truncated (header announces {n_tracks} tracks, found {found})")
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        pos += 8
        end = pos + length
        if end > len(data):
            raise _Bad(f"truncated (track {found + 1} announces {length} bytes, {len(data) - pos} left)")
        if kind == b"MTrk":
            _parse_track(data, pos, end, ticks, status, d1, d2, max_events, found + 1)
            found += 1
        pos = end
    return SmfEvents(np.asarray(ticks, np.int64), np.asarray(status, np.int64),
                     np.stack([np.asarray(d1, np.int64), np.asarray(d2, np.int64)], axis=1).reshape(-1, 2),
                     0 if seconds_per_tick else division, seconds_per_tick, fmt)


def _parse_track(data: bytes, pos: int, end: int, ticks: list, status: list, d1: list, d2: list,
                 max_events: int, track: int) -> None:
    """Append one MTrk chunk's kept events (channel notes/controllers/bends, tempo, end of track)."""
    tick = 0
    running = 0
    while pos < end:
        delta, pos = _vlq(data, pos, end)
        tick += delta
        if pos >= end:
            raise _Bad(f"truncated event in track {track}")
        byte = data[pos]
        if byte >= 0x80:
            pos += 1
            if byte < 0xF0:
                running = byte
        elif running:
            byte = running
        else:
            raise _Bad(f"data byte without a status in track {track} at byte {pos}")
        if byte < 0xF0:
            n = 1 if byte & 0xF0 in (0xC0, 0xD0) else 2
            if pos + n > end:
                raise _Bad(f"truncated event in track {track}")
            a = data[pos]
            b = data[pos + 1] if n == 2 else 0
            if a >= 0x80 or b >= 0x80:
                raise _Bad(f"data byte above 127 in track {track} at byte {pos}")
            pos += n
            if byte & 0xF0 in _KEPT:
                _append(ticks, status, d1, d2, tick, byte, a, b, max_events)
        elif byte in (0xF0, 0xF7):
            length, pos = _vlq(data, pos, end)
            pos += length
        elif byte == 0xFF:
            if pos >= end:
                raise _Bad(f"truncated meta event in track {track}")
            meta = data[pos]
            length, pos = _vlq(data, pos + 1, end)
            if pos + length > end:
                raise _Bad(f"truncated meta event in track {track}")
            if meta == 0x51:
                if length != 3:
                    raise _Bad(f"set_tempo event of {length} bytes in track {track} (3 expected)")
                _append(ticks, status, d1, d2, tick, _TEMPO, int.from_bytes(data[pos : pos + 3], "big"), 0, max_events)
            elif meta == 0x2F:
                _append(ticks, status, d1, d2, tick, _END, 0, 0, max_events)
                return
            pos += length
        else:
            raise _Bad(f"system message 0x{byte:02X} is not allowed in a MIDI file (track {track})")
    _append(ticks, status, d1, d2, tick, _END, 0, 0, max_events)  # a track without end-of-track ends here


def _append(ticks: list, status: list, d1: list, d2: list, tick: int, kind: int, a: int, b: int, limit: int) -> None:
    if len(ticks) >= limit:
        raise _TooMany
    ticks.append(tick)
    status.append(kind)
    d1.append(a)
    d2.append(b)


class _TooMany(Exception):
    pass


def event_seconds(events: SmfEvents) -> np.ndarray:
    """Seconds of each event in merged order (``np.argsort(ticks, stable)``), through the tempo map.

    Like mido: events are merged by tick (ties keep track order), and each event's delta ticks are
    timed with the tempo in force before it (a set_tempo applies from the next event on).
    """
    order = np.argsort(events.ticks, kind="stable")
    ticks = events.ticks[order]
    dticks = np.diff(ticks, prepend=0).astype(np.float64)
    if events.seconds_per_tick is not None:
        return np.cumsum(dticks * events.seconds_per_tick)
    is_tempo = events.status[order] == _TEMPO
    marks = np.where(is_tempo, np.arange(len(ticks)), -1)
    last = np.maximum.accumulate(marks)  # index of the latest tempo event at or before each event
    before = np.concatenate([[-1], last[:-1]])
    tempo = np.where(before >= 0, events.data[order, 0][np.maximum(before, 0)], DEFAULT_TEMPO).astype(np.float64)
    return np.cumsum(dticks * (tempo * 1e-6 / events.ticks_per_beat))


def read_midi(path: str | Path, sample_rate: float) -> MidiSchedule:
    """Read a Standard MIDI File (format 0 or 1) into a schedule at ``sample_rate`` Hz.

    Tempo changes and SMPTE time divisions are honoured. Refused with one EigentoneError line naming the
    file: a missing, malformed or truncated file, 0 ticks per beat, a tempo of 0 or faster than the
    ``midi-bpm`` limit, more events than ``midi-events``, a song longer than ``song-seconds``
    (eigentone/limits.py; the checks run before any audio buffer exists), or no note/controller events.
    """
    path = Path(path)
    if not path.is_file():
        raise EigentoneError(f"{path}: no such MIDI file")
    max_events = int(limits.value("midi-events"))
    size = path.stat().st_size
    if size > (1 << 26) + 8 * max_events:
        raise EigentoneError(f"{path}: {size / 1e6:.0f} MB is too big for a MIDI file within the limit of "
                             f"{max_events:,} events ({limits.raise_hint('midi-events', size / 8)})")
    register_input(path)
    try:
        events = parse_smf(path.read_bytes(), max_events)
    except _TooMany:
        raise EigentoneError(f"{path}: more than {max_events:,} events in the MIDI file, above the limit "
                             f"({limits.raise_hint('midi-events')})") from None
    except _Bad as exc:
        raise EigentoneError(f"{path}: not a readable MIDI file ({exc})") from None
    except OSError as exc:
        raise EigentoneError(f"{path}: cannot read the MIDI file ({exc.strerror})") from None
    tempos = events.data[events.status == _TEMPO, 0]
    if events.seconds_per_tick is None and len(tempos):
        fastest = int(tempos.min())
        if fastest == 0:
            raise EigentoneError(f"{path}: a set_tempo event says 0 µs per beat; fix the tempo in the file")
        limits.check("midi-bpm", 60e6 / fastest, f"{path}: tempo of {fastest} µs per beat")
    seconds = event_seconds(events)
    length_s = float(seconds[-1]) if len(seconds) else 0.0
    limits.check("song-seconds", length_s, f"{path}: song length (end of track at {length_s / 3600:.2f} h)")
    order = np.argsort(events.ticks, kind="stable")
    status = events.status[order]
    kept = status >= 0
    frames = np.round(seconds[kept] * sample_rate).astype(np.int64)
    messages = np.stack([status[kept], events.data[order][kept, 0], events.data[order][kept, 1]], axis=1)
    if not len(frames):
        raise EigentoneError(f"{path}: the MIDI file has no note or controller events")
    return MidiSchedule(frames=frames, messages=messages.astype(np.int32).reshape(-1, 3),
                        length=round(length_s * sample_rate), sample_rate=float(sample_rate))


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
