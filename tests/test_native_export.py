"""`eigentone export` says whether the DAW plugin can play what it wrote; `eigentone list` shows it, from the graphs."""

from __future__ import annotations

import json
import zipfile

import onnx
import pytest
import soundfile as sf
import torch
from onnx import helper
from ssm_helpers import pluck

from eigentone.cli import main
from engine.bundle import load_bundle
from export import op_subset
from export.bundle_writer import write_bundle
from export.modal_bundle import excite_graph

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ssm_run(tmp_path_factory):
    from training.fit import train

    root = tmp_path_factory.mktemp("native-export")
    sf.write(root / "B3_v100.wav", pluck(59, fs=16000, seconds=0.4), 16000)
    train("ssm", root / "B3_v100.wav", root / "run", steps=3, modes=8, quiet=True)
    return root / "run"


def test_export_records_plugin_ready(ssm_run, tmp_path, capsys):
    from export.cli import export_run

    out = tmp_path / "ok.etone"
    manifest = export_run(ssm_run, out, verbose=True)
    assert manifest["plugin_ready"] is True
    assert "DAW plugin cannot play" not in capsys.readouterr().out


def test_export_outside_the_subset_still_writes_and_says_so_once(ssm_run, tmp_path, capsys, monkeypatch):
    from export.cli import export_run

    missing = "Exp"   # every family's excite graph has it (poles from log-parameters)
    assert missing in op_subset.OPS
    monkeypatch.delitem(op_subset.OPS, missing)   # a plugin without one of the ops this family emits
    capsys.readouterr()
    out = tmp_path / "unplayable.etone"
    manifest = export_run(ssm_run, out, verbose=True)
    assert out.exists() and manifest["plugin_ready"] is False
    notes = [line for line in capsys.readouterr().out.splitlines() if "DAW plugin cannot play" in line]
    assert len(notes) == 1 and missing in notes[0] and "Python engine plays it" in notes[0]
    load_bundle(out)


def test_list_computes_the_plugin_column_from_the_graphs(tmp_path, capsys):
    model = onnx.load_from_string(excite_graph(8))
    for node in model.graph.node:
        node.output[:] = ["sigma_raw" if name == "sigma" else name for name in node.output]
    model.graph.node.append(helper.make_node("Sign", ["sigma_raw"], ["sign"]))
    model.graph.node.append(helper.make_node("Mul", ["sigma_raw", "sign"], ["sigma"]))
    liar = tmp_path / "liar.etone"   # its manifest claims plugin_ready; its graph uses Sign
    write_bundle(liar, name="liar", family="modal", modes=8, graphs={"excite": model.SerializeToString()},
                 note_range=(40, 80), trained_sample_rate=48000.0, extra={"plugin_ready": True})
    with zipfile.ZipFile(liar) as archive:
        assert json.loads(archive.read("manifest.json"))["plugin_ready"] is True
    shipped = sorted(str(p) for p in load_bundle.__globals__["MODELS_DIR"].glob("*.etone"))
    assert main(["list", *shipped, str(liar)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    column = header.index("plugin")
    rows = {line.split()[0]: line.split()[column] for line in lines[1:]}
    assert rows.pop("liar") == "no"
    assert rows and set(rows.values()) == {"yes"}
