"""render_free's chunked table evaluation equals the closed form y[k] = sum_n Re(c_n z0_n e^{lambda_n k / fs})."""

import numpy as np
import pytest

from eigentone.contract.reference import ModalVoices, audible, render_free


def closed_form(voices: ModalVoices, fs: float, n: int) -> np.ndarray:
    """Every (voice, mode, sample) exponential at once; a mode at or above Nyquist sounds at k = 0 only."""
    k = np.arange(n)
    pole = -np.maximum(voices.sigma, 0.0) + 1j * voices.omega
    powers = np.where(audible(voices.omega, fs)[:, :, None], np.exp(pole[:, :, None] * k / fs), k == 0)
    return np.real(np.einsum("vm,vmk->vk", voices.c * voices.z0, powers))


@pytest.mark.parametrize("voices, modes, n, chunk", [(1, 64, 5000, 512), (3, 17, 1000, 333), (2, 5, 1, 4096)])
def test_the_chunked_render_is_the_closed_form(voices, modes, n, chunk):
    rng = np.random.default_rng(voices + modes)
    fs = 8000.0
    shape = (voices, modes)
    v = ModalVoices(sigma=rng.uniform(-1.0, 30.0, shape), omega=2 * np.pi * rng.uniform(20.0, 6000.0, shape),
                    z0=rng.standard_normal(shape) + 1j * rng.standard_normal(shape),
                    c=rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    assert (~audible(v.omega, fs)).any() or n == 1  # the Nyquist rule is exercised
    np.testing.assert_allclose(render_free(v, fs, n, chunk=chunk), closed_form(v, fs, n), rtol=0, atol=1e-9)
