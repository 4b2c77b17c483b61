"""Analytic modal instruments: a stiff-string-like modal set written as an ONNX bundle (torch-free).

The excite graph maps controls (voices, 4) = (note, velocity, position, position_y) to
the contract's modal description (see ``eigentone/contract``), for mode numbers n = 1..N:

* ``omega_n = 2 pi f0(note) n sqrt(1 + B n^2)``   rad/s, stiff-string inharmonicity B
* ``sigma_n = b1 + b3 omega_n^2``                 1/s, frequency-dependent damping law
* ``z0_n = h velocity 2 sin(n pi x0) / (n^2 pi^2 x0 (1 - x0))``  ideal triangular pluck at x0 = position, height h
* ``c_n = sin(n pi x_pickup)``                    pickup at a fixed fraction of the length

Options: pole modulation outputs (``mod_alpha = gamma omega^2``, ``mod_beta`` ~ n^2, a
tension-modulated pitch glide), a block-rate ``readout`` graph (level-dependent pickup
brightness), an attack component (``attack_samples`` > 0: ``attack = velocity * table``, a
seeded noise burst, see :func:`attack_table`), and ``nan_notes`` / ``nan_attack_notes`` that
make the excite graph return NaN in z0 / in the attack for those MIDI notes (used to test the
engine's NaN guard). These bundles drive the engine's tests and benchmarks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.bundle_writer import write_bundle

OPSET = 17


def _const(name: str, value: np.ndarray | float) -> onnx.NodeProto:
    array = np.asarray(value, dtype=np.float32)
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def _int_const(name: str, value: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.int64), name + "_v"))


def _pairs(nodes: list, re: str, out: str) -> None:
    """Append nodes making out = stack([re, 0 * re], axis=-1): a real quantity as (re, im) pairs."""
    nodes += [
        helper.make_node("Unsqueeze", [re, "axis_last"], [re + "_u"]),
        helper.make_node("Mul", [re + "_u", "zero"], [re + "_im"]),
        helper.make_node("Concat", [re + "_u", re + "_im"], [out], axis=2),
    ]


def excite_graph(
    modes: int,
    *,
    inharmonicity: float = 1e-4,
    b1: float = 0.9,
    b3: float = 1.6e-8,
    height: float = 0.5,
    pickup: float = 0.13,
    modulation: bool = False,
    glide: float = 0.05,
    nan_notes: tuple[int, ...] = (),
    attack: np.ndarray | None = None,
    nan_attack_notes: tuple[int, ...] = (),
) -> bytes:
    """Serialised ONNX excite graph: controls (voices, 4) -> sigma, omega (voices, N), z0, c (voices, N, 2).

    ``glide`` sets the pole modulation depth: ``omega_n = omega0_n sqrt(1 + glide sum_m m^2 |z_m|^2)``
    (about +1.5 % in frequency for a full-velocity pluck with the default 0.05); ``nan_notes``
    lists MIDI notes whose z0 is NaN. ``attack``: (L,) table; adds the output ``attack`` (voices, L)
    = velocity * table (NaN for ``nan_attack_notes``).
    """
    n = np.arange(1, modes + 1, dtype=np.float64)
    stretch = (2.0 * math.pi * n * np.sqrt(1.0 + inharmonicity * n**2))[None, :]  # (1, N) rad/s per Hz of f0
    beta = (n**2)[None, :]  # (1, N): energy weight of mode n ~ its stiffness (k_n^2)
    nodes: list[onnx.NodeProto] = [
        _const("zero", 0.0),
        _const("one", 1.0),
        _const("two", 2.0),
        _const("c69", 69.0),
        _const("c12", 12.0),
        _const("c440", 440.0),
        _const("stretch", stretch),
        _const("n_pi", (n * math.pi)[None, :]),
        _const("amp_law", (2.0 * height / (n**2 * math.pi**2))[None, :]),
        _const("b1", b1),
        _const("b3", b3),
        _const("x_min", 0.01),
        _const("x_max", 0.99),
        _const("pickup_w", np.sin(n * math.pi * pickup)[None, :]),
        _int_const("i0", [0]),
        _int_const("i1", [1]),
        _int_const("i2", [2]),
        _int_const("axis_last", [2]),
        helper.make_node("Gather", ["controls", "i0"], ["note"], axis=1),  # (V, 1)
        helper.make_node("Gather", ["controls", "i1"], ["velocity"], axis=1),
        helper.make_node("Gather", ["controls", "i2"], ["position"], axis=1),
        # f0 = 440 * 2 ** ((note - 69) / 12)
        helper.make_node("Sub", ["note", "c69"], ["note_rel"]),
        helper.make_node("Div", ["note_rel", "c12"], ["octaves"]),
        helper.make_node("Pow", ["two", "octaves"], ["ratio"]),
        helper.make_node("Mul", ["ratio", "c440"], ["f0"]),
        helper.make_node("Mul", ["f0", "stretch"], ["omega"]),  # (V, N)
        helper.make_node("Mul", ["omega", "omega"], ["omega_sq"]),
        helper.make_node("Mul", ["omega_sq", "b3"], ["damp_hi"]),
        helper.make_node("Add", ["damp_hi", "b1"], ["sigma"]),
        # triangular pluck at x0
        helper.make_node("Clip", ["position", "x_min", "x_max"], ["x0"]),
        helper.make_node("Sub", ["one", "x0"], ["one_minus_x0"]),
        helper.make_node("Mul", ["x0", "one_minus_x0"], ["x0_span"]),
        helper.make_node("Mul", ["x0", "n_pi"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["shape"]),
        helper.make_node("Mul", ["shape", "amp_law"], ["shape_amp"]),
        helper.make_node("Div", ["shape_amp", "x0_span"], ["pluck"]),
        helper.make_node("Mul", ["pluck", "velocity"], ["z0_clean"]),
        helper.make_node("Shape", ["omega"], ["vm_shape"]),
        helper.make_node("Expand", ["pickup_w", "vm_shape"], ["c_re"]),
    ]
    z0_re = _nan_where(nodes, "z0_clean", nan_notes, "z0")
    _pairs(nodes, z0_re, "z0")
    _pairs(nodes, "c_re", "c")
    outputs = [
        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["voices", modes]),
        helper.make_tensor_value_info("omega", TensorProto.FLOAT, ["voices", modes]),
        helper.make_tensor_value_info("z0", TensorProto.FLOAT, ["voices", modes, 2]),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, ["voices", modes, 2]),
    ]
    if attack is not None:
        nodes += [_const("attack_table", np.asarray(attack)[None, :]),
                  helper.make_node("Mul", ["velocity", "attack_table"], ["attack_clean"])]
        attack_out = _nan_where(nodes, "attack_clean", nan_attack_notes, "attack_")
        nodes.append(helper.make_node("Identity", [attack_out], ["attack"]))
        outputs.append(helper.make_tensor_value_info("attack", TensorProto.FLOAT, ["voices", len(attack)]))
    if modulation:
        nodes += [
            _const("glide", glide),
            _const("beta_w", beta),
            helper.make_node("Mul", ["omega_sq", "glide"], ["mod_alpha"]),
            helper.make_node("Expand", ["beta_w", "vm_shape"], ["mod_beta"]),
        ]
        outputs += [
            helper.make_tensor_value_info("mod_alpha", TensorProto.FLOAT, ["voices", modes]),
            helper.make_tensor_value_info("mod_beta", TensorProto.FLOAT, ["voices", modes]),
        ]
    graph = helper.make_graph(
        nodes, "modal_excite", [helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["voices", 4])], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="eigentone")
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _nan_where(nodes: list, value: str, notes: tuple[int, ...], prefix: str) -> str:
    """Append nodes making ``value`` NaN for the given MIDI notes (rows whose note control equals one); return
    the name of the result (``value`` itself when ``notes`` is empty). Needs the "note" node."""
    if not notes:
        return value
    if not any(node.output[0] == "nan" for node in nodes):
        nodes.append(_const("nan", float("nan")))
    masks = []
    for k, note in enumerate(notes):
        nodes += [_const(f"{prefix}bad{k}", float(note)),
                  helper.make_node("Equal", ["note", f"{prefix}bad{k}"], [f"{prefix}is_bad{k}"])]
        masks.append(f"{prefix}is_bad{k}")
    while len(masks) > 1:
        a, b = masks.pop(), masks.pop()
        nodes.append(helper.make_node("Or", [a, b], [a + "_or"]))
        masks.append(a + "_or")
    nodes.append(helper.make_node("Where", [masks[0], "nan", value], [f"{prefix}_masked"]))
    return f"{prefix}_masked"


def attack_table(samples: int, sample_rate: float, *, level: float = 0.3, decay_s: float = 0.003,
                 seed: int = 0) -> np.ndarray:
    """A pick-noise burst: (samples,) float32, seeded white noise of peak ~``level`` decaying by e every
    ``decay_s`` seconds (an analytic stand-in for a learned attack component)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / float(sample_rate)
    return (level * rng.uniform(-1.0, 1.0, samples) * np.exp(-t / decay_s)).astype(np.float32)


def readout_graph(modes: int, *, pickup: float = 0.13, brightness: float = 0.5) -> bytes:
    """Serialised ONNX readout graph: z (voices, N, 2) -> c (voices, N, 2).

    ``c_n = sin(n pi x_pickup) (1 + brightness tanh(sum_m |z_m|^2))``: a level-dependent
    pickup, standing in for a learned decoder run once per block.
    """
    n = np.arange(1, modes + 1, dtype=np.float64)
    pickup_pairs = np.stack([np.sin(n * math.pi * pickup), np.zeros(modes)], axis=-1)[None]  # (1, N, 2)
    nodes = [
        _const("one", 1.0),
        _const("brightness", brightness),
        _const("pickup_pairs", pickup_pairs),
        _int_const("axes", [1, 2]),
        helper.make_node("Mul", ["z", "z"], ["z_sq"]),
        helper.make_node("ReduceSum", ["z_sq", "axes"], ["energy"], keepdims=1),  # (V, 1, 1)
        helper.make_node("Tanh", ["energy"], ["squashed"]),
        helper.make_node("Mul", ["squashed", "brightness"], ["boost"]),
        helper.make_node("Add", ["boost", "one"], ["gain"]),
        helper.make_node("Mul", ["pickup_pairs", "gain"], ["c"]),
    ]
    graph = helper.make_graph(
        nodes,
        "modal_readout",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["voices", modes, 2])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["voices", modes, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="eigentone")
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def write_modal_bundle(
    out_path: str | Path,
    *,
    modes: int = 256,
    name: str = "modal-string",
    modulation: bool = False,
    readout: bool = False,
    nan_notes: tuple[int, ...] = (),
    release_time: float = 0.3,
    note_range: tuple[int, int] = (21, 108),
    attack_samples: int = 0,
    attack_rate: float = 24000.0,
    **excite_options: Any,
) -> dict[str, Any]:
    """Write an analytic modal string bundle (family "modal") to ``out_path``; return its manifest.

    ``attack_samples`` > 0 adds an attack component: :func:`attack_table` of that many samples at
    ``attack_rate`` Hz, scaled by velocity. ``excite_options`` go to :func:`excite_graph` (inharmonicity,
    b1, b3, height, pickup, glide, nan_attack_notes).
    """
    attack = attack_table(attack_samples, attack_rate) if attack_samples else None
    graphs = {"excite": excite_graph(modes, modulation=modulation, nan_notes=nan_notes, attack=attack,
                                     **excite_options)}
    if readout:
        graphs["readout"] = readout_graph(modes, pickup=excite_options.get("pickup", 0.13))
    return write_bundle(
        out_path,
        name=name,
        family="modal",
        modes=modes,
        graphs=graphs,
        note_range=note_range,
        trained_sample_rate=48000.0,
        modulation=modulation,
        release_time=release_time,
        description=f"analytic stiff string, {modes} modes" + (", pole modulation" if modulation else ""),
        training={"command": "export.modal_bundle.write_modal_bundle (analytic, no training)", "seed": 0},
        extra={"attack": {"samples": int(attack_samples), "sample_rate": float(attack_rate)}} if attack_samples else None,
    )
