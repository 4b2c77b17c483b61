"""The native core's ONNX evaluator against onnxruntime, and its op subset against export/op_subset.py."""

import numpy as np
import onnxruntime as ort
import pytest
from native_helpers import RECORDED, SHIPPED, build_native, shipped_ids
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


@pytest.mark.parametrize("bundle", RECORDED, ids=[path.stem for path in RECORDED])
def test_recorded_instruments_excite_bit_identically_to_onnxruntime(bundle):
    """A conditioned instrument's excite graph (Softmax, ReduceSum over 100 points, GatherElements, ...) gives
    the plugin onnxruntime's numbers to the last bit, for random notes across its range in batches of 1, 3, 16."""
    from plugins.native.parity import graph_parity

    (result,) = graph_parity(bundle, batches=(1, 3, 16), seed=3)
    assert result.bit_exact == 1.0 and result.max_rel_error == 0.0, result


def _run_both(data: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from plugins.native.binding import NativeGraph

    return _session(data).run(None, {"x": x})[0], NativeGraph(data, x.shape[0]).run(x)["y"]


@pytest.mark.parametrize("width", [1, 3, 15, 16, 17, 47, 48, 49, 100, 1001])
def test_softmax_is_onnxruntimes_bit_for_bit(width):
    """MLAS sums the exps in 16 lanes (48 elements a step, then 16 at a time) and adds the lanes pairwise."""
    rng = np.random.default_rng(width)
    data = _model([helper.make_node("Softmax", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", width])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", width])])
    for scale in (1.0, 30.0, 300.0):  # 300: most exps underflow to subnormals or zero
        expected, got = _run_both(data, (scale * rng.standard_normal((4, width))).astype(np.float32))
        assert np.array_equal(got, expected), (width, scale, int(np.sum(got != expected)))


@pytest.mark.parametrize("shape, axes", [((3, 100), [-1]), ((3, 128, 100), [2]), ((2, 5, 7), [1, 2]),
                                         ((2, 5, 7), [1]), ((2, 5, 7), [0]), ((4, 1001), [1]), ((2, 9, 13), [2]),
                                         ((2, 7, 1), [2]), ((5, 37), [0, 1])])
def test_reduce_sum_adds_in_onnxruntimes_order(shape, axes):
    """Over trailing axes onnxruntime sums each row with Eigen (packets of 4, rows at unaligned offsets too);
    otherwise sequentially per output. Values spread over 10 octaves make every order give other bits."""
    rng = np.random.default_rng(len(shape) * 10 + axes[0])
    data = _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", *shape[1:]])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                  [numpy_helper.from_array(np.array(axes, np.int64), "axes")])
    x = (rng.standard_normal(shape) * np.exp(rng.uniform(-5, 5, shape))).astype(np.float32)
    expected, got = _run_both(data, x)
    assert np.array_equal(got, expected), int(np.sum(got != expected))


def test_compare_min_relu_floor_reduce_min_gather_elements_and_int_clip_match_onnxruntime():
    """The ops of a conditioned instrument's donor choice and attack resampling, each exact by construction."""
    rng = np.random.default_rng(5)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    half = numpy_helper.from_array(np.float32(0.5) * np.ones(6, np.float32), "half")
    nodes = [
        helper.make_node("Relu", ["x"], ["relu"]),
        helper.make_node("Floor", ["x"], ["floor"]),
        helper.make_node("Min", ["x", "half"], ["min"]),
        helper.make_node("ReduceMin", ["x", "last"], ["rmin"], keepdims=1),
        helper.make_node("LessOrEqual", ["x", "rmin"], ["le"]),
        helper.make_node("Greater", ["x", "half"], ["gt"]),
        helper.make_node("Where", ["le", "floor", "min"], ["w1"]),
        helper.make_node("Where", ["gt", "relu", "w1"], ["w2"]),
        # an index 0..5 from floor(3 x) + 2, clipped as int64, gathered back along the last axis
        helper.make_node("Mul", ["x", "three"], ["x3"]),
        helper.make_node("Floor", ["x3"], ["f3"]),
        helper.make_node("Cast", ["f3"], ["i3"], to=TensorProto.INT64),
        helper.make_node("Add", ["i3", "two"], ["i5"]),
        helper.make_node("Clip", ["i5", "zero", "five"], ["index"]),
        helper.make_node("GatherElements", ["w2", "index"], ["y"], axis=-1),
    ]
    inits = [half, numpy_helper.from_array(np.array([-1], np.int64), "last"),
             numpy_helper.from_array(np.float32(3.0), "three"), numpy_helper.from_array(np.int64(2), "two"),
             numpy_helper.from_array(np.int64(0), "zero"), numpy_helper.from_array(np.int64(5), "five")]
    data = _model(nodes, [x_info], [y_info], inits)
    x = rng.uniform(-2, 2, (5, 6)).astype(np.float32)
    x[0, :] = 0.5  # ties: LessOrEqual and Greater on equal values
    expected, got = _run_both(data, x)
    assert np.array_equal(got, expected)


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
    (_one_node("Sign"), "Sign"),
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
