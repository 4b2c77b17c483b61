"""The modal bank: every voice's complex one-pole modes, advanced and read out by compiled kernels.

The contract per voice slot v and mode m (arrays (voices, modes), float32, split real/imaginary)::

    z[k+1] = p * z[k]            p = exp((-max(sigma, sigma_floor) + i omega) / fs)
    y[k]   = sum_m Re(c_m z_m[k])

``omega = scale * omega0`` (pitch bend), or with pole modulation
``omega = sqrt((scale * omega0)^2 + alpha * E)``, ``E = sum_m beta_m |z_m|^2`` evaluated
once per block (the contract's formula, ``eigentone.contract.reference.modulated_omega``); ``sigma`` is the
excite graph's decay rate divided by the player's ``decay_scale``. The readout weights are
``output_gain * c * tilt`` (``tilt``: the player's brightness, fixed per voice at note-on).

How it is computed (the numerical scheme the native core mirrors): time is cut into internal blocks
of ``block_size`` samples. At a block start every voice's output phasor is set to ``w = c z``; each
sample outputs ``y = sum_m Re(w_m)`` and then sets ``w <- p w``, however the block is cut into
calls. That product is taken in the form of :func:`rotated`: with p = c + id stored as
(c, d - c, c + d), ``k = c (Re w + Im w)``, ``Re(p w) = k - Im(w) (c + d)`` and ``Im(p w) = k + Re(w) (d - c)``,
the last two as fused multiply-adds: 3 multiplies where the plain product takes 4 (see :func:`rotated` for why
that matters). Measured on 128 voices x 256 modes (Zen 4), a block's start_block + advance + move_to took 196 us
with the plain product and 160 us with this one (with the arrays 64-byte aligned, engine/buffers.py). A power table
(y = sum_m Re(w_m p_m^j) from stored p^j, j < 8, stepping w once per 8 samples: 2 multiplies per mode and sample)
was measured too and was no faster here: its table (16 KB per voice) does not stay in cache across the block's
pieces, and its loop is bound by loads.

The state ``z`` itself is only moved at *anchors*: when a voice's poles change inside a block
(release, bend) and at the block end it jumps from its last anchor ``a`` to sample ``k`` as
``z <- z p^(k - a)``, with the binary powers ``p^(2^i)`` formed in float64 and stored in float32. So
z never accumulates the rounding of 64 per-sample products, and where the caller cuts a block
changes nothing.

A bundle with an attack component also plays, per voice, a short table ``a`` (samples at the
table's own rate ``fs_a``) from the voice's first sample on: sample k of the voice adds
``output_gain * env_k * a(k * fs_a / fs)`` (linear interpolation, silent past the table's end);
``env`` is 1 until the voice is released, then shrinks by ``exp(-sigma_floor / fs)`` per sample.

Storage (all preallocated, changed in place by the compiled kernels below; the synth's per-block
kernel in engine/synth_kernel.py calls them with the tuple ``ModalBank.arrays``):

* ``modes32`` (PLANES, voices, modes) float32, one plane per quantity: Z_RE, Z_IM (state at the voice's
  anchor), W_RE, W_IM (output phasors), C_RE, C_IM (readout), SIGMA (1/s), OMEGA0 (rad/s), ALPHA, BETA
  (pole modulation), TILT (brightness);
* ``modes64`` (1, voices, modes) float64: RADIUS, the pole radius exp(-rate / fs);
* ``powers`` (levels, 2, voices, modes) float32: p^(2^i) as (re, im); level 0 is the per-sample pole;
* ``step`` (3, voices, modes) float32: the per-sample pole as :func:`rotated` takes it, STEP_C = Re p,
  STEP_E = Im p - Re p, STEP_F = Re p + Im p (each rounded once from the float32 pole);
* ``voice64`` (5, voices) float64: SCALE (pitch-bend factor), FLOOR (release decay floor, 1/s), ENERGY
  (modulation), LEVEL (amplitude bound), ATTACK_GAIN (release envelope of the attack);
* ``voice_i`` (6, voices) int64: LIVE (modes [LIVE, width) are exactly zero; a multiple of LANES), ANCHOR (sample of the block where
  z is valid), BAD (non-finite samples), ATTACK_POS (attack samples played), RENDERED and FIRST (the voice's samples
  [FIRST, RENDERED) of the block wait in ``pending``, see :func:`catch_up`);
* ``attack`` (voices, L + 1) float32 tables (L = 0: no attack component);
* ``params`` float64: FS (Hz), GAIN (level gain), DECAY_SCALE, BRIGHTNESS, ATTACK_STEP (fs_a / fs), MODULATED;
* ``pending`` (voices, block_size) float32: samples rendered ahead of the others' (:func:`catch_up`);
* ``phasor`` (2, modes) float32: the output phasors (re, im) of the voice :func:`whole_block` is rendering;
* ``scratch`` (block_size,) float32, ``work`` (voices + 1,) int64, ``work64`` (2, modes) float64: scratch.

All are 64-byte aligned (engine/buffers.py), so the kernels' 16-float vector loads never straddle cache lines.

Kernels are numba-compiled (``cache=True``; fastmath without the no-NaN/no-Inf flags so
the per-voice NaN guard keeps working, and without contraction: the only fused multiply-adds are the explicit
:func:`fma` calls) and loop over the active voice slots only: no Python
loop per sample or per voice inside a block.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.extending import intrinsic

from eigentone.contract.reference import midi_to_hz
from engine.buffers import prefaulted

# fastmath minus 'nnan'/'ninf' (the NaN/Inf guard must not be optimised away) and minus 'contract': whether a
# multiply-add is fused is decided by the code generator, and numba's cached object code and its in-process JIT
# code were measured to decide differently, so renders differed in the last bit between a fresh and a cached
# compile. Without it every process computes the same samples (and the speed is unchanged).
FASTMATH = {"nsz", "arcp", "afn", "reassoc"}

LANES = 16
"""Mode loops run over whole multiples of this many modes (one AVX-512 register of float32): the mode axis of
every array is padded to a multiple of it with modes that stay exactly zero, and LIVE is rounded up to it, so
no loop ends in a slow one-mode-at-a-time remainder. Zero modes add exact zeros: the output does not change."""

SILENT_MODE = 1e-12
"""|z| below which a mode is set to exactly 0 at a block end (keeps float32 state out of denormals)."""

Z_RE, Z_IM, W_RE, W_IM, C_RE, C_IM, SIGMA, OMEGA0, ALPHA, BETA, TILT = range(11)
PLANES = 11
SCALE, FLOOR, ENERGY, LEVEL, ATTACK_GAIN = range(5)
LIVE, ANCHOR, BAD, ATTACK_POS, RENDERED, FIRST = range(6)
FS, GAIN, DECAY_SCALE, BRIGHTNESS, ATTACK_STEP, MODULATED = range(6)
RADIUS = 0
STEP_C, STEP_E, STEP_F = range(3)
STEP_PLANES = 3
MODES32, MODES64, POWERS, VOICE64, VOICE_I, ATTACK, PARAMS, SCRATCH, WORK, WORK64, STEP, PENDING, PHASOR = range(13)
"""Items of the ``bank`` tuple (``ModalBank.arrays``) the kernels take."""


@intrinsic
def fma(typingctx, x, y, z):  # pragma: no cover - compiled
    """x * y + z rounded once (llvm.fma): fused wherever it is written, in every compile (unlike the compiler's own
    contractions, which FASTMATH leaves out)."""
    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return x(x, y, z), codegen


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def rotated(a, b, c, e, f):  # pragma: no cover - compiled
    """(a + ib) p for p = c + id given as (c, e = d - c, f = c + d): with k = c (a + b), Re = k - b f and
    Im = k + a e, the last two fused. 3 multiplies and 2 adds where the plain product takes 4 and 2; the CPUs we
    run on multiply on half their floating-point pipes, so this is about a fifth faster (measured)."""
    k = c * (a + b)
    return fma(-b, f, k), fma(a, e, k)


@numba.njit(cache=True)  # exact IEEE float64: the poles must not depend on how the compiler fuses this code
def update_decay(bank, voices, count):  # pragma: no cover - compiled
    """The pole radii r = exp(-rate / fs) of slots ``voices[:count]`` (float64 plane RADIUS), with the decay rate
    max(sigma / decay_scale, floor, 0): ``decay_scale`` multiplies every mode's T60, the release floor is not
    scaled. Needed after a note-on and a release; then :func:`update_poles`."""
    modes32, modes64, voice64, params = bank[MODES32], bank[MODES64], bank[VOICE64], bank[PARAMS]
    sigma, radius = modes32[SIGMA], modes64[RADIUS]
    fs, decay_scale = params[FS], params[DECAY_SCALE]
    for j in range(count):
        v = voices[j]
        floor = voice64[FLOOR, v]
        last_rate, last_radius = -1.0, 0.0
        for m in range(sigma.shape[1]):
            rate = max(sigma[v, m] / decay_scale, floor, 0.0)
            if rate != last_rate:  # after a release most modes decay at the floor: one exp for the run (same bits)
                last_rate, last_radius = rate, np.exp(-rate / fs)
            radius[v, m] = last_radius


@numba.njit(cache=True)  # exact IEEE float64: the poles must not depend on how the compiler fuses this code
def update_poles(bank, voices, count, new_energy):  # pragma: no cover - compiled
    """Recompute the pole powers p^(2^i) of slots ``voices[:count]`` from their radius (:func:`update_decay`),
    omega0 and pitch-bend scale (after a note-on, release, bend, and every block with pole modulation).

    With pole modulation, ``new_energy`` re-evaluates E from the state (block start, note-on) first.
    p = r (cos theta + i sin theta), theta = omega / fs, is formed in float64 (:func:`cos_sin`) and squared in
    float64 for the higher powers; each power is rounded to float32 and shrunk to |p| <= 1 if rounding made it
    larger. Modes at or above Nyquist (or with omega < 0) get p = 0.
    """
    modes32, modes64, powers, voice64, params = bank[MODES32], bank[MODES64], bank[POWERS], bank[VOICE64], bank[PARAMS]
    omega0, alpha, beta, zr, zi = modes32[OMEGA0], modes32[ALPHA], modes32[BETA], modes32[Z_RE], modes32[Z_IM]
    radius, a, b = modes64[RADIUS], bank[WORK64][0], bank[WORK64][1]
    fs, modulated = params[FS], params[MODULATED] != 0.0
    n_modes = omega0.shape[1]
    for j in range(count):
        v = voices[j]
        e = voice64[ENERGY, v]
        if modulated and new_energy:
            e = 0.0
            for m in range(n_modes):
                e += beta[v, m] * (zr[v, m] * zr[v, m] + zi[v, m] * zi[v, m])
            voice64[ENERGY, v] = e
        _phases(omega0[v], alpha[v], radius[v], voice64[SCALE, v], modulated, e, fs, a, b)
        _rotations(a, b)
        for level in range(powers.shape[0]):
            _round_and_square(a, b, powers[level, 0, v], powers[level, 1, v])
        _step_form(powers[0, 0, v], powers[0, 1, v], bank[STEP][STEP_C, v], bank[STEP][STEP_E, v],
                   bank[STEP][STEP_F, v])


# The three loops of update_poles, each simple enough for the compiler to vectorise (one float64 pole per mode).
@numba.njit(cache=True)
def _phases(omega0, alpha, radius, scale, modulated, energy, fs, theta, r):  # pragma: no cover - compiled
    """theta = omega / fs and r = radius per mode; both 0 for modes at or above Nyquist (or omega < 0)."""
    nyquist = np.pi * fs
    for m in range(omega0.shape[0]):
        w = scale * omega0[m]
        if modulated:
            w = np.sqrt(w * w + alpha[m] * energy)
        inside = w < nyquist and w >= 0.0
        theta[m] = w / fs if inside else 0.0
        r[m] = radius[m] if inside else 0.0


@numba.njit(cache=True)
def _rotations(theta, r):  # pragma: no cover - compiled
    """In place: (theta, r) -> the pole (r cos theta, r sin theta)."""
    for m in range(theta.shape[0]):
        c, s = cos_sin(theta[m])
        theta[m] = r[m] * c
        r[m] = r[m] * s


@numba.njit(cache=True)
def _round_and_square(a, b, pr, pi):  # pragma: no cover - compiled
    """(pr, pi) = the float32 pole (a, b), shrunk to |p| <= 1 if rounding made it larger; then (a, b) squared.

    |p|^2 is taken in float64 (numba's ``float()`` of a float32 stays float32, whose rounding hid most of the poles
    rounding made larger than 1). The shrink (a square root and a division) is needed by few modes; done in the
    vector loop for every mode it took most of the time of a bend. So the loop only notes whether any mode needs
    it, and a second pass shrinks those (a float32 times 1 is itself)."""
    over = False
    for m in range(a.shape[0]):
        a32 = np.float32(a[m])
        b32 = np.float32(b[m])
        over |= np.float64(a32) * np.float64(a32) + np.float64(b32) * np.float64(b32) > 1.0
        pr[m] = a32
        pi[m] = b32
        x, y = a[m], b[m]
        a[m] = x * x - y * y
        b[m] = 2.0 * x * y
    if over:
        for m in range(pr.shape[0]):
            mag2 = np.float64(pr[m]) * np.float64(pr[m]) + np.float64(pi[m]) * np.float64(pi[m])
            if mag2 > 1.0:
                shrink = np.float32((1.0 - 1e-7) / np.sqrt(mag2))
                pr[m] = pr[m] * shrink
                pi[m] = pi[m] * shrink


@numba.njit(cache=True)
def _step_form(pr, pi, c, e, f):  # pragma: no cover - compiled
    """The per-sample pole (pr, pi) as :func:`rotated` takes it: c = pr, e = pi - pr, f = pr + pi (each formed in
    float64 from the float32 pole and rounded to float32 once)."""
    for m in range(pr.shape[0]):
        c[m] = pr[m]
        e[m] = np.float32(np.float64(pi[m]) - np.float64(pr[m]))
        f[m] = np.float32(np.float64(pr[m]) + np.float64(pi[m]))


HALF_PI = math.pi / 2
S3, S5, S7, S9, S11, S13, S15, S17, S19, S21 = ((-1) ** k / math.factorial(2 * k + 1) for k in range(1, 11))
C2, C4, C6, C8, C10, C12, C14, C16, C18, C20, C22 = ((-1) ** k / math.factorial(2 * k) for k in range(1, 12))


@numba.njit(cache=True)
def cos_sin(theta):  # pragma: no cover - compiled
    """(cos theta, sin theta) for theta in [0, pi], float64 to a few ulp: Taylor polynomials of sin and cos around
    pi/2 (terms to x^21, x^22; |x| <= pi/2, so the first term left out is below 1e-17). Unlike libm's calls the
    compiler vectorises them; they round to the same float32 poles (but for rare ties)."""
    x = theta - HALF_PI
    x2 = x * x
    ps = S21
    ps = S19 + x2 * ps
    ps = S17 + x2 * ps
    ps = S15 + x2 * ps
    ps = S13 + x2 * ps
    ps = S11 + x2 * ps
    ps = S9 + x2 * ps
    ps = S7 + x2 * ps
    ps = S5 + x2 * ps
    ps = S3 + x2 * ps
    pc = C22
    pc = C20 + x2 * pc
    pc = C18 + x2 * pc
    pc = C16 + x2 * pc
    pc = C14 + x2 * pc
    pc = C12 + x2 * pc
    pc = C10 + x2 * pc
    pc = C8 + x2 * pc
    pc = C6 + x2 * pc
    pc = C4 + x2 * pc
    pc = C2 + x2 * pc
    sin_x = x + x * x2 * ps
    cos_x = 1.0 + x2 * pc
    return -sin_x, cos_x


@numba.njit(cache=True, fastmath=FASTMATH)
def start_block(bank, active, count):  # pragma: no cover - compiled
    """Block start for voices ``active[:count]``: output phasors w = c z, anchors at sample 0."""
    for j in range(count):
        _start_voice(bank, active[j])


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _start_voice(bank, v):  # pragma: no cover - compiled
    """Block start of voice v: w = c z, anchor, RENDERED and FIRST at sample 0."""
    modes32, voice_i = bank[MODES32], bank[VOICE_I]
    voice_i[ANCHOR, v] = 0
    voice_i[RENDERED, v] = 0
    voice_i[FIRST, v] = 0
    _phasors(bank, v, modes32[W_RE][v], modes32[W_IM][v])


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _phasors(bank, v, wr, wi):  # pragma: no cover - compiled
    """(wr, wi) (modes,) = c z of voice v, its LIVE modes."""
    modes32 = bank[MODES32]
    zr, zi, cr, ci = modes32[Z_RE][v], modes32[Z_IM][v], modes32[C_RE][v], modes32[C_IM][v]
    for m in range(bank[VOICE_I][LIVE, v]):
        wr[m] = cr[m] * zr[m] - ci[m] * zi[m]
        wi[m] = cr[m] * zi[m] + ci[m] * zr[m]


@numba.njit(cache=True, fastmath=FASTMATH)
def whole_block(bank, active, count, out, out_start, threshold, ended):  # pragma: no cover - compiled
    """One whole block of voices ``active[:count]`` in which nothing changes their poles: for each voice in turn,
    :func:`start_block`, its block_size samples added to out[out_start:] (:func:`advance`), the state moved to the
    block end (:func:`move_to`) and :func:`settle` (``ended``, the returned count: as there).

    The same arithmetic in the same order as those four passes over all voices, so the same bits; but one voice's
    planes (~9 KB at 256 modes) are loaded once into the first-level cache instead of once per pass (the whole
    bank, ~1.4 MB at 128 voices, does not stay in the second-level cache from pass to pass), and its output phasors
    live in one (2, modes) PHASOR shared by all voices instead of its own W planes. Measured on 128 voices x 256
    modes (thread CPU time, medians): 169 us against the four passes' 176 us in a tight loop; after the thread slept
    0.8 ms both took ~257 us, so what a sleep adds is mostly not these passes' cache traffic."""
    step, scratch, voice_i = bank[STEP], bank[SCRATCH], bank[VOICE_I]
    wr, wi = bank[PHASOR][0], bank[PHASOR][1]
    n = scratch.shape[0]
    n_ended = 0
    for j in range(count):
        v = active[j]
        _phasors(bank, v, wr, wi)  # into the shared PHASOR: the voice's W planes are not needed after the block
        voice_i[ANCHOR, v] = 0
        _samples(wr, wi, step[STEP_C][v], step[STEP_E][v], step[STEP_F][v], voice_i[LIVE, v], scratch, 0, n)
        _add_attack(bank, v, scratch, 0, n)
        add_if_finite(voice_i, v, scratch, 0, n, out, out_start)
        voice_i[RENDERED, v] = n
        voice_i[FIRST, v] = n
        _move_voice(bank, v, n)
        if _settle_voice(bank, v, threshold):
            ended[n_ended] = v
            n_ended += 1
    return n_ended


@numba.njit(cache=True, fastmath=FASTMATH)
def advance(bank, active, count, out, out_start, n):  # pragma: no cover - compiled
    """Render the next n samples of voices ``active[:count]`` and add them to out[out_start : out_start + n]
    (:func:`voice_samples`, voice after voice). out: float32 buffer; n <= block_size. A voice whose samples are not
    finite adds nothing and gets BAD = 1."""
    scratch, voice_i = bank[SCRATCH], bank[VOICE_I]
    for j in range(count):
        v = active[j]
        voice_samples(bank, v, scratch, 0, n)
        add_if_finite(voice_i, v, scratch, 0, n, out, out_start)


@numba.njit(cache=True, fastmath=FASTMATH)
def catch_up(bank, voices, count, at):  # pragma: no cover - compiled
    """Render slots ``voices[:count]`` from their sample RENDERED of the block up to sample ``at`` into their rows of
    PENDING (the samples :func:`advance` would add; the synth adds them to its output later, in voice order)."""
    voice_i, pending = bank[VOICE_I], bank[PENDING]
    for j in range(count):
        v = voices[j]
        done = voice_i[RENDERED, v]
        if at > done:
            voice_samples(bank, v, pending[v], done, at - done)
            voice_i[RENDERED, v] = at


@numba.njit(cache=True, fastmath=FASTMATH)
def emit(bank, active, count, at, out, base, unfinished):  # pragma: no cover - compiled
    """Render voices ``active[:count]`` up to sample ``at`` of the block and add their samples [FIRST, at) to
    ``out`` (sample k at out[base + k]), voice after voice; then FIRST = at. A voice whose samples are not all finite
    adds nothing here: its slot goes to ``unfinished`` (returns how many), its samples stay in PENDING."""
    voice_i, pending, scratch = bank[VOICE_I], bank[PENDING], bank[SCRATCH]
    n_unfinished = 0
    for j in range(count):
        v = active[j]
        first, done, row = voice_i[FIRST, v], voice_i[RENDERED, v], pending[v]
        if first >= at:  # nothing to add (a flush before a steal at the piece's start)
            continue
        n = max(at - done, 0)
        voice_samples(bank, v, scratch, 0, n)  # the rest into scratch (stays in cache), not into its row
        finite = True
        for k in range(first, done):
            if not np.isfinite(row[k]):
                finite = False
        for k in range(n):
            if not np.isfinite(scratch[k]):
                finite = False
        voice_i[RENDERED, v] = done + n
        if finite:
            for k in range(first, done):
                out[base + k] += row[k]
            for k in range(n):
                out[base + done + k] += scratch[k]
            voice_i[FIRST, v] = done + n
        else:
            for k in range(n):
                row[done + k] = scratch[k]
            unfinished[n_unfinished] = v
            n_unfinished += 1
    return n_unfinished


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def voice_samples(bank, v, dest, dest_start, n):  # pragma: no cover - compiled
    """The next n samples of voice v into dest[dest_start : dest_start + n]: y = sum_m Re(w_m), then w <- p w
    (:func:`rotated`), four samples per pass over the modes; plus the attack (if any). A sample's value does not
    depend on how a block is cut into calls (each is the same sum over the modes, in the same order).

    Inlined (its callers share its fastmath flags): a call passing the ``bank`` tuple costs ~80 ns (measured)."""
    modes32, step, voice_i = bank[MODES32], bank[STEP], bank[VOICE_I]
    n_modes = voice_i[LIVE, v]
    wrv = modes32[W_RE][v]
    wiv = modes32[W_IM][v]
    _samples(wrv, wiv, step[STEP_C][v], step[STEP_E][v], step[STEP_F][v], n_modes, dest, dest_start, n)
    _add_attack(bank, v, dest, dest_start, n)


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _samples(wrv, wiv, cv, ev, fv, n_modes, dest, dest_start, n):  # pragma: no cover - compiled
    """:func:`voice_samples` without the attack, on one voice's rows: phasors (wrv, wiv) (modes,), changed in place,
    and its step form (cv, ev, fv) (modes,); n_modes: the voice's LIVE."""
    k = 0
    while k + 4 <= n:
        acc0 = np.float32(0.0)
        acc1 = np.float32(0.0)
        acc2 = np.float32(0.0)
        acc3 = np.float32(0.0)
        for m in range(n_modes):
            a = wrv[m]
            b = wiv[m]
            c = cv[m]
            e = ev[m]
            f = fv[m]
            acc0 += a
            a, b = rotated(a, b, c, e, f)
            acc1 += a
            a, b = rotated(a, b, c, e, f)
            acc2 += a
            a, b = rotated(a, b, c, e, f)
            acc3 += a
            wrv[m], wiv[m] = rotated(a, b, c, e, f)
        dest[dest_start + k] = acc0
        dest[dest_start + k + 1] = acc1
        dest[dest_start + k + 2] = acc2
        dest[dest_start + k + 3] = acc3
        k += 4
    while k < n:
        acc = np.float32(0.0)
        for m in range(n_modes):
            a = wrv[m]
            acc += a
            wrv[m], wiv[m] = rotated(a, wiv[m], cv[m], ev[m], fv[m])
        dest[dest_start + k] = acc
        k += 1


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _add_attack(bank, v, dest, dest_start, n):  # pragma: no cover - compiled
    """Add voice v's attack (if still playing) to its n samples dest[dest_start : dest_start + n]."""
    voice64, voice_i, attack, params = bank[VOICE64], bank[VOICE_I], bank[ATTACK], bank[PARAMS]
    length = attack.shape[1] - 1
    step = params[ATTACK_STEP]
    if length > 0 and voice_i[ATTACK_POS, v] * step < length:
        table = attack[v]
        position = voice_i[ATTACK_POS, v]
        gain = voice64[ATTACK_GAIN, v]
        decay = np.exp(-voice64[FLOOR, v] / params[FS])
        output_gain = params[GAIN]
        for k in range(n):
            t = position * step
            if t >= length:
                break
            i = int(t)
            f = t - i
            a = table[i] * (1.0 - f) + table[i + 1] * f
            dest[dest_start + k] += np.float32(output_gain * gain * a)
            gain *= decay
            position += 1
        voice_i[ATTACK_POS, v] = position
        voice64[ATTACK_GAIN, v] = gain


@numba.njit(cache=True, fastmath=FASTMATH)
def add_if_finite(voice_i, v, samples, first, n, out, out_start):  # pragma: no cover - compiled
    """out[out_start : out_start + n] += samples[first : first + n] if those are all finite, else BAD = 1 for
    voice v (voice_i: the bank's VOICE_I; nothing is added)."""
    finite = True
    for k in range(n):
        if not np.isfinite(samples[first + k]):
            finite = False
    if finite:
        for k in range(n):
            out[out_start + k] += samples[first + k]
    else:
        voice_i[BAD, v] = 1


@numba.njit(cache=True, fastmath=FASTMATH)
def move_to(bank, voices, count, at):  # pragma: no cover - compiled
    """Move the state of slots ``voices[:count]`` from their anchor sample to sample ``at`` of the block:
    z <- z p^(at - anchor) by the binary pole powers (lowest bit first); then anchor = at."""
    for j in range(count):
        _move_voice(bank, voices[j], at)


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _move_voice(bank, v, at):  # pragma: no cover - compiled
    """:func:`move_to` of slot v."""
    modes32, powers, voice_i = bank[MODES32], bank[POWERS], bank[VOICE_I]
    zr, zi = modes32[Z_RE][v], modes32[Z_IM][v]
    steps = at - voice_i[ANCHOR, v]
    level = 0
    while steps > 0:
        if steps & 1:
            qr = powers[level, 0, v]
            qi = powers[level, 1, v]
            for m in range(voice_i[LIVE, v]):
                a = zr[m]
                b = zi[m]
                zr[m] = a * qr[m] - b * qi[m]
                zi[m] = a * qi[m] + b * qr[m]
        steps >>= 1
        level += 1
    voice_i[ANCHOR, v] = at


@numba.njit(cache=True, fastmath=FASTMATH)
def settle(bank, active, count, threshold, ended):  # pragma: no cover - compiled
    """Level bounds of voices ``active[:count]`` (state at the block end or note-on): LEVEL = sum_m |c_m| |z_m|
    (a bound of the voice's modal |y| from now on while |p| <= 1); modes with |z| < SILENT_MODE become exact
    zeros and LIVE = the last nonzero mode + 1, rounded up to LANES. Writes into ``ended`` the slots that are bad,
    or whose level is below ``threshold`` and whose attack (if any) has played to its end; returns how many."""
    n_ended = 0
    for j in range(count):
        v = active[j]
        if _settle_voice(bank, v, threshold):
            ended[n_ended] = v
            n_ended += 1
    return n_ended


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _settle_voice(bank, v, threshold):  # pragma: no cover - compiled
    """:func:`settle` of slot v; returns whether it has ended."""
    modes32, voice64, voice_i, attack, params = bank[MODES32], bank[VOICE64], bank[VOICE_I], bank[ATTACK], bank[PARAMS]
    zrv, ziv, crv, civ = modes32[Z_RE][v], modes32[Z_IM][v], modes32[C_RE][v], modes32[C_IM][v]
    floor2 = SILENT_MODE * SILENT_MODE
    total = 0.0
    last = 0
    for m in range(voice_i[LIVE, v]):  # branch-free, so the compiler vectorises it
        a = zrv[m]
        b = ziv[m]
        z2 = a * a + b * b
        keep = not z2 < floor2  # NaN compares false: such a mode is kept (and its voice reported via BAD)
        zrv[m] = a if keep else np.float32(0.0)
        ziv[m] = b if keep else np.float32(0.0)
        total += np.sqrt(z2 * (crv[m] * crv[m] + civ[m] * civ[m])) if keep else np.float32(0.0)
        last = max(last, (m + 1) * keep)
    voice_i[LIVE, v] = min(-(-last // LANES) * LANES, zrv.shape[0])
    voice64[LEVEL, v] = total
    length = attack.shape[1] - 1
    attack_done = length == 0 or voice_i[ATTACK_POS, v] * params[ATTACK_STEP] >= length
    return voice_i[BAD, v] != 0 or (not total >= threshold and attack_done)


@numba.njit(cache=True, fastmath=FASTMATH)
def load(bank, slot, outputs, row, scale, note, at):  # pragma: no cover - compiled
    """Start voice ``slot`` at sample ``at`` of the block from row ``row`` of excite outputs.

    outputs: (sigma, omega, z0, c, mod_alpha, mod_beta, attack) float32 arrays with a leading row axis
    ((rows, N), (rows, N), (rows, N, 2), (rows, N, 2), (rows, N) or empty, ..., (rows, L) or empty);
    scale: pitch-bend factor; note: the note control (MIDI), reference of the brightness tilt."""
    modes32, voice64, voice_i, attack = bank[MODES32], bank[VOICE64], bank[VOICE_I], bank[ATTACK]
    params, work = bank[PARAMS], bank[WORK]
    sigma, omega, z0, c, mod_alpha, mod_beta, table = outputs
    n_modes = sigma.shape[1]
    brightness = params[BRIGHTNESS]
    modulated = params[MODULATED] != 0.0
    gain = np.float32(params[GAIN])
    omega_note = 2.0 * np.pi * 440.0 * 2.0 ** ((note - 69.0) / 12.0)
    # one loop per plane over row views, each simple enough to be vectorised (measured: a fifth of a load)
    _copy(sigma[row], modes32[SIGMA, slot], n_modes)
    _copy(omega[row], modes32[OMEGA0, slot], n_modes)
    z0_row, c_row, tilt = z0[row], c[row], modes32[TILT, slot]
    zr, zi, cr, ci = modes32[Z_RE, slot], modes32[Z_IM, slot], modes32[C_RE, slot], modes32[C_IM, slot]
    for m in range(n_modes):
        zr[m] = z0_row[m, 0]
        zi[m] = z0_row[m, 1]
    if brightness != 0.0:
        omega_row = omega[row]
        for m in range(n_modes):
            tilt[m] = np.float32(brightness_factor(float(omega_row[m]), omega_note, brightness))
    else:
        tilt[:n_modes] = 1.0
    for m in range(n_modes):
        cr[m] = gain * c_row[m, 0] * tilt[m]
        ci[m] = gain * c_row[m, 1] * tilt[m]
    if modulated:
        _copy(mod_alpha[row], modes32[ALPHA, slot], n_modes)
        _copy(mod_beta[row], modes32[BETA, slot], n_modes)
    length = attack.shape[1] - 1
    if length > 0:
        for k in range(length):
            attack[slot, k] = table[row, k]
        attack[slot, length] = 0.0
    voice_i[ATTACK_POS, slot] = 0
    voice64[ATTACK_GAIN, slot] = 1.0
    voice64[SCALE, slot] = scale
    voice64[FLOOR, slot] = 0.0
    voice_i[BAD, slot] = 0
    voice_i[LIVE, slot] = modes32.shape[2]
    one = work[-1:]
    one[0] = slot
    update_decay(bank, one, 1)
    update_poles(bank, one, 1, True)
    settle(bank, one, 1, 0.0, work)
    one[0] = slot
    start_block(bank, one, 1)
    voice_i[ANCHOR, slot] = at
    voice_i[RENDERED, slot] = at
    voice_i[FIRST, slot] = at


@numba.njit(cache=True)
def _copy(source, dest, n):  # pragma: no cover - compiled
    for m in range(n):
        dest[m] = source[m]


@numba.njit(cache=True)
def brightness_factor(omega0, omega_note, brightness):  # pragma: no cover - compiled
    """The brightness tilt of one mode: clamp((omega0 / omega_note) ** brightness, 1/16, 16), float64
    (omega0 = 0 gives 1/16 for brightness > 0, 16 for brightness < 0)."""
    if omega0 <= 0.0:
        return 1.0 / 16.0 if brightness > 0.0 else 16.0
    return min(max((omega0 / omega_note) ** brightness, 1.0 / 16.0), 16.0)


@numba.njit(cache=True, fastmath=FASTMATH)
def release(bank, slot, sigma, at):  # pragma: no cover - compiled
    """From sample ``at`` of the block on, voice ``slot`` decays at least at ``sigma`` (1/s): the release floor
    (it only grows). The state moves to ``at`` under the old poles first."""
    voice64, work = bank[VOICE64], bank[WORK]
    one = work[-1:]
    one[0] = slot
    move_to(bank, one, 1, at)
    voice64[FLOOR, slot] = max(voice64[FLOOR, slot], sigma)
    update_decay(bank, one, 1)
    update_poles(bank, one, 1, False)


@numba.njit(cache=True, fastmath=FASTMATH)
def bend(bank, voices, count, scale, at):  # pragma: no cover - compiled
    """From sample ``at`` of the block on, slots ``voices[:count]`` play at ``scale`` x their frequencies."""
    voice64 = bank[VOICE64]
    move_to(bank, voices, count, at)
    for j in range(count):
        voice64[SCALE, voices[j]] = scale
    update_poles(bank, voices, count, False)


@numba.njit(cache=True)
def gather_state(bank, active, count, z):  # pragma: no cover - compiled
    """z[j] = (z_re, z_im)[active[j]] for j < count: the readout graph's input (voices, modes, 2)."""
    modes32 = bank[MODES32]
    for j in range(count):
        v = active[j]
        for m in range(z.shape[1]):
            z[j, m, 0] = modes32[Z_RE, v, m]
            z[j, m, 1] = modes32[Z_IM, v, m]


@numba.njit(cache=True)
def scatter_readout(bank, active, count, c):  # pragma: no cover - compiled
    """c of voice active[j] = gain * c[j] * tilt for j < count: the readout graph's output back into the bank."""
    modes32, params = bank[MODES32], bank[PARAMS]
    gain = np.float32(params[GAIN])
    for j in range(count):
        v = active[j]
        for m in range(c.shape[1]):
            modes32[C_RE, v, m] = gain * c[j, m, 0] * modes32[TILT, v, m]
            modes32[C_IM, v, m] = gain * c[j, m, 1] * modes32[TILT, v, m]


@numba.njit(cache=True, fastmath=FASTMATH)
def limit(x, n, gain_state, ceiling, release_coef):  # pragma: no cover - compiled
    """Peak limiter in place on x[:n]: instant attack to keep |y| <= ceiling, exponential release.

    gain_state: (1,) float64 carried across blocks; release_coef: per-sample approach to unity gain.
    """
    g = gain_state[0]
    for k in range(n):
        a = abs(x[k])
        target = 1.0
        if a * g > ceiling:
            g = ceiling / a
        elif g < 1.0:
            g = g + (target - g) * release_coef
            if a * g > ceiling:
                g = ceiling / a
        x[k] = np.float32(x[k] * g)
    gain_state[0] = g


class ModalBank:
    """Preallocated modal state of ``max_voices`` voice slots with ``modes`` modes each, at ``sample_rate`` Hz.

    ``block_size``: the synth's internal block. The caller runs ``start_block`` at each block start,
    ``advance`` for the samples of the block (any cuts), ``move_to`` before changing a voice's poles inside
    the block, and ``settle`` at the block end (see the module doc). Options: ``decay_scale`` (x every mode's
    T60), ``brightness`` (-1..1 spectral tilt). Attack component: ``attack_samples`` (table length L, 0 for
    none) at ``attack_rate`` Hz. Named views of the storage for inspection: ``zr``, ``zi``, ``cr``, ``ci``,
    ``pr``, ``pi``, ``scale``, ``sigma_floor``, ``level``, ``live``, ``bad``, ``anchor``.
    """

    def __init__(self, max_voices: int, modes: int, sample_rate: float, block_size: int, modulated: bool = False,
                 output_gain: float = 1.0, *, attack_samples: int = 0, attack_rate: float = 0.0,
                 decay_scale: float = 1.0, brightness: float = 0.0):
        self.modes = modes
        self.sample_rate = float(sample_rate)
        self.block_size = block_size
        levels = max(int(block_size).bit_length(), 1)  # p^(2^i): moves of up to 2 * block_size - 1 samples
        width = -(-modes // LANES) * LANES  # padded mode axis (see LANES)
        self.modes32 = prefaulted((PLANES, max_voices, width))
        self.modes32[TILT] = 1.0
        self.modes64 = prefaulted((1, max_voices, width), np.float64)
        self.powers = prefaulted((levels, 2, max_voices, width))
        self.voice64 = prefaulted((5, max_voices), np.float64)
        self.voice64[SCALE] = 1.0
        self.voice_i = prefaulted((6, max_voices), np.int64)
        self.attack = prefaulted((max_voices if attack_samples else 0, int(attack_samples) + 1))
        self.params = np.zeros(6)
        self.params[[FS, GAIN, DECAY_SCALE, BRIGHTNESS, MODULATED]] = (
            sample_rate, np.float32(output_gain), decay_scale, brightness, float(modulated))
        self.params[ATTACK_STEP] = float(attack_rate) / self.sample_rate if attack_samples else 0.0
        self.scratch = np.zeros(block_size, np.float32)
        self.work = prefaulted(max_voices + 1, np.int64)
        self.work64 = prefaulted((2, width), np.float64)
        self.step = prefaulted((STEP_PLANES, max_voices, width))
        self.pending = prefaulted((max_voices, block_size))
        self.phasor = prefaulted((2, width))
        self.arrays = (self.modes32, self.modes64, self.powers, self.voice64, self.voice_i, self.attack, self.params,
                       self.scratch, self.work, self.work64, self.step, self.pending, self.phasor)

    zr = property(lambda self: self.modes32[Z_RE][:, : self.modes])
    zi = property(lambda self: self.modes32[Z_IM][:, : self.modes])
    cr = property(lambda self: self.modes32[C_RE][:, : self.modes])
    ci = property(lambda self: self.modes32[C_IM][:, : self.modes])
    pr = property(lambda self: self.powers[0, 0][:, : self.modes])
    pi = property(lambda self: self.powers[0, 1][:, : self.modes])
    scale = property(lambda self: self.voice64[SCALE])
    sigma_floor = property(lambda self: self.voice64[FLOOR])
    level = property(lambda self: self.voice64[LEVEL])
    live = property(lambda self: self.voice_i[LIVE])
    bad = property(lambda self: self.voice_i[BAD].astype(bool))
    anchor = property(lambda self: self.voice_i[ANCHOR])

    def warm_up(self) -> None:
        """Run the kernels once on no voices (compiled, or loaded from numba's cache, here and not later)."""
        none = np.zeros(0, np.int64)
        self.poles(none, 0, new_energy=True)
        self.start_block(none, 0)
        self.advance(none, 0, self.scratch, 0, self.block_size)
        self.settle(none, 0, 0.0)

    def load(self, slot: int, outputs: dict[str, np.ndarray], row: int, scale: float, note: float = 60.0,
             at: int = 0) -> None:
        """Start voice ``slot`` at sample ``at`` of the current block from row ``row`` of excite outputs (float32,
        names as in the contract). ``scale``: pitch-bend frequency factor; ``note``: the note control (MIDI) the
        row was excited with, the reference of the brightness tilt."""
        load(self.arrays, slot, excite_tuple(outputs), row, scale, float(note), at)

    def poles(self, voices: np.ndarray, count: int, new_energy: bool = False) -> None:
        """Recompute the poles (radii too) of slots ``voices[:count]`` (inside a block, ``move_to`` them first)."""
        update_decay(self.arrays, voices, count)
        update_poles(self.arrays, voices, count, new_energy)

    def start_block(self, active: np.ndarray, count: int) -> None:
        """Block start for voices ``active[:count]``: output phasors w = c z, anchors at sample 0."""
        start_block(self.arrays, active, count)

    def advance(self, active: np.ndarray, count: int, out: np.ndarray, start: int, stop: int) -> None:
        """Add the next stop - start (<= block_size) samples of voices ``active[:count]`` to out[start:stop]."""
        advance(self.arrays, active, count, out, start, stop - start)

    def move_to(self, voices: np.ndarray, count: int, at: int) -> None:
        """Move the state z of slots ``voices[:count]`` from their anchors to sample ``at`` of the block."""
        move_to(self.arrays, voices, count, at)

    def settle(self, active: np.ndarray, count: int, threshold: float) -> int:
        """Block end for voices ``active[:count]``: move the state to the block end, update the level bounds,
        flush near-zero modes, and write into ``self.work`` the slots that are bad or below ``threshold``
        (attack over); returns how many."""
        move_to(self.arrays, active, count, self.block_size)
        return settle(self.arrays, active, count, threshold, self.work)

    def apply_readout(self, instrument, active: np.ndarray, count: int) -> None:
        """Run the instrument's readout graph on the state of voices ``active[:count]`` (one call, not real-time:
        allocates; the synth uses preallocated buffers)."""
        z = np.zeros((count, self.modes, 2), np.float32)
        gather_state(self.arrays, active, count, z)
        scatter_readout(self.arrays, active, count, instrument.readout(z))


NO_OUTPUT = np.zeros((0, 0), np.float32)


def excite_tuple(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Excite outputs by name -> the tuple the ``load`` kernel takes (absent optional outputs as empty arrays)."""
    return (outputs["sigma"], outputs["omega"], outputs["z0"], outputs["c"], outputs.get("mod_alpha", NO_OUTPUT),
            outputs.get("mod_beta", NO_OUTPUT), outputs.get("attack", NO_OUTPUT))


def brightness_tilt(omega0: np.ndarray, note: float, brightness: float) -> np.ndarray:
    """Per-mode readout factors of the brightness option: clamp((omega0 / omega_note) ** brightness, 1/16, 16).

    omega0: (modes,) rad/s; note: MIDI note (omega_note = 2 pi midi_to_hz(note)); brightness -1..1 (+1 = +6 dB per
    octave above the note's fundamental). Computed in float64, returned float32 (modes,)."""
    omega_note = 2.0 * np.pi * float(midi_to_hz(float(note)))
    return np.array([brightness_factor(float(w), omega_note, brightness) for w in omega0], np.float32)
