"""``eigentone bench physics``: how long the reference solvers take to generate one second of sound.

For each solver (linear/nonlinear string, linear/nonlinear plate) it renders ``--duration`` seconds at
``--sample-rate`` Hz with a 64-point grid (string: 64 points; plate: 8 x 8) and the pickup, and prints the
best of ``--repeat`` wall-clock times and the real-time factor (seconds of audio per second of compute).
Numba compilation happens in a warm-up run that is not timed.
"""

from __future__ import annotations

import argparse
import time

HELP = "time the reference physics solvers (seconds per second of audio, real-time factor)"
EXAMPLE = "eigentone bench physics --sample-rate 48000 --duration 1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eigentone bench physics``."""
    parser.add_argument("--sample-rate", type=float, default=48000.0, help="Hz (default 48000)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of audio per run (default 1)")
    parser.add_argument("--string-modes", type=int, default=60, help="string modes (default 60)")
    parser.add_argument("--plate-modes", type=int, default=100, help="plate modes (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per solver, best is shown (default 3)")


def run(args: argparse.Namespace) -> int:
    """Print one line per solver; returns 0."""
    from training.physics.modal import Excitation
    from training.physics.plate_linear import PlateParams, simulate_plate
    from training.physics.plate_nonlinear import simulate_plate_nonlinear
    from training.physics.string_linear import StringParams, params_for_f0, simulate_string
    from training.physics.string_nonlinear import simulate_string_nonlinear

    string = params_for_f0(110.0, StringParams())
    pluck = Excitation("pluck", 0.2 * string.L, 0.05 * string.L, 3e-3)
    plate = PlateParams()
    strike = Excitation("strike", 0.13, 0.05, 1.0, position_y=0.11)
    sr, duration = args.sample_rate, args.duration
    cases = [
        ("string linear", lambda: simulate_string(string, pluck, sr, duration, 64, [0.1], args.string_modes)),
        ("string nonlinear", lambda: simulate_string_nonlinear(string, pluck, sr, duration, 64, [0.1],
                                                               args.string_modes)),
        ("plate linear", lambda: simulate_plate(plate, strike, sr, duration, (8, 8), [(0.1, 0.08)],
                                                args.plate_modes)),
        ("plate nonlinear", lambda: simulate_plate_nonlinear(plate, strike, sr, duration, (8, 8), [(0.1, 0.08)],
                                                             args.plate_modes)),
    ]
    print(f"physics solvers: {duration:g} s at {sr:g} Hz, 64 grid points, string {args.string_modes} modes, "
          f"plate {args.plate_modes} modes; best of {args.repeat}")
    for name, solve in cases:
        solve()  # warm-up (numba compile / cache load)
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            solve()
            best = min(best, time.perf_counter() - start)
        print(f"  {name:<17} {best:8.4f} s   real-time factor {duration / best:8.1f}x")
    return 0
