"""Shared pieces of the DAW-plugin tests (tests/test_plugin_*.py): the build, instrument folders, a MIDI clip,
the Python engine's reference render and the headless CLAP host.

The plugin lists the bundles in ``$XDG_DATA_HOME/eigentone/shipped`` then ``.../instruments`` (each sorted by
file name); every test points XDG_DATA_HOME at a temporary folder, so the user's own folders never matter.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import pytest

from engine.midi_file import MidiSchedule
from engine.render import render_midi

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "plugins" / "native"
BUILD = NATIVE / "build" / "dpf"
BIN = BUILD / "bin"
VST3 = BIN / "eigentone.vst3"
CLAP = BIN / "eigentone.clap"
LV2 = BIN / "eigentone.lv2"
CLAP_HOST = BUILD / "clap-host"
LV2_HOST = BUILD / "lv2-host"
SHIPPED = sorted((ROOT / "assets" / "models").glob("*.etone"))
FLOOR_DB = 80.0
"""Plugin vs Python engine: error energy at least this far below the signal."""
WAIT_FRAMES = 60 * 48000
"""Most frames `render_until` renders while the plugin loads an instrument on its own thread (it stops as soon
as the parameter reads the value; blocks are 1 ms apart, so this is a minute or more of wall time)."""

_built = False


def build_plugin() -> None:
    """Build the plugin and the test hosts (incremental: ~0.2 s when up to date), once per test session."""
    global _built
    if _built:
        return
    result = subprocess.run(["make", "-C", str(NATIVE), "-j2", "plugin", "plugin-test-hosts"],
                            check=False, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        pytest.fail(f"building the plugin failed (bash run.sh plugin installs the build dependencies):\n{tail}")
    _built = True


def instrument_home(root: Path, user: dict[str, bytes] | None = None, shipped: list[Path] = SHIPPED) -> Path:
    """An XDG_DATA_HOME with ``shipped`` bundles in eigentone/shipped and ``user`` (file name -> bytes) in
    eigentone/instruments. Returns the folder to set as XDG_DATA_HOME."""
    for folder, files in (("shipped", {p.name: p.read_bytes() for p in shipped}), ("instruments", user or {})):
        target = root / "eigentone" / folder
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (target / name).write_bytes(data)
    return root


def instrument_list(home: Path) -> list[str]:
    """The plugin's instrument list for this XDG_DATA_HOME (same order and names as library.cpp)."""
    shipped = sorted(p.stem for p in (home / "eigentone" / "shipped").glob("*.etone"))
    user = sorted(p.stem for p in (home / "eigentone" / "instruments").glob("*.etone"))
    return shipped + [f"{name} (user)" if name in shipped else name for name in user]


# The test clip, in milliseconds on a 10 ms grid so that every event lands on a whole frame at 44.1, 48 and
# 96 kHz: overlapping notes on two channels, sustain pedal, a pitch-bend gesture and releases.
CLIP_MS: list[tuple[int, tuple[int, int, int]]] = [
    (0, (0x90, 48, 90)), (120, (0x90, 55, 70)), (250, (0x90, 60, 110)), (400, (0xB0, 64, 127)),
    (600, (0x80, 48, 0)), (900, (0x80, 55, 0)), (1000, (0xE0, 0x00, 0x50)), (1300, (0xE0, 0x00, 0x40)),
    (1500, (0xB0, 64, 0)), (1600, (0x91, 64, 100)), (1610, (0x91, 67, 60)), (2200, (0x81, 64, 0)),
    (2400, (0x80, 60, 0)), (2500, (0x81, 67, 0)),
]
CLIP_SECONDS = 3.0


@dataclass
class Clip:
    """Events (frame, status, data1, data2) sorted by frame, and the length in frames, at one sample rate."""

    events: list[tuple[int, int, int, int]]
    frames: int
    sample_rate: float

    def schedule(self) -> MidiSchedule:
        frames = np.array([e[0] for e in self.events], np.int64)
        messages = np.array([e[1:] for e in self.events], np.int32).reshape(-1, 3)
        return MidiSchedule(frames=frames, messages=messages, length=self.frames, sample_rate=self.sample_rate)


def clip(sample_rate: float, block_quantum: int = 1, events_ms=CLIP_MS, seconds: float = CLIP_SECONDS) -> Clip:
    """The test clip at ``sample_rate``; controllers and pitch bend moved to the start of their host block of
    ``block_quantum`` frames (where DawDreamer and pedalboard deliver them), notes stay sample-accurate."""
    events = []
    for ms, (status, d1, d2) in events_ms:
        frame = round(ms * sample_rate / 1000)
        if status & 0xF0 in (0xB0, 0xE0):
            frame -= frame % block_quantum
        events.append((frame, status, d1, d2))
    events.sort(key=lambda e: e[0])
    return Clip(events, round(seconds * sample_rate), float(sample_rate))


def write_midi_file(path: Path, events_ms=CLIP_MS) -> Path:
    """The clip as a Standard MIDI File with 1 tick = 1 ms (1000 ticks per beat at 60 bpm)."""
    song = mido.MidiFile(ticks_per_beat=1000)
    track = mido.MidiTrack()
    song.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))
    previous = 0
    for ms, message in events_ms:
        track.append(mido.Message.from_bytes(list(message), time=ms - previous))
        previous = ms
    song.save(str(path))
    return path


def python_render(song: Clip, bundle: Path, **options) -> np.ndarray:
    """The Python engine's render of ``song``: (song.frames,) float32 mono. No effects and no output guard
    (limit=False): in a DAW the plugin is one stage of the mix, the DAW's own chain comes after it."""
    audio = render_midi(song.schedule(), bundle, sample_rate=song.sample_rate, tail_s=0.0, limit=False,
                        **options).audio[0]
    out = np.zeros(song.frames, np.float32)
    out[: min(len(audio), song.frames)] = audio[: song.frames]
    return out


def error_db(reference: np.ndarray, output: np.ndarray) -> float:
    """How far the error energy lies below the reference's energy, in dB (inf when identical)."""
    reference = np.asarray(reference, np.float64)
    error = np.sum((np.asarray(output, np.float64) - reference) ** 2)
    signal = np.sum(reference**2)
    assert signal > 0, "the reference is silent"
    return float("inf") if error == 0 else 10.0 * np.log10(signal / error)


TAIL = 256
"""Frames hosts render past a clip's end, so that the clip still fits after removing the plugin's latency."""


def aligned(output: np.ndarray, latency: int, frames: int) -> np.ndarray:
    """Plugin output (samples,) moved earlier by its reported latency: (frames,)."""
    assert len(output) >= latency + frames, f"rendered {len(output)} frames, need {latency + frames}"
    return output[latency : latency + frames]


@dataclass
class HostRun:
    audio: np.ndarray  # (samples, 2) float32
    stdout: str
    stderr: str


def run_clap(tmp: Path, script: list[str], home: Path, name: str = "run", check: bool = True) -> HostRun:
    """Run the headless CLAP host on the built plugin with ``script`` (see test_hosts/clap_host.cpp)."""
    script_path = tmp / f"{name}.txt"
    script_path.write_text("\n".join(script) + "\n")
    out_path = tmp / f"{name}.f32"
    env = {**os.environ, "XDG_DATA_HOME": str(home)}
    result = subprocess.run([str(CLAP_HOST), str(CLAP), str(script_path), str(out_path)], check=False,
                            capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"clap-host failed ({result.returncode}): {result.stderr[-2000:]}")
    audio = np.fromfile(out_path, np.float32).reshape(-1, 2) if out_path.exists() else np.zeros((0, 2), np.float32)
    return HostRun(audio, result.stdout, result.stderr)


def midi_lines(song: Clip, offset: int = 0) -> list[str]:
    """Script lines queueing the clip's events, shifted by ``offset`` frames."""
    return [f"midi {frame + offset} {status} {d1} {d2}" for frame, status, d1, d2 in song.events]


def latency_of(stdout: str) -> int:
    """The plugin latency the CLAP host printed at its last `activate`."""
    return int(re.findall(r"^latency (\d+)$", stdout, re.MULTILINE)[-1])


def process_counts(stdout: str) -> tuple[int, int]:
    """(allocations, mutex locks) the CLAP host counted inside the plugin's process() calls."""
    match = re.search(r"^process: (\d+) allocations, (\d+) mutex locks$", stdout, re.MULTILINE)
    return int(match.group(1)), int(match.group(2))
