"""Write assets/demo/demo.mid: a short piece written for eigentone's shipped instruments.

Run: ``python assets/demo/compose_demo.py`` (deterministic; the shipped file is its output).

Channels (0-based) and the instruments ``demo.instruments.json`` maps them to:

* 0: plucked melody (nylon-like string), with a pitch-bend slide into the last phrase
* 1: chords (steel-like string), arpeggiated, held with the sustain pedal (CC64)
* 2: hard plucks (nonlinear string): pitch glide down as each note decays
* 3: small struck plate: hits on the beat
* 4: large gong-like plate: one hit at the start and one at the end

About 24 s at 90 BPM in A minor.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mido

TICKS = 480  # per quarter note
BPM = 90


def _events() -> list[tuple[int, int, mido.Message]]:
    """(tick, order, message) tuples; ``order`` keeps simultaneous events in a stable order."""
    ev: list[tuple[int, int, mido.Message]] = []

    def note(ch: int, start_beats: float, length_beats: float, pitch: int, vel: int) -> None:
        start, stop = int(start_beats * TICKS), int((start_beats + length_beats) * TICKS)
        ev.append((start, 2, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
        ev.append((stop, 1, mido.Message("note_off", channel=ch, note=pitch, velocity=64)))

    def cc(ch: int, at_beats: float, control: int, value: int) -> None:
        ev.append((int(at_beats * TICKS), 0, mido.Message("control_change", channel=ch, control=control, value=value)))

    def bend(ch: int, at_beats: float, value: int) -> None:
        ev.append((int(at_beats * TICKS), 0, mido.Message("pitchwheel", channel=ch, pitch=value)))

    # chords: Am, F, C, G, Am, Dm, E, Am; one bar each, arpeggiated, sustain down per bar
    chords = [(57, 60, 64), (53, 57, 60), (48, 55, 64), (55, 59, 62), (57, 60, 64), (50, 57, 62), (52, 56, 59), (57, 60, 64)]
    for bar, chord in enumerate(chords):
        t0 = bar * 4.0
        cc(1, t0, 64, 127)
        for i, pitch in enumerate(chord * 2):
            note(1, t0 + 0.5 * i, 0.4, pitch + (12 if i >= 3 else 0), 70 - 4 * (i % 3))
        cc(1, t0 + 3.9, 64, 0)

    # melody: two phrases; the second starts with a bend up into the note
    melody = [
        (8.0, 1.0, 76), (9.0, 0.5, 74), (9.5, 0.5, 72), (10.0, 1.5, 71), (11.5, 0.5, 72),
        (12.0, 1.0, 74), (13.0, 1.0, 72), (14.0, 2.0, 69),
        (16.0, 1.0, 72), (17.0, 1.0, 74), (18.0, 1.5, 76), (19.5, 0.5, 77),
        (20.0, 1.0, 76), (21.0, 1.0, 74), (22.0, 2.0, 72),
        (24.0, 1.0, 69), (25.0, 1.0, 71), (26.0, 1.5, 72), (27.5, 0.5, 71), (28.0, 3.5, 69),
    ]
    for start, length, pitch in melody:
        note(0, start, length, pitch, 96)
    bend(0, 15.99, -8192)  # wheel at -2 semitones just before the bar
    for step in range(1, 9):  # glide up to centre over half a beat
        bend(0, 16.0 + step * 0.0625, min(8191, -8192 + step * 1024))
    bend(0, 16.6, 0)

    # hard plucks with tension-modulated glide: bars 3-4 and 7
    for start, pitch in [(8.0, 57), (10.0, 57), (12.0, 53), (14.0, 55), (24.0, 57), (26.0, 52)]:
        note(2, start, 1.8, pitch, 127)

    # small plate on beats 2 and 4 from bar 2; gong at the start and the end
    for beat in range(4, 30):
        if beat % 2 == 1:
            note(3, float(beat), 0.5, 72, 80 if beat % 4 == 1 else 60)
    note(4, 0.0, 6.0, 43, 110)
    note(4, 28.0, 4.0, 43, 120)
    return ev


def compose(path: str | Path) -> None:
    """Write the demo piece as a type-1 MIDI file (one track per channel plus a tempo track)."""
    events = sorted(_events(), key=lambda e: (e[0], e[1], e[2].channel))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM), time=0),
                            mido.MetaMessage("track_name", name="eigentone demo", time=0)])
    midi.tracks.append(tempo)
    for channel in range(5):
        track = mido.MidiTrack()
        last = 0
        for tick, _, msg in (e for e in events if e[2].channel == channel):
            track.append(msg.copy(time=tick - last))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=TICKS))
        midi.tracks.append(track)
    midi.save(str(path))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("demo.mid")
    compose(out)
    print(f"wrote {out} ({mido.MidiFile(str(out)).length:.1f} s)")
