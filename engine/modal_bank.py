"""The modal bank: every voice's complex one-pole modes, advanced and read out by compiled kernels.

State per voice slot v and mode m, float32, split real/imaginary (arrays (voices, modes))::

    z[k+1] = p * z[k]            p = exp((-max(sigma, sigma_floor) + i omega) / fs)
    y[k]   = sum_m Re(c_m z_m[k])

``omega = scale * omega0`` (pitch bend), or with pole modulation
``omega = sqrt((scale * omega0)^2 + alpha * E)``, ``E = sum_m beta_m |z_m|^2`` evaluated
once per block (the contract's formula, ``eigentone.contract.reference.modulated_omega``).

Kernels are numba-compiled (``cache=True``; fastmath without the no-NaN/no-Inf flags so
the per-voice NaN guard keeps working), write into arrays given to them and loop over the
active voice slots only: no Python loop per sample or per voice inside a block.
"""

from __future__ import annotations

import numba
import numpy as np

# fastmath minus 'nnan'/'ninf': the NaN/Inf guard must not be optimised away.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

SILENT_MODE = 1e-12
"""|z| below which a mode is set to exactly 0 at a block end (keeps float32 state out of denormals)."""


@numba.njit(cache=True, fastmath=FASTMATH)
def advance(active, n_active, live, zr, zi, pr, pi, cr, ci, out, start, stop, scratch, bad):  # pragma: no cover
    """Render samples [start, stop) of every active voice, add them to ``out`` and advance the state.

    active: (voices,) int32 slot indices, first ``n_active`` used; live: (voices,) int32, modes
    [live[v], N) of voice v are exactly zero and skipped; zr, zi, pr, pi, cr, ci: (voices, modes)
    float32; out, scratch: (block,) float32. A voice whose samples are not finite is not added and
    gets ``bad[v] = True``.
    """
    for j in range(n_active):
        v = active[j]
        n_modes = live[v]
        zrv = zr[v]
        ziv = zi[v]
        prv = pr[v]
        piv = pi[v]
        crv = cr[v]
        civ = ci[v]
        finite = True
        for k in range(start, stop):
            acc = np.float32(0.0)
            for m in range(n_modes):
                a = zrv[m]
                b = ziv[m]
                acc += crv[m] * a - civ[m] * b
                zrv[m] = a * prv[m] - b * piv[m]
                ziv[m] = a * piv[m] + b * prv[m]
            scratch[k] = acc
        for k in range(start, stop):
            if not np.isfinite(scratch[k]):
                finite = False
        if finite:
            for k in range(start, stop):
                out[k] += scratch[k]
        else:
            bad[v] = True


@numba.njit(cache=True, fastmath=FASTMATH)
def advance_block(active, n_active, live, zr, zi, pr, pi, qr, qi, cr, ci, out, n, scratch, wr, wi, bad):  # pragma: no cover
    """Fast path for a whole block of n samples: iterate w = c z (so y[k] = sum_m Re(w_m[k])), then jump
    the state with the precomputed block multiplier q = p^n (qr, qi (voices, modes) float32).

    Same arguments and results as :func:`advance` with start=0, stop=n; wr, wi: (modes,) float32 scratch.
    """
    for j in range(n_active):
        v = active[j]
        n_modes = live[v]
        zrv = zr[v]
        ziv = zi[v]
        prv = pr[v]
        piv = pi[v]
        crv = cr[v]
        civ = ci[v]
        for m in range(n_modes):
            wr[m] = crv[m] * zrv[m] - civ[m] * ziv[m]
            wi[m] = crv[m] * ziv[m] + civ[m] * zrv[m]
        for k in range(n):
            acc = np.float32(0.0)
            for m in range(n_modes):
                a = wr[m]
                b = wi[m]
                acc += a
                wr[m] = a * prv[m] - b * piv[m]
                wi[m] = a * piv[m] + b * prv[m]
            scratch[k] = acc
        qrv = qr[v]
        qiv = qi[v]
        for m in range(n_modes):
            a = zrv[m]
            b = ziv[m]
            zrv[m] = a * qrv[m] - b * qiv[m]
            ziv[m] = a * qiv[m] + b * qrv[m]
        finite = True
        for k in range(n):
            if not np.isfinite(scratch[k]):
                finite = False
        if finite:
            for k in range(n):
                out[k] += scratch[k]
        else:
            bad[v] = True


@numba.njit(cache=True, fastmath=FASTMATH)
def _rounded_pole(r, angle):  # pragma: no cover - compiled
    """float32 (re, im) of r exp(i angle), shrunk if rounding made its magnitude exceed 1."""
    a = np.float32(r * np.cos(angle))
    b = np.float32(r * np.sin(angle))
    mag2 = float(a) * float(a) + float(b) * float(b)
    if mag2 > 1.0:
        shrink = np.float32((1.0 - 1e-7) / np.sqrt(mag2))
        a *= shrink
        b *= shrink
    return a, b


@numba.njit(cache=True, fastmath=FASTMATH)
def update_poles(
    voices, n_voices, sigma, omega0, alpha, beta, zr, zi, scale, sigma_floor, energy, modulated, new_energy, fs, block,
    pr, pi, qr, qi,
):  # pragma: no cover - compiled
    """Recompute the per-sample multipliers p and the block multipliers q = p^block of the given voice slots.

    voices: (k,) int32 slots, first ``n_voices`` used; sigma, omega0, alpha, beta: (voices, modes) float32
    (1/s, rad/s); scale, sigma_floor, energy: (voices,) float64 (bend factor, release decay 1/s, modal
    energy); ``new_energy``: re-evaluate E from the current state (block start) before using it.
    Modes at or above Nyquist get p = 0. |p| is kept <= 1 after rounding to float32.
    """
    n_modes = sigma.shape[1]
    nyquist = np.pi * fs
    for j in range(n_voices):
        v = voices[j]
        e = energy[v]
        if modulated and new_energy:
            e = 0.0
            for m in range(n_modes):
                e += beta[v, m] * (zr[v, m] * zr[v, m] + zi[v, m] * zi[v, m])
            energy[v] = e
        for m in range(n_modes):
            w = scale[v] * omega0[v, m]
            if modulated:
                w = np.sqrt(w * w + alpha[v, m] * e)
            if w >= nyquist or w < 0.0:
                pr[v, m] = 0.0
                pi[v, m] = 0.0
                qr[v, m] = 0.0
                qi[v, m] = 0.0
                continue
            s = max(sigma[v, m], sigma_floor[v], 0.0)
            pr[v, m], pi[v, m] = _rounded_pole(np.exp(-s / fs), w / fs)
            qr[v, m], qi[v, m] = _rounded_pole(np.exp(-s * block / fs), w * block / fs)


@numba.njit(cache=True, fastmath=FASTMATH)
def settle(active, n_active, live, zr, zi, cr, ci, level, threshold, bad, ended):  # pragma: no cover - compiled
    """Block end: level[v] = sum_m |c_m| |z_m| (an upper bound of the voice's |y| from now on while
    |p| <= 1), flush modes with |z| < SILENT_MODE to exact zeros, set live[v] to 1 + the last
    nonzero mode, and list in ``ended`` the slots that are bad (NaN/Inf) or whose level fell below
    ``threshold``. Returns how many were listed."""
    floor2 = SILENT_MODE * SILENT_MODE
    n_ended = 0
    for j in range(n_active):
        v = active[j]
        total = 0.0
        last = 0
        for m in range(live[v]):
            z2 = zr[v, m] * zr[v, m] + zi[v, m] * zi[v, m]
            if z2 < floor2:  # NaN compares false: such a mode is kept (and its voice reported via bad)
                zr[v, m] = 0.0
                zi[v, m] = 0.0
            else:
                total += np.sqrt(z2 * (cr[v, m] * cr[v, m] + ci[v, m] * ci[v, m]))
                last = m + 1
        live[v] = last
        level[v] = total
        if bad[v] or not total >= threshold:
            ended[n_ended] = v
            n_ended += 1
    return n_ended


@numba.njit(cache=True)
def gather_state(active, n_active, zr, zi, z):  # pragma: no cover - compiled
    """z[j] = (zr, zi)[active[j]] for j < n_active: the readout graph's input (voices, modes, 2)."""
    for j in range(n_active):
        v = active[j]
        for m in range(zr.shape[1]):
            z[j, m, 0] = zr[v, m]
            z[j, m, 1] = zi[v, m]


@numba.njit(cache=True)
def scatter_readout(active, n_active, c, cr, ci, gain):  # pragma: no cover - compiled
    """(cr, ci)[active[j]] = gain * c[j] for j < n_active: the readout graph's output back into the bank."""
    for j in range(n_active):
        v = active[j]
        for m in range(cr.shape[1]):
            cr[v, m] = gain * c[j, m, 0]
            ci[v, m] = gain * c[j, m, 1]


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

    Arrays (voices, modes) float32: zr, zi (state), pr, pi (per-sample poles), cr, ci (readout),
    sigma (1/s), omega0 (rad/s), alpha, beta (pole modulation). Per voice float64: scale (pitch-bend
    frequency factor), sigma_floor (1/s; release/damper), energy, level (amplitude bound).
    """

    def __init__(self, max_voices: int, modes: int, sample_rate: float, block_size: int, modulated: bool = False,
                 output_gain: float = 1.0):
        shape = (max_voices, modes)
        self.modes = modes
        self.output_gain = np.float32(output_gain)  # applied to the readout weights c (level of the instrument)
        self.sample_rate = float(sample_rate)
        self.modulated = modulated
        self.block_size = block_size
        self.zr, self.zi, self.pr, self.pi, self.cr, self.ci = (np.zeros(shape, np.float32) for _ in range(6))
        self.qr, self.qi = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.wr, self.wi = np.zeros(modes, np.float32), np.zeros(modes, np.float32)
        self.sigma, self.omega0, self.alpha, self.beta = (np.zeros(shape, np.float32) for _ in range(4))
        self.scale = np.ones(max_voices)
        self.sigma_floor = np.zeros(max_voices)
        self.energy = np.zeros(max_voices)
        self.level = np.zeros(max_voices)
        self.live = np.zeros(max_voices, np.int32)
        self.bad = np.zeros(max_voices, np.bool_)
        self.ended = np.zeros(max_voices, np.int32)
        self.zbuf = np.zeros((max_voices, modes, 2), np.float32)
        self.scratch = np.zeros(block_size, np.float32)
        self._one = np.zeros(1, np.int32)

    def warm_up(self) -> None:
        """Run every kernel once on no voices, so compilation/cache loading never happens on the audio thread."""
        none = np.zeros(0, np.int32)
        self.poles(none, 0, new_energy=True)
        self.advance(none, 0, self.scratch, 0, 0)
        self.advance(none, 0, self.scratch, 0, self.block_size)
        self.settle(none, 0, 0.0)
        gather_state(none, 0, self.zr, self.zi, self.zbuf)
        scatter_readout(none, 0, self.zbuf, self.cr, self.ci, self.output_gain)
        limit(self.scratch, 0, np.ones(1), 1.0, 0.5)

    def load(self, slot: int, outputs: dict[str, np.ndarray], row: int, scale: float) -> None:
        """Start voice ``slot`` from row ``row`` of excite outputs (float32, names as in the contract)."""
        self.sigma[slot] = outputs["sigma"][row]
        self.omega0[slot] = outputs["omega"][row]
        self.zr[slot] = outputs["z0"][row, :, 0]
        self.zi[slot] = outputs["z0"][row, :, 1]
        self.cr[slot] = self.output_gain * outputs["c"][row, :, 0]
        self.ci[slot] = self.output_gain * outputs["c"][row, :, 1]
        if self.modulated:
            self.alpha[slot] = outputs["mod_alpha"][row]
            self.beta[slot] = outputs["mod_beta"][row]
        self.scale[slot] = scale
        self.sigma_floor[slot] = 0.0
        self.bad[slot] = False
        self._one[0] = slot
        self.poles(self._one, 1, new_energy=True)
        self.live[slot] = self.modes
        settle(self._one, 1, self.live, self.zr, self.zi, self.cr, self.ci, self.level, 0.0, self.bad, self.ended)

    def poles(self, voices: np.ndarray, count: int, new_energy: bool = False) -> None:
        """Recompute the poles of slots ``voices[:count]`` (after a bend, a release, or per block when modulated)."""
        update_poles(voices, count, self.sigma, self.omega0, self.alpha, self.beta, self.zr, self.zi, self.scale,
                     self.sigma_floor, self.energy, self.modulated, new_energy, self.sample_rate, self.block_size, self.pr, self.pi, self.qr, self.qi)

    def pole_of(self, slot: int) -> None:
        """Recompute the poles of one slot."""
        self._one[0] = slot
        self.poles(self._one, 1)

    def advance(self, active: np.ndarray, count: int, out: np.ndarray, start: int, stop: int) -> None:
        """Add samples [start, stop) of voices ``active[:count]`` to ``out`` (block buffer) and advance them.

        A whole block (0, block_size) takes the fast path (:func:`advance_block`)."""
        if start == 0 and stop == self.block_size:
            advance_block(active, count, self.live, self.zr, self.zi, self.pr, self.pi, self.qr, self.qi, self.cr,
                          self.ci, out, stop, self.scratch, self.wr, self.wi, self.bad)
            return
        advance(active, count, self.live, self.zr, self.zi, self.pr, self.pi, self.cr, self.ci, out, start, stop,
                self.scratch, self.bad)

    def settle(self, active: np.ndarray, count: int, threshold: float) -> int:
        """Block end for voices ``active[:count]``: update ``level``, flush near-zero modes, and write into
        ``self.ended`` the slots that are bad or below ``threshold``; returns how many."""
        return settle(active, count, self.live, self.zr, self.zi, self.cr, self.ci, self.level, threshold, self.bad, self.ended)

    def apply_readout(self, instrument, active: np.ndarray, count: int) -> None:
        """Run the instrument's readout graph on the state of voices ``active[:count]`` (one batched call)."""
        gather_state(active, count, self.zr, self.zi, self.zbuf)
        scatter_readout(active, count, instrument.readout(self.zbuf[:count]), self.cr, self.ci, self.output_gain)
