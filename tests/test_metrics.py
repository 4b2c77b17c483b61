"""Evaluation metrics (training/metrics.py) on signals with known differences."""

import numpy as np
import pytest

from training import metrics


def tone(fs, seconds, f0=220.0, sigma=3.0, partials=6, detune=1.0, sigma_scale=1.0):
    t = np.arange(int(seconds * fs)) / fs
    return sum(np.exp(-sigma * sigma_scale * n * t) * np.sin(2 * np.pi * f0 * detune * n * t) / n for n in range(1, partials + 1))


def test_identical_signals_score_zero():
    fs = 16000.0
    x = tone(fs, 1.0)
    report = metrics.audio_report(x, x, fs)
    for key in ("rel_mse", "mr_stft", "lsd_db", "partial_cents_max", "t60_rel_error_max", "t60_broadband_rel_error"):
        assert report[key] == pytest.approx(0.0, abs=1e-9), key
    assert report["partials_matched"] == 1.0


def test_unmeasurable_metrics_are_reported_missing_not_dropped():
    """A silent reference has no partials and no decay: those entries are NaN, with a warning saying why."""
    fs = 16000.0
    pred = tone(fs, 0.5)
    with pytest.warns(metrics.MissingMetricWarning) as caught:
        report = metrics.audio_report(pred, np.zeros_like(pred), fs)
    for key in (*metrics.PARTIAL_KEYS, *metrics.T60_KEYS):
        assert key in report and np.isnan(report[key]), key
    reasons = " ".join(str(w.message) for w in caught)
    assert "no decaying partials" in reasons and "silent" in reasons, reasons
    # a silent prediction: the reference's T60 is kept, the error is missing
    with pytest.warns(metrics.MissingMetricWarning, match="t60_broadband_rel_error"):
        report = metrics.audio_report(np.zeros(8000), tone(fs, 0.5), fs)
    assert report["t60_ref_s"] > 0 and np.isnan(report["t60_broadband_rel_error"])


def test_detuned_and_faster_decay_are_measured():
    fs = 16000.0
    ref = tone(fs, 1.0)
    detune = 2 ** (7 / 1200)  # 7 cents sharp
    errs = metrics.partial_errors(tone(fs, 1.0, detune=detune, sigma_scale=1.2), ref, fs)
    assert errs["partial_cents_mean"] == pytest.approx(7.0, abs=0.05)
    assert errs["t60_rel_error_mean"] == pytest.approx(1 / 1.2 - 1, abs=0.01) or errs["t60_rel_error_mean"] == pytest.approx(
        1 - 1 / 1.2, abs=0.01)


def test_field_and_pickup_errors_are_relative():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 50, 11))
    assert metrics.field_nmse(1.1 * ref, ref) == pytest.approx(0.01)
    assert metrics.pickup_rel_mse(ref[:, :, 0] * 0.9, ref[:, :, 0]) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="shape"):
        metrics.field_nmse(ref[:, :10], ref)


def test_spectral_distances_grow_with_mismatch():
    fs = 16000.0
    ref = tone(fs, 0.5)
    near, far = tone(fs, 0.5, detune=1.002), tone(fs, 0.5, detune=1.05)
    assert 0 < metrics.mr_stft_distance(near, ref) < metrics.mr_stft_distance(far, ref)
    assert 0 < metrics.log_spectral_distance(near, ref) < metrics.log_spectral_distance(far, ref)


def test_broadband_t60_of_single_exponential():
    fs = 8000.0
    t = np.arange(int(3 * fs)) / fs
    x = np.exp(-3.0 * t) * np.sin(2 * np.pi * 500 * t)
    assert metrics.broadband_t60(x, fs) == pytest.approx(3 * np.log(10) / 3.0, rel=0.02)
    with pytest.raises(ValueError, match="silent"):
        metrics.broadband_t60(np.zeros(100), fs)


def test_trajectory_max_cents_and_split_report():
    assert metrics.trajectory_max_cents(np.array([100.0, 200.0, np.nan]), np.array([100.0, 100.0 * 2 ** (1 / 12) * 1.0, 5.0])) == pytest.approx(
        1200 * np.log2(200 / (100 * 2 ** (1 / 12))))
    fs = 16000.0
    x = tone(fs, 1.0)
    split = metrics.split_report(x * 1.01, x, fs, horizon=4000)
    assert set(split) == {"in_horizon", "extrapolated"}
    assert split["in_horizon"]["rel_mse"] == pytest.approx(1e-4)


def decaying(fs, seconds, partials, noise_db=None, seed=0):
    """Sum of (freq Hz, T60 s, amplitude) partials, plus white noise ``noise_db`` below full scale."""
    t = np.arange(int(seconds * fs)) / fs
    x = sum(a * np.exp(-3 * np.log(10) / t60 * t) * np.cos(2 * np.pi * f * t + k) for k, (f, t60, a) in enumerate(partials))
    if noise_db is not None:
        x = x + 10 ** (noise_db / 20) * np.random.default_rng(seed).standard_normal(x.size)
    return x


PARTIALS = [(196.0, 2.5, 1.0), (392.4, 1.6, 0.5), (589.3, 1.1, 0.3), (787.0, 0.8, 0.05), (1500.0, 0.4, 0.01)]


def test_spectral_peaks_find_frequency_level_and_t60_of_each_partial():
    fs = 16000.0
    peaks = metrics.spectral_peaks(decaying(fs, 3.0, PARTIALS, noise_db=-90), fs, count=5)
    order = np.argsort(peaks.freqs_hz)
    for (f, t60, a), got_f, got_t60, level in zip(PARTIALS, peaks.freqs_hz[order], peaks.t60[order], peaks.level_db[order]):
        assert abs(metrics.cents(got_f, f)) < 0.05
        assert got_t60 == pytest.approx(t60, rel=0.05)
    assert peaks.level_db.max() == 0.0 and peaks.level_db.min() < -30


def test_recording_scores_are_zero_for_the_recording_itself_and_measure_each_error():
    fs = 16000.0
    ref = decaying(fs, 3.0, PARTIALS, noise_db=-90)
    same = metrics.recording_scores(ref, ref, fs, note=55.0)
    assert same["mr_stft"] == pytest.approx(0, abs=1e-9) and same["lsd_db"] == pytest.approx(0, abs=1e-9)
    assert same["partial_cents_median"] < 1e-6 and same["t60_error_median"] < 1e-6 and same["partials_present"] == 1.0
    sharp = decaying(fs, 3.0, [(f * 2 ** (4 / 1200), t60 * 1.3, 2 * a) for f, t60, a in PARTIALS], noise_db=-90)
    off = metrics.recording_scores(sharp, ref, fs, note=55.0)  # 4 cents sharp, 30 % longer, 6 dB louder (level-matched)
    assert off["partial_cents_median"] == pytest.approx(4.0, abs=0.05)
    assert off["f0_cents"] == pytest.approx(4.0, abs=0.05)
    assert off["t60_error_median"] == pytest.approx(0.3, abs=0.03)
    assert off["partials_present"] == 1.0 and off["lsd_db"] > 0.5
    missing = metrics.recording_scores(decaying(fs, 3.0, PARTIALS[:2], noise_db=-90), ref, fs)
    assert missing["partials_scored"] >= 3 and missing["partials_present"] == pytest.approx(2 / missing["partials_scored"])
    silent = metrics.recording_scores(np.zeros_like(ref), ref, fs, note=55.0)
    assert np.isnan(silent["partial_cents_median"]) and silent["partials_present"] == 0.0  # reported, not dropped


def test_t60_of_a_model_is_measured_over_the_recordings_span():
    """A two-stage decay (fast then slow) under a -50 dB noise floor: the noiseless model with the same partial must
    score ~0 T60 error (measured over the stretch where the recording's partial is above its floor)."""
    fs = 16000.0
    t = np.arange(int(3 * fs)) / fs
    partial = (np.exp(-8 * t) + 0.03 * np.exp(-0.5 * t)) * np.cos(2 * np.pi * 330 * t)
    ref = partial + 10 ** (-50 / 20) * np.random.default_rng(1).standard_normal(t.size)
    assert metrics.recording_scores(partial, ref, fs)["t60_error_median"] < 0.05
