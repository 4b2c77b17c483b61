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
    late = [_row("bars", "tune", 2.0, 3.0), _row("bars", "tune", 2.0, 3.0)]
    late[1]["fit_seconds"] = 25.0
    assert [what for what, _, _, ok in floors(summarise(late), []) if not ok] == [
        "tune bars: slowest fit of a recording <= 4 s, wall s"]
    late[1]["recording_seconds"] = 8.0  # the speed floor is for recordings up to 4 s
    assert all(ok for *_, ok in floors(summarise(late), []))
