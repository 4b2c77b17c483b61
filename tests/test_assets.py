"""The shipped instruments: each validates, loads, plays its whole declared range, and can be rebuilt."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.bundle import MODELS_DIR, load_bundle
from engine.instrument import Instrument
from engine.render import render_note
from training.assets_build import ASSETS_RECORDED, RECIPES, RECORDED

SHIPPED = sorted(MODELS_DIR.glob("*.etone"))
SHIPPED_RECORDED = sorted(ASSETS_RECORDED.glob("*.etone"))


def test_every_recipe_has_a_shipped_bundle_and_back():
    assert sorted(p.stem for p in SHIPPED) == sorted(RECIPES)
    assert sorted(p.stem for p in SHIPPED_RECORDED) == sorted(RECORDED)


@pytest.mark.parametrize("path", SHIPPED_RECORDED, ids=[p.stem for p in SHIPPED_RECORDED])
def test_shipped_recorded_instruments_are_made_by_their_recipe_and_stay_small(path: Path):
    """Built by `eigentone assets build` from the dev set's one-recording-per-note notes, with the pipeline's
    default laws."""
    from training.conditioned_laws import LAWS

    training = load_bundle(path).manifest["training"]
    assert training["recipe"] == path.stem and training["built_by"] == "eigentone assets build"
    assert training["laws"] == list(LAWS)
    notes = training["recorded_notes"]
    assert len(set(np.round(notes))) == len(notes)  # one recording per note
    # most of it is the recorded notes' residuals: (notes, RESIDUAL_SECONDS x fs) float32
    assert path.stat().st_size < 1024 * 2**10, f"{path.name} is over 1 MB"


def test_the_shipped_set_covers_every_family_and_stays_small():
    families = {load_bundle(p).manifest["family"] for p in SHIPPED}
    assert {"diag_ssm", "koopman", "modal_fno"} <= families
    for path in SHIPPED:
        assert path.stat().st_size < 4 * 2**20, f"{path.name} is over 4 MB"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_bundle_plays_every_note_in_its_range(path: Path):
    instrument = Instrument.load(path)
    manifest = instrument.manifest
    assert manifest["training"]["recipe"] == path.stem  # made by `eigentone assets build`
    lo, hi = instrument.note_range
    notes = np.arange(lo, hi + 1, dtype=np.float32)
    controls = np.stack([notes, np.full_like(notes, 1.0), np.full_like(notes, 0.2), np.full_like(notes, 0.37)], 1)
    voices = instrument.excite(controls)  # one batched call for the whole range
    assert voices.is_finite().all()
    assert np.all(voices.sigma > 0)  # stable by construction
    for note in (lo, (lo + hi) // 2, hi):
        audio = render_note(instrument, note, 1.0, 0.25, sample_rate=48000)
        assert np.all(np.isfinite(audio))
        assert np.max(np.abs(audio)) > 0


def _metrics(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))["metrics"]


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and np.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def test_assets_build_reproduces_the_shipped_gong(tmp_path):
    """Rebuild one shipped instrument from nothing (solver 'recording' -> train -> export) and compare."""
    from eigentone.cli import main

    assert main(["assets", "build", "--only", "gong", "--out", str(tmp_path)]) == 0
    shipped, rebuilt = _flatten(_metrics(MODELS_DIR / "gong.etone")), _flatten(_metrics(tmp_path / "gong.etone"))
    assert shipped.keys() == rebuilt.keys() and shipped
    for key, value in shipped.items():
        assert rebuilt[key] == pytest.approx(value, rel=0.05, abs=1e-3), key


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_assets_build_reproduces_the_shipped_recorded_instrument(tmp_path, name: str):
    """Rebuild from the Debian sample bank (about a minute of CPU): same notes, same laws, same sound."""
    from eigentone.cli import main

    assert main(["assets", "build", "--only", name, "--out", str(tmp_path)]) == 0
    shipped, rebuilt = Instrument.load(ASSETS_RECORDED / f"{name}.etone"), Instrument.load(tmp_path / f"{name}.etone")
    for key in ("recorded_notes", "laws"):
        assert rebuilt.manifest["training"][key] == shipped.manifest["training"][key], key
    lo, hi = shipped.note_range
    notes = np.arange(lo, hi + 1, dtype=np.float32)
    controls = np.stack([notes, np.full_like(notes, 0.8), np.full_like(notes, 0.5), np.full_like(notes, 0.5)], 1)
    a, b = shipped.excite_raw(controls), rebuilt.excite_raw(controls)
    for field in ("sigma", "omega", "z0", "attack"):
        assert np.allclose(b[field], a[field], rtol=1e-3, atol=1e-5), field
