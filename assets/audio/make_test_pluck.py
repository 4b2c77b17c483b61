"""Make assets/audio/nylon_b3.flac: the DAFx24 nylon B string (f1 ~ 247 Hz), plucked, 44.1 kHz, 2.5 s.

Exact modal solution from training/physics/string_linear.py, pickup near the bridge, a little
white noise (-70 dB re peak), 16-bit mono FLAC. Run: .venv/bin/python assets/audio/make_test_pluck.py
"""

from pathlib import Path

import numpy as np
import soundfile as sf

from training.physics.modal import Excitation
from training.physics.string_linear import StringParams, simulate_string

FS = 44100
params = StringParams()
res = simulate_string(params, Excitation("pluck", position=0.2 * params.L, width=0.02, amplitude=2e-3),
                      sample_rate=FS, duration=2.5, grid_points=16, pickup_positions=[0.07 * params.L], n_modes=60)
x = res.pickups[0]
x = 0.5 * x / np.max(np.abs(x))
x = x + 10 ** (-70 / 20) * 0.5 * np.random.default_rng(0).standard_normal(x.size)
x = np.concatenate([np.zeros(2205), x])  # 50 ms of silence before the pluck (the loader trims it)
out = Path(__file__).with_name("nylon_b3.flac")
sf.write(out, x, FS, subtype="PCM_16")
print(f"{out}: {out.stat().st_size / 1024:.0f} KB")
