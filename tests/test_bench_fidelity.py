"""The fidelity bench's baselines and floors (the bench itself runs on the dev set: `eigentone bench fidelity`)."""

import numpy as np
import pytest

from benchmarks.bench_fidelity import classic_resynthesis, floors, sampler, summarise
from training import metrics


def test_classic_resynthesis_rebuilds_a_sum_of_decaying_partials():
    fs = 16000.0
    t = np.arange(int(2 * fs)) / fs
    x = sum(a * np.exp(-s * t) * np.cos(2 * np.pi * f * t + p) for f, s, a, p in
            [(220.0, 2.0, 1.0, 0.3), (441.5, 3.0, 0.4, 1.0), (1337.0, 6.0, 0.2, 2.0)])
    y = classic_resynthesis(x, fs, x.size)
    assert np.sum((y - x) ** 2) / np.sum(x**2) < 1e-3
    assert metrics.recording_scores(y, x, fs)["partial_cents_median"] < 0.05


def test_sampler_plays_the_recording_at_the_new_pitch():
    fs = 16000.0
    t = np.arange(int(fs)) / fs
    x = np.sin(2 * np.pi * 200 * t)
    y = sampler(x, 60.0, 67.0, 4000)
    peaks = metrics.spectral_peaks(y, fs, count=1)
    assert metrics.cents(peaks.freqs_hz[0], 200 * 2 ** (7 / 12)) == pytest.approx(0.0, abs=0.5)


def _row(group, part, model_lsd, classic_lsd, cents=0.5, t60=0.05):
    scores = {"partial_cents_median": cents, "t60_error_median": t60, "partials_present": 1.0, "mr_stft": 1.0,
              "lsd_db": model_lsd}
    return {"group": group, "part": part, "model": scores, "classic": {**scores, "lsd_db": classic_lsd},
            "fit_seconds": 1.0, "fit_cpu_seconds": 1.0, "recording_seconds": 3.0}


def test_floors_pass_only_when_the_model_matches_the_classic_on_the_held_out_part():
    good = summarise([_row("bars", "holdout", 2.0, 3.0), _row("bars", "holdout", 2.5, 2.4), _row("bars", "tune", 9, 1)])
    assert all(ok for *_, ok in floors(good, []))
    bad = summarise([_row("bars", "holdout", 3.0, 2.0), _row("bars", "holdout", 2.5, 2.4)])
    missed = [what for what, _, _, ok in floors(bad, []) if not ok]
    assert missed == ["holdout bars: LSD model <= classic"]
    slow = summarise([_row("bars", "holdout", 2.0, 3.0, t60=0.2)])
    assert [what for what, _, _, ok in floors(slow, []) if not ok] == ["holdout bars: T60 error median"]
    with_attack = [_row("bars", "holdout", 2.0, 3.0), _row("bars", "holdout", 2.0, 3.0)]
    for row, mr_stft in zip(with_attack, (0.9, 1.4)):  # the modes alone: median MR-STFT 1.15 > classic's 1.0
        row["model_no_attack"] = {**row["model"], "mr_stft": mr_stft}
    assert [what for what, _, _, ok in floors(summarise(with_attack), []) if not ok] == [
        "holdout bars: MR-STFT model without its attack <= classic"]
    late = [_row("bars", "tune", 2.0, 3.0), _row("bars", "tune", 2.0, 3.0)]
    late[1]["fit_seconds"] = 25.0
    assert [what for what, _, _, ok in floors(summarise(late), []) if not ok] == [
        "tune bars: slowest fit of a recording <= 4 s, wall s"]
    late[1]["recording_seconds"] = 8.0  # the speed floor is for recordings up to 4 s
    assert all(ok for *_, ok in floors(summarise(late), []))


def _struck_note(path, f0, fs=16000, seconds=0.6):
    import soundfile as sf

    t = np.arange(int(seconds * fs)) / fs
    x = sum(a * np.exp(-s * t) * np.sin(2 * np.pi * k * f0 * t) for k, s, a in [(1, 3.0, 0.5), (2, 5.0, 0.25), (3, 8.0, 0.1)])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, fs)


@pytest.mark.slow  # ~25 s CPU: four real fits and two spawned interpreters importing torch
def test_fitting_in_parallel_processes_gives_the_same_rows_as_one_process(tmp_path):
    from benchmarks.bench_fidelity import single_recordings

    files = []
    for name, note in (("A3", 57.0), ("E4", 64.0)):
        _struck_note(tmp_path / "set" / f"{name}.flac", 440.0 * 2 ** ((note - 69) / 12))
        files.append({"file": f"{name}.flac", "group": "bars", "instrument": "sine-bar", "part": "tune", "note": note})
    one = single_recordings(tmp_path / "set", files, tmp_path / "one", jobs=1)
    two = single_recordings(tmp_path / "set", files, tmp_path / "two", jobs=2)
    timing = ("fit_seconds", "fit_cpu_seconds")
    assert [r["file"] for r in two] == ["A3.flac", "E4.flac"]
    assert all("model" in r and "model_error" not in r for r in one)
    assert [{k: v for k, v in r.items() if k not in timing} for r in two] == \
           [{k: v for k, v in r.items() if k not in timing} for r in one]
