"""Break an exported graph on purpose, so tests can watch `eigentone export` refuse it.

``scale_exported_output(monkeypatch, "c", 1.01)`` wraps ``export.torch_export.export_graph`` so that every
graph it serialises with an output named ``c`` multiplies that output by 1.01 inside the ONNX graph: the
graph still loads and runs, but no longer agrees with the torch module it came from (a 1% relative error,
far above the exporter's 1e-4 parity tolerance).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def scale_output(onnx_bytes: bytes, output: str, factor: float) -> bytes:
    """The same graph with output ``output`` multiplied by ``factor`` (float32)."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    inner = f"{output}__before_scale"
    for node in graph.node:
        node.output[:] = [inner if name == output else name for name in node.output]
        node.input[:] = [inner if name == output else name for name in node.input]
    graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), f"{output}__scale"))
    graph.node.append(helper.make_node("Mul", [inner, f"{output}__scale"], [output]))
    return model.SerializeToString()


def scale_exported_output(monkeypatch, output: str, factor: float = 1.01) -> None:
    """Make ``export.torch_export.export_graph`` scale output ``output`` of the graphs it writes."""
    from export import torch_export

    original = torch_export.export_graph

    def broken(module, example, input_name, output_names):
        data = original(module, example, input_name, output_names)
        return scale_output(data, output, factor) if output in output_names else data

    monkeypatch.setattr(torch_export, "export_graph", broken)
