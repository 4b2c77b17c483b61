"""The compiled modal bank against the contract's float64 reference, its anchored state under any cuts, its NaN guard."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eigentone.contract.reference import render_modal
from engine.instrument import Instrument
from engine.modal_bank import LANES, ModalBank
from engine.render import render_note
from export.modal_bundle import write_modal_bundle

FS = 48000


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Instrument:
    path = tmp_path_factory.mktemp("bank") / "plain.etone"
    write_modal_bundle(path, modes=64)
    return Instrument.load(path)


@pytest.fixture(scope="module")
def modulated(tmp_path_factory) -> Instrument:
    path = tmp_path_factory.mktemp("bank") / "mod.etone"
    write_modal_bundle(path, modes=48, modulation=True)
    return Instrument.load(path)


def _rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.mark.parametrize("note", [40.0, 60.0, 83.5])
def test_bank_matches_contract_reference(plain, note):
    controls = np.array([[note, 0.9, 0.23, 0.37]], np.float32)
    reference = render_modal(plain.excite(controls), FS, FS // 2)[0]
    engine = render_note(plain, note, 0.9, 0.5, FS, position=0.23)
    assert engine.dtype == np.float32 and engine.shape == reference.shape
    assert _rel_error(engine, reference) < 1e-4


def test_bank_matches_contract_with_pole_modulation(modulated):
    controls = np.array([[50.0, 1.0, 0.3, 0.37]], np.float32)
    voices = modulated.excite(controls)
    reference = render_modal(voices, FS, FS // 2, block_size=64)
    unmodulated = voices.mod_alpha * 0.0
    voices.mod_alpha = unmodulated
    without = render_modal(voices, FS, FS // 2, block_size=64)
    engine = render_note(modulated, 50.0, 1.0, 0.5, FS, position=0.3, block_size=64)
    assert _rel_error(engine, reference[0]) < 1e-4
    assert _rel_error(without[0], reference[0]) > 1e-2  # the modulation is audible, so the test means something


def test_cutting_blocks_changes_only_rounding(plain):
    """Sample-accurate events and host calls cut blocks anywhere; the state is moved only at anchors (block
    ends), so the cut samples differ from the uncut ones by float32 rounding of the output sums, without drift."""
    outputs = plain.excite_raw(np.array([[57.0, 0.8, 0.2, 0.37], [64.0, 0.5, 0.3, 0.37]], np.float32))
    banks = [ModalBank(2, plain.modes, FS, 64) for _ in range(2)]
    active = np.array([0, 1], np.int32)
    for bank in banks:
        bank.load(0, outputs, 0, 1.0)
        bank.load(1, outputs, 1, 1.0)
    whole = np.zeros((400, 64), np.float32)
    split = np.zeros((400, 64), np.float32)
    rng = np.random.default_rng(1)
    for b in range(400):
        for bank in banks:
            bank.start_block(active, 2)
        banks[0].advance(active, 2, whole[b], 0, 64)
        cuts = [0, *sorted(rng.choice(np.arange(1, 64), 3, replace=False)), 64]
        for start, stop in itertools.pairwise(cuts):
            banks[1].advance(active, 2, split[b], start, stop)
        for bank in banks:
            bank.settle(active, 2, 0.0)
    np.testing.assert_array_equal(banks[0].zr, banks[1].zr)  # the state does not see the cuts at all
    error = np.abs(whole - split).max(axis=1) / np.abs(whole).max()
    assert error.max() < 1e-6 and error[-100:].max() < 1e-6


def test_moving_the_anchor_matches_per_sample_steps(plain):
    """z p^k from the binary pole powers equals k float64 steps of the contract (float32 rounding only)."""
    outputs = plain.excite_raw(np.array([[45.0, 0.8, 0.2, 0.37]], np.float32))
    bank = ModalBank(1, plain.modes, FS, 64)
    bank.load(0, outputs, 0, 1.0)
    z0 = bank.zr[0].astype(np.float64) + 1j * bank.zi[0]
    bank.move_to(np.zeros(1, np.int32), 1, 45)
    voices = plain.excite(np.array([[45.0, 0.8, 0.2, 0.37]], np.float32))
    expected = z0 * np.exp((-voices.sigma[0] + 1j * voices.omega[0]) / FS) ** 45
    np.testing.assert_allclose(bank.zr[0] + 1j * bank.zi[0], expected, atol=1e-6 * np.abs(z0).max())
    assert bank.anchor[0] == 45


def test_nan_guard_mutes_only_the_bad_voice(plain):
    outputs = plain.excite_raw(np.array([[57.0, 0.8, 0.2, 0.37], [64.0, 0.5, 0.3, 0.37]], np.float32))
    bank = ModalBank(2, plain.modes, FS, 64)
    alone = ModalBank(2, plain.modes, FS, 64)
    for b in (bank, alone):
        b.load(0, outputs, 0, 1.0)
    bank.load(1, outputs, 1, 1.0)
    bank.cr[1, 3] = np.nan
    bank.start_block(np.array([0, 1], np.int32), 2)
    both, single = np.zeros(64, np.float32), np.zeros(64, np.float32)
    bank.advance(np.array([0, 1], np.int32), 2, both, 0, 64)
    alone.advance(np.array([0], np.int32), 1, single, 0, 64)
    assert bank.bad.tolist() == [False, True]
    np.testing.assert_array_equal(both, single)


def test_silent_modes_are_flushed_and_skipped(plain):
    """Modes above Nyquist and decayed modes become exact zeros and drop out of the live range."""
    outputs = plain.excite_raw(np.array([[100.0, 0.8, 0.2, 0.37]], np.float32))  # high note: upper modes > fs/2
    bank = ModalBank(1, plain.modes, FS, 64)
    bank.load(0, outputs, 0, 1.0)
    active = np.zeros(1, np.int32)
    out = np.zeros(64, np.float32)
    bank.advance(active, 1, out, 0, 64)
    bank.settle(active, 1, 1e-5)
    above = outputs["omega"][0] >= np.pi * FS
    assert above.any()
    assert np.all(bank.zr[0, above] == 0) and np.all(bank.zi[0, above] == 0)
    assert bank.live[0] <= -(-int(np.argmax(above)) // LANES) * LANES  # live range rounded up to whole lanes


def test_cos_sin_matches_libm_to_a_few_ulp():
    """The vectorisable cos/sin of the pole phase agree with libm (so the float32 poles are the same)."""
    from engine.modal_bank import cos_sin

    theta = np.concatenate([np.linspace(0.0, np.pi, 200001), [1e-9, np.pi - 1e-9]])
    got = np.array([cos_sin(t) for t in theta])
    assert np.abs(got[:, 0] - np.cos(theta)).max() < 4e-16 and np.abs(got[:, 1] - np.sin(theta)).max() < 4e-16
    poles = (got * 0.9999).astype(np.float32)
    exact = (np.stack([np.cos(theta), np.sin(theta)], axis=1) * 0.9999).astype(np.float32)
    assert (poles != exact).mean() < 1e-4  # float32 roundings agree except on rare ties


@pytest.mark.parametrize("floor", [0.0, 0.5, 30.0, 1e4])
def test_pole_radii_are_libm_exp_of_each_decay_rate(plain, floor):
    """update_decay computes exp once per run of equal rates (after a release most modes decay at the floor): every
    radius must still be libm's exp(-max(sigma / decay_scale, floor, 0) / fs) of its own mode."""
    import math

    from engine import modal_bank as mb

    bank = ModalBank(2, plain.modes, FS, 64, decay_scale=1.7)
    outputs = plain.excite_raw(np.array([[45.0, 0.8, 0.3, 0.37]], np.float32))
    bank.load(1, outputs, 0, 1.0, 45.0)
    bank.voice64[mb.FLOOR, 1] = floor
    bank.poles(np.array([1]), 1)
    sigma = bank.modes32[mb.SIGMA, 1, : plain.modes]
    expected = [math.exp(-max(float(s) / 1.7, floor, 0.0) / FS) for s in sigma]
    assert bank.modes64[mb.RADIUS, 1, : plain.modes].tolist() == expected
    if floor == 0.0:
        assert len(set(expected)) > plain.modes // 2  # mostly distinct rates: one exp each
    if floor == 1e4:
        assert len(set(expected)) == 1  # one run at the floor


def test_per_sample_step_is_the_complex_product_with_fused_roundings():
    """w <- p w as the kernels take it (p as (c, d - c, c + d), two fused multiply-adds): each part of the result is
    the float32 rounding of k -/+ (exact product), k = c (Re w + Im w); so within a few float32 ulps of p w."""
    from engine.modal_bank import _step_form, rotated

    rng = np.random.default_rng(3)
    n = 4000
    theta = rng.uniform(0.0, np.pi, n)
    pr = (0.9999 * np.cos(theta)).astype(np.float32)
    pi = (0.9999 * np.sin(theta)).astype(np.float32)
    c, e, f = (np.zeros(n, np.float32) for _ in range(3))
    _step_form(pr, pi, c, e, f)
    assert np.array_equal(c, pr) and np.array_equal(e, (pi.astype(np.float64) - pr).astype(np.float32))
    a, b = rng.standard_normal((2, n)).astype(np.float32)
    got = np.array([rotated(a[m], b[m], c[m], e[m], f[m]) for m in range(n)], np.float32)
    k = (c * (a + b)).astype(np.float32)  # float32 sum and product, each rounded once
    fused = np.stack([(k - b.astype(np.float64) * f).astype(np.float32),  # b f exact in float64; one rounding
                      (k + a.astype(np.float64) * e).astype(np.float32)], axis=1)
    np.testing.assert_array_equal(got, fused)
    unfused = np.stack([k - b * f, k + a * e], axis=1)  # the product rounded to float32 first
    assert (unfused != fused).mean() > 0.1  # so the check above tells fused from unfused arithmetic
    exact = (a.astype(np.float64) + 1j * b) * (pr.astype(np.float64) + 1j * pi)
    error = np.abs(got[:, 0] + 1j * got[:, 1] - exact) / np.abs(a.astype(np.float64) + 1j * b)
    assert error.max() < 8 * np.finfo(np.float32).eps


def test_bank_arrays_are_cache_line_aligned():
    """The kernels load 16 floats (64 bytes) at a time: arrays must start on a cache line (numpy's large arrays start
    16 bytes into a page, so without this every vector load straddles two lines)."""
    from engine.buffers import ALIGN, prefaulted

    bank = ModalBank(160, 256, FS, 64)
    for array in (bank.modes32, bank.modes64, bank.powers, bank.step, bank.voice64, bank.voice_i, bank.work,
                  bank.work64):
        assert array.ctypes.data % ALIGN == 0 and array.flags.c_contiguous
    for shape, dtype in (((3, 1000), np.float32), (7, np.int64), ((0, 5), np.float64), ((2, 3, 5), np.uint8)):
        array = prefaulted(shape, dtype, 2)
        assert array.shape == np.empty(shape).shape and array.dtype == dtype and array.flags.c_contiguous
        assert array.size == 0 or array.ctypes.data % ALIGN == 0  # (an empty view's address is numpy's choice)
        assert np.all(array == 2)


def test_pole_powers_are_the_rounded_float64_powers_shrunk_where_rounding_made_them_larger():
    """Every stored power p^(2^i) (and the per-sample step form) is the float32 rounding of the float64 power,
    times (1 - 1e-7) / |rounded| exactly where rounding made |p| > 1 (undamped modes do that often)."""
    from engine import modal_bank as mb

    rng = np.random.default_rng(5)
    modes = 256
    sigma = rng.uniform(0.5, 50.0, modes)
    sigma[::2] = 0.0  # undamped: |p| = 1 in float64, so float32 rounding lands above 1 for about half of these
    outputs = {"sigma": sigma[None].astype(np.float32),
               "omega": rng.uniform(0.0, np.pi * FS * 1.05, (1, modes)).astype(np.float32),  # some above Nyquist
               "z0": np.ones((1, modes, 2), np.float32), "c": np.ones((1, modes, 2), np.float32)}
    bank = ModalBank(1, modes, FS, 64)
    bank.load(0, outputs, 0, 1.03)  # a bend factor: omega = 1.03 omega0
    omega = 1.03 * outputs["omega"][0].astype(np.float64)
    inside = (omega < np.pi * FS) & (omega >= 0)
    cos_sin = np.array([mb.cos_sin(t) for t in np.where(inside, omega / FS, 0.0)])
    r = np.where(inside, bank.modes64[mb.RADIUS, 0, :modes], 0.0)
    a, b = r * cos_sin[:, 0], r * cos_sin[:, 1]
    shrunk = 0
    for level in range(bank.powers.shape[0]):
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        mag2 = a32.astype(np.float64) ** 2 + b32.astype(np.float64) ** 2
        over = mag2 > 1.0
        shrink = np.where(over, ((1.0 - 1e-7) / np.sqrt(np.where(over, mag2, 1.0))).astype(np.float32), np.float32(1))
        np.testing.assert_array_equal(bank.powers[level, 0, 0, :modes], a32 * shrink)
        np.testing.assert_array_equal(bank.powers[level, 1, 0, :modes], b32 * shrink)
        shrunk += int(over.sum())
        a, b = a * a - b * b, 2.0 * a * b
    assert shrunk > 50  # the shrink is exercised
    pr, pi = bank.powers[0, 0, 0, :modes].astype(np.float64), bank.powers[0, 1, 0, :modes].astype(np.float64)
    np.testing.assert_array_equal(bank.step[mb.STEP_C, 0, :modes], pr.astype(np.float32))
    np.testing.assert_array_equal(bank.step[mb.STEP_E, 0, :modes], (pi - pr).astype(np.float32))
    np.testing.assert_array_equal(bank.step[mb.STEP_F, 0, :modes], (pr + pi).astype(np.float32))


@pytest.mark.parametrize("at", [13, 37, 38])
def test_release_inside_a_block_changes_the_decay_from_that_sample(plain, at):
    """A release at sample ``at`` of a block: the output follows the old poles up to it and the new ones from it,
    against float64 per-sample poles (the phasor and the anchored state both switch at that sample)."""
    from engine import modal_bank as mb

    outputs = plain.excite_raw(np.array([[45.0, 0.8, 0.2, 0.37]], np.float32))
    bank = ModalBank(1, plain.modes, FS, 64)
    bank.load(0, outputs, 0, 1.0)
    active = np.zeros(1, np.int64)
    out = np.zeros(64, np.float32)
    bank.advance(active, 1, out, 0, at)
    mb.release(bank.arrays, 0, 300.0, at)
    bank.advance(active, 1, out, at, 64)
    sigma = outputs["sigma"][0].astype(np.float64)
    omega = outputs["omega"][0].astype(np.float64)
    w0 = (outputs["c"][0, :, 0] + 1j * outputs["c"][0, :, 1]) * (outputs["z0"][0, :, 0] + 1j * outputs["z0"][0, :, 1])
    before = np.exp((-sigma + 1j * omega) / FS)
    after = np.exp((-np.maximum(sigma, 300.0) + 1j * omega) / FS)
    k = np.arange(64)[:, None]
    phasors = np.where(k <= at, w0 * before**k, w0 * before**at * after ** (k - at))
    expected = phasors.real.sum(axis=1)  # the bank here has output_gain 1
    np.testing.assert_allclose(out, expected, atol=2e-6 * np.abs(expected).max())
    bank.settle(active, 1, 0.0)
    z_end = (outputs["z0"][0, :, 0] + 1j * outputs["z0"][0, :, 1]) * before**at * after ** (64 - at)
    np.testing.assert_allclose(bank.zr[0] + 1j * bank.zi[0], z_end, atol=2e-6 * np.abs(z_end).max())


def test_whole_block_is_the_four_passes_bit_for_bit(plain):
    """whole_block (one pass per voice) gives the samples, state, level bounds, live ranges, bad flags and ended
    slots of start_block + advance + move_to + settle over all voices, bit for bit: with a muted (NaN) voice and a
    voice that falls below the threshold, over blocks in which modes go silent."""
    from engine import modal_bank as mb

    controls = np.array([[40.0, 0.9, 0.2, 0.37], [64.0, 0.6, 0.3, 0.37], [88.0, 0.3, 0.1, 0.37]], np.float32)
    outputs = plain.excite_raw(controls)
    active = np.array([2, 0, 1], np.int64)
    banks = [ModalBank(3, plain.modes, FS, 64), ModalBank(3, plain.modes, FS, 64)]
    for bank in banks:
        for slot in range(3):
            bank.load(slot, outputs, slot, 1.0)
        bank.zr[1] *= 1e-3  # quiet: ends at the threshold below
        bank.zi[1] *= 1e-3
        bank.cr[0, 5] = np.nan
    threshold = 1e-3 * float(banks[0].level[1]) * 2
    for _ in range(40):
        four, fused = np.zeros(64, np.float32), np.zeros(64, np.float32)
        banks[0].start_block(active, 3)
        banks[0].advance(active, 3, four, 0, 64)
        n_four = banks[0].settle(active, 3, threshold)
        n_fused = mb.whole_block(banks[1].arrays, active, 3, fused, 0, threshold, banks[1].work)
        assert n_four == n_fused and banks[0].work[:n_four].tolist() == banks[1].work[:n_fused].tolist()
        np.testing.assert_array_equal(four.view(np.uint32), fused.view(np.uint32))
        for plane in (mb.Z_RE, mb.Z_IM, mb.C_RE, mb.C_IM):
            np.testing.assert_array_equal(banks[0].modes32[plane].view(np.uint32), banks[1].modes32[plane].view(np.uint32))
        np.testing.assert_array_equal(banks[0].voice64.view(np.uint64), banks[1].voice64.view(np.uint64))
        for field in (mb.LIVE, mb.BAD, mb.ANCHOR):
            assert banks[0].voice_i[field].tolist() == banks[1].voice_i[field].tolist()
    assert banks[1].bad.tolist() == [True, False, False] and n_fused == 2  # the muted voice and the quiet one
    assert np.any(fused != 0) and banks[1].live[2] < banks[1].zr.shape[1]  # voice 2 still sounds, some modes flushed
