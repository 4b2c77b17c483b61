"""The effects chain after the synth: a pedalboard board, from JSON or Python, processed in streaming mode.

A chain file is a JSON list, one entry per effect, in signal order::

    [{"effect": "Reverb", "room_size": 0.3, "wet_level": 0.12},
     {"effect": "Limiter", "threshold_db": -1.0},
     {"vst3": "/usr/lib/vst3/Some.vst3", "params": {"mix": 0.5}}]

``effect`` names a pedalboard effect class (Reverb, Chorus, Delay, Compressor, Gain, Limiter,
HighpassFilter, LowpassFilter, ...), the other keys are its constructor arguments; ``vst3``
hosts a VST3 effect via ``pedalboard.load_plugin`` with ``params`` set as attributes.
Blocks are processed with ``reset=False`` so reverb tails and delay lines continue across
blocks; processing is deterministic (same input blocks -> same output).

Validation (one EigentoneError line naming the file and the entry): at most the ``effects``
limit of entries; parameters are JSON scalars, numbers finite, every ``*_db`` parameter within
+-``effect-db`` (eigentone/limits.py); effects that return blocks of another length in streaming
use (MP3Compressor, Resample, PitchShift, ...) are refused; ``check_rate`` refuses filter
frequencies (``*_hz``) outside (0, Nyquist) once the sample rate is known. Whatever an effect
still produces (a feedback blow-up, NaN) is caught by the output guard after the chain
(engine/signal_chain.py).

>>> chain = EffectsChain.from_list([{"effect": "Reverb", "room_size": 0.3}])
>>> stereo_block = chain.process(block, 48000)            # (channels, samples) float32
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard

import assets
from eigentone import limits
from eigentone.errors import EigentoneError, first_line, printable
from eigentone.files import register_input

NOT_EFFECTS = {"Plugin", "Pedalboard", "Chain", "Mix", "PluginContainer", "ExternalPlugin", "VST3Plugin", "IIRFilter"}
NOT_STREAMING = {"BrickwallLimiter", "GSMFullRateCompressor", "MP3Compressor", "PitchShift", "Resample"}
"""pedalboard effects that buffer internally and return blocks of another length (often 0 samples) in
streaming use: they cannot run block by block behind a synth."""
EFFECTS = sorted(
    name
    for name in dir(pedalboard)
    if isinstance(getattr(pedalboard, name), type)
    and issubclass(getattr(pedalboard, name), pedalboard.Plugin)
    and name not in NOT_EFFECTS | NOT_STREAMING
    and not name.startswith("_")
)
"""Effect names a chain entry may use."""

DEFAULT_CHAIN = assets.path("effects/default.json")


def _check_params(params: dict[str, Any], where: str) -> None:
    """Parameters are JSON scalars; numbers finite; ``*_db`` within the effect-db limit; ``*_hz`` > 0."""
    for key, value in params.items():
        if not isinstance(value, (str, int, float, bool)):
            raise EigentoneError(f"{where}: parameter '{key}' must be a number, string or boolean, "
                                 f"not {type(value).__name__}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise EigentoneError(f"{where}: parameter '{key}' is {value!r}; give a finite number")
        if key.endswith("_db"):
            limits.check("effect-db", abs(value), f"{where}: |{key}|")
        if key.endswith("_hz") and value <= 0:
            raise EigentoneError(f"{where}: parameter '{key}' is {value!r} Hz; a frequency must be > 0")


def _constructor_hint(exc: BaseException) -> str:
    """pybind11's "incompatible constructor arguments" listing reduced to the expected signature."""
    match = re.search(r"^\s*1\. (?:\w+\.)*(\w+\(.*\))\s*$", str(exc), re.MULTILINE)
    return f"expected {match.group(1)}" if match else first_line(exc)


def _build_entry(entry: Any, where: str, folder: Path) -> pedalboard.Plugin:
    if not isinstance(entry, dict):
        raise EigentoneError(f"{where}: expected an object like {{\"effect\": \"Reverb\", ...}}, "
                             f"got {printable(repr(entry), 60)}")
    if "vst3" in entry:
        extra = set(entry) - {"vst3", "params"}
        if extra:
            raise EigentoneError(f"{where}: unknown keys {sorted(extra)} beside 'vst3' (use 'params')")
        path = Path(str(entry["vst3"]))
        if not path.exists():
            raise EigentoneError(f"{where}: VST3 plugin {path} does not exist")
        try:
            plugin = pedalboard.load_plugin(str(path))
        except Exception as exc:  # noqa: BLE001 - JUCE plugin loading errors vary
            reason = first_line(exc).rstrip(". ")
            detail = str(exc).splitlines()[-1].strip() if "\n" in str(exc) else ""
            raise EigentoneError(f"{where}: could not load VST3 plugin {path} ({detail or reason})") from None
        if getattr(plugin, "is_instrument", False):
            raise EigentoneError(f"{where}: {path} is an instrument, not an effect")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise EigentoneError(f"{where}: 'params' must be an object of parameter values")
        _check_params(params, where)
        for key, value in params.items():
            if key not in plugin.parameters:
                raise EigentoneError(
                    f"{where}: {path.name} has no parameter '{key}' (it has: {', '.join(sorted(plugin.parameters))})"
                )
            try:
                setattr(plugin, key, value)
            except Exception as exc:  # noqa: BLE001 - plugin parameter setters raise various types
                raise EigentoneError(f"{where}: bad value {value!r} for '{key}' ({first_line(exc)})") from None
        return plugin
    name = entry.get("effect")
    if name in NOT_STREAMING:
        raise EigentoneError(f"{where}: {name} returns blocks of another length when streamed (it buffers "
                             "internally), so it cannot run behind the synth; leave it out")
    if name not in EFFECTS:
        raise EigentoneError(f"{where}: unknown effect {printable(repr(name), 60)} (known: {', '.join(EFFECTS)})")
    params = {k: v for k, v in entry.items() if k != "effect"}
    _check_params(params, where)
    if name == "Convolution" and isinstance(params.get("impulse_response_filename"), str):
        params["impulse_response_filename"] = _impulse_file(params["impulse_response_filename"], where, folder)
    try:
        return getattr(pedalboard, name)(**params)
    except TypeError as exc:
        raise EigentoneError(f"{where}: bad parameters for {name} ({_constructor_hint(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - pedalboard/JUCE raise ValueError, RuntimeError, ...
        raise EigentoneError(f"{where}: bad parameters for {name} ({first_line(exc)})") from None


def _impulse_file(name: str, where: str, folder: Path) -> str:
    """A Convolution impulse response (a relative name is looked up beside the chain file, then in the working
    folder): it must exist, be audio, and fit the memory limit."""
    import soundfile

    path = Path(name)
    if not path.is_absolute() and (folder / name).is_file():
        path = folder / name
    if not path.is_file():
        raise EigentoneError(f"{where}: impulse response file {path} does not exist")
    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile errors
        raise EigentoneError(f"{where}: impulse response {path} is not a readable audio file ({first_line(exc)})") from None
    limits.check_memory(f"{where}: impulse response {path}", 8 * info.frames * max(info.channels, 2))
    register_input(path)
    return str(path)


def _json_constant(token: str) -> None:
    raise ValueError(f"{token} is not a number JSON allows")


class EffectsChain:
    """A pedalboard ``Pedalboard`` plus the source it came from (for error messages)."""

    def __init__(self, board: pedalboard.Pedalboard, source: str = "<python>"):
        self.board = board
        self.source = source

    @classmethod
    def from_list(cls, entries: list[Any], source: str = "<python>") -> EffectsChain:
        """Build from a list of entries (see module doc); errors name ``source`` and the entry number."""
        if not isinstance(entries, list):
            raise EigentoneError(f"{source}: an effects chain is a JSON list of effects, got {type(entries).__name__}")
        limits.check("effects", len(entries), f"{source}: chain length")
        folder = Path(source).parent if source != "<python>" else Path.cwd()
        plugins = [_build_entry(entry, f"{source}: entry {i + 1}", folder) for i, entry in enumerate(entries)]
        return cls(pedalboard.Pedalboard(plugins), source)

    @classmethod
    def from_json(cls, path: str | Path) -> EffectsChain:
        """Build from a chain file (JSON list); EigentoneError names the file and the bad entry."""
        path = Path(path)
        if not path.is_file():
            raise EigentoneError(f"{path}: no such effects chain file")
        if path.stat().st_size > 1 << 20:
            raise EigentoneError(f"{path}: {path.stat().st_size / 1e6:.1f} MB is too big for an effects chain file")
        register_input(path)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"), parse_constant=_json_constant)
        except RecursionError:
            raise EigentoneError(f"{path}: the effects chain is nested too deeply") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise EigentoneError(f"{path}: not a valid JSON effects chain ({first_line(exc)})") from None
        return cls.from_list(entries, str(path))

    def check_rate(self, sample_rate: float) -> None:
        """Refuse filter frequencies (any ``*_hz`` parameter) at or above Nyquist for ``sample_rate`` Hz."""
        for i, plugin in enumerate(self.board):
            for key in dir(plugin):
                if not key.endswith("_hz") or key.startswith("_"):
                    continue
                value = getattr(plugin, key, None)
                if isinstance(value, (int, float)) and not 0 < value < sample_rate / 2:
                    raise EigentoneError(f"{self.source}: entry {i + 1}: {type(plugin).__name__} {key} {value:g} Hz is "
                                         f"outside (0, {sample_rate / 2:g}) Hz, the range at {sample_rate:g} Hz")

    def process(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        """One block (channels, samples) float32 through the chain, continuing from the previous block."""
        return self.board(audio, sample_rate, reset=False)

    def reset(self) -> None:
        """Clear tails and delay lines (start of a new, independent rendering)."""
        self.board.reset()

    def __len__(self) -> int:
        return len(self.board)
