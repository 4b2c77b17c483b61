"""The pedalboard effects chain: JSON and Python construction, streaming, determinism, error messages."""

from __future__ import annotations

import json

import numpy as np
import pedalboard
import pytest

from eigentone.errors import EigentoneError
from plugins.effects import DEFAULT_CHAIN, EffectsChain

FS = 48000


def _impulse_blocks(n_blocks: int = 40, block: int = 256) -> list[np.ndarray]:
    blocks = [np.zeros((2, block), np.float32) for _ in range(n_blocks)]
    blocks[0][:, 0] = 0.5
    return blocks


def test_default_chain_loads_gain_reverb_limiter():
    chain = EffectsChain.from_json(DEFAULT_CHAIN)
    assert [type(p).__name__ for p in chain.board] == ["Gain", "Reverb", "Limiter", "Gain"]


def test_python_api_builds_the_same_chain_as_json(tmp_path):
    entries = [{"effect": "Delay", "delay_seconds": 0.01, "feedback": 0.3, "mix": 0.5},
               {"effect": "LowpassFilter", "cutoff_frequency_hz": 3000}]
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(entries))
    from_file = [EffectsChain.from_json(path).process(b, FS).copy() for b in _impulse_blocks()]
    from_list = [EffectsChain.from_list(entries).process(b, FS).copy() for b in _impulse_blocks()]
    assert all(np.array_equal(a, b) for a, b in zip(from_file, from_list))


def test_streaming_keeps_tails_across_blocks():
    chain = EffectsChain.from_list([{"effect": "Delay", "delay_seconds": 0.05, "feedback": 0.0, "mix": 1.0}])
    outputs = [chain.process(b, FS).copy() for b in _impulse_blocks()]
    echo = np.concatenate(outputs, axis=1)[0]
    delay = int(0.05 * FS)
    assert np.argmax(np.abs(echo)) == pytest.approx(delay, abs=2)  # the echo crossed ~9 block boundaries
    assert abs(echo[delay - 2 : delay + 3]).max() > 0.4


def test_streaming_equals_processing_at_once():
    entries = [{"effect": "Reverb", "room_size": 0.5}, {"effect": "Gain", "gain_db": -3.0}]
    blocks = _impulse_blocks()
    chain = EffectsChain.from_list(entries)
    streamed = np.concatenate([chain.process(b, FS).copy() for b in blocks], axis=1)
    whole = pedalboard.Pedalboard([pedalboard.Reverb(room_size=0.5), pedalboard.Gain(gain_db=-3.0)])(
        np.concatenate(blocks, axis=1), FS, buffer_size=256)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_reset_starts_clean():
    chain = EffectsChain.from_list([{"effect": "Reverb", "room_size": 0.9}])
    first = [chain.process(b, FS).copy() for b in _impulse_blocks(4)]
    chain.reset()
    again = [chain.process(b, FS).copy() for b in _impulse_blocks(4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ({"effect": "Reverb"}, "a JSON list"),
        ([{"effect": "Reverb"}, {"effect": "Flanger9000"}], "entry 2: unknown effect 'Flanger9000'"),
        ([{"effect": "Reverb", "room_sise": 0.3}], "entry 1: bad parameters for Reverb"),
        ([{"effect": "Gain"}, "Reverb"], "entry 2: expected an object"),
        ([{"vst3": "/no/such/plugin.vst3"}], "entry 1: VST3 plugin /no/such/plugin.vst3 does not exist"),
        ([{"vst3": "/x.vst3", "room": 1}], "entry 1: unknown keys ['room']"),
    ],
)
def test_errors_name_the_file_and_the_entry(tmp_path, entries, fragment):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(EigentoneError) as info:
        EffectsChain.from_json(path)
    assert str(info.value).startswith(str(path)) and fragment in str(info.value), str(info.value)


def test_invalid_json_is_refused(tmp_path):
    path = tmp_path / "chain.json"
    path.write_text('[{"effect": "Reverb",]')
    with pytest.raises(EigentoneError, match="not a valid JSON effects chain"):
        EffectsChain.from_json(path)
