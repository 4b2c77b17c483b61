"""Load and fully validate a `.etone` bundle (zip or folder) with onnxruntime; see docs/bundle-format.md.

Every problem becomes one ``EigentoneError`` line naming the file and what is wrong,
before the first note is played. Sessions are created single-threaded without
spinning (``intra_op_num_threads=1``, ``allow_spinning=0``) and warmed up by the
validation probe, so nothing slow happens later on the audio thread.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import assets
from eigentone.contract import CONTROL_NAMES, DEFAULT_CONTROLS, MODULATION_OUTPUTS
from eigentone.errors import EigentoneError

SUPPORTED_FORMAT_VERSIONS = (1,)
FAMILY_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""Family names a manifest may carry (built in: diag_ssm, koopman, modal_fno, modal; any other family too)."""
MODELS_DIR = assets.path("models")

REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "name": str,
    "family": str,
    "modes": int,
    "controls": list,
    "note_range": list,
    "trained_sample_rate": (int, float),
    "release_time": (int, float),
    "modulation": bool,
    "graphs": dict,
}


@dataclass
class Bundle:
    """A validated bundle: its manifest and one warmed-up onnxruntime session per graph role."""

    path: Path
    manifest: dict[str, Any]
    sessions: dict[str, ort.InferenceSession] = field(repr=False)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def modes(self) -> int:
        return int(self.manifest["modes"])


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundle path from a path, or from a name looked up in assets/models/ (``NAME`` or ``NAME.etone``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    for candidate in (MODELS_DIR / str(name_or_path), MODELS_DIR / f"{name_or_path}.etone"):
        if candidate.exists():
            return candidate
    shipped = sorted(p.stem for p in MODELS_DIR.glob("*.etone")) if MODELS_DIR.is_dir() else []
    hint = f"shipped: {', '.join(shipped)}" if shipped else "no bundles in assets/models/"
    raise EigentoneError(f"{name_or_path}: no such bundle file or shipped instrument ({hint})")


def session_options() -> ort.SessionOptions:
    """Options for block-rate tiny graphs: one thread, no spinning, sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _read_files(path: Path) -> dict[str, bytes]:
    """All top-level files of a bundle archive or folder, name -> bytes."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile) as exc:
        raise EigentoneError(f"{path}: not a readable bundle archive ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - zlib.error and friends from a corrupted member
        raise EigentoneError(f"{path}: corrupted bundle archive ({type(exc).__name__}: {exc})") from None


def _check_manifest(path: Path, manifest: Any) -> None:
    if not isinstance(manifest, dict):
        raise EigentoneError(f"{path}: manifest.json is not a JSON object")
    for key, kind in REQUIRED_KEYS.items():
        if key not in manifest:
            raise EigentoneError(f"{path}: manifest.json is missing the required key '{key}'")
        value = manifest[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise EigentoneError(f"{path}: manifest key '{key}' has the wrong type ({type(value).__name__})")
    if manifest["format"] != "eigentone-bundle":
        raise EigentoneError(f"{path}: manifest 'format' is {manifest['format']!r}, expected 'eigentone-bundle'")
    if manifest["format_version"] not in SUPPORTED_FORMAT_VERSIONS:
        raise EigentoneError(
            f"{path}: bundle format_version {manifest['format_version']} is not supported "
            f"(this engine reads {SUPPORTED_FORMAT_VERSIONS}); update eigentone or re-export the model"
        )
    if not FAMILY_NAME.fullmatch(str(manifest["family"])):  # any family: the engine needs only the contract
        raise EigentoneError(f"{path}: manifest 'family' must be a lower-case identifier, got {manifest['family']!r}")
    if manifest["modes"] < 1:
        raise EigentoneError(f"{path}: manifest 'modes' must be >= 1")
    if list(manifest["controls"]) != list(CONTROL_NAMES):
        raise EigentoneError(f"{path}: manifest 'controls' must be {list(CONTROL_NAMES)}")
    if "excite" not in manifest["graphs"]:
        raise EigentoneError(f"{path}: manifest 'graphs' has no 'excite' graph")


def _expected_signature(manifest: dict[str, Any], role: str) -> dict[str, dict[str, list]]:
    """The input/output shapes the format requires for a graph role (None where any shape goes)."""
    n = manifest["modes"]
    if role == "excite":
        outputs = {"sigma": ["voices", n], "omega": ["voices", n], "z0": ["voices", n, 2], "c": ["voices", n, 2]}
        if manifest["modulation"]:
            outputs.update({name: ["voices", n] for name in MODULATION_OUTPUTS})
        return {"inputs": {"controls": ["voices", len(CONTROL_NAMES)]}, "outputs": outputs}
    if role == "readout":
        return {"inputs": {"z": ["voices", n, 2]}, "outputs": {"c": ["voices", n, 2]}}
    return {"inputs": {"z": ["voices", n, 2]}, "outputs": {}}


def _same_shape(declared: list, actual: list) -> bool:
    """Shapes agree: equal rank, axis 0 dynamic, other axes equal where both are fixed numbers."""
    if len(declared) != len(actual):
        return False
    return all(not isinstance(d, int) or not isinstance(a, int) or d == a for d, a in zip(declared[1:], actual[1:]))


def _check_graph(path: Path, manifest: dict[str, Any], role: str, files: dict[str, bytes]) -> ort.InferenceSession:
    entry = manifest["graphs"][role]
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("sha256"), str):
        raise EigentoneError(f"{path}: graph '{role}' needs 'file' and 'sha256' strings in manifest.json")
    for kind in ("inputs", "outputs"):
        if not isinstance(entry.get(kind), dict):
            raise EigentoneError(f"{path}: graph '{role}' is missing its '{kind}' in manifest.json")
    name = entry["file"]
    if name not in files:
        raise EigentoneError(f"{path}: graph file '{name}' named in manifest.json is missing")
    data = files[name]
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise EigentoneError(f"{path}: sha256 mismatch for '{name}' (manifest {entry['sha256'][:12]}..., file {digest[:12]}...)")
    try:
        session = ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EigentoneError(f"{path}: graph '{name}' does not load in onnxruntime ({first})") from None
    expected = _expected_signature(manifest, role)
    for kind, tensors in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        actual = {t.name: t for t in tensors}
        declared = entry[kind]
        if set(actual) != set(declared):
            raise EigentoneError(
                f"{path}: graph '{name}' {kind} are {sorted(actual)}, manifest.json declares {sorted(declared)}"
            )
        for tensor_name, shape in expected[kind].items():
            if tensor_name not in declared:
                raise EigentoneError(f"{path}: graph '{name}' lacks the required {kind[:-1]} '{tensor_name}'")
            if not _same_shape(shape, list(declared[tensor_name])):
                raise EigentoneError(
                    f"{path}: graph '{name}' {kind[:-1]} '{tensor_name}' is declared {declared[tensor_name]}, "
                    f"the format requires {shape}"
                )
        for tensor_name, tensor in actual.items():
            if tensor.type != "tensor(float)":
                raise EigentoneError(f"{path}: graph '{name}' {kind[:-1]} '{tensor_name}' is {tensor.type}, not float32")
            if not _same_shape(list(declared[tensor_name]), list(tensor.shape)):
                raise EigentoneError(
                    f"{path}: graph '{name}' {kind[:-1]} '{tensor_name}' has shape {list(tensor.shape)}, "
                    f"manifest.json declares {declared[tensor_name]}"
                )
    return session


def _probe(path: Path, manifest: dict[str, Any], sessions: dict[str, ort.InferenceSession]) -> None:
    """Run each graph once on default controls; outputs must be finite and of the declared shapes."""
    controls = np.array([[DEFAULT_CONTROLS[name] for name in CONTROL_NAMES]] * 2, dtype=np.float32)
    n = manifest["modes"]
    state = None
    for role in ("excite", "readout", "field"):
        if role not in sessions:
            continue
        feed = {"controls": controls} if role == "excite" else {"z": state}
        try:
            values = sessions[role].run(None, feed)
        except Exception as exc:  # noqa: BLE001 - any failure of the probe call refuses the bundle
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EigentoneError(f"{path}: probe call of graph '{role}' failed ({first})") from None
        names = [o.name for o in sessions[role].get_outputs()]
        for tensor_name, value in zip(names, values):
            declared = manifest["graphs"][role]["outputs"][tensor_name]
            if value.ndim == 0 or value.shape[0] != 2 or not _same_shape(list(declared), list(value.shape)):
                raise EigentoneError(
                    f"{path}: probe of graph '{role}' returned '{tensor_name}' of shape {list(value.shape)}, "
                    f"declared {declared}"
                )
            if not np.all(np.isfinite(value)):
                raise EigentoneError(f"{path}: probe of graph '{role}' returned non-finite '{tensor_name}'")
        if role == "excite":
            out = dict(zip(names, values))
            state = np.asarray(out["z0"], dtype=np.float32)
            if state.shape != (2, n, 2):
                raise EigentoneError(f"{path}: probe of graph 'excite' returned z0 of shape {list(state.shape)}")
            if np.any(out["sigma"] < 0) or np.any(out["omega"] < 0):
                raise EigentoneError(f"{path}: probe of graph 'excite' returned negative sigma or omega")


def load_bundle(path: str | Path) -> Bundle:
    """Open, validate and warm up a bundle (``.etone`` zip or folder). Raises EigentoneError on any problem."""
    path = resolve_model(path)
    files = _read_files(path)
    if "manifest.json" not in files:
        raise EigentoneError(f"{path}: no manifest.json at the top level of the bundle")
    try:
        manifest = json.loads(files["manifest.json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EigentoneError(f"{path}: manifest.json is not valid JSON ({exc})") from None
    _check_manifest(path, manifest)
    sessions = {role: _check_graph(path, manifest, role, files) for role in manifest["graphs"]}
    _probe(path, manifest, sessions)
    return Bundle(path=path, manifest=manifest, sessions=sessions)
