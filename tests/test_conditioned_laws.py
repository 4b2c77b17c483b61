"""Conditioned instruments from laws across notes (training/conditioned_laws.py).

A synthetic stiff string whose inharmonicity B, damping sigma(f) = b1 + b3 f^2 and body envelope are known:
two recorded notes a tritone apart, the note between played by the laws and by transposition.
"""

import math

import numpy as np
import pytest
import torch

from eigentone.errors import EigentoneError
from training.conditioned_laws import LawsInstrument, NoteFit, export_laws_bundle, fit_instrument, partial_numbers
from training.data.audio import Recording
from training.metrics import cents, recording_scores
from training.report import controls_tensor, render_contract

FS = 16000
PARTIALS = 12


def _b(note: float) -> float:
    return 1e-4 * 2 ** ((note - 48) / 6)  # log B linear in note: doubles every 6 semitones


def _sigma(f: np.ndarray) -> np.ndarray:
    return 1.5 + 2e-6 * f**2  # 1/s


def _body(f: np.ndarray) -> np.ndarray:
    return 1.0 + 3.0 * np.exp(-0.5 * (np.log2(f / 900.0) / 0.3) ** 2)  # a resonance at 900 Hz


def _string(note: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(freqs Hz, sigma 1/s, complex amplitudes) of the law's partials below 0.45 FS."""
    k = np.arange(1, PARTIALS + 1, dtype=float)
    freqs = 440 * 2 ** ((note - 69) / 12) * k * np.sqrt(1 + _b(note) * k**2)
    keep = freqs < 0.45 * FS
    freqs, k = freqs[keep], k[keep]
    return freqs, _sigma(freqs), _body(freqs) / k * np.exp(1j * 0.3 * k)


def _fit(note: float, attack: np.ndarray | None = None) -> NoteFit:
    freqs, sigma, amps = _string(note)
    f0 = 440 * 2 ** ((note - 69) / 12)
    return NoteFit(note, f0, _b(note), freqs, sigma, amps, partial_numbers(freqs, f0, _b(note)),
                   np.zeros(16) if attack is None else attack, FS)


def _excite(model: LawsInstrument, note: float) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.double().numpy()[0] for k, v in model(controls_tensor(note, 100 / 127)).items()}


def test_a_recorded_note_gives_back_its_own_fit():
    fit48 = _fit(48)
    model = LawsInstrument([fit48, _fit(60)])
    out = _excite(model, 48.0)
    n = fit48.freqs.size
    assert out["omega"][:n] / (2 * np.pi) == pytest.approx(fit48.freqs, rel=1e-5)
    assert out["sigma"][:n] == pytest.approx(fit48.sigma, rel=1e-4)
    z0 = out["z0"][:n, 0] + 1j * out["z0"][:n, 1]
    assert np.abs(z0 - fit48.amps).max() < 1e-4 * np.abs(fit48.amps).max()


def test_the_note_between_follows_the_laws_where_transposition_does_not():
    fits = [_fit(48), _fit(53), _fit(60)]
    truth_f, truth_sigma, truth_amps = _string(56)
    laws, transposed = _excite(LawsInstrument(fits), 56.0), _excite(LawsInstrument(fits, laws=()), 56.0)
    rows = {}
    for name, out in (("laws", laws), ("transposed", transposed)):
        f = out["omega"] / (2 * np.pi)
        idx = [int(np.argmin(np.abs(f - t))) for t in truth_f]  # the model's mode nearest each true partial
        rows[name] = (np.abs(cents(f[idx], truth_f)).max(), np.abs(np.log(out["sigma"][idx] / truth_sigma)).max(),
                      np.abs(np.log(np.hypot(*out["z0"][idx].T) / np.abs(truth_amps))).max())
    print({k: [f"{x:.3g}" for x in v] for k, v in rows.items()})
    cents_laws, sigma_laws, amp_laws = rows["laws"]
    cents_tr, sigma_tr, amp_tr = rows["transposed"]
    assert cents_laws < 0.5 and cents_tr > 5  # B(56) between B(53) and B(60): upper partials stretch
    assert sigma_laws < 0.02 and sigma_tr > 0.1  # decays follow frequency, not partial number
    assert amp_laws < 0.15 and amp_tr > 0.4  # the body's resonance stays at 900 Hz, the pluck's 1/k with k


def _recording(note: float, seconds: float = 1.0) -> Recording:
    freqs, sigma, amps = _string(note)
    t = np.arange(int(seconds * FS)) / FS
    x = np.real(np.exp(np.outer(t, -sigma + 2j * np.pi * freqs)) @ amps)
    return Recording((0.5 * x / np.abs(x).max()).astype(np.float32), FS, note, 100 / 127, 0.5, f"{note}.wav")


def test_recordings_fitted_across_notes_play_the_note_between_within_the_floors():
    """The whole path on audio: the single-note analysis of two recordings, laws, the held-out note scored by
    the bench's independent scores (fundamental <= 5 cents, partials <= 3 cents, T60 <= 20%)."""
    model = fit_instrument([_recording(48), _recording(60)], modes=24)
    ref = _recording(54).audio.astype(np.float64)
    with torch.no_grad():
        out = model(controls_tensor(54.0, 100 / 127))
    pred = render_contract(out, FS, ref.size)[0]
    scores = recording_scores(pred, ref, FS, note=54.0)
    print({k: round(scores[k], 4) for k in ("f0_cents", "partial_cents_median", "t60_error_median", "lsd_db")})
    assert abs(scores["f0_cents"]) <= 5 and scores["partial_cents_median"] <= 3 and scores["t60_error_median"] <= 0.2


def test_fit_refuses_an_unlabelled_note_naming_the_file():
    rec = _recording(48)
    rec.note, rec.path = math.nan, "strings/mystery.wav"
    with pytest.raises(EigentoneError, match="mystery.wav: no note label"):
        fit_instrument([rec])


def test_the_bundle_plays_the_laws_and_the_attack_in_the_engine(tmp_path):
    from engine.instrument import Instrument
    from engine.synth import Synth

    attack = 0.05 * np.sin(np.arange(160) * 0.7) * np.linspace(1, 0, 160)
    model = LawsInstrument([_fit(48, attack), _fit(60, attack * 0.5)])
    manifest = export_laws_bundle(model, tmp_path / "laws.etone", name="laws")
    assert manifest["attack"] == {"samples": 160, "sample_rate": float(FS)} and manifest["family"] == "laws"
    instrument = Instrument.load(tmp_path / "laws.etone")
    synth = Synth(instrument, limiter=False)
    synth.prepare(FS, 64, 4)
    blocks = 10
    out = np.concatenate([synth.process([(0, 0x90, 54, 100)] if i == 0 else [], 64).copy() for i in range(blocks)])
    played = out.astype(np.float64) / instrument.output_gain
    with torch.no_grad():
        exc = model(controls_tensor(54.0, 100 / 127))
    ref = render_contract(exc, FS, played.size)[0]
    # note 54 is as near 48 as 60: the lower recording is the donor, its attack plays at velocity 100 unscaled
    attack_played = played[:160] - ref[:160]
    assert np.abs(attack_played - attack).max() < 1e-2 * np.abs(attack).max()
    ref[:160] += exc["attack"][0].double().numpy()
    err = np.sum((played - ref) ** 2) / np.sum(ref**2)
    print(f"engine vs torch relative error {err:.2e}")
    assert err < 1e-6


def test_the_shipped_recorded_instrument_plays_its_range_in_tune():
    """assets/recorded/fluid-nylon-guitar.etone: loads, every key of its range excites finite stable voices, and
    a recorded key and a key between recordings sound at their pitch."""
    from pathlib import Path

    from engine.instrument import Instrument
    from engine.render import render_note
    from training.modal_analysis import spectral_peaks

    path = Path(__file__).resolve().parent.parent / "assets" / "recorded" / "fluid-nylon-guitar.etone"
    instrument = Instrument.load(path)
    lo, hi = instrument.note_range
    notes = np.arange(lo, hi + 1, dtype=np.float32)
    controls = np.stack([notes, np.full_like(notes, 0.8), np.full_like(notes, 0.5), np.full_like(notes, 0.5)], 1)
    voices = instrument.excite(controls)
    assert voices.is_finite().all() and np.all(voices.sigma > 0)
    for key in (50, 57):  # D3 is recorded (50.0), A3 lies between the recordings at 54.89 and 59.03
        audio = render_note(instrument, key, 0.8, 1.0, sample_rate=44100).astype(np.float64)
        peaks = spectral_peaks(audio, 44100, count=12)
        f0 = 440 * 2 ** ((key - 69) / 12)
        assert np.min(np.abs(cents(peaks.freqs_hz, f0))) < 10, f"key {key}: no partial near {f0:.1f} Hz"


def test_conditioned_floors_need_the_model_below_both_baselines():
    from benchmarks.bench_fidelity import floors

    def scores(mr, lsd, f0=1.0):
        return {"f0_cents": f0, "partial_cents_median": 1.0, "t60_error_median": 0.1, "mr_stft": mr, "lsd_db": lsd}

    def inst(model, transposed, sampler):
        return {"instrument": "g", "notes": [{"model": scores(*model), "transposed": scores(*transposed),
                                              "sampler": scores(*sampler)}]}

    assert all(ok for *_, ok in floors({}, [inst((1.0, 3.0), (1.2, 3.5), (1.1, 3.2))]))
    missed = [what for what, _, _, ok in floors({}, [inst((1.0, 3.0), (1.2, 3.5), (0.9, 3.2))]) if not ok]
    assert missed == ["conditioned g: mr_stft model < both baselines"]
    missed = [what for what, _, _, ok in floors({}, [inst((1.0, 3.0, 6.0), (1.2, 3.5), (1.1, 3.2))]) if not ok]
    assert missed == ["conditioned g: held-out f0 cents median"]
