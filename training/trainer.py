"""One training loop for every family: seeded, progress bar, checkpoints that survive Ctrl-C or a kill.

A family's trainer builds its model and a ``step_loss(step) -> (loss, logs)`` closure,
then calls ``train_loop``. Everything is plain PyTorch, so the same code runs under
``torchrun`` (wrap the model in DistributedDataParallel before calling; only rank 0
writes checkpoints).

Run directory layout::

    RUN_DIR/config.json       the family's configuration (written by the family trainer)
    RUN_DIR/checkpoint.pt     model + optimiser state + step (tensors only; loaded with weights_only=True)
    RUN_DIR/model.pt          final weights (state_dict)
    RUN_DIR/history.json      loss per logged step
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from eigentone.errors import EigentoneError, first_line
from eigentone.files import atomic_path


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _is_main_process() -> bool:
    return not torch.distributed.is_available() or not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, step: int,
                    history: list) -> None:
    """Write model/optimiser state atomically (a kill mid-write leaves the previous checkpoint intact).
    ``optimizer`` None (a 0-step run never built one) is stored as None: a resumed run starts Adam afresh."""
    if not _is_main_process():
        return
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": None if optimizer is None else optimizer.state_dict(),
                    "step": step, "history": json.dumps(history)}, tmp)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[int, list]:
    """Restore a checkpoint written by ``save_checkpoint``; returns (step, history).

    A checkpoint that is not one (corrupted, truncated, another program's file) or that belongs to a
    different model configuration is refused with one EigentoneError line that says to delete it.
    """
    hint = f"delete {path} to start this run from step 0, or use another --out"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load reports bad files with many exception types
        # torch's UnpicklingError text suggests weights_only=False, which would run the file's code: not shown
        reason = "corrupted or not written by eigentone" if isinstance(exc, pickle.UnpicklingError) else first_line(exc)
        raise EigentoneError(f"{path}: not a readable checkpoint ({reason}); {hint}") from None
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None and state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), json.loads(state["history"])
    except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, RuntimeError (shape mismatch), JSON errors
        raise EigentoneError(f"{path}: the checkpoint does not fit this model ({first_line(exc)}); {hint}") from None


class _StopRequested(Exception):
    pass


def train_loop(
    model: torch.nn.Module,
    step_loss: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
    *,
    run_dir: str | Path,
    steps: int,
    lr: float | list[dict[str, Any]] = 1e-3,
    checkpoint_every: int = 100,
    log_every: int = 10,
    desc: str = "train",
    grad_clip: float | None = 1.0,
    lr_schedule: str = "cosine",
    quiet: bool = False,
) -> list[dict[str, float]]:
    """Optimise ``model`` with Adam for ``steps`` steps, resuming from RUN_DIR/checkpoint.pt if present.

    ``lr`` is a learning rate or a list of Adam parameter groups (e.g. poles with their own rate and
    no weight decay, as in S4D). SIGTERM and Ctrl-C save a checkpoint before the process stops; a
    later call with the same ``run_dir`` continues from the saved step. Returns the loss history.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    groups = lr if isinstance(lr, list) else [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    checkpoint = run_dir / "checkpoint.pt"
    # 0 steps (closed-form fits): no optimiser, whose first construction imports torch._dynamo (~3 s CPU);
    # one is still built to carry an existing checkpoint's optimiser state over
    optimizer = torch.optim.Adam(groups) if steps > 0 or checkpoint.exists() else None
    base_lrs = [g["lr"] for g in optimizer.param_groups] if optimizer is not None else []
    start, history = (0, [])
    if checkpoint.exists():
        start, history = load_checkpoint(checkpoint, model, optimizer)
        if not quiet:
            print(f"resuming {run_dir} from step {start}")

    def request_stop(signum, frame):
        raise _StopRequested

    previous = signal.signal(signal.SIGTERM, request_stop) if _in_main_thread() else None
    step = start
    bar = tqdm(total=steps, initial=start, desc=desc, disable=quiet or None, dynamic_ncols=True)
    try:
        for step in range(start, steps):
            if lr_schedule == "cosine":
                scale = 0.5 * (1 + np.cos(np.pi * step / max(steps, 1)))
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = float(base * (0.05 + 0.95 * scale))  # a numpy scalar would break weights_only resume
            optimizer.zero_grad(set_to_none=True)
            loss, logs = step_loss(step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if step % log_every == 0 or step == steps - 1:
                entry = {"step": step, "loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
                history.append(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3g}")
            bar.update(1)
            if (step + 1) % checkpoint_every == 0:
                save_checkpoint(checkpoint, model, optimizer, step + 1, history)
        step = steps
    except (KeyboardInterrupt, _StopRequested):
        save_checkpoint(checkpoint, model, optimizer, step, history)
        bar.close()
        print(f"\nstopped at step {step}; checkpoint saved, run the same command again to resume")
        raise KeyboardInterrupt from None
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    save_checkpoint(checkpoint, model, optimizer, steps, history)
    if _is_main_process():
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        with atomic_path(run_dir / "history.json") as tmp:
            tmp.write_text(json.dumps(history))
    return history


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread() and os.name == "posix"
