"""The modal FNO family (``training/models/modal_fno.py``) on string or plate field datasets, or on
recordings alone (``modal_fno_audio.py``: the field stays internal and is read out at a pickup).

Two stages:

1. **Modal initialisation from the data** (closed form, ``modal_fno_init.initialise_poles``): Prony
   fits of the sine-transformed fields, then the pole network's dispersion law by least squares.
2. **Operator training**: relative field MSE (sum err^2 / sum y^2, the metric of arXiv 2408.16650) of
   the full rollout u(x, t) over the training horizon. With ``--pinn-weight W`` (linear strings only)
   the loss adds W x mean(r^2), r the normalised residual of the string PDE (``modal_fno_pinn``), at
   collocation points of the batch's strings and of strings drawn over the training parameter range.

The better of the initialisation and the trained weights on the validation examples is kept; the
report gives the test examples' field errors in-horizon and over the whole recording (extrapolation).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from eigentone.errors import EigentoneError
from training import metrics
from training.data.field_data import FieldData, field_data
from training.data.sources import TrainingData
from training.families import modal_fno_audio, modal_fno_data, recordings
from training.families.modal_fno_audio import RecordedFNO
from training.families.modal_fno_eval import (
    evaluate,
    mode_mask,
    parameter_generalisation,
    pickup_from_field,
    predict,
)
from training.families.modal_fno_init import (
    build_model,
    excitation_map,
    initialise_poles,
    make_config,
    pitch_map,
)
from training.families.modal_fno_pinn import check_pinn, collocation_params, pinn_loss, pinn_report
from training.family import BundleInfo, Evaluation, Family, Graphs, Initialised, StepLoss
from training.losses import relative_mse
from training.models.data_modes import check_one_instrument
from training.models.modal_fno import ExciteGraph, FieldGraph, InstrumentMap, ModalFNO, ModalFNOConfig

RECORDING_MODES = 32
"""Modes of a modal FNO trained on recordings when --modes is not given."""


def fields_of(data: TrainingData) -> FieldData:
    """The dataset as the modal FNO sees it (converted once per TrainingData)."""
    if "modal_fno" not in data.views:
        data.views["modal_fno"] = field_data(data.dataset)
    return data.views["modal_fno"]


def _part(data: TrainingData, name: str) -> FieldData:
    """A split part of the FieldData; the training part when ``name`` is empty (tiny datasets)."""
    index = data.split[name] if len(data.split[name]) else data.split["train"]
    return fields_of(data).subset(index)


def _seen(model: nn.Module, part: FieldData) -> FieldData:
    """The part as the model takes it: a data-transform model starts from the observed first snapshot."""
    return modal_fno_data.observed_view(part, model) if model.cfg.transform == "data" else part


def horizon_samples(data: FieldData, horizon_s: float | None) -> int:
    """Training horizon in samples: ``horizon_s`` seconds, default a tenth of the data, at least 8."""
    n_total = data.fields.shape[1]
    h = round((horizon_s if horizon_s else n_total / data.sample_rate / 10) * data.sample_rate)
    return max(8, min(h, n_total))


class ModalFNOFamily(Family):
    """Modal FNO: e^{Lambda t} spectral multipliers from a pole network of the physical parameters."""

    name = "modal_fno"
    command = "fno"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--modes", type=int, default=None, help="modes (strings) or modes per axis (plates)")
        parser.add_argument("--horizon", type=float, default=None, help="training horizon in s (default: a tenth of the data)")
        parser.add_argument("--batch", type=int, default=16)
        parser.add_argument("--pole-lr-scale", type=float, default=0.03, help="pole-network rate / --lr (default 0.03)")
        parser.add_argument("--fourier-layers", type=int, default=0, help="nonlinear sine-FNO blocks on the initial condition")
        parser.add_argument("--modulation", choices=["auto", "on", "off"], default="auto",
                            help="block-rate pole modulation (pitch glide); auto: on for nonlinear data")
        parser.add_argument("--pinn-weight", type=float, default=0.0,
                            help="weight of the string PDE residual loss at random collocation points (linear strings "
                                 "only; default 0: off)")
        parser.add_argument("--init", choices=("physics", "data"), default="physics",
                            help="physics: sine transform and a pole network of the physical parameters "
                                 "(physics-informed); data: mode shapes, poles and pole law found in the training "
                                 "fields alone, the observed first snapshot as input (modal_fno_data.py)")

    def initialise(self, data: TrainingData, options: argparse.Namespace) -> Initialised:
        if data.kind != "field":
            return self._initialise_from_notes(data, options)
        full = fields_of(data)
        h = horizon_samples(full, options.horizon)
        modulation = {"auto": full.nonlinear, "on": True, "off": False}[options.modulation]
        if options.pinn_weight:
            check_pinn(full, modulation, options.pinn_weight)
        train_set = full.subset(data.split["train"])
        if options.init == "data":
            check_one_instrument(dict(data.dataset.params or {}), data.path)
            model, seen, info = modal_fno_data.initialise(train_set, h, options, modulation)
            config = {"architecture": modal_fno_data.config_of(model), "sample_rate": full.sample_rate,
                      "horizon_samples": h, "note_range": [36, 84] if full.kind == "string" else [24, 96]}
            return Initialised(model, config, info, targets=(seen, h))
        cfg = make_config(train_set, options.modes, options.fourier_layers, modulation)
        model = build_model(cfg, train_set)
        info = initialise_poles(model, train_set, h, quiet=options.quiet)
        config = {"architecture": asdict(cfg), "sample_rate": full.sample_rate, "horizon_samples": h,
                  "excitation": excitation_map(train_set),
                  "note_range": [36, 84] if full.kind == "string" else [24, 96]}
        return Initialised(model, config, info, targets=(train_set, h))

    def _initialise_from_notes(self, data: TrainingData, options: argparse.Namespace) -> Initialised:
        if options.pinn_weight:
            raise EigentoneError(f"{data.path}: --pinn-weight needs a simulated field dataset, not recordings")
        recs = data.subset("train")
        modes = options.modes or RECORDING_MODES
        targets = recordings.analyse_training_notes(data, modes)
        modulation = {"auto": None, "on": True, "off": False}[options.modulation]
        model, imap, info = modal_fno_audio.initialise(recs, targets, modes, modulation)
        config = modal_fno_audio.config_of(model, imap, data.sample_rate, [r.note for r in recs])
        return Initialised(model, config, info, targets=targets)

    def build(self, config: dict[str, Any]) -> nn.Module:
        if config.get("source") == "recordings":
            return modal_fno_audio.build(config)
        model = ModalFNO(ModalFNOConfig(**config["architecture"]))
        model._trained_rate = float(config["sample_rate"])
        return model

    def step_loss(self, fitted: Initialised, data: TrainingData, options: argparse.Namespace,
                  rng: np.random.Generator) -> StepLoss:
        if data.kind != "field":
            return recordings.audio_loss(fitted.model, None, data.subset("train"), fitted.targets,
                                         block_size=fitted.model.fno.cfg.block_size, batch=min(options.batch, 4), rng=rng)
        model, (train_set, h) = fitted.model, fitted.targets
        if model.cfg.transform == "data":
            steps = options.steps if options.steps is not None else self.default_steps(data)
            return modal_fno_data.step_loss(model, train_set, h, options.batch, steps, options.seed)
        fs = train_set.sample_rate
        u0 = torch.as_tensor(train_set.u0, dtype=torch.float32)
        v0 = torch.as_tensor(train_set.v0, dtype=torch.float32)
        params = torch.as_tensor(train_set.params, dtype=torch.float32)
        target = torch.as_tensor(train_set.fields[:, :h], dtype=torch.float32)
        mask = mode_mask(model, train_set)
        times = torch.arange(h, dtype=torch.float32) / fs
        gen = torch.Generator().manual_seed(options.seed)
        pinn_gen = torch.Generator().manual_seed(options.seed + 1)  # collocation points; leaves the batch draws unchanged
        in_grid = train_set.grid if train_set.input_grid is None else train_set.input_grid

        def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
            idx = torch.randperm(train_set.examples, generator=gen)[: options.batch]
            pred = model(u0[idx], v0[idx], params[idx], times, train_set.grid, sample_rate=fs,
                         in_grid=train_set.input_grid, mode_mask=None if mask is None else mask[idx])
            loss = relative_mse(pred, target[idx])
            if not options.pinn_weight:
                return loss, {}
            # half the residual at the batch's strings, half at strings drawn over the training range
            half = len(idx) // 2
            physical = torch.cat([params[idx[:half]], collocation_params(model, len(idx) - half, pinn_gen)])
            residual = pinn_loss(model, u0[idx], v0[idx], physical, in_grid, h / fs, pinn_gen,
                                 mode_mask=None if mask is None else mask[idx])
            return loss + options.pinn_weight * residual, {"pinn_residual": float(residual.detach())}

        return step_loss

    def parameter_groups(self, model: nn.Module, options: argparse.Namespace) -> list[dict[str, Any]]:
        if not isinstance(model, RecordedFNO) and model.cfg.transform == "data":  # free poles from a noisy fit
            return [{"params": list(model.parameters()), "lr": options.lr}]
        poles = [p for n, p in model.named_parameters() if n.startswith("poles.")]
        other = [p for n, p in model.named_parameters() if not n.startswith("poles.")]
        return [{"params": poles, "lr": options.lr * options.pole_lr_scale}, {"params": other, "lr": options.lr}]

    def validation_error(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> float | None:
        """Validation field NMSE over the training horizon (never looks past it); recordings: none."""
        if data.kind != "field":
            return None
        val = _seen(model, _part(data, "val"))
        h = horizon_samples(fields_of(data), options.horizon)
        return metrics.field_nmse(predict(model, val, h), val.fields[:, :h])

    def evaluate(self, model: nn.Module, data: TrainingData, options: argparse.Namespace) -> Evaluation:
        if data.kind != "field":
            graphs = Graphs(model, None, None, None)
            return recordings.evaluate_notes(graphs, data.subset("test") or data.subset("train")[:2], data.sample_rate)
        test = _seen(model, _part(data, "test"))
        h = horizon_samples(fields_of(data), options.horizon)
        report = {**evaluate(model, test, h), "test_examples": int(test.examples)}
        if test.kind == "string" and model.cfg.transform != "data":
            report.update(parameter_generalisation(model, test))
        if options.pinn_weight:
            report.update(pinn_weight=options.pinn_weight,
                          pinn_residual_mse=pinn_report(model, test, h / test.sample_rate, options.seed))
        shown = test.subset(np.arange(min(4, test.examples)))
        pred = predict(model, shown, test.fields.shape[1])
        ref = shown.fields
        err = ((pred - ref) ** 2).reshape(pred.shape[0], pred.shape[1], -1).sum((0, 2)) / np.maximum(
            (ref**2).reshape(ref.shape[0], ref.shape[1], -1).sum((0, 2)), 1e-30)
        t = np.arange(pred.shape[1]) / test.sample_rate
        pick_ref = pickup_from_field(model, ref[:1], test.grid, test.pickup)[0]
        pick_pred = pickup_from_field(model, pred[:1], test.grid, test.pickup)[0]
        return Evaluation(report, test.sample_rate, [("test example", pick_ref, pick_pred)], (t, err, h / test.sample_rate))

    def predict_fields(self, model: nn.Module, dataset: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(model, RecordedFNO):
            raise NotImplementedError("a modal FNO trained on recordings has no physical field to compare")
        part = _seen(model, field_data(dataset).subset(index))
        pred = predict(model, part, part.fields.shape[1])
        return pred, pickup_from_field(model, pred, part.grid, part.pickup)

    def graphs(self, model: nn.Module, config: dict[str, Any]) -> Graphs:
        if not isinstance(model, RecordedFNO) and model.cfg.transform == "data":
            raise EigentoneError("a modal FNO learned from data alone (--init data) has no note or position control "
                                 "to export yet; export a Koopman --init data run, or train fno --init physics")
        cfg = config["model"]
        if isinstance(model, RecordedFNO):
            excite, fno, imap = model.excite, model.fno, model.excite.imap
        else:
            imap = {**pitch_map(model), **cfg["excitation"]}
            imap = InstrumentMap(**{**imap, "pickup": tuple(imap["pickup"]), "pitch_range": tuple(imap["pitch_range"])})
            excite, fno = ExciteGraph(model, imap), model
        source = "recordings" if isinstance(model, RecordedFNO) else "fields"
        info = BundleInfo(modes=fno.cfg.n_modes, note_range=tuple(cfg["note_range"]),
                          trained_sample_rate=float(cfg["sample_rate"]), modulation=fno.cfg.modulation,
                          description=f"modal FNO {fno.cfg.kind} ({fno.cfg.n_modes} modes) trained on {source} "
                                      f"{config.get('data', '?')}")
        return Graphs(excite.eval(), None, FieldGraph(fno, imap.grid).eval(), info)
