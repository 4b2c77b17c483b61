"""The dataset file format and the ``eigentone simulate`` command."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile

from eigentone.cli import main
from eigentone.errors import EigentoneError
from training.data.dataset import FieldDataset, load_dataset, save_dataset


def _random_dataset(kind: str) -> FieldDataset:
    rng = np.random.default_rng(3)
    shape = (4, 50, 7) if kind == "string" else (4, 50, 5, 6)
    grid = np.linspace(0, 0.65, 7) if kind == "string" else rng.random((5, 6, 2))
    return FieldDataset(
        kind=kind, nonlinear=kind == "plate", sample_rate=16000.0,
        fields=rng.standard_normal(shape).astype(np.float32), pickups=rng.standard_normal(shape[:2]).astype(np.float32),
        grid=grid, params={"T": rng.random(4), "L": rng.random(4)},
        excitation={"kind": np.array([0.0, 1.0, 2.0, 0.0]), "amplitude": rng.random(4)},
        provenance={"command": "test", "seed": 3, "preset": None},
    )


@pytest.mark.parametrize("kind", ["string", "plate"])
def test_dataset_round_trip_is_bit_exact(tmp_path, kind):
    ds = _random_dataset(kind)
    save_dataset(ds, tmp_path / "d.h5")
    back = load_dataset(tmp_path / "d.h5")
    assert (back.kind, back.nonlinear, back.sample_rate, back.provenance) == (
        ds.kind, ds.nonlinear, ds.sample_rate, ds.provenance)
    for a, b in [(ds.fields, back.fields), (ds.pickups, back.pickups), (ds.grid, back.grid)]:
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for group in ("params", "excitation"):
        original, loaded = getattr(ds, group), getattr(back, group)
        assert original.keys() == loaded.keys()
        assert all(original[k].tobytes() == loaded[k].tobytes() for k in original)


def test_loading_a_foreign_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5")
    with pytest.raises(EigentoneError, match=r"notes.h5: not an eigentone dataset \("):
        load_dataset(bad)
    with pytest.raises(EigentoneError, match="not an eigentone dataset"):
        load_dataset(tmp_path / "missing.h5")


def test_simulate_string_writes_a_labelled_reproducible_dataset(tmp_path):
    args = ["simulate", "string", "--count", "3", "--sample-rate", "16000", "--duration", "0.05", "--grid", "9",
            "--seed", "7"]
    assert main([*args, "--out", str(tmp_path / "a.h5"), "--wav-dir", str(tmp_path / "wav")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.h5")]) == 0
    a, b = load_dataset(tmp_path / "a.h5"), load_dataset(tmp_path / "b.h5")
    assert a.fields.shape == (3, 800, 9) and a.pickups.shape == (3, 800) and a.grid.shape == (9,)
    assert np.array_equal(a.fields, b.fields)
    assert a.provenance["seed"] == 7 and a.provenance["eigentone_version"]
    assert set(a.excitation) >= {"kind", "position", "width", "amplitude"}
    assert np.all((a.params["T"] > 0) & (a.params["f0"] > 80) & (a.params["f0"] < 700))
    with open(tmp_path / "wav" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == ["00000.wav", "00001.wav", "00002.wav"]
    info = soundfile.info(tmp_path / "wav" / rows[0]["file"])
    assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_24", 800)
    assert float(rows[0]["f0_hz"]) == pytest.approx(a.params["f0"][0], rel=1e-6)
    # one gain for the folder and MIDI velocities: a harder pluck is louder and labelled higher
    peaks = [np.abs(soundfile.read(tmp_path / "wav" / row["file"])[0]).max() for row in rows]
    gains = [peak / np.abs(a.pickups[i]).max() for i, peak in enumerate(peaks)]
    assert max(peaks) == pytest.approx(0.99, abs=1e-4) and np.allclose(gains, gains[0], rtol=1e-4)
    assert all(1 <= int(row["velocity"]) <= 127 for row in rows) and max(int(row["velocity"]) for row in rows) == 127


def test_diaz_nonlinear_preset_and_plate_preset(tmp_path):
    assert main(["simulate", "string", "--preset", "diaz2024-nonlinear", "--count", "2", "--duration", "0.02",
                 "--out", str(tmp_path / "s.h5")]) == 0
    ds = load_dataset(tmp_path / "s.h5")
    assert ds.nonlinear and ds.sample_rate == 16000.0 and ds.fields.shape == (2, 320, 101)
    assert np.all(ds.params["T"] == 60.97) and np.all(ds.params["modes"] == 25)
    assert np.all((ds.excitation["position"] >= 0.3 * 0.65) & (ds.excitation["position"] <= 0.7 * 0.65))
    assert np.all((ds.excitation["amplitude"] >= 1e-3) & (ds.excitation["amplitude"] <= 1e-2))
    assert main(["simulate", "plate", "--preset", "plate2025", "--count", "1", "--duration", "0.01", "--grid", "5",
                 "--out", str(tmp_path / "p.h5")]) == 0
    plate = load_dataset(tmp_path / "p.h5")
    assert plate.kind == "plate" and plate.nonlinear and plate.fields.shape == (1, 160, 5, 5)
    assert plate.grid.shape == (5, 5, 2)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["string", "--count", "0"], "--count must be at least 1"),
        (["string", "--sample-rate", "2000", "--modes", "25"], "sample rate 2000 Hz is below twice the highest"),
        (["string", "--preset", "plate2025"], "preset plate2025 simulates a plate, not a string"),
        (["plate", "--grid", "1"], "--grid must be at least 2"),
        (["string", "--preset", "diaz2024-linear", "--grid", "16"], "--grid 16 is too coarse for --preset diaz2024-linear"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_and_no_output(tmp_path, capsys, extra, message):
    out = tmp_path / "out.h5"
    code = main(["simulate", *extra, "--duration", "0.01", "--out", str(out), "--wav-dir", str(tmp_path / "wav")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_no_file(tmp_path):
    from training.data.dataset import DatasetWriter

    target = tmp_path / "half.h5"
    with (pytest.raises(EigentoneError, match="solver failed"),
          DatasetWriter(target, "string", False, 16000.0, (2, 10, 3), np.zeros(3), {}) as writer):
        writer.write(0, np.zeros((10, 3), np.float32), np.zeros(10, np.float32), {"T": 1.0}, {"kind": 0.0})
        raise EigentoneError("solver failed")
    assert list(tmp_path.iterdir()) == []


def test_nonlinear_preset_keeps_its_modes_on_hard_plucks(tmp_path):
    """A 10 mm pluck raises the top mode above 8 kHz: the preset steps finer and keeps 16 kHz output."""
    from training.data.dataset import load_dataset

    out = tmp_path / "kc.h5"
    assert main(["simulate", "string", "--nonlinear", "--preset", "diaz2024-nonlinear", "--count", "30",
                 "--seed", "0", "--duration", "0.05", "--out", str(out)]) == 0
    data = load_dataset(out)
    assert data.sample_rate == 16000.0
    assert np.all(data.params["modes"] == 25)
    assert data.fields.shape == (30, 800, 101)
    assert np.all(np.isfinite(data.fields))


def test_steel_strings_ring_longer_and_brighter_than_nylon(tmp_path):
    """--material steel: same notes; in the rendered pickups, each of nylon's 8 strongest partials decays slower
    (ESPRIT) and the spectral centroid is higher than nylon's."""
    from training.modal_analysis import esprit, significant_partials

    pickups = {}
    for material in ("nylon", "steel"):
        out = tmp_path / f"{material}.h5"
        assert main(["simulate", "string", "--material", material, "--count", "3", "--sample-rate", "16000",
                     "--duration", "0.2", "--seed", "3", "--out", str(out)]) == 0
        pickups[material] = load_dataset(out).pickups.astype(np.float64)  # (3, 3200)
    freqs = np.fft.rfftfreq(3200, 1 / 16000)
    for nylon, steel in zip(pickups["nylon"], pickups["steel"]):
        est = {name: significant_partials(esprit(y, 16000.0), 1e-3) for name, y in (("nylon", nylon), ("steel", steel))}
        ref = est["nylon"].strongest(8)
        for f, sigma in zip(ref.freqs_hz, ref.sigma):
            j = int(np.argmin(np.abs(est["steel"].freqs_hz - f)))
            assert abs(est["steel"].freqs_hz[j] / f - 1) < 0.02, f  # the same partial of the same note
            assert est["steel"].sigma[j] < 0.8 * sigma, (f, est["steel"].sigma[j], sigma)
        centroid = {name: float((np.abs(np.fft.rfft(y)) ** 2 @ freqs) / (np.abs(np.fft.rfft(y)) ** 2).sum())
                    for name, y in (("nylon", nylon), ("steel", steel))}
        assert centroid["steel"] > 1.1 * centroid["nylon"], centroid
