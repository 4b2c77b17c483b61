"""torch -> ONNX for the contract graphs (excite, readout, field), with a dynamic ``voices`` axis.

Complex values are already real (re, im) pairs in every family's modules (RECIPES.md: complex
tensors do not export). The excite module returns the contract dict; ``ExciteAdapter`` turns it
into a tuple in the fixed output order, so the ONNX outputs carry the contract's names.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from eigentone.contract import EXCITE_OUTPUTS, MODULATION_OUTPUTS

OPSET = 18


class ExciteAdapter(nn.Module):
    """Wrap an excite module: controls (V, 4) -> tuple(sigma, omega, z0, c[, mod_alpha, mod_beta][, attack])."""

    def __init__(self, excite: nn.Module, modulation: bool, attack: bool = False):
        super().__init__()
        self.excite = excite
        self.names = EXCITE_OUTPUTS + (MODULATION_OUTPUTS if modulation else ()) + (("attack",) if attack else ())

    def forward(self, controls: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.excite(controls)
        return tuple(out[name].to(torch.float32) for name in self.names)


def export_graph(module: nn.Module, example: torch.Tensor, input_name: str, output_names: list[str]) -> bytes:
    """Serialised ONNX of ``module(example)`` with axis 0 of input and outputs dynamic ("voices")."""
    module = module.eval()
    voices = torch.export.Dim("voices", min=1, max=4096)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), input_names=[input_name], output_names=output_names,
                                    dynamic_shapes=({0: voices},), dynamo=True, opset_version=OPSET, verbose=False)
        program.save(buffer)
    if buffer.tell() == 0:  # older exporters write to the file argument instead
        raise RuntimeError("ONNX exporter returned no program")
    return buffer.getvalue()


def excite_example(voices: int = 3, seed: int = 0) -> torch.Tensor:
    """Random valid controls (voices, 4): notes 36..96, velocity 0.05..1, positions 0.05..0.95."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(voices, 4, generator=g)
    return torch.stack([36 + 60 * u[:, 0], 0.05 + 0.95 * u[:, 1], 0.05 + 0.9 * u[:, 2], 0.05 + 0.9 * u[:, 3]], dim=1)


def export_excite(excite: nn.Module, modulation: bool = False, attack: bool = False) -> tuple[bytes, nn.Module]:
    """(ONNX bytes, adapter module) of an excite module (``attack``: it also returns the attack table (V, L))."""
    adapter = ExciteAdapter(excite, modulation, attack)
    return export_graph(adapter, excite_example(), "controls", list(adapter.names)), adapter


def state_example(modes: int, voices: int = 3, seed: int = 0) -> torch.Tensor:
    """Random modal state (voices, modes, 2) for readout/field graphs."""
    return torch.randn(voices, modes, 2, generator=torch.Generator().manual_seed(seed))
