"""The family protocol: what a model family gives the shared trainer, export, eval and `assets build`.

A family (diagonal SSM, deep Koopman, modal FNO, ...) is one class implementing ``Family`` and one
line in ``training/registry.py``. Everything else is shared and talks to families through this
protocol only:

* ``training/fit.py`` (`eigentone train FAMILY DATA`): loads and splits the data once
  (``training/data/sources.py``), calls ``initialise`` (a model fitted from the data in closed form),
  ``step_loss`` / ``parameter_groups`` inside the resumable ``train_loop``, ``validation_error`` to
  keep the better of the initial and the trained weights, ``evaluate`` for metrics.json and report.png;
* ``training/run_folder.py``: the one run-folder format (config.json with the family's ``config``,
  model.pt); ``build(config)`` rebuilds the model to load weights into;
* ``export/cli.py``: ``graphs(model, config)`` -> the excite / readout / field modules and the
  manifest fields of the bundle.

Shapes and units of the graphs are the contract's (``eigentone.contract``).
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from training.data.sources import TrainingData

StepLoss = Callable[[int], tuple[torch.Tensor, dict[str, float]]]
"""step -> (scalar loss, logged floats): the closure ``train_loop`` optimises."""


@dataclass
class Initialised:
    """A model fitted from data, what rebuilds it, and what the fit found.

    config: JSON-serialisable, enough for ``Family.build`` to make the same architecture;
    info: JSON-serialisable figures of the closed-form fit (written into metrics.json);
    targets: anything the fit found that the training loss uses (e.g. per-note partials to regress onto).
    """

    model: nn.Module
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    targets: Any = None


@dataclass
class Evaluation:
    """End-of-run report: metrics (nested dicts of numbers, written to metrics.json) and what report.png shows.

    pairs: (title, reference, model) pickup signals, (samples,) each, at ``sample_rate``, drawn as spectrograms;
    field_error: optional (times s (T,), normalised squared field error (T,), training horizon s) curve.
    """

    metrics: dict[str, Any]
    sample_rate: float
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    field_error: tuple[np.ndarray, np.ndarray, float] | None = None


@dataclass
class BundleInfo:
    """Manifest fields a family decides (the run folder adds provenance and metrics)."""

    modes: int
    note_range: tuple[int, int]
    trained_sample_rate: float
    modulation: bool = False
    release_time: float = 0.3
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graphs:
    """The modules export writes as ONNX, in eval mode.

    excite: controls (V, 4) -> {"sigma", "omega", "z0", "c"[, "mod_alpha", "mod_beta"]};
    readout: z (V, N, 2) -> c (V, N, 2), or None; field: z (V, N, 2) -> u (V, points...) or None.
    """

    excite: nn.Module
    readout: nn.Module | None
    field: nn.Module | None
    info: BundleInfo


class Family(ABC):
    """One model family. Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    """Stored in run folders and bundles ("diag_ssm")."""
    command: ClassVar[str]
    """`eigentone train COMMAND` ("ssm")."""
    data_kinds: ClassVar[tuple[str, ...]] = ("field", "recording", "recordings")
    """Which TrainingData kinds the family learns from."""
    default_lr: ClassVar[float] = 1e-3
    default_threads: ClassVar[int] = 2

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Family-specific options (the shared ones: data, --out, --steps, --seed, --lr, --threads,
        --hold-out, --quiet)."""

    def default_steps(self, data: TrainingData) -> int:
        """Gradient steps when --steps is not given."""
        return 300

    @abstractmethod
    def initialise(self, data: TrainingData, options: argparse.Namespace) -> Initialised:
        """A model fitted from the training part of ``data`` (closed form: modal analysis, least squares)."""

    @abstractmethod
    def build(self, config: dict[str, Any]) -> nn.Module:
        """An untrained model of the architecture ``config`` describes (weights are loaded after)."""

    @abstractmethod
    def step_loss(self, fitted: Initialised, data: TrainingData, options: argparse.Namespace,
                  rng: np.random.Generator) -> StepLoss:
        """The training loss closure of ``fitted.model`` on the training part of ``data``."""

    def parameter_groups(self, model: nn.Module, options: argparse.Namespace) -> list[dict[str, Any]]:
        """Adam parameter groups (default: every parameter at --lr)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": options.lr}]

    def validation_error(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> float | None:
        """Error the trainer compares between the initial and the trained weights (lower wins); None: keep trained."""
        return None

    @abstractmethod
    def evaluate(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> Evaluation:
        """Metrics of the trained model on ``data`` (held-out parts where there are some)."""

    def predict_fields(self, model: nn.Module, dataset: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fields (E, T, points...) and pickups (E, T), float64, of a field dataset's examples ``index`` rolled out
        from their initial conditions over the dataset's whole length (for `eigentone eval RUN DATA.h5`).
        Families that do not model fields leave this out."""
        raise NotImplementedError(f"the {self.command} family does not predict fields")

    @abstractmethod
    def graphs(self, model: nn.Module, config: dict[str, Any]) -> Graphs:
        """The export graphs of a trained model whose run config (``RunFolder.config``) is ``config``."""
