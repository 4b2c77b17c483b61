"""Native core vs the Python engine: the figures tests assert and `eigentone bench engine --native` prints.

* ``graph_parity(bundle)``: every graph of a bundle on random controls/states through the core's evaluator
  and through onnxruntime (the engine's own session options); max relative error and bit-exact fraction.
* ``render_native(schedule, channel_map, ...)``: a MIDI schedule through one native Synth per instrument,
  each fed the events of its own channels (a DAW runs one plugin instance per instrument track), summed and
  limited like engine/synth.py sums its parts; the core's one block of latency is removed.
* ``demo_parity(sample_rate)``: the demo song (assets/demo/demo.mid with its channel arrangement) rendered
  that way against ``engine.render.render_midi`` without effects; error energy relative to the signal in dB.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plugins.native.binding import NativeGraph, NativeInstrument, NativeSynth

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo" / "demo.mid"


@dataclass
class GraphParity:
    """One graph of one bundle: worst relative error over its outputs (max|native - ort| / max|ort| per
    output) and the fraction of output elements that are bit-identical."""

    bundle: str
    role: str
    max_rel_error: float
    bit_exact: float
    nodes: int


def graph_inputs(manifest: dict, role: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Random valid inputs: controls over the note range (velocity, positions 0.05..0.95), or a modal state
    like an excited voice's (normal, scale 0.01)."""
    if role == "excite":
        lo, hi = manifest["note_range"]
        u = rng.uniform(size=(batch, 4))
        return np.stack([lo + (hi - lo) * u[:, 0], 0.05 + 0.95 * u[:, 1], 0.05 + 0.9 * u[:, 2],
                         0.05 + 0.9 * u[:, 3]], axis=1).astype(np.float32)
    return (0.01 * rng.standard_normal((batch, manifest["modes"], 2))).astype(np.float32)


def graph_parity(bundle: str | Path, batches: tuple[int, ...] = (1, 3, 16), seed: int = 0) -> list[GraphParity]:
    """Evaluator vs onnxruntime for every graph of a .etone bundle."""
    import onnx
    import onnxruntime as ort

    from engine.bundle import session_options

    rng = np.random.default_rng(seed)
    results = []
    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        for role, entry in manifest["graphs"].items():
            data = archive.read(entry["file"])
            session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
            native = NativeGraph(data, max(batches))
            worst, same, total = 0.0, 0, 0
            for batch in batches:
                x = graph_inputs(manifest, role, batch, rng)
                names = [o.name for o in session.get_outputs()]
                reference = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
                got = native.run(x)
                for name, ref in reference.items():
                    out = got[name]
                    if out.shape != ref.shape:
                        raise AssertionError(f"{bundle} {role} {name}: shape {out.shape} != {ref.shape}")
                    worst = max(worst, float(np.max(np.abs(out - ref))) / max(float(np.max(np.abs(ref))), 1e-30))
                    same += int(np.sum(out == ref))
                    total += ref.size
            nodes = len(onnx.load_from_string(data).graph.node)
            results.append(GraphParity(Path(bundle).stem, role, worst, same / max(total, 1), nodes))
    return results


def error_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(sum (test - reference)^2 / sum reference^2): how far below the signal the error is (negative)."""
    reference = np.asarray(reference, np.float64)
    error = np.asarray(test, np.float64) - reference
    signal = float(np.sum(reference**2))
    return 10 * math.log10(max(float(np.sum(error**2)), 1e-300) / max(signal, 1e-300))


def render_native(schedule, channel_map: dict[int, str | Path], n_frames: int, block: int = 64,
                  host_block: int | None = None, instruments: dict[str, NativeInstrument] | None = None) -> np.ndarray:
    """(n_frames,) float32: the schedule through one native Synth per distinct bundle of ``channel_map``
    (channel 0-15 -> bundle path), summed, then the engine's peak limiter; latency removed.
    ``host_block`` cuts the stream into host buffers of that size (default: ``block``)."""
    from engine.modal_bank import limit

    host_block = host_block or block
    instruments = instruments if instruments is not None else {}
    parts: dict[str, list[int]] = {}
    for channel, path in sorted(channel_map.items()):
        parts.setdefault(str(path), []).append(channel)
    mix = np.zeros(n_frames, np.float32)
    for path, channels in parts.items():
        instrument = instruments.get(path) or NativeInstrument(path)
        instruments[path] = instrument
        synth = NativeSynth(instrument, schedule.sample_rate, 64, block, limiter=False)
        mine = np.isin(schedule.messages[:, 0] & 0x0F, channels)
        out = synth.render(schedule.frames[mine], schedule.messages[mine], n_frames + synth.latency, host_block)
        mix += out[synth.latency :]
    gain = np.ones(1)
    limit(mix, n_frames, gain, 0.977, 1.0 - math.exp(-1.0 / (0.05 * schedule.sample_rate)))
    return mix


def demo_channel_map() -> dict[int, str]:
    """Channel -> bundle path of the demo, as `eigentone render assets/demo/demo.mid` resolves it."""
    from engine.bundle import resolve_model
    from engine.render_cli import arrangement_for

    arrangement = arrangement_for(DEMO)
    default = str(resolve_model(arrangement[min(arrangement)]))
    mapping = {channel: default for channel in range(16)}
    mapping.update({channel: str(resolve_model(name)) for channel, name in arrangement.items()})
    return mapping


def demo_parity(sample_rate: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(error dB, engine render, native render) of the demo song without effects at ``sample_rate``."""
    from engine.instrument import Instrument
    from engine.midi_file import read_midi
    from engine.render import render_midi

    schedule = read_midi(DEMO, sample_rate)
    channel_map = demo_channel_map()
    loaded: dict[str, Instrument] = {}
    engine_map = {ch: loaded.setdefault(path, Instrument.load(path)) for ch, path in channel_map.items()}
    reference = render_midi(schedule, engine_map, sample_rate=sample_rate).audio[0]
    native = render_native(schedule, channel_map, reference.shape[0])
    return error_db(reference, native), reference, native
