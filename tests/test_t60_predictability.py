"""The T60 predictability diagnostic (benchmarks/t60_predictability.py) on synthetic instruments.

Each note is a sum of harmonic partials whose T60s follow a known smooth law of frequency and note, optionally
with a per-note random offset in log T60: with the law alone every predictor is near 0; with the offsets the
in-sample bound reports about the offsets' own size while the within-note law stays near 0.
"""

import json

import numpy as np
import pytest
import soundfile as sf

from benchmarks.t60_predictability import (
    Take,
    instrument_bounds,
    neighbour_oracle,
    note_decays,
    split_of,
)
from eigentone.cli import main

FS = 16000.0
SECONDS = 3.0
PARTIALS = 12


def _log_t60(freqs_hz: np.ndarray, note: float) -> np.ndarray:
    """The synthetic instrument's law: T60 falls with frequency (f^-0.4) and with note (2% a semitone)."""
    return np.log(2.0) - 0.4 * np.log(freqs_hz / 200.0) - 0.02 * (note - 60.0)


def _note(note: float, offset: float = 0.0, odd: float = 0.0) -> np.ndarray:
    """(samples,) harmonic partials 1..PARTIALS below 0.45 FS, amplitude 1/sqrt(k), each decaying with the law's
    T60 times e^offset (odd-numbered partials: times e^(offset + odd))."""
    t = np.arange(int(SECONDS * FS)) / FS
    f0 = 440.0 * 2.0 ** ((note - 69.0) / 12.0)
    freqs = f0 * np.arange(1, PARTIALS + 1)
    freqs = freqs[freqs < 0.45 * FS]
    log_t60 = _log_t60(freqs, note) + offset + odd * (np.arange(freqs.size) % 2 == 0)
    sigma = 3.0 * np.log(10.0) / np.exp(log_t60)  # amplitude falls 60 dB in T60
    return sum(np.exp(-s * t) * np.sin(2 * np.pi * f * t + k) / np.sqrt(k + 1)
               for k, (f, s) in enumerate(zip(freqs, sigma)))


def test_note_decays_measures_the_synthetic_t60s():
    d = note_decays(_note(60.0), FS, 60.0)
    assert d.freqs_hz.size == PARTIALS
    assert np.median(np.abs(d.t60 / np.exp(_log_t60(d.freqs_hz, 60.0)) - 1)) < 0.03


def test_a_smooth_law_is_predicted_by_every_figure():
    notes = np.arange(48.0, 73.0, 3.0)  # 9 notes, 4 held out
    takes = [Take(n, _note(n)) for n in notes]
    result = instrument_bounds(takes, FS)
    assert [r["note"] for r in result["notes"]] == list(notes[1::2])
    for figure in ("oracle", "smooth", "partial", "trained", "within", "shift", "halves"):
        assert result[figure] < 0.05, (figure, result[figure])
    assert np.isnan(result["stereo"])  # mono takes
    assert instrument_bounds(takes, FS, degrees=(3, 0))["smooth"] > 0.05  # no note terms: the 2%/semitone is missed


def test_per_note_scatter_is_what_the_bound_reports():
    rng = np.random.default_rng(3)
    notes = np.arange(48.0, 85.0, 3.0)  # 13 notes, 6 held out
    offsets = rng.normal(0.0, 0.3, notes.size)
    result = instrument_bounds([Take(n, _note(n, o)) for n, o in zip(notes, offsets)], FS)
    # what a law smooth in note can absorb of the offsets: their quadratic trend over the notes
    trend = np.polyval(np.polyfit(notes, offsets, 2), notes)
    expected = np.median(np.abs(np.exp(offsets - trend)[1::2] - 1))
    assert expected > 0.1
    for figure in ("smooth", "partial"):
        assert 0.6 * expected < result[figure] < 1.4 * expected, (figure, result[figure], expected)
    assert result["trained"] > 1.3 * result["smooth"]  # fitted without the held-out notes' offsets it misses more
    assert result["within"] < 0.05  # each note's own partials still follow a smooth law of frequency
    assert result["oracle"] > 0.1  # the neighbours carry their own offsets


def test_per_partial_number_terms_follow_what_frequency_alone_cannot():
    notes = np.arange(48.0, 73.0, 3.0)
    result = instrument_bounds([Take(n, _note(n, odd=0.4)) for n in notes], FS)  # odd partials ring e^0.4 longer
    assert result["partial"] < 0.05
    assert result["smooth"] > 0.1 and result["within"] > 0.1  # not a smooth function of frequency


def test_channels_and_halves_that_disagree_show():
    notes = np.arange(48.0, 61.0, 3.0)
    left, right = _note(51.0), _note(51.0, 0.2)  # the right channel rings e^0.2 times longer
    two_stage = _note(51.0) + 0.3 * _note(51.0, 1.0)  # a slow tail under the fast decay: a two-stage decay
    takes = [Take(n, _note(n)) for n in notes]
    takes[1] = Take(51.0, two_stage, np.stack([left, right]))  # held out
    result = instrument_bounds(takes, FS)
    assert result["stereo"] == pytest.approx(np.exp(0.2) - 1, rel=0.1)
    assert result["notes"][0]["halves"] > 0.3  # the second half decays e^1 times slower than the first
    assert result["notes"][0]["shift"] < 0.05  # while the same span measured 5 ms later agrees


def test_neighbour_oracle_weights_the_nearer_neighbour_more():
    lower, held, upper = (note_decays(_note(n, o), FS, n) for n, o in ((57.0, 0.4), (58.0, 0.0), (60.0, -0.4)))
    # log T60 offsets +0.4 one semitone below, -0.4 two above: weights 1 and 1/2 give +0.4/3 over the law
    predicted = neighbour_oracle(held, [lower, upper])
    ratio = np.median(predicted / np.exp(_log_t60(held.freqs_hz, 58.0)))
    assert ratio == pytest.approx(np.exp(0.4 / 3), rel=0.03)


def test_split_is_every_other_note_sorted():
    files = [{"instrument": "x", "note": n} for n in (62.0, 50.0, 55.0, 70.0, 48.0)] + [{"instrument": "y", "note": 1.0}]
    trained, held = split_of(files, "x")
    assert [f["note"] for f in trained] == [48.0, 55.0, 70.0]
    assert [f["note"] for f in held] == [50.0, 62.0]


def _devset(root, notes, stereo_note=None):
    entries = []
    for n in notes:
        name = f"plucked/synth/{int(n)}.flac"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        x = 0.5 * _note(n) / np.max(np.abs(_note(n)))
        sf.write(root / name, np.stack([x, x], axis=1) if n == stereo_note else x, int(FS))
        entries.append({"file": name, "group": "plucked", "instrument": "synth", "part": "tune", "note": n})
    (root / "devset.json").write_text(json.dumps({"sources": [], "files": entries, "dropped": []}))


def test_command_writes_json_and_exits_zero(tmp_path, capsys):
    _devset(tmp_path, [48.0, 51.0, 54.0, 57.0, 60.0], stereo_note=51.0)
    out = tmp_path / "t60.json"
    assert main(["bench", "t60-bounds", "--devset", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())["instruments"][0]
    assert result["instrument"] == "synth" and [r["note"] for r in result["notes"]] == [51.0, 57.0]
    assert result["oracle"] < 0.05 and result["stereo"] < 0.01  # identical channels measure alike
    assert "diagnostic" in capsys.readouterr().out


def test_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["bench", "t60-bounds", "--devset", str(tmp_path), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "devset.json missing" in err and len(err.strip().splitlines()) == 1
    _devset(tmp_path, [48.0, 51.0, 54.0, 57.0, 60.0])
    assert main(["bench", "t60-bounds", "--devset", str(tmp_path), "--instrument", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["bench", "t60-bounds", "--devset", str(tmp_path), "--note-degree", "-1"]) == 2
    assert "--note-degree -1" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
