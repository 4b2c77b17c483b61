"""One playable instrument: the validated bundle's onnxruntime sessions behind the contract's calls.

``excite`` runs once per block for all voices started in that block (one batched call);
``readout`` (optional) runs once per block for all sounding voices. Calls go through
``session.run(names, feed)`` without a ``RunOptions`` object (a bare one costs ~40 us
per call in onnxruntime 1.32, see RECIPES).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort

from eigentone.contract import DEFAULT_CONTROLS, EXCITE_OUTPUTS, MODULATION_OUTPUTS
from eigentone.contract.reference import ModalVoices, render_modal
from engine.buffers import prefaulted
from engine.bundle import ATTACK_OUTPUT, Bundle, load_bundle

LEVEL = 0.25
"""Peak of an instrument's probe note after levelling (-12 dBFS)."""
INVARIANCE_ROWS = 64
"""Probe rows of ``Instrument.excite_batch_invariant`` (each also run alone)."""


class Instrument:
    """A loaded bundle ready to play.

    Attributes: ``name``, ``modes`` (N), ``modulation`` (bool), ``release_time`` (s, T60 after
    note-off), ``has_readout`` (bool), ``note_range`` ((lo, hi) MIDI notes), ``manifest``; the attack
    component: ``attack_samples`` (table length L, 0 without one) at ``attack_rate`` (Hz).
    """

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        manifest = bundle.manifest
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.modes: int = int(manifest["modes"])
        self.modulation: bool = bool(manifest["modulation"])
        self.release_time: float = float(manifest["release_time"])
        self.note_range: tuple[int, int] = (int(manifest["note_range"][0]), int(manifest["note_range"][1]))
        self._excite = bundle.sessions["excite"]
        self._readout = bundle.sessions.get("readout")
        self.has_readout = self._readout is not None
        attack = manifest.get("attack") or {}
        self.attack_samples: int = int(attack.get("samples", 0))
        self.attack_rate: float = float(attack.get("sample_rate", 0.0))
        self._excite_names = list(EXCITE_OUTPUTS) + (list(MODULATION_OUTPUTS) if self.modulation else [])
        if self.attack_samples:
            self._excite_names.append(ATTACK_OUTPUT)
        self.output_gain: float = float(manifest.get("output_gain") or self._level_gain())

    def _level_gain(self) -> float:
        """Gain that levels instruments against each other in the synth.

        Models output whatever unit they were trained on (metres of string displacement, a
        normalised recording, ...). The synth scales each instrument so that its probe note (the
        middle of its range at full velocity, first 100 ms at 48 kHz, rendered by the contract's
        free recurrence) peaks at LEVEL. A manifest ``output_gain`` overrides this.
        """
        lo, hi = self.note_range
        controls = np.array([[0.5 * (lo + hi), 1.0, DEFAULT_CONTROLS["position"], DEFAULT_CONTROLS["position_y"]]],
                            dtype=np.float32)
        probe = render_modal(ModalVoices.from_graph_outputs(self.excite_raw(controls)), 48000.0, 4800, block_size=4800)
        peak = float(np.max(np.abs(probe)))
        return LEVEL / peak if np.isfinite(peak) and peak > 0 else 1.0

    @classmethod
    def load(cls, path: str | Path) -> Instrument:
        """Load and validate a bundle by path or shipped name (see ``engine.bundle.resolve_model``)."""
        return cls(load_bundle(path))

    @property
    def release_sigma(self) -> float:
        """Decay rate in 1/s that gives the manifest's release T60 (60 dB in ``release_time`` s)."""
        return math.log(1000.0) / max(self.release_time, 1e-3)

    def excite_raw(self, controls: np.ndarray) -> dict[str, np.ndarray]:
        """controls (V, 4) float32 -> the excite graph's float32 outputs by name (sigma, omega, z0, c, ...)."""
        values = self._excite.run(self._excite_names, {"controls": controls})
        return dict(zip(self._excite_names, values))

    def excite(self, controls: np.ndarray) -> ModalVoices:
        """controls (V, 4) -> the contract's ModalVoices (float64/complex128), for reference renders and tests."""
        return ModalVoices.from_graph_outputs(self.excite_raw(np.asarray(controls, dtype=np.float32)))

    def readout(self, z: np.ndarray) -> np.ndarray:
        """State at a block start, z (V, N, 2) float32 -> readout weights c (V, N, 2) float32."""
        return self._readout.run(["c"], {"z": z})[0]

    @property
    def pending_check_calls(self) -> int:
        """Graph calls ``excite_batch_invariant`` still has to make: one batch and one per row, 0 once it has run
        (so a load-time estimate can count them without running the graph)."""
        return 0 if "excite_batch_invariant" in self.__dict__ else 1 + INVARIANCE_ROWS

    @functools.cached_property
    def excite_batch_invariant(self) -> bool:
        """Does the excite graph give a row the same bits in a batch as alone? Checked once on 64 probe rows across
        the note range (onnxruntime's matrix kernels sum in another order for one row than for several: the
        modal FNO bundles differ in the last bit, enough to drift a long note's phase by -70 dB). When not, the
        synth excites one row per call, so a note sounds the same whatever else starts in its block.
        ``pending_check_calls`` graph calls, made on first use."""
        lo, hi = self.note_range
        rng = np.random.default_rng(0)
        n = INVARIANCE_ROWS
        rows = np.stack([rng.integers(lo, hi + 1, n), rng.integers(1, 128, n) / 127.0, rng.uniform(0.0, 1.0, n),
                         rng.uniform(0.0, 1.0, n)], axis=1).astype(np.float32)
        batch = self.excite_raw(rows)
        for i in range(len(rows)):
            alone = self.excite_raw(rows[i : i + 1])
            if not all(np.array_equal(batch[name][i], alone[name][0], equal_nan=True) for name in batch):
                return False
        return True

    @property
    def excite_session(self) -> ort.InferenceSession:
        return self._excite

    @property
    def readout_session(self) -> ort.InferenceSession | None:
        return self._readout

    def excite_buffers(self, rows: int) -> dict[str, np.ndarray]:
        """Zeroed float32 arrays for every output of the excite graph, ``rows`` rows each (name -> (rows, ...))."""
        return {o.name: prefaulted((rows, *self.manifest["graphs"]["excite"]["outputs"][o.name][1:]))
                for o in self._excite.get_outputs()}


class BoundGraph:
    """An ONNX graph whose inputs and outputs are bound once to preallocated arrays: running it allocates no
    arrays. ``run(rows)`` computes rows [first, first + rows) of every array (each (capacity, ...), C-contiguous).

    Batched (``per_row=False``): one binding per batch size in ``sizes``; a call runs the smallest size >= rows. One row at a time (``per_row=True``): one binding of a single row per row, a call per row -- for
    graphs whose results depend on the batch size (see ``Instrument.excite_batch_invariant``)."""

    def __init__(self, session: ort.InferenceSession, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                 sizes: list[int], first: int = 0, per_row: bool = False):
        self.session = session
        self.per_row = per_row
        self.sizes = [1] if per_row else sorted(sizes)
        self.arrays = {**inputs, **outputs}  # keep the bound memory alive
        if per_row:
            rows = min(len(array) for array in self.arrays.values()) - first
            self.row_bindings = [self._bind(inputs, outputs, first + row, 1) for row in range(rows)]
            self.bindings = {1: self.row_bindings[0]}
        else:
            self.bindings = {size: self._bind(inputs, outputs, first, size) for size in self.sizes}

    def _bind(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], first: int, size: int):
        binding = self.session.io_binding()
        for name, array in inputs.items():
            view = array[first : first + size]
            binding.bind_input(name, "cpu", 0, np.float32, list(view.shape), view.ctypes.data)
        for name, array in outputs.items():
            view = array[first : first + size]
            binding.bind_output(name, "cpu", 0, np.float32, list(view.shape), view.ctypes.data)
        return binding

    def run(self, rows: int) -> None:
        """Run the graph on (at least) the first ``rows`` rows; results land in the bound output arrays."""
        if self.per_row:
            for row in range(rows):
                self.session.run_with_iobinding(self.row_bindings[row])
            return
        for size in self.sizes:  # the smallest bound size >= rows (the largest if none)
            if size >= rows:
                break
        self.session.run_with_iobinding(self.bindings[size])
