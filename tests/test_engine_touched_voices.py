"""An event renders only the voices it changes up to its offset; the samples are those of rendering every voice up
to every event (engine/synth_kernel.py ``_piece``, engine/modal_bank.py ``catch_up`` / ``emit``)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import modal_bank as mb
from engine import synth_kernel as sk
from engine import voices as vp
from engine.instrument import Instrument
from engine.modal_bank import ModalBank
from engine.synth import Synth
from engine.voices import VoicePool
from export.modal_bundle import write_modal_bundle

FS = 48000
BLOCK = 64
HELD = [(0, 0x90, 40 + 3 * k, 60 + 5 * k) for k in range(6)]


@pytest.fixture(scope="module")
def instrument(tmp_path_factory) -> Instrument:
    path = tmp_path_factory.mktemp("touched") / "a.etone"
    write_modal_bundle(path, modes=48, attack_samples=200)
    return Instrument.load(path)


def _render(instrument: Instrument, events: list[tuple[int, int, int, int]], cut: int, max_voices: int,
            mono: bool = False) -> np.ndarray:
    """Six held notes, two blocks, then one block holding ``events`` (offsets in the block) and three more blocks.
    ``cut`` > 0 splits that block into two host calls at sample ``cut``: the synth then renders every voice up to
    ``cut`` before the events there (the schedule of rendering all voices up to each event)."""
    synth = Synth(instrument, limiter=False, mono=mono)
    synth.prepare(FS, BLOCK, max_voices)
    out = [synth.process(HELD, BLOCK).copy(), synth.process([], BLOCK).copy()]
    if cut:
        out.append(synth.process([e for e in events if e[0] < cut], cut).copy())
        out.append(synth.process([(e[0] - cut, *e[1:]) for e in events if e[0] >= cut], BLOCK - cut).copy())
    else:
        out.append(synth.process(events, BLOCK).copy())
    out += [synth.process([], BLOCK).copy() for _ in range(3)]
    return np.concatenate(out)


@pytest.mark.parametrize("max_voices", [16, 6, 2], ids=["free-slot", "steal", "steal-and-cut"])
def test_a_note_on_at_any_offset_renders_what_a_cut_there_renders(instrument, max_voices):
    """A note-on at every offset 0..63 (with 6 held notes: no steal; a steal; steals beyond the spare fade slots,
    which cut a voice), against the same block cut into host calls at the note-on: bit for bit."""
    for offset in range(BLOCK):
        events = [(offset, 0x90, 70, 100)]
        whole = _render(instrument, events, 0, max_voices)
        cut = _render(instrument, events, offset, max_voices)
        assert np.any(whole[2 * BLOCK + offset:]), offset
        np.testing.assert_array_equal(whole.view(np.uint32), cut.view(np.uint32), err_msg=f"offset {offset}")


@pytest.mark.parametrize("kind", ["note-off", "bend", "pedal", "all-notes-off", "all-sound-off", "mono"])
def test_other_events_render_what_a_cut_there_renders(instrument, kind):
    """Events changing one voice, a channel's voices, or the list of voices, at offsets 5, 5 and 37: bit for bit
    what cuts at 5 and 37 render (the block cut at one of them, the other inside a call)."""
    second = {"note-off": (37, 0x80, 43, 0), "bend": (37, 0xE0, 0, 90), "pedal": (37, 0xB0, 64, 0),
              "all-notes-off": (37, 0xB0, 123, 0), "all-sound-off": (37, 0xB0, 120, 0),
              "mono": (37, 0x90, 71, 80)}[kind]
    events = [(5, 0xB0, 64, 127), (5, 0x80, 40, 0), second]
    mono = kind == "mono"
    whole = _render(instrument, events, 0, 8, mono)
    for cut in (5, 37):
        np.testing.assert_array_equal(whole.view(np.uint32), _render(instrument, events, cut, 8, mono).view(np.uint32))


def _bank_with_pending(rows: list[list[float]]) -> tuple[ModalBank, np.ndarray]:
    """A bank whose voices have the given samples [0, len) of the block rendered and waiting in PENDING."""
    bank = ModalBank(len(rows), 16, FS, BLOCK)
    for v, row in enumerate(rows):
        bank.pending[v, : len(row)] = row
        bank.voice_i[mb.RENDERED, v] = len(row)
        bank.voice_i[mb.FIRST, v] = 0
    return bank, np.zeros(len(rows) + 1, np.int64)


def test_emit_adds_the_voices_in_their_order():
    """float32 sums depend on their order: 1e8 + (-1e8) + 1 is 1, 1 + (-1e8) + 1e8 is 0."""
    bank, unfinished = _bank_with_pending([[1.0], [-1e8], [1e8]])
    for order, expected in (([2, 1, 0], 1.0), ([0, 1, 2], 0.0)):
        bank.voice_i[mb.FIRST] = 0
        out = np.zeros(BLOCK, np.float32)
        assert mb.emit(bank.arrays, np.array(order, np.int64), 3, 1, out, 0, unfinished) == 0
        assert out[0] == expected and not out[1:].any()
    assert list(bank.voice_i[mb.FIRST]) == [1, 1, 1]


def test_non_finite_samples_are_muted_piece_by_piece_between_events():
    """A voice whose samples turn non-finite after an event's offset keeps the finite piece before it (as when every
    voice is rendered up to every event) and is marked bad."""
    samples = [0.25] * 10 + [np.inf] * 6
    bank, _ = _bank_with_pending([samples, [0.5] * 16])
    pool = VoicePool(2)
    for slot in range(2):
        vp.start(pool.flags, pool.active, pool.counts, slot, 60, 0)
    events = np.array([[3, 0x80, 1, 0, 0, 0], [12, 0x80, 1, 0, 0, 0]], np.int64)  # offsets 3 and 12 in ``out``
    out = np.zeros(BLOCK, np.float32)
    sk._flush(events, 0, 2, 2, 0, 16, out, (pool.flags, pool.active, pool.counts), bank.arrays)
    # out[2 + k] holds sample k: pieces [0, 1), [1, 10), [10, 16) of voice 0; the last one is not finite
    np.testing.assert_array_equal(out[2:12], np.float32(0.75))
    np.testing.assert_array_equal(out[12:18], np.float32(0.5))
    assert list(bank.voice_i[mb.BAD]) == [1, 0] and list(bank.voice_i[mb.FIRST]) == [16, 16]
