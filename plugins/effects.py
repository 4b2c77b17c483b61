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

>>> chain = EffectsChain.from_list([{"effect": "Reverb", "room_size": 0.3}])
>>> stereo_block = chain.process(block, 48000)            # (channels, samples) float32
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard

import assets
from eigentone.errors import EigentoneError

NOT_EFFECTS = {"Plugin", "Pedalboard", "Chain", "Mix", "PluginContainer", "ExternalPlugin", "VST3Plugin"}
EFFECTS = sorted(
    name
    for name in dir(pedalboard)
    if isinstance(getattr(pedalboard, name), type)
    and issubclass(getattr(pedalboard, name), pedalboard.Plugin)
    and name not in NOT_EFFECTS
    and not name.startswith("_")
)
"""Effect names a chain entry may use."""

DEFAULT_CHAIN = assets.path("effects/default.json")


def _build_entry(entry: Any, where: str) -> pedalboard.Plugin:
    if not isinstance(entry, dict):
        raise EigentoneError(f"{where}: expected an object like {{\"effect\": \"Reverb\", ...}}, got {entry!r}")
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
            raise EigentoneError(f"{where}: could not load VST3 plugin {path} ({exc})") from None
        if getattr(plugin, "is_instrument", False):
            raise EigentoneError(f"{where}: {path} is an instrument, not an effect")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise EigentoneError(f"{where}: 'params' must be an object of parameter values")
        for key, value in params.items():
            if key not in plugin.parameters:
                raise EigentoneError(
                    f"{where}: {path.name} has no parameter '{key}' (it has: {', '.join(sorted(plugin.parameters))})"
                )
            try:
                setattr(plugin, key, value)
            except Exception as exc:  # noqa: BLE001 - plugin parameter setters raise various types
                raise EigentoneError(f"{where}: bad value {value!r} for '{key}' ({exc})") from None
        return plugin
    name = entry.get("effect")
    if name not in EFFECTS:
        raise EigentoneError(f"{where}: unknown effect {name!r} (known: {', '.join(EFFECTS)})")
    params = {k: v for k, v in entry.items() if k != "effect"}
    try:
        return getattr(pedalboard, name)(**params)
    except (TypeError, ValueError) as exc:
        raise EigentoneError(f"{where}: bad parameters for {name} {params} ({exc})") from None


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
        plugins = [_build_entry(entry, f"{source}: entry {i + 1}") for i, entry in enumerate(entries)]
        return cls(pedalboard.Pedalboard(plugins), source)

    @classmethod
    def from_json(cls, path: str | Path) -> EffectsChain:
        """Build from a chain file (JSON list); EigentoneError names the file and the bad entry."""
        path = Path(path)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EigentoneError(f"{path}: no such effects chain file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EigentoneError(f"{path}: not a valid JSON effects chain ({exc})") from None
        return cls.from_list(entries, str(path))

    def process(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        """One block (channels, samples) float32 through the chain, continuing from the previous block."""
        return self.board(audio, sample_rate, reset=False)

    def reset(self) -> None:
        """Clear tails and delay lines (start of a new, independent rendering)."""
        self.board.reset()

    def __len__(self) -> int:
        return len(self.board)
