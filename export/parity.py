"""Parity of an exported graph: torch vs onnxruntime on random valid inputs.

The relative error of an output is max|onnx - torch| / max|torch| (per output name); an export fails
when any exceeds ``REL_TOLERANCE``. Inputs are tried at several voice counts so that a graph whose
voices axis was frozen at export fails here, not in the engine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

REL_TOLERANCE = 1e-4


def check_parity(module: nn.Module, onnx_bytes: bytes, make_input: Callable[[int, int], torch.Tensor], input_name: str,
                 output_names: list[str], voice_counts: tuple[int, ...] = (1, 5, 17)) -> dict[str, float]:
    """Run both on ``make_input(voices, seed)`` for each voice count; return max_abs_error, max_rel_error."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    max_abs, max_rel = 0.0, 0.0
    for seed, voices in enumerate(voice_counts):
        x = make_input(voices, seed)
        with torch.no_grad():
            expected = module(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(output_names, {input_name: x.numpy().astype(np.float32)})
        for name, e, g in zip(output_names, expected, got):
            e = e.detach().double().numpy()
            if g.shape != e.shape:
                raise ValueError(f"output {name}: onnx shape {g.shape} != torch shape {e.shape} at {voices} voices")
            err = float(np.max(np.abs(g - e))) if e.size else 0.0
            max_abs = max(max_abs, err)
            max_rel = max(max_rel, err / max(float(np.max(np.abs(e))), 1e-30))
    return {"max_abs_error": max_abs, "max_rel_error": max_rel}
