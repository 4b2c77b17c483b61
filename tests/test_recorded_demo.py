"""`python -m training.recorded_demo`: the shipped real-recording instrument's phrase beside the recordings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from training.recorded_demo import main

FS = 44100


def _devset(root: Path) -> Path:
    """A development set of one instrument with two decaying 'recordings' (E2 and D3), as devset build writes it."""
    folder = root / "plucked" / "fluid-nylon-guitar"
    folder.mkdir(parents=True)
    t = np.arange(FS) / FS
    rows = []
    for stem, note in (("E2", 40.0), ("D3", 50.0)):
        f0 = 440 * 2 ** ((note - 69) / 12)
        sf.write(folder / f"{stem}.flac", 0.5 * np.sin(2 * np.pi * f0 * t) * np.exp(-3 * t), FS, subtype="PCM_16")
        rows.append(f"{stem}.flac,{note},100")
        (folder / "labels.csv").write_text("file,note,velocity\n" + "\n".join(rows) + "\n")
    files = [{"file": f"plucked/fluid-nylon-guitar/{s}.flac", "instrument": "fluid-nylon-guitar"} for s in ("E2", "D3")]
    (root / "devset.json").write_text(json.dumps({"files": files}))
    return root


def test_the_demo_writes_the_phrase_the_recordings_and_their_spectrograms(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--devset", str(_devset(tmp_path / "devset")), "--seconds", "2", "--out", str(out)]) == 0
    render, fs = sf.read(out / "render.wav")
    recordings, _ = sf.read(out / "recordings.wav")
    assert fs == FS and render.size == recordings.size == 2 * FS // 256 * 256
    for x in (render, recordings):  # both notes sound: the second onset (1 s) brings new energy
        assert np.abs(x[FS // 2 : FS - 256]).max() < np.abs(x[FS : FS + FS // 4]).max()
    assert (out / "spectrograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["recordings.wav", "render.wav", "spectrograms.png"]


def test_a_missing_bundle_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["--devset", str(_devset(tmp_path / "devset")), "--bundle", str(tmp_path / "nope.etone"),
                 "--seconds", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "nope.etone" in err and err.count("\n") == 1
    assert not out.exists()
