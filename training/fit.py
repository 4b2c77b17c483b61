"""`eigentone train FAMILY DATA --out RUN_DIR`: one trainer for every family (``training/family.py``).

1. load DATA once and split it (``training/data/sources.py``): field dataset, one recording or a
   folder of labelled notes; the family says which kinds it learns from;
2. ``family.initialise``: a model fitted from the training part in closed form; its weights go to
   RUN_DIR/init.pt and its config to RUN_DIR/config.json (``training/run_folder.py``);
3. ``train_loop`` (``training/trainer.py``) on ``family.step_loss`` with ``family.parameter_groups``:
   seeded, progress bar, Ctrl-C / kill saves a checkpoint and the same command resumes;
4. the better of the initial and the trained weights by ``family.validation_error`` (when it has one);
5. ``family.evaluate`` -> RUN_DIR/metrics.json and RUN_DIR/report.png, printed; what the fit found,
   the selection and the training time go to config.json's "fit" entry.

Python callers: ``train("ssm", "notes/", "runs/notes", steps=200)`` (options as on the command line).
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eigentone.errors import EigentoneError
from training.data.sources import TrainingData, load_training_data
from training.family import Family
from training.registry import get_family
from training.report import print_metrics, write_report_png
from training.run_folder import FORMAT, save_weights, write_json
from training.trainer import seed_everything, train_loop


def add_arguments(parser: argparse.ArgumentParser, family: Family) -> None:
    """The shared training options, then the family's own."""
    parser.add_argument("data", help=".h5 dataset from `eigentone simulate`, a WAV/FLAC file, or a folder of labelled "
                                     "notes (labels.csv: file,note,velocity,position)")
    parser.add_argument("--out", required=True, help="run directory (resumes if it holds a checkpoint)")
    parser.add_argument("--steps", type=int, default=None, help="gradient steps (default: the family's for the data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=family.default_lr, help=f"Adam rate (default {family.default_lr:g})")
    parser.add_argument("--hold-out", type=int, default=0, metavar="K",
                        help="folders of notes: hold K notes out of training and report on them (default 0)")
    parser.add_argument("--threads", type=int, default=family.default_threads,
                        help=f"torch threads (default {family.default_threads})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    family.add_arguments(parser)


def options_for(family: Family, data: str | Path, out: str | Path, **overrides: Any) -> argparse.Namespace:
    """The options a command line ``eigentone train FAMILY DATA --out OUT`` would have, with ``overrides``."""
    parser = argparse.ArgumentParser()
    add_arguments(parser, family)
    options = parser.parse_args([str(data), "--out", str(out)])
    unknown = set(overrides) - set(vars(options))
    if unknown:
        raise TypeError(f"unknown {family.command} training options: {', '.join(sorted(unknown))}")
    vars(options).update(overrides)
    return options


def train(family: str | Family, data: str | Path | TrainingData, out: str | Path, *, command: str = "",
          **overrides: Any) -> dict[str, Any]:
    """Train ``family`` on ``data`` into the run folder ``out``; returns the metrics written to metrics.json."""
    family = get_family(family) if isinstance(family, str) else family
    path = data.path if isinstance(data, TrainingData) else data
    options = options_for(family, path, out, **overrides)
    torch.set_num_threads(max(1, min(options.threads, torch.get_num_threads())))
    if not isinstance(data, TrainingData):
        data = load_training_data(data, seed=options.seed, hold_out=options.hold_out)
    if data.kind not in family.data_kinds:
        raise EigentoneError(f"{data.path}: the {family.command} family learns from {' or '.join(family.data_kinds)} "
                             f"data, not {data.kind}")
    out = Path(out)
    seed_everything(options.seed)
    rng = np.random.default_rng(options.seed)
    fitted = family.initialise(data, options)
    model = fitted.model
    resuming = (out / "checkpoint.pt").exists()
    config = {"family": family.name, "format": FORMAT, "model": fitted.config, "data": str(data.path),
              "data_kind": data.kind, "train_samples": train_samples(data), "seed": options.seed, "command": command,
              "options": {k: v for k, v in vars(options).items() if k not in ("data", "out")},
              "split": {k: np.asarray(v).tolist() for k, v in data.split.items()}}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    if not resuming:
        save_weights(out / "init.pt", model)
    steps = family.default_steps(data) if options.steps is None else options.steps
    step_loss = family.step_loss(fitted, data, options, rng)
    started = time.perf_counter()
    history = train_loop(model, step_loss, run_dir=out, steps=steps, lr=family.parameter_groups(model, options),
                         desc=f"{family.command} {data.kind}", quiet=options.quiet,
                         checkpoint_every=max(10, steps // 10))
    seconds = time.perf_counter() - started
    model.eval()
    selection = keep_better(family, model, data, options, out)
    evaluation = family.evaluate(model, data, options)
    config["fit"] = {"init": fitted.info, **selection, "train_seconds": seconds, "steps": steps}
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", evaluation.metrics)
    write_report_png(out / "report.png", history, evaluation)
    return evaluation.metrics


def keep_better(family: Family, model: torch.nn.Module, data: TrainingData, options: argparse.Namespace,
                out: Path) -> dict[str, Any]:
    """Keep whichever of the initial (RUN_DIR/init.pt) and the trained weights has the lower
    ``family.validation_error``; model.pt is rewritten to the choice. Returns what was compared."""
    trained = family.validation_error(model, data, options)
    if trained is None or not (out / "init.pt").exists():
        return {}
    trained_state = {k: v.clone() for k, v in model.state_dict().items()}
    initial_state = torch.load(out / "init.pt", map_location="cpu", weights_only=True)
    if _same_weights(trained_state, initial_state):  # a 0-step (closed-form) fit: nothing to compare
        return {"selection": {"validation_error_trained": trained, "validation_error_init": trained, "kept": "trained"}}
    model.load_state_dict(initial_state)
    initial = family.validation_error(model, data, options)
    if initial < trained:
        save_weights(out / "model.pt", model)
        return {"selection": {"validation_error_trained": trained, "validation_error_init": initial, "kept": "init"}}
    model.load_state_dict(trained_state)
    return {"selection": {"validation_error_trained": trained, "validation_error_init": initial, "kept": "trained"}}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """True when two state dicts hold the same tensors, bit for bit."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_samples(data: TrainingData) -> int:
    """Samples per training example (a field dataset's length, the longest training recording)."""
    if data.dataset is not None:
        return int(data.dataset.fields.shape[1])
    return max(int(r.audio.size) for r in data.subset("train"))


def command_line(family: Family, args: argparse.Namespace) -> str:
    """The `eigentone train` command that reproduces ``args`` (options left at their defaults are omitted)."""
    defaults = vars(options_for(family, args.data, args.out))
    words = ["eigentone", "train", family.command, str(args.data), "--out", str(args.out)]
    for key, value in vars(args).items():
        if key in ("data", "out", "_run") or value == defaults.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


def run(family_name: str, args: argparse.Namespace) -> int:
    """Entry point of `eigentone train COMMAND`."""
    family = get_family(family_name)
    options = {k: v for k, v in vars(args).items() if k not in ("data", "out", "_run")}
    metrics = train(family, args.data, args.out, command=command_line(family, args), **options)
    print_metrics(f"metrics ({args.out}/metrics.json, report in {args.out}/report.png):", metrics)
    return 0
