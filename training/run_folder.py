"""The one run-folder format every family trains into and export / eval read back.

Layout::

    RUN_DIR/config.json     {"family", "format", "model" (the family's build config), "data", "data_kind",
                             "train_samples", "seed", "command", "options", "split",
                             "fit" (closed-form fit figures, init-vs-trained selection, seconds; when done)}
    RUN_DIR/model.pt        final weights (state_dict; loaded with weights_only=True)
    RUN_DIR/init.pt         weights of the closed-form initialisation (when the family compares them)
    RUN_DIR/checkpoint.pt   resumable training state (``training/trainer.py``)
    RUN_DIR/history.json    loss per logged step
    RUN_DIR/metrics.json    the family's evaluation (nested dicts of numbers)
    RUN_DIR/report.png      loss curve and reference-vs-model spectrograms
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

FORMAT = 2
"""Run-folder format version (1: the per-family layouts before the family protocol)."""


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_weights(path: Path, model: nn.Module) -> None:
    """Write ``model.state_dict()`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a metrics dict (nested dicts kept), for a bundle manifest."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            inner = numeric_metrics(value)
            if inner:
                out[key] = inner
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


@dataclass
class Run:
    """A finished run: its family, the trained model (eval mode), config.json and metrics.json."""

    path: Path
    family: Any  # training.family.Family
    model: nn.Module
    config: dict[str, Any]
    metrics: dict[str, Any]

    def graphs(self):
        """The family's export graphs (``training.family.Graphs``) of this run."""
        return self.family.graphs(self.model, self.config)

    @property
    def provenance(self) -> dict[str, Any]:
        """How the run was made, for the bundle manifest's "training" entry."""
        return {"command": self.config.get("command", ""), "data": self.config.get("data", ""),
                "seed": self.config.get("seed", 0)}


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """RUN_DIR/config.json of a run folder; EigentoneError with one line when it is not one."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise EigentoneError(f"{run_dir}: no such run directory")
    if not config_path.is_file():
        raise EigentoneError(f"{run_dir}: not a training run (no config.json)")
    try:
        config = json.loads(config_path.read_text())
        config["family"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise EigentoneError(f"{config_path}: unreadable or without a \"family\" entry") from None
    return config


def load_run(run_dir: str | Path) -> Run:
    """Rebuild the trained model of a finished run folder (weights_only load); one-line errors otherwise."""
    from training.registry import get_family

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        family = get_family(config["family"])
    except EigentoneError:
        raise EigentoneError(f"{run_dir / 'config.json'}: unknown model family {config['family']!r}") from None
    if config.get("format") != FORMAT or "model" not in config:
        raise EigentoneError(f"{run_dir / 'config.json'}: run folder format {config.get('format', 1)}, this eigentone "
                             f"reads format {FORMAT}; retrain with `eigentone train`")
    weights = run_dir / "model.pt"
    if not weights.is_file():
        raise EigentoneError(f"{run_dir}: no finished model (model.pt missing); finish training first (rerun the "
                             "train command to resume)")
    try:
        model = family.build(config["model"])
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (RuntimeError, KeyError, ValueError, TypeError, OSError) as exc:
        raise EigentoneError(f"{run_dir}: cannot rebuild the model: {str(exc).splitlines()[0]}") from None
    model.eval()
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return Run(run_dir, family, model, config, metrics)
