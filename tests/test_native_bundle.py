"""The native core refuses the same bad bundles as engine/bundle.py, with one line naming the file, and loads the
good ones to the same level gain."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from native_helpers import SHIPPED, build_native, shipped_ids, write_modal
from onnx import helper

from eigentone.errors import EigentoneError
from engine.bundle import load_bundle
from engine.instrument import Instrument
from export.bundle_writer import write_bundle
from export.modal_bundle import excite_graph


@pytest.fixture(scope="module", autouse=True)
def native_core():
    return build_native()



@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_modal(tmp_path_factory.mktemp("native-bundles") / "good.etone", modes=16, readout=True, modulation=True)


def _rewrite(src: Path, dst: Path, edit_manifest=None, edit_files=None, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(src) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files["manifest.json"])
    if edit_manifest:
        edit_manifest(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    if edit_files:
        edit_files(files)
    with zipfile.ZipFile(dst, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return dst


def _native_error(path: Path) -> str:
    from plugins.native.binding import NativeError, NativeInstrument

    with pytest.raises(NativeError) as info:
        NativeInstrument(path)
    return str(info.value)


@pytest.mark.parametrize("bundle", SHIPPED, ids=shipped_ids())
def test_shipped_bundles_load_with_the_engines_level_gain(bundle):
    from plugins.native.binding import NativeInstrument

    native = NativeInstrument(bundle).info
    engine = Instrument.load(bundle)
    assert native["name"] == engine.name and native["modes"] == engine.modes
    assert (native["note_lo"], native["note_hi"]) == engine.note_range
    assert native["has_readout"] == engine.has_readout and native["modulation"] == engine.modulation
    assert native["output_gain"] == pytest.approx(engine.output_gain, rel=1e-12)
    assert len(native["sha256"]) == 64


def _truncate(files):
    files["excite.onnx"] = files["excite.onnx"][: len(files["excite.onnx"]) // 2]


def _drop_excite(manifest):
    del manifest["graphs"]["excite"]


CASES = {
    "missing key": (lambda m: m.pop("modes"), None, "missing the required key 'modes'"),
    "wrong type": (lambda m: m.update(modes="16"), None, "'modes' has the wrong type (str)"),
    "format": (lambda m: m.update(format="zip"), None, "expected 'eigentone-bundle'"),
    "version": (lambda m: m.update(format_version=2), None, "format_version 2 is not supported"),
    "family": (lambda m: m.update(family="Banjo!"), None, "must be a lower-case identifier, got 'Banjo!'"),
    "name": (lambda m: m.update(name=""), None, "manifest 'name' must have 1 to 200 characters"),
    "description": (lambda m: m.update(description=3), None, "manifest 'description' must be a string"),
    "too many modes": (lambda m: m.update(modes=5000), None,
                       "'modes': 5,000 modes is above the limit of 4,096 modes (modes declared by a bundle"),
    "note range": (lambda m: m.update(note_range=[80, 40]), None, "'note_range' [80, 40] is reversed"),
    "note range type": (lambda m: m.update(note_range=[40.5, 80]), None,
                        "manifest 'note_range': expected a whole number, got 40.5"),
    "sample rate": (lambda m: m.update(trained_sample_rate=0.5), None,
                    "'trained_sample_rate': 0.5 is out of range (expected 1..1e+07)"),
    "release": (lambda m: m.update(release_time=1000), None, "'release_time' (seconds): 1000 is out of range"),
    "gain": (lambda m: m.update(output_gain=0), None, "'output_gain' must be > 0"),
    "role": (lambda m: m["graphs"].update(decoder=m["graphs"]["readout"]), None, "unknown graph role 'decoder'"),
    "plain name": (lambda m: m["graphs"]["excite"].update(file="../excite.onnx"), None,
                   "graph 'excite' file '../excite.onnx' is not a plain file name"),
    "shape": (lambda m: m["graphs"]["readout"]["inputs"].update(z=[]), None, "a shape is a list of 1-8 sizes"),
    "attack": (lambda m: m.update(attack={"samples": 10}), None, "manifest 'attack' must be"),
    "attack length": (lambda m: m.update(attack={"samples": 48001, "sample_rate": 48000}), None, "lasts 1 s, at most 1.0 s"),
    "controls": (lambda m: m.update(controls=["note"]), None, "'controls' must be"),
    "no excite": (_drop_excite, None, "has no 'excite' graph"),
    "graph file": (lambda m: m["graphs"]["excite"].update(file="nope.onnx"), None,
                   "'nope.onnx' named in manifest.json is missing from the bundle"),
    "sha256": (lambda m: m["graphs"]["excite"].update(sha256="0" * 64), None, "sha256 mismatch for 'excite.onnx'"),
    "entry": (lambda m: m["graphs"]["excite"].pop("sha256"), None, "needs 'file' and 'sha256' strings"),
    "outputs": (lambda m: m["graphs"]["excite"]["outputs"].pop("c"), None, "outputs are"),
    "declared shape": (lambda m: m["graphs"]["readout"]["inputs"].update(z=["voices", 17, 2]), None,
                       "is declared ['voices', 17, 2], the format requires ['voices', 16, 2]"),
    "modes": (lambda m: m.update(modes=17), None, "the format requires"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_manifests_are_refused_by_both(good, tmp_path, case):
    edit, files, fragment = CASES[case]
    path = _rewrite(good, tmp_path / f"{case}.etone", edit, files)
    with pytest.raises(EigentoneError) as python_error:
        load_bundle(path)
    native = _native_error(path)
    assert str(python_error.value).startswith(str(path)) and native.startswith(str(path)), native
    assert fragment in str(python_error.value), python_error.value
    assert fragment in native, native
    assert "\n" not in native


def test_archive_damage_is_refused_by_both(good, tmp_path):
    garbage = tmp_path / "garbage.etone"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    no_manifest = _rewrite(good, tmp_path / "nomanifest.etone", edit_files=lambda f: f.pop("manifest.json"))
    bad_json = _rewrite(good, tmp_path / "badjson.etone", edit_files=lambda f: f.update({"manifest.json": b"{nope"}))
    truncated_graph = _rewrite(good, tmp_path / "truncated.etone", edit_files=_truncate)
    # a flipped byte inside a stored member: the CRC-32 check catches it
    stored = _rewrite(good, tmp_path / "stored.etone", compression=zipfile.ZIP_STORED)
    data = bytearray(stored.read_bytes())
    start = data.find(b"excite.onnx") + len(b"excite.onnx") + 40
    data[start] ^= 0xFF
    crc = tmp_path / "crc.etone"
    crc.write_bytes(bytes(data))
    for path, fragment in ((garbage, "not a readable bundle archive"), (no_manifest, "no manifest.json"),
                           (bad_json, "manifest.json is not valid JSON"), (truncated_graph, "sha256 mismatch"),
                           (crc, "corrupted bundle archive (")):
        with pytest.raises(EigentoneError) as python_error:
            load_bundle(path)
        assert str(python_error.value).startswith(f"{path}: ") and fragment in str(python_error.value)
        native = _native_error(path)
        assert native.startswith(f"{path}: ") and fragment in native, native
    missing = tmp_path / "missing.etone"
    assert _native_error(missing) == f"{missing}: no such bundle file"


def test_only_named_members_are_read_and_nothing_points_outside(good, tmp_path):
    """An extra member is never read (even a corrupt one); an entry that climbs out refuses the archive; a
    folder's graph may not link outside it."""
    from plugins.native.binding import NativeInstrument

    extra = _rewrite(good, tmp_path / "extra.etone", edit_files=lambda f: f.update({"notes.txt": b"x"}))
    data = bytearray(extra.read_bytes())
    data[data.find(b"notes.txt") + len(b"notes.txt")] ^= 0xFF   # corrupt the unread member's data
    extra.write_bytes(bytes(data))
    load_bundle(extra)
    assert NativeInstrument(extra).info["name"] == "modal-string"
    evil = _rewrite(good, tmp_path / "evil.etone", edit_files=lambda f: f.update({"../evil.txt": b"x"}))
    with pytest.raises(EigentoneError, match="archive entry '../evil.txt' points outside the bundle"):
        load_bundle(evil)
    assert _native_error(evil) == f"{evil}: archive entry '../evil.txt' points outside the bundle"
    folder = tmp_path / "linked"
    with zipfile.ZipFile(good) as archive:
        archive.extractall(folder)
    outside = tmp_path / "outside.onnx"
    (folder / "readout.onnx").rename(outside)
    (folder / "readout.onnx").symlink_to(outside)
    with pytest.raises(EigentoneError, match="links outside the bundle folder"):
        load_bundle(folder)
    assert "'readout.onnx' links outside the bundle folder" in _native_error(folder)


def test_non_finite_probe_is_refused_by_both(tmp_path):
    path = write_modal(tmp_path / "nan.etone", modes=8, nan_notes=(60,))   # the probe plays note 60
    with pytest.raises(EigentoneError, match="probe of graph 'excite' returned non-finite 'z0'"):
        load_bundle(path)
    assert "probe of graph 'excite' returned non-finite 'z0'" in _native_error(path)


def test_graph_outside_the_op_subset_loads_in_the_engine_but_not_in_the_core(tmp_path):
    """The one extra rule of the core: onnxruntime plays a Sign node, the plugin does not."""
    model = onnx.load_from_string(excite_graph(8))
    for node in model.graph.node:
        node.output[:] = ["sigma_raw" if name == "sigma" else name for name in node.output]
    model.graph.node.append(helper.make_node("Sign", ["sigma_raw"], ["sign"]))
    model.graph.node.append(helper.make_node("Mul", ["sigma_raw", "sign"], ["sigma"]))
    path = tmp_path / "sign.etone"
    write_bundle(path, name="sign", family="modal", modes=8, graphs={"excite": model.SerializeToString()},
                 note_range=(40, 80), trained_sample_rate=48000.0)
    load_bundle(path)
    native = _native_error(path)
    assert "cannot be played by the native core" in native and "Sign" in native, native


def test_folder_bundles_load(good, tmp_path):
    from plugins.native.binding import NativeInstrument

    with zipfile.ZipFile(good) as archive:
        archive.extractall(tmp_path / "unpacked")
    info = NativeInstrument(tmp_path / "unpacked").info
    assert info["name"] == "modal-string" and info["has_readout"]
    assert info["output_gain"] == pytest.approx(Instrument.load(tmp_path / "unpacked").output_gain, rel=1e-12)
    assert np.isfinite(info["output_gain"])
