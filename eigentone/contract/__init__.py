"""The one contract every eigentone model family satisfies: excite, advance, read out.

Deep Koopman models, modal FNOs and diagonal state-space models all end in the same
runtime shape; the engine plays all of them through this contract only::

    controls (note, velocity, position, position_y)        -- one row per voice
          |  excite graph (ONNX, once per note-on)
          v
    poles   lambda_n = -sigma_n + i*omega_n                 (voices, modes), 1/s and rad/s
    state   z0_n  (complex, stored as (..., 2) = re, im)    (voices, modes, 2)
    readout c_n   (complex, stored as (..., 2))             (voices, modes, 2)
          |  advance: z[k+1] = exp(lambda / fs) * z[k]      (engine, any sample rate fs)
          v
    output  y[k] = sum_n Re(c_n * z_n[k])                   (voices, samples)

Modes at or above Nyquist (omega >= pi fs) are silent at that rate, never aliased.

Optional parts, each declared in the bundle manifest:

* **Pole modulation** (nonlinear strings/plates: tension-modulated pitch glide).
  The excite graph also returns ``mod_alpha`` and ``mod_beta`` (voices, modes), both >= 0.
  Once per block the engine evaluates the voice energy ``E = sum_m beta_m |z_m|^2`` from the
  state at the block start and sets ``omega_n = sqrt(omega0_n^2 + alpha_n * E)``.
  For the Kirchhoff-Carrier string this is exact to first order in the tension change:
  ``alpha_n = k_n^2 / (rho A)``, ``beta_m = E A k_m^2 / 8`` (``training/physics/string_nonlinear.py``).
* **Block-rate readout network** (``readout`` graph). Input ``z`` (voices, modes, 2) at the
  start of a block, output ``c`` (voices, modes, 2): the readout weights for that block. This is
  how a Koopman decoder stays nonlinear in the state while the per-sample work is a modal bank.
* **Field graph** (``field`` graph, visualisation only). Input ``z`` (voices, modes, 2), output
  ``u`` (voices, points) or (voices, ny, nx): the displacement field on the model's grid.

Everything complex crosses ONNX as real pairs (torch cannot export complex tensors), last axis
``(re, im)``.

This package is the single source of the contract:

* this module: names, the control layout and units (no numerical code);
* ``eigentone.contract.reference``: the executable definition in numpy float64 (the engine's
  modal bank is tested against it);
* ``eigentone.contract.torch_twin``: the same maths in differentiable torch, which every model
  family trains through (imported only by training and export: nothing in ``engine/`` imports torch).

Control vector layout (float32, shape (voices, 4)):

=========== ======= ===========================================================
column      unit    meaning
=========== ======= ===========================================================
note        MIDI    fractional MIDI note number (69.0 = A4 = 440 Hz)
velocity    0..1    MIDI velocity / 127
position    0..1    excitation point along the string / plate x, fraction of length
position_y  0..1    excitation point along plate y (ignored by strings)
=========== ======= ===========================================================
"""

from __future__ import annotations

CONTROL_NAMES: tuple[str, ...] = ("note", "velocity", "position", "position_y")
"""Columns of the ``controls`` input of every excite graph, in order."""

CONTROL_UNITS: dict[str, str] = {"note": "MIDI", "velocity": "0..1", "position": "0..1", "position_y": "0..1"}

NOTE, VELOCITY, POSITION, POSITION_Y = range(4)
"""Column indices of the control vector."""

DEFAULT_CONTROLS: dict[str, float] = {"note": 60.0, "velocity": 0.8, "position": 0.2, "position_y": 0.37}

MIDI_VELOCITY_MAX = 127
"""velocity control = MIDI velocity / MIDI_VELOCITY_MAX."""

A4_NOTE, A4_HZ = 69.0, 440.0
"""Tuning reference of ``midi_to_hz``: MIDI note 69 is 440 Hz, equal temperament."""

EXCITE_OUTPUTS: tuple[str, ...] = ("sigma", "omega", "z0", "c")
"""Outputs every excite graph must have: (voices, modes) 1/s, (voices, modes) rad/s, (voices, modes, 2) x 2."""

MODULATION_OUTPUTS: tuple[str, ...] = ("mod_alpha", "mod_beta")
"""Outputs an excite graph has when the bundle declares pole modulation."""

GRAPH_INPUTS: dict[str, str] = {"excite": "controls", "readout": "z", "field": "z"}
"""Input name of each graph role."""

GRAPH_OUTPUTS: dict[str, tuple[str, ...]] = {"excite": EXCITE_OUTPUTS, "readout": ("c",), "field": ("u",)}
"""Output names of each graph role (excite adds MODULATION_OUTPUTS when modulated)."""

# Levelling: models output whatever unit they were trained on (metres of displacement, a normalised
# recording); the synth scales each instrument so its probe note peaks near -12 dBFS (engine/instrument.py,
# ``Instrument.output_gain``; a manifest "output_gain" overrides it).


def controls_row(note: float, velocity: float = DEFAULT_CONTROLS["velocity"], position: float = DEFAULT_CONTROLS["position"],
                 position_y: float = DEFAULT_CONTROLS["position_y"]) -> list[float]:
    """One control row in the contract's column order (plain floats; wrap in an array/tensor as needed)."""
    return [float(note), float(velocity), float(position), float(position_y)]
