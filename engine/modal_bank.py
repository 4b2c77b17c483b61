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
calls. The state ``z`` itself is only moved at *anchors*: when a voice's poles change inside a block
(release, bend) and at the block end it jumps from its last anchor ``a`` to sample ``k`` as
``z <- z p^(k - a)``, with the binary powers ``p^(2^i)`` formed in float64 and stored in float32. So
z never accumulates the rounding of 64 per-sample products, and where the caller cuts a block
changes nothing.

A bundle with an attack component also plays, per voice, a short table ``a`` (samples at the
table's own rate ``fs_a``) from the voice's first sample on: sample k of the voice adds
``output_gain * env_k * a(k * fs_a / fs)`` (linear interpolation, silent past the table's end);
``env`` is 1 until the voice is released, then shrinks by ``exp(-sigma_floor / fs)`` per sample.

Kernels are numba-compiled (``cache=True``; fastmath without the no-NaN/no-Inf flags so
the per-voice NaN guard keeps working), write into arrays given to them and loop over the
active voice slots only: no Python loop per sample or per voice inside a block.
"""

from __future__ import annotations

import numba
import numpy as np

from eigentone.contract.reference import midi_to_hz

# fastmath minus 'nnan'/'ninf': the NaN/Inf guard must not be optimised away.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

SILENT_MODE = 1e-12
"""|z| below which a mode is set to exactly 0 at a block end (keeps float32 state out of denormals)."""


@numba.njit(cache=True, fastmath=FASTMATH)
def _play_attack(table, length, step, position, gain, decay, output_gain, scratch, start, stop):  # pragma: no cover
    """Add samples [start, stop) of one voice's attack to ``scratch``; return its new (position, gain).

    table: (length + 1,) float32, table[length] = 0; position: samples played so far (int); gain: the release
    envelope, multiplied by ``decay`` after each sample; step = fs_a / fs (double)."""
    for k in range(start, stop):
        t = position * step
        if t >= length:
            break
        i = int(t)
        f = t - i
        a = table[i] * (1.0 - f) + table[i + 1] * f
        scratch[k] += np.float32(output_gain * gain * a)
        gain *= decay
        position += 1
    return position, gain


@numba.njit(cache=True, fastmath=FASTMATH)
def _finish_voice(v, scratch, n, out, out_start, bad, attack, attack_len, attack_step, attack_pos, attack_gain,
                  sigma_floor, fs, output_gain):  # pragma: no cover - compiled
    """Add the voice's attack (if still playing) to its samples scratch[:n], then add those to
    out[out_start : out_start + n] unless they are not finite (then ``bad[v] = True``)."""
    if attack_len > 0 and attack_pos[v] * attack_step < attack_len:
        attack_pos[v], attack_gain[v] = _play_attack(attack[v], attack_len, attack_step, attack_pos[v],
                                                     attack_gain[v], np.exp(-sigma_floor[v] / fs), output_gain,
                                                     scratch, 0, n)
    finite = True
    for k in range(n):
        if not np.isfinite(scratch[k]):
            finite = False
    if finite:
        for k in range(n):
            out[out_start + k] += scratch[k]
    else:
        bad[v] = True


@numba.njit(cache=True, fastmath=FASTMATH)
def start_block(active, n_active, live, zr, zi, cr, ci, wr, wi, anchor):  # pragma: no cover - compiled
    """Block start: the output phasors w = c z of voices ``active[:n_active]`` (all (voices, modes) float32),
    anchored at sample 0 of the block."""
    for j in range(n_active):
        v = active[j]
        anchor[v] = 0
        for m in range(live[v]):
            wr[v, m] = cr[v, m] * zr[v, m] - ci[v, m] * zi[v, m]
            wi[v, m] = cr[v, m] * zi[v, m] + ci[v, m] * zr[v, m]


@numba.njit(cache=True, fastmath=FASTMATH)
def advance(active, n_active, live, wr, wi, pr, pi, out, out_start, n, scratch, bad,
            attack, attack_len, attack_step, attack_pos, attack_gain, sigma_floor, fs, output_gain):  # pragma: no cover
    """Render the next n samples of every active voice and add them to out[out_start : out_start + n]:
    y = sum_m Re(w_m), then w <- p w, four samples per pass over the modes.

    active: (voices,) int32 slot indices, first ``n_active`` used; live: (voices,) int32, modes
    [live[v], N) of voice v are exactly zero and skipped; wr, wi, pr, pi: (voices, modes) float32;
    out: float32 buffer; scratch: (>= n,) float32. A voice whose samples are not finite is not added and
    gets ``bad[v] = True``. Attack: attack (voices, attack_len + 1) float32 tables (attack_len 0: none),
    attack_pos (voices,) int64 samples played, attack_gain (voices,) float64 release envelope.
    """
    for j in range(n_active):
        v = active[j]
        n_modes = live[v]
        wrv = wr[v]
        wiv = wi[v]
        prv = pr[v]
        piv = pi[v]
        k = 0
        while k + 4 <= n:
            acc0 = np.float32(0.0)
            acc1 = np.float32(0.0)
            acc2 = np.float32(0.0)
            acc3 = np.float32(0.0)
            for m in range(n_modes):
                a = wrv[m]
                b = wiv[m]
                c = prv[m]
                d = piv[m]
                acc0 += a
                a, b = a * c - b * d, a * d + b * c
                acc1 += a
                a, b = a * c - b * d, a * d + b * c
                acc2 += a
                a, b = a * c - b * d, a * d + b * c
                acc3 += a
                wrv[m] = a * c - b * d
                wiv[m] = a * d + b * c
            scratch[k] = acc0
            scratch[k + 1] = acc1
            scratch[k + 2] = acc2
            scratch[k + 3] = acc3
            k += 4
        while k < n:
            acc = np.float32(0.0)
            for m in range(n_modes):
                a = wrv[m]
                b = wiv[m]
                acc += a
                wrv[m] = a * prv[m] - b * piv[m]
                wiv[m] = a * piv[m] + b * prv[m]
            scratch[k] = acc
            k += 1
        _finish_voice(v, scratch, n, out, out_start, bad, attack, attack_len, attack_step, attack_pos, attack_gain,
                      sigma_floor, fs, output_gain)


@numba.njit(cache=True, fastmath=FASTMATH)
def move_anchor(voices, n_voices, at, anchor, live, zr, zi, powr, powi):  # pragma: no cover - compiled
    """Move the state of voices ``voices[:n_voices]`` from their anchor sample (``anchor``, (voices,) int32,
    inside the block) to sample ``at``: z <- z p^(at - anchor) by the binary powers powr, powi
    (levels, voices, modes) float32; then anchor = at."""
    for j in range(n_voices):
        v = voices[j]
        steps = at - anchor[v]
        level = 0
        while steps > 0:
            if steps & 1:
                for m in range(live[v]):
                    a = zr[v, m]
                    b = zi[v, m]
                    zr[v, m] = a * powr[level, v, m] - b * powi[level, v, m]
                    zi[v, m] = a * powi[level, v, m] + b * powr[level, v, m]
            steps >>= 1
            level += 1
        anchor[v] = at


@numba.njit(cache=True, fastmath=FASTMATH)
def _rounded_pole(a, b):  # pragma: no cover - compiled
    """float32 (re, im) of the float64 pole a + ib, shrunk if rounding made its magnitude exceed 1."""
    a32 = np.float32(a)
    b32 = np.float32(b)
    mag2 = float(a32) * float(a32) + float(b32) * float(b32)
    if mag2 > 1.0:
        shrink = np.float32((1.0 - 1e-7) / np.sqrt(mag2))
        a32 *= shrink
        b32 *= shrink
    return a32, b32


@numba.njit(cache=True, fastmath=FASTMATH)
def update_poles(
    voices, n_voices, sigma, omega0, alpha, beta, zr, zi, scale, sigma_floor, energy, modulated, new_energy, fs,
    powr, powi, decay_scale,
):  # pragma: no cover - compiled
    """Recompute the pole powers p^(2^i) (powr, powi (levels, voices, modes) float32) of the given voice slots.

    voices: (k,) int32 slots, first ``n_voices`` used; sigma, omega0, alpha, beta: (voices, modes) float32
    (1/s, rad/s); scale, sigma_floor, energy: (voices,) float64 (bend factor, release decay 1/s, modal
    energy); ``new_energy``: re-evaluate E from the current state (block start) before using it.
    The decay rate used is max(sigma / decay_scale, sigma_floor): ``decay_scale`` multiplies every mode's T60,
    the release floor is not scaled. p = exp((-rate + i omega) / fs) is formed in float64 and squared in
    float64 for the higher powers; each is rounded to float32 with |p| kept <= 1. Modes at or above Nyquist
    get p = 0.
    """
    n_modes = sigma.shape[1]
    levels = powr.shape[0]
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
                for level in range(levels):
                    powr[level, v, m] = 0.0
                    powi[level, v, m] = 0.0
                continue
            s = max(sigma[v, m] / decay_scale, sigma_floor[v], 0.0)
            r = np.exp(-s / fs)
            a = r * np.cos(w / fs)
            b = r * np.sin(w / fs)
            for level in range(levels):
                powr[level, v, m], powi[level, v, m] = _rounded_pole(a, b)
                a, b = a * a - b * b, 2.0 * a * b


@numba.njit(cache=True, fastmath=FASTMATH)
def settle(active, n_active, live, zr, zi, cr, ci, level, threshold, bad, ended, attack_len, attack_step,
           attack_pos):  # pragma: no cover - compiled
    """Block end: level[v] = sum_m |c_m| |z_m| (an upper bound of the voice's modal |y| from now on while
    |p| <= 1), flush modes with |z| < SILENT_MODE to exact zeros, set live[v] to 1 + the last
    nonzero mode, and list in ``ended`` the slots that are bad (NaN/Inf), or whose level fell below
    ``threshold`` and whose attack (if any) has played to its end. Returns how many were listed."""
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
        attack_done = attack_len == 0 or attack_pos[v] * attack_step >= attack_len
        if bad[v] or (not total >= threshold and attack_done):
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
def scatter_readout(active, n_active, c, cr, ci, gain, tilt):  # pragma: no cover - compiled
    """(cr, ci)[active[j]] = gain * c[j] * tilt[active[j]] for j < n_active: the readout graph's output back into
    the bank, with each voice's brightness tilt."""
    for j in range(n_active):
        v = active[j]
        for m in range(cr.shape[1]):
            cr[v, m] = gain * c[j, m, 0] * tilt[v, m]
            ci[v, m] = gain * c[j, m, 1] * tilt[v, m]


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

    Arrays (voices, modes) float32: zr, zi (state at the voice's anchor), wr, wi (output phasors), cr, ci
    (readout), sigma (1/s), omega0 (rad/s), alpha, beta (pole modulation), tilt (brightness); powr, powi
    (levels, voices, modes) float32: the pole powers p^(2^i) (pr, pi: the per-sample poles, views of level 0).
    Per voice: anchor (int32, sample of the block where z is valid); float64 scale (pitch-bend frequency
    factor), sigma_floor (1/s; release/damper), energy, level (amplitude bound).
    ``block_size``: the synth's internal block. The caller runs ``start_block`` at each block start,
    ``advance`` for the samples of the block (any cuts), ``move_to`` before changing a voice's poles inside
    the block, and ``settle`` at the block end (see the module doc).
    Player options: ``decay_scale`` (x every mode's T60), ``brightness`` (-1..1 spectral tilt).
    Attack component: ``attack_samples`` (table length L, 0 for none) at ``attack_rate`` Hz; per voice a
    (L + 1,) table, the samples played (``attack_pos``) and the release envelope (``attack_gain``).
    """

    def __init__(self, max_voices: int, modes: int, sample_rate: float, block_size: int, modulated: bool = False,
                 output_gain: float = 1.0, *, attack_samples: int = 0, attack_rate: float = 0.0,
                 decay_scale: float = 1.0, brightness: float = 0.0):
        shape = (max_voices, modes)
        self.modes = modes
        self.output_gain = np.float32(output_gain)  # applied to the readout weights c (level of the instrument)
        self.sample_rate = float(sample_rate)
        self.modulated = modulated
        self.block_size = block_size
        self.decay_scale = float(decay_scale)
        self.brightness = float(brightness)
        self.zr, self.zi, self.wr, self.wi, self.cr, self.ci = (np.zeros(shape, np.float32) for _ in range(6))
        levels = max(int(block_size).bit_length(), 1)  # p^(2^i): moves of up to 2 * block_size - 1 samples
        self.powr, self.powi = np.zeros((levels, *shape), np.float32), np.zeros((levels, *shape), np.float32)
        self.pr, self.pi = self.powr[0], self.powi[0]  # per-sample poles (views)
        self.sigma, self.omega0, self.alpha, self.beta = (np.zeros(shape, np.float32) for _ in range(4))
        self.tilt = np.ones(shape, np.float32)
        self.anchor = np.zeros(max_voices, np.int32)
        self.scale = np.ones(max_voices)
        self.sigma_floor = np.zeros(max_voices)
        self.energy = np.zeros(max_voices)
        self.level = np.zeros(max_voices)
        self.live = np.zeros(max_voices, np.int32)
        self.bad = np.zeros(max_voices, np.bool_)
        self.ended = np.zeros(max_voices, np.int32)
        self.zbuf = np.zeros((max_voices, modes, 2), np.float32)
        self.scratch = np.zeros(block_size, np.float32)
        self.attack_len = int(attack_samples)
        self.attack_step = float(attack_rate) / self.sample_rate if attack_samples else 0.0
        self.attack = np.zeros((max_voices if attack_samples else 0, self.attack_len + 1), np.float32)
        self.attack_pos = np.zeros(max_voices, np.int64)
        self.attack_gain = np.ones(max_voices)
        self._one = np.zeros(1, np.int32)

    def warm_up(self) -> None:
        """Run every kernel once on no voices, so compilation/cache loading never happens on the audio thread."""
        none = np.zeros(0, np.int32)
        self.poles(none, 0, new_energy=True)
        self.start_block(none, 0)
        self.advance(none, 0, self.scratch, 0, self.block_size)
        self.move_to(none, 0, 0)
        self.settle(none, 0, 0.0)
        gather_state(none, 0, self.zr, self.zi, self.zbuf)
        scatter_readout(none, 0, self.zbuf, self.cr, self.ci, self.output_gain, self.tilt)
        limit(self.scratch, 0, np.ones(1), 1.0, 0.5)

    def load(self, slot: int, outputs: dict[str, np.ndarray], row: int, scale: float, note: float = 60.0,
             at: int = 0) -> None:
        """Start voice ``slot`` at sample ``at`` of the current block from row ``row`` of excite outputs (float32,
        names as in the contract). ``scale``: pitch-bend frequency factor; ``note``: the note control (MIDI) the
        row was excited with, the reference of the brightness tilt."""
        self.sigma[slot] = outputs["sigma"][row]
        self.omega0[slot] = outputs["omega"][row]
        self.zr[slot] = outputs["z0"][row, :, 0]
        self.zi[slot] = outputs["z0"][row, :, 1]
        if self.brightness != 0.0:
            self.tilt[slot] = brightness_tilt(outputs["omega"][row], note, self.brightness)
        else:
            self.tilt[slot] = 1.0
        self.cr[slot] = self.output_gain * outputs["c"][row, :, 0] * self.tilt[slot]
        self.ci[slot] = self.output_gain * outputs["c"][row, :, 1] * self.tilt[slot]
        if self.modulated:
            self.alpha[slot] = outputs["mod_alpha"][row]
            self.beta[slot] = outputs["mod_beta"][row]
        if self.attack_len:
            self.attack[slot, : self.attack_len] = outputs["attack"][row]
            self.attack_pos[slot] = 0
            self.attack_gain[slot] = 1.0
        self.scale[slot] = scale
        self.sigma_floor[slot] = 0.0
        self.bad[slot] = False
        self._one[0] = slot
        self.live[slot] = self.modes
        self.poles(self._one, 1, new_energy=True)
        settle(self._one, 1, self.live, self.zr, self.zi, self.cr, self.ci, self.level, 0.0, self.bad, self.ended,
               0, 0.0, self.attack_pos)
        self.start_block(self._one, 1)
        self.anchor[slot] = at

    def poles(self, voices: np.ndarray, count: int, new_energy: bool = False) -> None:
        """Recompute the poles of slots ``voices[:count]`` (after a bend, a release, or per block when modulated;
        inside a block, ``move_to`` the voices first)."""
        update_poles(voices, count, self.sigma, self.omega0, self.alpha, self.beta, self.zr, self.zi, self.scale,
                     self.sigma_floor, self.energy, self.modulated, new_energy, self.sample_rate, self.powr, self.powi,
                     self.decay_scale)

    def release(self, slot: int, sigma: float, at: int) -> None:
        """From sample ``at`` of the block on, voice ``slot`` decays at least at ``sigma`` (1/s): the release
        floor (it only grows). The state moves to ``at`` under the old poles first."""
        self._one[0] = slot
        self.move_to(self._one, 1, at)
        self.sigma_floor[slot] = max(self.sigma_floor[slot], sigma)
        self.poles(self._one, 1)

    def bend(self, voices: np.ndarray, count: int, scale: float, at: int) -> None:
        """From sample ``at`` of the block on, slots ``voices[:count]`` play at ``scale`` x their frequencies."""
        self.move_to(voices, count, at)
        for j in range(count):
            self.scale[voices[j]] = scale
        self.poles(voices, count)

    def start_block(self, active: np.ndarray, count: int) -> None:
        """Block start for voices ``active[:count]``: output phasors w = c z, anchors at sample 0."""
        start_block(active, count, self.live, self.zr, self.zi, self.cr, self.ci, self.wr, self.wi, self.anchor)

    def advance(self, active: np.ndarray, count: int, out: np.ndarray, start: int, stop: int) -> None:
        """Add the next stop - start (<= block_size) samples of voices ``active[:count]`` to out[start:stop]."""
        advance(active, count, self.live, self.wr, self.wi, self.pr, self.pi, out, start, stop - start, self.scratch,
                self.bad, self.attack, self.attack_len, self.attack_step, self.attack_pos, self.attack_gain,
                self.sigma_floor, self.sample_rate, self.output_gain)

    def move_to(self, voices: np.ndarray, count: int, at: int) -> None:
        """Move the state z of slots ``voices[:count]`` from their anchors to sample ``at`` of the block."""
        move_anchor(voices, count, at, self.anchor, self.live, self.zr, self.zi, self.powr, self.powi)

    def settle(self, active: np.ndarray, count: int, threshold: float) -> int:
        """Block end for voices ``active[:count]``: move the state to the block end, update ``level``, flush
        near-zero modes, and write into ``self.ended`` the slots that are bad or below ``threshold`` (attack
        over); returns how many."""
        self.move_to(active, count, self.block_size)
        return settle(active, count, self.live, self.zr, self.zi, self.cr, self.ci, self.level, threshold, self.bad,
                      self.ended, self.attack_len, self.attack_step, self.attack_pos)

    def apply_readout(self, instrument, active: np.ndarray, count: int) -> None:
        """Run the instrument's readout graph on the state of voices ``active[:count]`` (one batched call)."""
        gather_state(active, count, self.zr, self.zi, self.zbuf)
        scatter_readout(active, count, instrument.readout(self.zbuf[:count]), self.cr, self.ci, self.output_gain,
                        self.tilt)


def brightness_tilt(omega0: np.ndarray, note: float, brightness: float) -> np.ndarray:
    """Per-mode readout factors of the brightness option: clamp((omega0 / omega_note) ** brightness, 1/16, 16).

    omega0: (modes,) rad/s; note: MIDI note (omega_note = 2 pi midi_to_hz(note)); brightness -1..1 (+1 = +6 dB per
    octave above the note's fundamental). Computed in float64, returned float32 (modes,)."""
    omega_note = 2.0 * np.pi * float(midi_to_hz(float(note)))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = (np.asarray(omega0, np.float64) / omega_note) ** float(brightness)
    return np.clip(np.nan_to_num(factor, nan=1.0, posinf=16.0), 1.0 / 16.0, 16.0).astype(np.float32)
