"""Load and fully validate a `.etone` bundle (zip or folder) with onnxruntime; see docs/bundle-format.md.

Every problem becomes one ``EigentoneError`` line naming the file and what is wrong,
before the first note is played. Hostile bundles are bounded (eigentone/limits.py): only
manifest.json and the graphs it names are read, each within a size limit; declared modes and
the memory estimate are checked before anything is allocated; manifest numbers must be finite
and in range; every graph call while loading is stopped after ``graph-call-ms``. Sessions are created single-threaded without
spinning (``intra_op_num_threads=1``, ``allow_spinning=0``) and warmed up by the
validation probe, so nothing slow happens later on the audio thread.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import assets
from eigentone import limits
from eigentone.contract import CONTROL_NAMES, DEFAULT_CONTROLS, MODULATION_OUTPUTS
from eigentone.errors import EigentoneError, first_line, printable
from eigentone.files import register_input
from eigentone.limits import finite_number

SUPPORTED_FORMAT_VERSIONS = (1,)
ATTACK_OUTPUT = "attack"
"""Excite output of a bundle with an attack component: (voices, L) float32 table at the manifest's rate."""
MAX_ATTACK_SECONDS = 1.0
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
    call_seconds: float = 0.0
    """Duration of the slowest graph call of the validation probe (s)."""

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


MAX_MEMBERS = 1000
"""Entries a bundle archive may list (a real bundle has 2-5); checked before the central directory is read."""

GRAPH_ROLES = ("excite", "readout", "field")


def _check_zip_directory(path: Path) -> None:
    """Refuse an archive whose central directory announces more than MAX_MEMBERS entries or more than
    64 kB per entry, from its end record, before zipfile reads the directory into memory."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 65557))
            tail = handle.read()
    except OSError as exc:
        raise EigentoneError(f"{path}: cannot read the bundle ({exc.strerror})") from None
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return  # zipfile will refuse it with its own message
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory = int.from_bytes(tail[at + 12 : at + 16], "little")
    if entries > MAX_MEMBERS or directory > 65536 * MAX_MEMBERS:
        raise EigentoneError(f"{path}: the archive lists {entries} entries ({directory} bytes of directory); "
                             f"a bundle has at most {MAX_MEMBERS}")


class _Members:
    """Read access to the top-level files of a bundle (zip or folder), one named member at a time.

    Only members the manifest names are ever read, each with a size cap checked before and while
    reading (a member may not be bigger than the archive claims), with its sha256 computed on the way.
    """

    def __init__(self, path: Path):
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        if not path.is_dir():
            _check_zip_directory(path)
            try:
                self.archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile) as exc:
                raise EigentoneError(f"{path}: not a readable bundle archive ({first_line(exc)})") from None
            for name in self.archive.namelist():  # never read, but an archive that holds them is not an honest bundle
                if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                    self.archive.close()
                    raise EigentoneError(f"{path}: archive entry {printable(repr(name), 80)} points outside the bundle")

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()

    def size(self, name: str) -> int | None:
        """Uncompressed size of a top-level member as declared by the archive (None if absent)."""
        if self.archive is not None:
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                return None
            return None if info.is_dir() else info.file_size
        member = self.path / name
        return member.stat().st_size if member.is_file() else None

    def read(self, name: str, cap: int, what: str) -> tuple[bytes, str]:
        """(bytes, sha256 hex) of member ``name``, at most ``cap`` bytes; ``what`` names the limit in errors."""
        size = self.size(name)
        if size is None:
            raise EigentoneError(f"{self.path}: '{name}' named in manifest.json is missing from the bundle")
        if size > cap:
            raise EigentoneError(f"{self.path}: '{name}' is {size / 1e6:.1f} MB, above the limit of {cap / 1e6:.1f} MB "
                                 f"({what})")
        digest = hashlib.sha256()
        data = bytearray()
        try:
            with self._open(name) as handle:
                while chunk := handle.read(1 << 20):
                    data += chunk
                    digest.update(chunk)
                    if len(data) > cap:
                        raise EigentoneError(f"{self.path}: '{name}' holds more bytes than its size in the archive")
        except EigentoneError:
            raise
        except OSError as exc:
            raise EigentoneError(f"{self.path}: cannot read '{name}' ({exc.strerror or first_line(exc)})") from None
        except Exception as exc:  # noqa: BLE001 - zipfile/zlib report corrupted data with many types
            raise EigentoneError(f"{self.path}: corrupted bundle archive ('{name}': {first_line(exc)})") from None
        return bytes(data), digest.hexdigest()

    def _open(self, name: str):
        if self.archive is not None:
            return self.archive.open(name)
        member = self.path / name
        if member.resolve().parent != self.path.resolve():
            raise EigentoneError(f"{self.path}: '{name}' links outside the bundle folder")
        register_input(member)
        return open(member, "rb")


def _plain_name(path: Path, name: object, what: str) -> str:
    """A member name must be a plain file name at the top level: no folders, no '..', no control characters."""
    if (not isinstance(name, str) or not name or len(name) > 255 or "/" in name or "\\" in name or name in (".", "..")
            or any(ord(ch) < 32 for ch in name)):
        raise EigentoneError(f"{path}: {what} {printable(repr(name), 80)} is not a plain file name in the bundle")
    return name


def _json_constant(token: str) -> None:
    raise ValueError(f"{token} is not a number JSON allows")


def _read_manifest(path: Path, members: _Members) -> dict[str, Any]:
    data, _ = members.read("manifest.json", int(limits.value("manifest-kb") * 1024),
                           f"manifest size; {limits.raise_hint('manifest-kb')}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_json_constant)
    except RecursionError:
        raise EigentoneError(f"{path}: manifest.json is nested too deeply to be a bundle manifest") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise EigentoneError(f"{path}: manifest.json is not valid JSON ({first_line(exc)})") from None


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
        raise EigentoneError(f"{path}: manifest 'format' is {printable(repr(manifest['format']), 60)}, "
                             "expected 'eigentone-bundle'")
    if manifest["format_version"] not in SUPPORTED_FORMAT_VERSIONS:
        raise EigentoneError(
            f"{path}: bundle format_version {manifest['format_version']} is not supported "
            f"(this engine reads {SUPPORTED_FORMAT_VERSIONS}); update eigentone or re-export the model"
        )
    if not FAMILY_NAME.fullmatch(str(manifest["family"])):  # any family: the engine needs only the contract
        raise EigentoneError(f"{path}: manifest 'family' must be a lower-case identifier, "
                             f"got {printable(repr(manifest['family']), 60)}")
    if not 1 <= len(manifest["name"]) <= 200:
        raise EigentoneError(f"{path}: manifest 'name' must have 1 to 200 characters")
    if not isinstance(manifest.get("description", ""), str):
        raise EigentoneError(f"{path}: manifest 'description' must be a string")
    if manifest["modes"] < 1:
        raise EigentoneError(f"{path}: manifest 'modes' must be >= 1")
    limits.check("modes", manifest["modes"], f"{path}: manifest 'modes'")
    if list(manifest["controls"]) != list(CONTROL_NAMES):
        raise EigentoneError(f"{path}: manifest 'controls' must be {list(CONTROL_NAMES)}")
    _check_numbers(path, manifest)
    graphs = manifest["graphs"]
    if "excite" not in graphs:
        raise EigentoneError(f"{path}: manifest 'graphs' has no 'excite' graph")
    for role, entry in graphs.items():
        if role not in GRAPH_ROLES:
            raise EigentoneError(f"{path}: unknown graph role {printable(repr(role), 60)} in manifest.json "
                                 f"(expected {', '.join(GRAPH_ROLES)})")
        _check_graph_entry(path, role, entry)
    if "attack" in manifest:
        _check_attack(path, manifest["attack"])


def _check_numbers(path: Path, manifest: dict[str, Any]) -> None:
    """note_range, trained_sample_rate, release_time and the optional output_gain: finite and in range."""
    where = f"{path}: manifest"
    note_range = manifest["note_range"]
    if len(note_range) != 2:
        raise EigentoneError(f"{where} 'note_range' must be [lowest, highest] MIDI notes")
    lo, hi = (finite_number(f"{where} 'note_range'", n, 0, 127, integer=True) for n in note_range)
    if lo > hi:
        raise EigentoneError(f"{where} 'note_range' [{lo:g}, {hi:g}] is reversed (lowest note first)")
    finite_number(f"{where} 'trained_sample_rate'", manifest["trained_sample_rate"], 1.0, 10e6)
    finite_number(f"{where} 'release_time' (seconds)", manifest["release_time"], 1e-3, 600.0)
    if manifest.get("output_gain") is not None:
        gain = finite_number(f"{where} 'output_gain'", manifest["output_gain"], 0.0, 1e9)
        if gain <= 0:
            raise EigentoneError(f"{where} 'output_gain' must be > 0 (leave it out to let the engine level the instrument)")


def _check_graph_entry(path: Path, role: str, entry: Any) -> None:
    """A graph entry: file (plain name), sha256 (64 hex digits), inputs/outputs mapping names to shapes."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("sha256"), str):
        raise EigentoneError(f"{path}: graph '{role}' needs 'file' and 'sha256' strings in manifest.json")
    _plain_name(path, entry["file"], f"graph '{role}' file")
    if entry["file"] == "manifest.json":
        raise EigentoneError(f"{path}: graph '{role}' cannot be manifest.json")
    for kind in ("inputs", "outputs"):
        tensors = entry.get(kind)
        if not isinstance(tensors, dict):
            raise EigentoneError(f"{path}: graph '{role}' is missing its '{kind}' in manifest.json")
        for name, shape in tensors.items():
            if (not isinstance(shape, list) or not 1 <= len(shape) <= 8
                    or not all(isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 1)
                               for d in shape)):
                raise EigentoneError(f"{path}: graph '{role}' {kind[:-1]} {printable(repr(name), 60)} has shape "
                                     f"{printable(repr(shape), 60)}; a shape is a list of 1-8 sizes or axis names")


def _check_attack(path: Path, attack: Any) -> None:
    """The optional attack component: {"samples": L >= 1, "sample_rate": fs_a > 0}, at most 1 s long."""
    if not isinstance(attack, dict) or set(attack) != {"samples", "sample_rate"}:
        raise EigentoneError(f"{path}: manifest 'attack' must be {{\"samples\": L, \"sample_rate\": Hz}}")
    samples, rate = attack["samples"], attack["sample_rate"]
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise EigentoneError(f"{path}: manifest 'attack' 'samples' must be an integer >= 1")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate < float("inf"):
        raise EigentoneError(f"{path}: manifest 'attack' 'sample_rate' must be a number > 0 (Hz)")
    if samples / rate > MAX_ATTACK_SECONDS:
        raise EigentoneError(f"{path}: manifest 'attack' lasts {samples / rate:.3g} s, at most {MAX_ATTACK_SECONDS} s")


def _expected_signature(manifest: dict[str, Any], role: str) -> dict[str, dict[str, list]]:
    """The input/output shapes the format requires for a graph role (None where any shape goes)."""
    n = manifest["modes"]
    if role == "excite":
        outputs = {"sigma": ["voices", n], "omega": ["voices", n], "z0": ["voices", n, 2], "c": ["voices", n, 2]}
        if manifest["modulation"]:
            outputs.update({name: ["voices", n] for name in MODULATION_OUTPUTS})
        if "attack" in manifest:
            outputs[ATTACK_OUTPUT] = ["voices", manifest["attack"]["samples"]]
        return {"inputs": {"controls": ["voices", len(CONTROL_NAMES)]}, "outputs": outputs}
    if role == "readout":
        return {"inputs": {"z": ["voices", n, 2]}, "outputs": {"c": ["voices", n, 2]}}
    return {"inputs": {"z": ["voices", n, 2]}, "outputs": {}}


def _same_shape(declared: list, actual: list) -> bool:
    """Shapes agree: equal rank, axis 0 dynamic, other axes equal where both are fixed numbers."""
    if len(declared) != len(actual):
        return False
    return all(not isinstance(d, int) or not isinstance(a, int) or d == a for d, a in zip(declared[1:], actual[1:]))


def _check_graph(path: Path, manifest: dict[str, Any], role: str, members: _Members) -> ort.InferenceSession:
    entry = manifest["graphs"][role]
    name = entry["file"]
    cap = int(limits.value("bundle-member-mb") * 1e6)
    data, digest = members.read(name, cap, f"one graph file; {limits.raise_hint('bundle-member-mb')}")
    if digest != entry["sha256"].lower():
        raise EigentoneError(f"{path}: sha256 mismatch for '{name}' (manifest {printable(entry['sha256'][:12])}..., "
                             f"file {digest[:12]}...); the bundle was changed after export")
    try:
        session = ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many unrelated types
        raise EigentoneError(f"{path}: graph '{name}' does not load in onnxruntime ({first_line(exc)})") from None
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


def timed_run(session: ort.InferenceSession, feed: dict[str, np.ndarray], what: str) -> tuple[list[np.ndarray], float]:
    """One graph call while a bundle loads, stopped after the ``graph-call-ms`` limit: (outputs, seconds).

    onnxruntime checks ``RunOptions.terminate`` between nodes, so a slow graph is stopped within one
    node of the limit; ``what`` names the bundle and graph in the error.
    """
    budget = limits.value("graph-call-ms") / 1000
    options = ort.RunOptions()
    timer = threading.Timer(budget, lambda: setattr(options, "terminate", True))
    started = time.perf_counter()
    timer.start()
    try:
        values = session.run(None, feed, options)
    except Exception as exc:  # noqa: BLE001 - any failure of a load-time call refuses the bundle
        if options.terminate:
            values = None
        else:
            raise EigentoneError(f"{what} failed ({first_line(exc)})") from None
    finally:
        timer.cancel()
    seconds = time.perf_counter() - started
    if values is None or seconds > budget:
        raise EigentoneError(f"{what} took more than {budget * 1000:.0f} ms for one call while loading; a graph this "
                             f"slow cannot play notes in time ({limits.raise_hint('graph-call-ms', 10 * budget * 1000)})")
    return values, seconds


def _probe(path: Path, manifest: dict[str, Any], sessions: dict[str, ort.InferenceSession]) -> float:
    """Run each graph once on default controls; outputs must be finite and of the declared shapes.

    Returns the slowest call's duration in seconds (the load-time estimate of ``load_seconds_estimate``).
    """
    controls = np.array([[DEFAULT_CONTROLS[name] for name in CONTROL_NAMES]] * 2, dtype=np.float32)
    n = manifest["modes"]
    state = None
    slowest = 0.0
    for role in GRAPH_ROLES:
        if role not in sessions:
            continue
        feed = {"controls": controls} if role == "excite" else {"z": state}
        values, seconds = timed_run(sessions[role], feed, f"{path}: probe call of graph '{role}'")
        slowest = max(slowest, seconds)
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
    return slowest


def load_seconds_estimate(bundle: Bundle, graph_calls: int) -> float:
    """Seconds that ``graph_calls`` calls of this bundle's graphs take, from the probe's slowest call."""
    return bundle.call_seconds * graph_calls


def check_load_time(bundle: Bundle, graph_calls: int) -> None:
    """Refuse before warming up when ``graph_calls`` calls would take longer than the ``load-seconds`` limit."""
    estimate = load_seconds_estimate(bundle, graph_calls)
    limits.check("load-seconds", estimate,
                 f"{bundle.path}: loading would take about this long ({graph_calls} graph calls of "
                 f"{bundle.call_seconds * 1000:.0f} ms)")


def load_bundle(path: str | Path) -> Bundle:
    """Open, validate and warm up a bundle (``.etone`` zip or folder). Raises EigentoneError on any problem.

    Reads only manifest.json and the graph files it names, each within its size limit, after a memory
    estimate (eigentone/limits.py); every graph call while loading is time-limited.
    """
    path = resolve_model(path)
    register_input(path)
    members = _Members(path)
    try:
        if members.size("manifest.json") is None:
            raise EigentoneError(f"{path}: no manifest.json at the top level of the bundle")
        manifest = _read_manifest(path, members)
        _check_manifest(path, manifest)
        graph_bytes = sum(members.size(entry["file"]) or 0 for entry in manifest["graphs"].values())
        limits.check_memory(str(path), limits.bundle_load_bytes(manifest["modes"], graph_bytes))
        sessions = {role: _check_graph(path, manifest, role, members) for role in manifest["graphs"]}
    finally:
        members.close()
    call_seconds = _probe(path, manifest, sessions)
    return Bundle(path=path, manifest=manifest, sessions=sessions, call_seconds=call_seconds)
