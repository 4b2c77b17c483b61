"""The LV2 plugin: lv2info (lilv-utils) reads and validates the bundle and its ports, and a headless lilv host
renders the test clip like the Python engine (error energy >= 80 dB below the signal)."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from plugin_helpers import (
    FLOOR_DB,
    LV2,
    LV2_HOST,
    ROOT,
    TAIL,
    aligned,
    build_plugin,
    clip,
    error_db,
    instrument_home,
    instrument_list,
    python_render,
)

URI = "urn:eigentone:instrument"
CONTROLS = ["instrument", "gain", "max_voices", "bend_range", "release_time", "decay_scale", "brightness",
            "position", "playing", "lv2_latency"]


@pytest.fixture(scope="module")
def lv2_path(tmp_path_factory):
    """An LV2_PATH with only the built bundle (plus the system's LV2 specifications)."""
    build_plugin()
    folder = tmp_path_factory.mktemp("lv2")
    (folder / "eigentone.lv2").symlink_to(LV2)
    return f"{folder}:/usr/lib/lv2"


def test_lv2info_validates_the_bundle_and_its_ports(lv2_path):
    if shutil.which("lv2info") is None:
        pytest.fail("lv2info not found: apt-get install lilv-utils (bash run.sh test installs it)")
    result = subprocess.run(["lv2info", URI], capture_output=True, text=True, check=False,
                            env={**os.environ, "LV2_PATH": lv2_path})
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower()
    info = result.stdout
    assert "Class:             Instrument Plugin" in info
    ports = info.split("\tPort ")[1:]
    audio_out = [p for p in ports if "AudioPort" in p and "OutputPort" in p]
    atom_in = [p for p in ports if "AtomPort" in p and "InputPort" in p]
    assert len(audio_out) == 2 and len(atom_in) == 1 and len(ports) == 5 + len(CONTROLS) - 1
    assert "atom:supports midi:MidiEvent" in (LV2 / "eigentone_dsp.ttl").read_text()  # lv2info does not print it
    for symbol in CONTROLS:
        assert f"Symbol:      {symbol}\n" in info, symbol


def test_lv2_render_matches_the_python_engine(lv2_path, tmp_path):
    home = instrument_home(tmp_path)
    model = "hard-pluck"
    song = clip(48000)
    events = tmp_path / "events.txt"
    events.write_text("".join(f"{frame} {status} {d1} {d2}\n" for frame, status, d1, d2 in song.events))
    out = tmp_path / "out.f32"
    result = subprocess.run(
        [str(LV2_HOST), URI, "48000", "256", str(song.frames + TAIL), str(events), str(out),
         f"instrument={instrument_list(home).index(model)}"],
        capture_output=True, text=True, check=False, env={**os.environ, "LV2_PATH": lv2_path, "XDG_DATA_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    audio = np.fromfile(out, np.float32).reshape(-1, 2)
    latency = int(result.stdout.split("latency ")[1].split()[0])
    db = error_db(python_render(song, ROOT / "assets" / "models" / f"{model}.etone"),
                  aligned(audio[:, 0], latency, song.frames))
    print(f"LV2 {model} 48000 Hz, block 256: error {db:.1f} dB below the signal (latency {latency})")
    assert db >= FLOOR_DB
