"""`eigentone eval RUN_DIR_or_BUNDLE DATA`: the shared metrics (training/metrics.py) for any model.

* DATA = WAV/FLAC file or a folder of labelled notes: each note is rendered (a bundle through the
  engine's modal bank, a run dir through its family's export graphs, as the engine plays them) at the
  file's sample rate; prints MR-STFT distance, LSD (dB), partial-frequency error (cents), T60 errors.
* DATA = .h5 field dataset and a run dir whose family predicts fields: field NMSE and pickup relative
  MSE, in-horizon (the run's training length) and extrapolated (the rest of the dataset) separately.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

from eigentone.errors import EigentoneError

HELP = "evaluate a run dir or bundle against a dataset or recordings (in-horizon and extrapolated)"
EXAMPLE = "eigentone eval nylon.etone assets/audio/nylon_b3.flac"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a training run dir or an .etone bundle")
    parser.add_argument("data", help=".h5 dataset, WAV/FLAC file or folder of labelled notes")
    parser.add_argument("--json", help="also write the metrics to this JSON file")


def _is_bundle(path: Path) -> bool:
    return (path.is_file() and zipfile.is_zipfile(path)) or (path.is_dir() and (path / "manifest.json").exists()) or \
        path.suffix == ".etone"


def _field_metrics(run, data: Path) -> dict:
    """In-horizon / extrapolated field and pickup errors of a run on a field dataset."""
    from training import metrics as M
    from training.data.dataset import load_dataset

    ds = load_dataset(data)
    index = np.arange(ds.examples)
    try:
        fields, pickups = run.family.predict_fields(run.model, ds, index)
    except NotImplementedError as exc:
        raise EigentoneError(f"{run.path}: {exc}; evaluate it on recordings instead") from None
    except (RuntimeError, ValueError) as exc:
        raise EigentoneError(f"{data}: does not fit the model of {run.path}: {str(exc).splitlines()[0]}") from None
    ref_f, ref_p = np.asarray(ds.fields, np.float64), np.asarray(ds.pickups, np.float64)
    horizon = min(int(run.config["model"].get("horizon_samples", run.config["train_samples"])), ref_f.shape[1])

    def errors(part: slice) -> dict:
        return {"field_nmse": M.field_nmse(fields[:, part], ref_f[:, part]),
                "pickup_rel_mse": M.pickup_rel_mse(pickups[:, part], ref_p[:, part])}

    out = {"in_horizon": errors(slice(0, horizon))}
    if ref_f.shape[1] > horizon:
        out[f"extrapolated_{ref_f.shape[1] / horizon:.0f}x"] = errors(slice(horizon, None))
    return out


def evaluate(model: str | Path, data: str | Path) -> dict:
    """Metrics of ``model`` (run dir or bundle) on ``data``, as nested dicts of floats."""
    from training import metrics as M
    from training.data.sources import data_kind, load_training_data

    model, data = Path(model), Path(data)
    kind = data_kind(data)
    if _is_bundle(model):
        if kind == "field":
            raise EigentoneError(f"{model}: evaluating a bundle needs recordings; for a field dataset pass the run dir")
        from engine.bundle import load_bundle
        from engine.render import render_note

        bundle = load_bundle(model)
        render = lambda rec, note: render_note(bundle.path, note, rec.velocity, rec.audio.size / rec.sample_rate,
                                               sample_rate=rec.sample_rate, position=rec.position)
    else:
        from training.report import controls_tensor, render_graphs
        from training.run_folder import load_run

        run = load_run(model)
        if kind == "field":
            return _field_metrics(run, data)
        graphs = run.graphs()
        render = lambda rec, note: render_graphs(graphs, controls_tensor(note, rec.velocity, rec.position),
                                                 rec.sample_rate, rec.audio.size)[0]

    results = {}
    for rec in load_training_data(data).recordings:
        if not np.isfinite(rec.note):  # unlabelled and pYIN found no pitch
            raise EigentoneError(f"{rec.path}: no note in the name and no pitch found; name it like C4_v100.wav")
        pred = np.asarray(render(rec, rec.note), np.float64)
        results[Path(rec.path).name] = M.audio_report(pred, rec.audio.astype(np.float64), rec.sample_rate)
    return {"in_horizon": results}


def run(args: argparse.Namespace) -> int:
    from eigentone.files import atomic_path
    from training.report import print_metrics

    results = evaluate(args.model, args.data)
    print_metrics(f"metrics of {args.model} on {args.data}:", results)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2))
    return 0
