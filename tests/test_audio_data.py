"""Recordings as data (training/data/audio.py): loading, labels, and one-line failures."""

import numpy as np
import pytest
import soundfile as sf

from eigentone.cli import main
from eigentone.errors import EigentoneError
from training.data.audio import TARGET_PEAK, labels_from_name, load_folder, load_recording, note_number


def test_note_names_and_file_name_labels():
    assert note_number("A4") == 69 and note_number("C#4") == 61 and note_number("Bb2") == 46 and note_number("57") == 57
    assert labels_from_name("C4_v100.wav") == pytest.approx((60, 100 / 127, 0.2))
    assert labels_from_name("A2_v64_p0.3.flac") == pytest.approx((45, 64 / 127, 0.3))
    assert note_number("Fs3") == 54 and labels_from_name("Cs4_v90.wav") == pytest.approx((61, 90 / 127, 0.2))
    assert np.isnan(labels_from_name("my-take.wav")[0])
    assert note_number("Fs3") == note_number("F#3") == note_number("Gb3") == 54  # s = sharp, for file names
    assert note_number("A4+10") == pytest.approx(69.1) and labels_from_name("Cs4_v64.wav")[0] == 61
    with pytest.raises(ValueError, match="not a note name"):
        note_number("H2")


def test_unlabelled_note_gets_its_pitch_from_pyin(tmp_path):
    fs = 22050
    t = np.arange(fs) / fs
    f0 = 196.0 * 2 ** (0.3 / 12)  # G3 + 30 cents
    x = sum(np.exp(-3 * n * t) * np.sin(2 * np.pi * n * f0 * t) / n for n in range(1, 6))
    sf.write(tmp_path / "my-take.wav", 0.3 * x, fs)
    assert load_recording(tmp_path / "my-take.wav").note == pytest.approx(55.3, abs=0.05)


def test_stereo_file_is_mixed_trimmed_and_normalised(tmp_path):
    fs = 22050
    t = np.arange(fs) / fs
    tone = 0.2 * np.exp(-3 * t) * np.sin(2 * np.pi * 330 * t)
    x = np.concatenate([np.zeros(2000), tone])
    path = tmp_path / "E4_v90.flac"
    sf.write(path, np.stack([x, 0.5 * x], 1), fs)
    rec = load_recording(path)
    assert rec.sample_rate == fs and rec.note == 64 and rec.velocity == pytest.approx(90 / 127)
    assert rec.audio.ndim == 1 and np.max(np.abs(rec.audio)) == pytest.approx(TARGET_PEAK, rel=1e-3)
    assert rec.audio.size < x.size - 1900  # leading silence gone
    assert abs(rec.audio[0]) < 0.15 * TARGET_PEAK  # starts at the onset (first sample after the last silent one)


def test_folder_labels_from_csv_keep_velocity_differences(tmp_path):
    fs = 16000
    t = np.arange(fs // 2) / fs
    for name, amp in (("soft.wav", 0.1), ("hard.wav", 0.4)):
        sf.write(tmp_path / name, amp * np.exp(-4 * t) * np.sin(2 * np.pi * 220 * t), fs)
    (tmp_path / "labels.csv").write_text("file,note,velocity,position\nsoft.wav,57,40,0.3\nhard.wav,57,120,0.3\n")
    recs = {r.path.split("/")[-1]: r for r in load_folder(tmp_path)}
    assert recs["soft.wav"].velocity == pytest.approx(40 / 127) and recs["hard.wav"].position == 0.3
    ratio = np.max(np.abs(recs["hard.wav"].audio)) / np.max(np.abs(recs["soft.wav"].audio))
    assert ratio == pytest.approx(4.0, rel=1e-3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: sf.write(p, np.zeros(16000), 16000), "silent"),
        (lambda p: sf.write(p, 0.5 * np.sin(np.arange(400) * 0.3), 16000), "too short"),
        (lambda p: p.write_text("this is not audio"), "not a readable audio file"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "not a readable audio file"),
    ],
)
def test_bad_audio_is_one_line_naming_the_file(tmp_path, make, message):
    path = tmp_path / "take.wav"
    make(path)
    with pytest.raises(EigentoneError, match=message) as err:
        load_recording(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_train_on_bad_audio_exits_nonzero_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(8000), 16000)
    run_dir = tmp_path / "run"
    assert main(["train", "ssm", str(path), "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quiet.wav" in err[0] and "silent" in err[0]
    assert not run_dir.exists()


def test_folder_without_labels_is_refused(tmp_path):
    sf.write(tmp_path / "take1.wav", 0.3 * np.sin(np.arange(8000) * 0.1) * np.exp(-np.arange(8000) / 4000), 16000)
    with pytest.raises(EigentoneError, match="no note label"):
        load_folder(tmp_path)
