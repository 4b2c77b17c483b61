"""`eigentone export`: ONNX graphs with a dynamic voices axis, parity, bundle validation, failures."""

import hashlib
import json
import zipfile

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from onnx import TensorProto, helper
from parity_helpers import scale_exported_output
from ssm_helpers import pluck

from eigentone.cli import main
from engine.bundle import load_bundle
from engine.render import render_note
from export.cli import export_run
from training.fit import train
from training.metrics import cents
from training.modal_analysis import esprit, significant_partials

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def recording_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    path = root / "B3_v100.wav"
    sf.write(path, pluck(59, fs=16000, seconds=0.6), 16000)
    train("ssm", path, root / "run", steps=5, modes=10, quiet=True)
    return root / "run"


@pytest.fixture(scope="module")
def bundle(recording_run):
    out = recording_run.parent / "b3.etone"
    export_run(recording_run, out, name="b3", verbose=False)
    return out


def test_bundle_manifest_graph_and_parity(bundle):
    with zipfile.ZipFile(bundle) as z:
        manifest = json.loads(z.read("manifest.json"))
        excite = z.read("excite.onnx")
    assert manifest["family"] == "diag_ssm" and manifest["name"] == "b3"
    assert manifest["graphs"]["excite"]["sha256"] == hashlib.sha256(excite).hexdigest()
    assert set(manifest["parity"]) == {"excite"}  # the check that ran (its refusal is tested below)
    outputs = manifest["graphs"]["excite"]["outputs"]
    n = manifest["modes"]
    attack = manifest["attack"]["samples"]  # a recording's fit carries its attack residual
    assert outputs == {"sigma": ["voices", n], "omega": ["voices", n], "z0": ["voices", n, 2], "c": ["voices", n, 2],
                       "attack": ["voices", attack]}
    graph = onnx.load_from_string(excite)
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic voices axis
    assert manifest["metrics"]  # training metrics travel with the bundle
    load_bundle(bundle)


def test_export_refuses_an_excite_graph_that_breaks_parity(recording_run, tmp_path, monkeypatch, capsys):
    """An ONNX graph whose sigma is 1% off its torch module: refused with one line, no bundle written."""
    scale_exported_output(monkeypatch, "sigma")
    out = tmp_path / "broken.etone"
    assert main(["export", str(recording_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "excite graph parity failed" in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_rendering_at_any_sample_rate_keeps_partials(bundle):
    found = {}
    for fs in (16000, 44100, 48000, 96000):
        y = render_note(bundle, 59.0, 100 / 127, 0.4, sample_rate=fs).astype(np.float64)
        est = significant_partials(esprit(y, fs, max_samples=int(0.25 * fs)), 1e-3)
        found[fs] = est.freqs_hz[est.freqs_hz < 7000]
    ref = found[48000]
    assert ref.size >= 5
    for fs, freqs in found.items():
        err = [np.min(np.abs(cents(freqs, f))) for f in ref]
        assert max(err) < 0.1, (fs, err)


def test_export_refuses_unfinished_run(recording_run, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((recording_run / "config.json").read_text())
    out = tmp_path / "x.etone"
    assert main(["export", str(unfinished), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished model" in err[0] and str(unfinished) in err[0]
    assert not out.exists() and not list(tmp_path.glob(".x.etone*"))
    assert main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 2
    (unfinished / "config.json").write_text(json.dumps({"family": "no_such_family"}))
    (unfinished / "model.pt").write_bytes(b"")
    assert main(["export", str(unfinished), "--out", str(out)]) == 2
    assert "unknown model family" in capsys.readouterr().err and not out.exists()


def _rewrite(bundle, out, change):
    with zipfile.ZipFile(bundle) as z:
        files = {name: z.read(name) for name in z.namelist()}
    change(files)
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out


def _wrong_signature_graph(modes: int) -> bytes:
    """A valid ONNX graph whose output is named 'sigmas' instead of 'sigma'."""
    nodes = [helper.make_node("Slice", ["controls", "s", "e", "a"], ["col"]),
             helper.make_node("Tile", ["col", "r"], ["sigmas"])]
    init = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 1), ("a", 1))]
    init.append(helper.make_tensor("r", TensorProto.INT64, [2], [1, modes]))
    graph = helper.make_graph(nodes, "wrong", [helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["voices", 4])],
                              [helper.make_tensor_value_info("sigmas", TensorProto.FLOAT, ["voices", modes])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


@pytest.mark.parametrize("damage, message", [
    ("truncate", "not a readable bundle archive"),
    ("hash", "sha256 mismatch"),
    ("signature", "['sigmas']"),
])
def test_eval_refuses_damaged_bundle_with_one_line(bundle, tmp_path, capsys, damage, message):
    """Each damage gets its own diagnosis, naming the file (the path alone would match any error)."""
    out = tmp_path / "damaged.etone"
    if damage == "truncate":
        data = bundle.read_bytes()
        out.write_bytes(data[: len(data) // 2])
    elif damage == "hash":
        def change(files):
            m = json.loads(files["manifest.json"])
            m["graphs"]["excite"]["sha256"] = "0" * 64
            files["manifest.json"] = json.dumps(m).encode()
        _rewrite(bundle, out, change)
    else:
        def change(files):
            m = json.loads(files["manifest.json"])
            files["excite.onnx"] = _wrong_signature_graph(m["modes"])
            m["graphs"]["excite"]["sha256"] = hashlib.sha256(files["excite.onnx"]).hexdigest()
            files["manifest.json"] = json.dumps(m).encode()
        _rewrite(bundle, out, change)
    wav = tmp_path / "B3_v100.wav"
    sf.write(wav, pluck(59, seconds=0.3), 16000)
    assert main(["eval", str(out), str(wav)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eigentone: error:")
    assert str(out) in err[0] and message in err[0], err[0]


def test_eval_command_on_bundle_prints_metrics(bundle, tmp_path, capsys):
    wav = tmp_path / "B3_v100.wav"
    sf.write(wav, pluck(59, seconds=0.6), 16000)
    assert main(["eval", str(bundle), str(wav), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "partial_cents_max" in out and "lsd_db" in out
    saved = json.loads((tmp_path / "m.json").read_text())["in_horizon"]["B3_v100.wav"]
    assert saved["partial_cents_max"] < 1.0
