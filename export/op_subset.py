"""The ONNX op subset the native core (plugins/native/core) evaluates: the one list, and a checker.

A bundle is *plugin-ready* when every graph in it stays inside this subset; the Python engine plays
any graph onnxruntime loads, the DAW plugin only these. ``eigentone export`` reports it (manifest
``"plugin_ready"``) and ``eigentone list`` recomputes it from the graphs. The C++ evaluator keeps its own
copy of the table (plugins/native/core/graph.cpp, ``kOps``); tests/test_native_graph.py checks that the two
are identical and that both refuse the same graphs.

Rules beyond the op list: default ONNX domain at opset ``OPSET_RANGE``; float32, int64 and bool tensors
of rank <= ``MAX_RANK``; one graph input (float32, every axis but the first of fixed size); one output per
node; no subgraphs, model-local functions, sparse or external initializers.

>>> check_graph(onnx_bytes)          # [] when the plugin can evaluate it
['op Sign is not supported (node sign_0)']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPSET_RANGE = (13, 21)
MAX_RANK = 6
TENSOR_TYPES = {1: "float32", 7: "int64", 9: "bool"}
"""ONNX TensorProto data types the evaluator holds (graph inputs and outputs are float32 only)."""


@dataclass(frozen=True)
class OpRule:
    """Inputs (min, max; None: any number), attributes it may carry (name -> allowed values, None: any),
    attributes it must carry."""

    inputs: tuple[int, int | None] = (2, 2)
    attributes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    required: tuple[str, ...] = ()


UNARY = OpRule(inputs=(1, 1))
BINARY = OpRule(inputs=(2, 2))
CONSTANT_VALUES = ("value", "value_float", "value_floats", "value_int", "value_ints")

OPS: dict[str, OpRule] = {
    "Abs": UNARY,
    "Add": BINARY,
    "Cast": OpRule(inputs=(1, 1), attributes={"to": tuple(TENSOR_TYPES)}, required=("to",)),
    "Clip": OpRule(inputs=(1, 3)),
    "Concat": OpRule(inputs=(1, None), attributes={"axis": None}, required=("axis",)),
    "Constant": OpRule(inputs=(0, 0), attributes={name: None for name in CONSTANT_VALUES}),
    "Cos": UNARY,
    "Div": BINARY,
    "Einsum": OpRule(inputs=(1, 2), attributes={"equation": None}, required=("equation",)),
    "Equal": BINARY,
    "Erf": UNARY,
    "Exp": UNARY,
    "Expand": BINARY,
    "Floor": UNARY,
    "Gather": OpRule(inputs=(2, 2), attributes={"axis": None}),
    "GatherElements": OpRule(inputs=(2, 2), attributes={"axis": None}),
    "Identity": UNARY,
    "Gemm": OpRule(inputs=(2, 3), attributes={"alpha": None, "beta": None, "transA": (0, 1), "transB": (0, 1)}),
    "Greater": BINARY,
    "Less": BINARY,
    "LessOrEqual": BINARY,
    "Log": UNARY,
    "MatMul": BINARY,
    "Max": OpRule(inputs=(1, 2)),
    "Min": BINARY,
    "Mul": BINARY,
    "Neg": UNARY,
    "Or": BINARY,
    "Pow": BINARY,
    "ReduceMin": OpRule(inputs=(1, 2), attributes={"keepdims": (0, 1), "noop_with_empty_axes": (0, 1)}),
    "ReduceSum": OpRule(inputs=(1, 2), attributes={"keepdims": (0, 1), "noop_with_empty_axes": (0, 1)}),
    "Relu": UNARY,
    "Reshape": OpRule(inputs=(2, 2), attributes={"allowzero": (0, 1)}),
    "Shape": OpRule(inputs=(1, 1), attributes={"start": None, "end": None}),
    "Sin": UNARY,
    "Slice": OpRule(inputs=(3, 5)),
    "Softmax": OpRule(inputs=(1, 1), attributes={"axis": None}),
    "Sqrt": UNARY,
    "Sub": BINARY,
    "Tanh": UNARY,
    "Tile": BINARY,
    "Unsqueeze": BINARY,
    "Where": OpRule(inputs=(3, 3)),
}


def table() -> dict:
    """The subset as plain data (the shape of the C++ core's ``et_supported_ops`` JSON)."""
    return {
        "opset": list(OPSET_RANGE),
        "max_rank": MAX_RANK,
        "tensor_types": sorted(TENSOR_TYPES),
        "ops": {
            name: {
                "inputs": [rule.inputs[0], rule.inputs[1]],
                "attributes": {k: (list(v) if v is not None else None) for k, v in sorted(rule.attributes.items())},
                "required": sorted(rule.required),
            }
            for name, rule in sorted(OPS.items())
        },
    }


_EINSUM_TERM = re.compile(r"^(?:[A-Za-z]*(?:\.\.\.)?[A-Za-z]*)$")


def einsum_supported(equation: str) -> bool:
    """One or two operands of letters with at most one '...' each; an explicit output uses known letters."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if not 1 <= len(terms) <= 2 or not all(_EINSUM_TERM.match(t) for t in terms):
        return False
    letters = set("".join(terms).replace(".", ""))
    return not arrow or bool(_EINSUM_TERM.match(output) and set(output.replace(".", "")) <= letters)


def check_graph(onnx_bytes: bytes) -> list[str]:
    """Every way a serialised ONNX model leaves the subset, as one-line problems ([] when supported)."""
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError types
        return [f"not a decodable ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"]
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), -1)
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(f"default-domain opset {opset} (supported: {OPSET_RANGE[0]}..{OPSET_RANGE[1]})")
    if len(model.functions):
        problems.append("model-local functions are not supported")
    graph = model.graph
    if len(graph.sparse_initializer):
        problems.append("sparse initializers are not supported")
    initializers = {t.name for t in graph.initializer}
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            problems.append(f"initializer '{t.name}': external tensor data is not supported")
        elif t.data_type not in TENSOR_TYPES:
            problems.append(f"initializer '{t.name}': tensor type {t.data_type} (only float32, int64 and bool are supported)")
        elif len(t.dims) > MAX_RANK:
            problems.append(f"initializer '{t.name}': tensor rank above {MAX_RANK}")
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        problems.append(f"{len(inputs)} graph inputs (exactly one is supported)")
    for v in inputs[:1]:
        tensor = v.type.tensor_type
        dims = tensor.shape.dim
        if not v.type.HasField("tensor_type") or tensor.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"graph input '{v.name}' is not a float32 tensor")
        elif not tensor.HasField("shape") or not 1 <= len(dims) <= MAX_RANK:
            problems.append(f"graph input '{v.name}' needs a shape of rank 1..{MAX_RANK}")
        else:
            for k, d in enumerate(dims[1:], start=1):
                if not d.HasField("dim_value") or d.dim_value < 1:
                    problems.append(f"graph input '{v.name}' axis {k} is not a fixed size")
    for node in graph.node:
        label = f"{node.op_type} node '{node.name or (node.output[0] if node.output else '?')}'"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{label}: domain '{node.domain}' is not supported")
            continue
        rule = OPS.get(node.op_type)
        if rule is None:
            problems.append(f"op {node.op_type} is not supported (node '{node.name}')")
            continue
        names = [a.name for a in node.attribute]
        for a in node.attribute:
            allowed = rule.attributes.get(a.name, ())
            if a.name not in rule.attributes or a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                problems.append(f"{label}: attribute '{a.name}' is not supported")
            elif allowed is not None and onnx.helper.get_attribute_value(a) not in allowed:
                problems.append(f"{label}: attribute {a.name}={onnx.helper.get_attribute_value(a)} is not supported "
                                f"(allowed: {', '.join(map(str, allowed))})")
        for name in rule.required:
            if name not in names:
                problems.append(f"{label}: {node.op_type} needs '{name}'")
        count = len(node.input)
        while count and not node.input[count - 1]:
            count -= 1
        lo, hi = rule.inputs
        if count < lo or (hi is not None and count > hi):
            problems.append(f"{label}: {count} inputs (supported: {lo}{'' if hi == lo else ' or more' if hi is None else f'..{hi}'})")
        if len(node.output) != 1 or not node.output[0]:
            problems.append(f"{label}: exactly one output is supported")
        if node.op_type == "Einsum" and "equation" in names:
            equation = onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "equation"))
            equation = equation.decode() if isinstance(equation, bytes) else equation
            if not einsum_supported(equation):
                problems.append(f"{label}: Einsum equation '{equation}' is not supported (1 or 2 operands)")
        if node.op_type == "Constant":
            if len(node.attribute) != 1:
                problems.append(f"{label}: Constant needs exactly one value attribute")
            elif node.attribute[0].name == "value" and node.attribute[0].t.data_type not in TENSOR_TYPES:
                problems.append(f"{label}: tensor type {node.attribute[0].t.data_type} (only float32, int64 and bool "
                                "are supported)")
    try:
        inferred = shape_inference.infer_shapes(model).graph.value_info
    except Exception:  # noqa: BLE001 - shape inference is a best-effort extra check here
        inferred = []
    for v in inferred:
        if v.type.HasField("tensor_type") and len(v.type.tensor_type.shape.dim) > MAX_RANK:
            problems.append(f"tensor '{v.name}' has rank {len(v.type.tensor_type.shape.dim)} (supported: <= {MAX_RANK})")
    return problems


def bundle_problems(graphs: dict[str, bytes]) -> dict[str, list[str]]:
    """{role: problems} for the graphs of a bundle that leave the subset ({} when the plugin plays them all)."""
    problems = {role: check_graph(data) for role, data in graphs.items()}
    return {role: found for role, found in problems.items() if found}


def plugin_ready(path) -> bool:
    """Whether the DAW plugin can play the bundle at ``path`` (.etone zip or folder): computed from its graphs,
    never read from the manifest. False also when the graphs cannot be read."""
    import json
    import zipfile
    from pathlib import Path

    path = Path(path)
    try:
        if path.is_dir():
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            graphs = {role: (path / entry["file"]).read_bytes() for role, entry in manifest["graphs"].items()}
        else:
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                graphs = {role: archive.read(entry["file"]) for role, entry in manifest["graphs"].items()}
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return False
    return not bundle_problems(graphs)
