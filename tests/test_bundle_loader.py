"""engine/bundle.py refuses every kind of bad bundle with one line naming the file and the problem."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import mido
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from eigentone.errors import EigentoneError
from engine.bundle import load_bundle
from engine.instrument import Instrument
from export.bundle_writer import write_bundle
from export.modal_bundle import excite_graph, write_modal_bundle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "good.etone"
    write_modal_bundle(path, modes=16, readout=True, modulation=True)
    return path


def _rewrite(src: Path, dst: Path, edit_manifest=None, edit_files=None) -> Path:
    with zipfile.ZipFile(src) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files["manifest.json"])
    if edit_manifest:
        edit_manifest(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    if edit_files:
        edit_files(files)
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return dst


def test_good_bundle_loads_and_plays(good):
    bundle = load_bundle(good)
    assert bundle.modes == 16 and set(bundle.sessions) == {"excite", "readout"}
    voices = Instrument(bundle).excite(np.array([[60, 0.5, 0.2, 0.4]], np.float32))
    assert voices.omega.shape == (1, 16) and voices.mod_alpha.shape == (1, 16)


def test_folder_bundle_loads(good, tmp_path):
    with zipfile.ZipFile(good) as archive:
        archive.extractall(tmp_path / "unpacked")
    assert load_bundle(tmp_path / "unpacked").name == "modal-string"


def _refused(path: Path, *fragments: str) -> None:
    with pytest.raises(EigentoneError) as info:
        load_bundle(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_truncated_archive(good, tmp_path):
    path = tmp_path / "cut.etone"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _refused(path, "not a readable bundle archive")


def test_corrupted_member(good, tmp_path):
    data = bytearray(good.read_bytes())
    start = data.find(b"excite.onnx") + 200  # inside the deflated excite graph
    data[start : start + 64] = bytes(64)
    path = tmp_path / "corrupt.etone"
    path.write_bytes(bytes(data))
    with pytest.raises(EigentoneError) as info:
        load_bundle(path)
    assert str(path) in str(info.value)


def test_missing_manifest_key(good, tmp_path):
    path = _rewrite(good, tmp_path / "nokey.etone", edit_manifest=lambda m: m.pop("modes"))
    _refused(path, "missing the required key 'modes'")


def test_unsupported_format_version(good, tmp_path):
    path = _rewrite(good, tmp_path / "v9.etone", edit_manifest=lambda m: m.update(format_version=9))
    _refused(path, "format_version 9 is not supported")


def test_hash_mismatch(good, tmp_path):
    def flip(files):
        model = onnx.load_from_string(files["excite.onnx"])
        model.doc_string = "edited after export"
        files["excite.onnx"] = model.SerializeToString()

    path = _rewrite(good, tmp_path / "hash.etone", edit_files=flip)
    _refused(path, "sha256 mismatch for 'excite.onnx'")


def test_missing_graph_file(good, tmp_path):
    path = _rewrite(good, tmp_path / "nograph.etone", edit_files=lambda files: files.pop("readout.onnx"))
    _refused(path, "'readout.onnx'", "missing")


def test_wrong_graph_signature(tmp_path):
    """An excite graph whose input is not called 'controls' (written with a consistent manifest)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["sigma"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["voices", 4])],
        [helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["voices", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "sig.etone"
    write_bundle(path, name="bad", family="modal", modes=4, graphs={"excite": model.SerializeToString()},
                 note_range=(40, 80), trained_sample_rate=48000)
    _refused(path, "lacks the required input 'controls'")


def test_unmeasurable_metrics_are_written_as_null_and_the_bundle_loads(tmp_path):
    """An unpitched recording's f0 score is NaN; the bundle must still be valid JSON and load."""
    path = tmp_path / "cymbal.etone"
    write_bundle(path, name="cymbal", family="modal", modes=8, graphs={"excite": excite_graph(8)},
                 note_range=(40, 80), trained_sample_rate=48000,
                 metrics={"f0_cents": float("nan"), "t60": [1.5, float("inf")], "partials_present": 1.0})
    assert load_bundle(path).name == "cymbal"
    with zipfile.ZipFile(path) as archive:
        metrics = json.loads(archive.read("manifest.json"))["metrics"]
    assert metrics == {"f0_cents": None, "t60": [1.5, None], "partials_present": 1.0}


def test_graph_shape_differs_from_manifest(good, tmp_path):
    def wrong_modes(manifest):
        manifest["graphs"]["excite"]["outputs"]["omega"] = ["voices", 99]

    path = _rewrite(good, tmp_path / "shape.etone", edit_manifest=wrong_modes)
    _refused(path, "'omega'")


def test_graph_that_does_not_load(good, tmp_path):
    garbage = b"not an onnx graph"

    def replace(files):
        files["excite.onnx"] = garbage

    def rehash(manifest):
        manifest["graphs"]["excite"]["sha256"] = hashlib.sha256(garbage).hexdigest()

    path = _rewrite(good, tmp_path / "garbage.etone", edit_manifest=rehash, edit_files=replace)
    _refused(path, "does not load in onnxruntime")


def test_probe_with_non_finite_output(tmp_path):
    path = tmp_path / "nan.etone"
    write_bundle(path, name="nan", family="modal", modes=8, graphs={"excite": excite_graph(8, nan_notes=(60,))},
                 note_range=(40, 80), trained_sample_rate=48000)
    _refused(path, "non-finite 'z0'")


def test_unknown_model_name():
    with pytest.raises(EigentoneError, match="no such bundle file or shipped instrument"):
        load_bundle("no-such-instrument-anywhere")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eigentone", *args], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=120)


def test_cli_bad_inputs_give_one_line_and_no_wav(good, tmp_path):
    song = tmp_path / "song.mid"
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90),
                                       mido.Message("note_off", note=60, velocity=0, time=240)]))
    midi.save(song)
    truncated = tmp_path / "truncated.mid"
    truncated.write_bytes(song.read_bytes()[:20])
    malformed = tmp_path / "malformed.mid"
    malformed.write_bytes(b"RIFF this is not a MIDI file at all")
    broken_bundle = tmp_path / "broken.etone"
    broken_bundle.write_bytes(good.read_bytes()[:300])
    out = tmp_path / "out.wav"
    cases = [
        (["render", str(truncated), "--model", str(good)], "truncated"),
        (["render", str(malformed), "--model", str(good)], "not a readable MIDI file"),
        (["render", str(song), "--model", str(broken_bundle)], "not a readable bundle archive"),
        (["render", str(song), "--model", str(good), "--effects", str(tmp_path / "none.json")], "no such effects"),
        (["play", "--model", str(good), "--device", "no-such-device", "--duration", "1"], "unknown output device"),
    ]
    for args, fragment in cases:
        result = _cli(*args, *(["--out", str(out)] if args[0] == "render" else []))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and lines[0].startswith("eigentone: error: ") and fragment in lines[0], lines
        assert "Traceback" not in result.stderr
        assert not out.exists() and not list(tmp_path.glob(".out.wav*"))
