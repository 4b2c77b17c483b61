"""Write `.etone` bundles: manifest.json + ONNX graphs in one zip archive (docs/bundle-format.md).

This module is torch-free: it takes serialised ONNX graphs (bytes) from whichever
exporter made them (torch for the learned families, ``onnx.helper`` for analytic
modal instruments) and packs them with a manifest and sha256s.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import onnx

from eigentone.contract import CONTROL_NAMES
from eigentone.files import atomic_path

FORMAT = "eigentone-bundle"
FORMAT_VERSION = 1


def graph_signature(model_bytes: bytes) -> dict[str, dict[str, list[int | str]]]:
    """Input and output names with shapes (dynamic axes as their names) of an ONNX graph."""
    model = onnx.load_from_string(model_bytes)

    def shape_of(value_info) -> list[int | str]:
        dims = value_info.type.tensor_type.shape.dim
        return [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?") for d in dims]

    initializers = {init.name for init in model.graph.initializer}
    return {
        "inputs": {v.name: shape_of(v) for v in model.graph.input if v.name not in initializers},
        "outputs": {v.name: shape_of(v) for v in model.graph.output},
    }


def _normalise_voice_axis(signature: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    """Name the first (batch) axis 'voices' whatever name the exporter gave it."""
    return {
        kind: {name: ["voices", *shape[1:]] for name, shape in tensors.items()} for kind, tensors in signature.items()
    }


def write_bundle(
    out_path: str | Path,
    *,
    name: str,
    family: str,
    modes: int,
    graphs: dict[str, bytes],
    note_range: tuple[int, int],
    trained_sample_rate: float,
    modulation: bool = False,
    release_time: float = 0.3,
    description: str = "",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pack graphs into ``out_path`` (a .etone zip) atomically; return the manifest written.

    ``graphs`` maps graph role ("excite", optional "readout", "field") to serialised ONNX.
    """
    if "excite" not in graphs:
        raise ValueError("a bundle needs an 'excite' graph")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "family": family,
        "description": description,
        "modes": int(modes),
        "controls": list(CONTROL_NAMES),
        "note_range": [int(note_range[0]), int(note_range[1])],
        "trained_sample_rate": float(trained_sample_rate),
        "release_time": float(release_time),
        "modulation": bool(modulation),
        "graphs": {},
        "training": _json_numbers({"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **(training or {})}),
        "metrics": _json_numbers(metrics or {}),
        "parity": parity or {},
    }
    if extra:
        manifest.update(extra)
    for role, model_bytes in graphs.items():
        manifest["graphs"][role] = {
            "file": f"{role}.onnx",
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            **_normalise_voice_axis(graph_signature(model_bytes)),
        }
    with atomic_path(out_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=False))
        for role, model_bytes in graphs.items():
            archive.writestr(f"{role}.onnx", model_bytes)
    return manifest


def _json_numbers(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON null).

    A metric that cannot be measured (an unpitched cymbal has no fundamental, so ``f0_cents`` is NaN) is
    written as null: JSON has no NaN, and the loader refuses a manifest that contains one.
    """
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
