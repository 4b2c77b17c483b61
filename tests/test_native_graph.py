"""The native core's ONNX evaluator against onnxruntime, and its op subset against export/op_subset.py."""

import numpy as np
import onnxruntime as ort
import pytest
from native_helpers import SHIPPED, build_native, shipped_ids
from onnx import TensorProto, helper, numpy_helper

from export.op_subset import OPS, check_graph, table


@pytest.fixture(scope="module", autouse=True)
def native_core():
    return build_native()



def _model(nodes, inputs, outputs, initializers=(), opset=18) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("bundle", SHIPPED, ids=shipped_ids())
def test_every_shipped_graph_matches_onnxruntime(bundle):
    from plugins.native.parity import graph_parity

    for result in graph_parity(bundle, batches=(1, 3, 16)):
        print(f"{result.bundle} {result.role}: max rel error {result.max_rel_error:.2e}, "
              f"bit-exact {result.bit_exact:.1%}")
        assert result.max_rel_error <= 1e-5, result


@pytest.mark.parametrize("op, low, high", [("Exp", -30, 30), ("Tanh", -10, 10), ("Erf", -5, 5), ("Log", 1e-4, 1e5),
                                           ("Sin", -40, 40), ("Cos", -40, 40)])
def test_element_functions_are_onnxruntimes_bit_for_bit(op, low, high):
    """Omega comes out of these; one ulp of omega is audible at the 80 dB parity level, so they must be exact,
    including the scalar tail onnxruntime uses for the last n % 4 elements of Log/Sin/Cos."""
    from plugins.native.binding import NativeGraph

    rng = np.random.default_rng(1)
    for width in (1, 3, 5, 64, 1001):
        data = _model([helper.make_node(op, ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", width])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", width])])
        x = rng.uniform(low, high, (2, width)).astype(np.float32)
        expected = _session(data).run(None, {"x": x})[0]
        got = NativeGraph(data, 2).run(x)["y"]
        assert np.array_equal(got, expected), (op, width, int(np.sum(got != expected)))


@pytest.mark.parametrize("k", [7, 256, 300, 505])
def test_gemm_and_matmul_accumulate_like_mlas(k):
    """Sequential fused multiply-adds per output in blocks of 256 along k, then the bias: bit-exact."""
    from plugins.native.binding import NativeGraph

    rng = np.random.default_rng(k)
    weights = rng.standard_normal((24, k)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 24])
    x = rng.standard_normal((5, k)).astype(np.float32)
    for nodes, inits in (
        ([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)], [numpy_helper.from_array(weights, "w"),
                                                                        numpy_helper.from_array(bias, "c")]),
        ([helper.make_node("Gemm", ["x", "w"], ["y"], alpha=0.5)], [numpy_helper.from_array(weights.T.copy(), "w")]),
        ([helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(weights.T.copy(), "w")]),
    ):
        data = _model(nodes, [x_info], [y_info], inits)
        expected = _session(data).run(None, {"x": x})[0]
        assert np.array_equal(NativeGraph(data, 5).run(x)["y"], expected), nodes[0].op_type


def test_op_table_is_the_same_in_cpp_and_python():
    from plugins.native.binding import supported_ops

    assert supported_ops() == table()
    assert len(OPS) == len(table()["ops"]) >= 30


def test_every_shipped_graph_is_inside_the_subset():
    import json
    import zipfile

    for bundle in SHIPPED:
        with zipfile.ZipFile(bundle) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            for entry in manifest["graphs"].values():
                assert check_graph(archive.read(entry["file"])) == [], (bundle.name, entry["file"])


def _one_node(op, attributes=None, inputs=("x",)):
    return _model([helper.make_node(op, list(inputs), ["y"], **(attributes or {}))],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


@pytest.mark.parametrize("data, fragment", [
    (_one_node("Softmax"), "Softmax"),
    (_one_node("Gemm", {"transA": 2}, ("x", "x")), "transA"),
    (_one_node("Cast", {"to": TensorProto.DOUBLE}), "to"),
    (_one_node("Concat", {"axis": 0, "foo": 1}), "foo"),
    (_model([helper.make_node("Tanh", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], opset=11), "opset"),
    (_one_node("Einsum", {"equation": "ij,jk,kl->il"}, ("x", "x")), "Einsum"),
])
def test_graphs_outside_the_subset_are_refused_by_both(data, fragment):
    from plugins.native.binding import NativeError, NativeGraph
    from plugins.native.binding import check_graph as native_check

    python_problems = check_graph(data)
    native_problems = native_check(data)
    assert python_problems and any(fragment in p for p in python_problems), python_problems
    assert native_problems and any(fragment in p for p in native_problems), native_problems
    with pytest.raises(NativeError, match=fragment):
        NativeGraph(data, 2)


def test_analytic_modal_graphs_match_onnxruntime(tmp_path):
    """export/modal_bundle.py's graphs (Constant, Sin, Equal, Or, Where, ReduceSum keepdims) as the engine's
    tests and benches use them, NaN notes included."""
    import json
    import zipfile

    from native_helpers import write_modal

    from plugins.native.parity import graph_parity

    path = write_modal(tmp_path / "m.etone", modes=24, modulation=True, readout=True, nan_notes=(61, 64))
    for result in graph_parity(path):
        assert result.max_rel_error <= 1e-5 and result.bit_exact == 1.0, result
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        for entry in manifest["graphs"].values():
            assert check_graph(archive.read(entry["file"])) == []
