"""`eigentone eval RUN_DIR_or_BUNDLE DATA`: the shared metrics (training/metrics.py) for any model.

* DATA = WAV/FLAC file or a folder of labelled notes: each note is rendered (a bundle through the
  engine's modal bank, a run dir through its excite module, closed form) at the file's sample rate;
  prints MR-STFT distance, LSD (dB), partial-frequency error (cents), T60 errors.
* DATA = .h5 field dataset and a diag_ssm field run dir: field NMSE and pickup relative MSE, in-horizon
  (the run's training length) and extrapolated (the rest of the dataset's length) separately.
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


def _recordings(data: Path):
    from training.data.audio import load_folder, load_recording

    return load_folder(data) if data.is_dir() else [load_recording(data)]


def evaluate(model: str | Path, data: str | Path) -> dict:
    """Metrics of ``model`` (run dir or bundle) on ``data``, as nested dicts of floats."""
    from training import metrics as M
    from training.train_ssm import data_kind

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
        from export.cli import load_family

        family, (excite, _, _, _) = load_family(model)
        config = json.loads((model / "config.json").read_text())
        if kind == "field":
            if family != "diag_ssm" or config.get("kind") != "field":
                raise EigentoneError(f"{model}: field datasets are evaluated for diag_ssm field runs only")
            from training.train_ssm import field_metrics, load_field_dataset

            ds = load_field_dataset(data)
            points = int(np.prod(ds.fields.shape[2:]))
            if points != int(config["points"]):
                raise EigentoneError(f"{data}: {points} field points, the model was trained on {config['points']}")
            horizon = min(int(config["train_samples"]), ds.fields.shape[1])
            res = field_metrics(excite, ds, np.arange(ds.fields.shape[0]), horizon=horizon)
            out = {"in_horizon": {k: v for k, v in res.items() if not k.endswith("_extrapolated")}}
            extra = {k.removesuffix("_extrapolated"): v for k, v in res.items() if k.endswith("_extrapolated")}
            if extra:
                out[f"extrapolated_{ds.fields.shape[1] / horizon:.0f}x"] = extra
            return out
        from training.train_ssm import controls_tensor, render_contract

        def render(rec, note):
            import torch

            with torch.no_grad():
                return render_contract(excite(controls_tensor(note, rec.velocity, rec.position)), rec.sample_rate,
                                       rec.audio.size)[0]

    results = {}
    for rec in _recordings(data):
        note = rec.note
        if not np.isfinite(note):
            from training.modal_analysis import esprit, significant_partials

            est = significant_partials(esprit(rec.audio.astype(np.float64), rec.sample_rate), 0.05)
            note = float(M.cents(est.freqs_hz.min(), 440.0) / 100 + 69)
        pred = np.asarray(render(rec, note), np.float64)
        results[Path(rec.path).name] = M.audio_report(pred, rec.audio.astype(np.float64), rec.sample_rate)
    return {"in_horizon": results}


def run(args: argparse.Namespace) -> int:
    from eigentone.files import atomic_path
    from training.train_ssm import print_metrics

    results = evaluate(args.model, args.data)
    print_metrics(f"metrics of {args.model} on {args.data}:", results)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2))
    return 0
