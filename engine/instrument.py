"""One playable instrument: the validated bundle's onnxruntime sessions behind the contract's calls.

``excite`` runs once per block for all voices started in that block (one batched call);
``readout`` (optional) runs once per block for all sounding voices. Calls go through
``session.run(names, feed)`` without a ``RunOptions`` object (a bare one costs ~40 us
per call in onnxruntime 1.32, see RECIPES).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from eigentone.contract import DEFAULT_CONTROLS, EXCITE_OUTPUTS, MODULATION_OUTPUTS
from eigentone.contract.reference import ModalVoices, render_modal
from engine.bundle import ATTACK_OUTPUT, Bundle, load_bundle

LEVEL = 0.25
"""Peak of an instrument's probe note after levelling (-12 dBFS)."""


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
