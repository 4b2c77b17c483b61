"""``eigentone simulate``: build a training dataset of strings or plates from the reference solvers.

Each example draws physical parameters and an excitation at random (numpy ``default_rng(--seed)``), runs the
exact modal solver (linear) or the energy-conserving tension-modulated solver (``--nonlinear``), and stores
the displacement field on the grid plus the pickup signal in an HDF5 dataset (``training/data/dataset.py``).

Random ranges without a preset (U = uniform, all independent):

string
    note U{40..76} (E2..E5) -> tension from ``params_for_f0``; L U(0.55, 0.75) m; d1, d3 = nylon values x U(0.5, 2);
    other parameters the nylon B string (``StringParams``), or plain steel with ``--material steel``. Excitation: pluck (75 %) or strike, raised cosine,
    position U(0.15, 0.85) L, width U(0.02, 0.1) L; pluck peak U(0.5, 3) mm (nonlinear U(1, 8) mm), strike peak
    velocity U(0.1, 1) m/s (nonlinear U(0.3, 2) m/s). Pickup at 0.12 L.
plate
    steel (``PlateParams``) with Lx U(0.3, 0.6) m, Ly = Lx x U(0.5, 1), h U(0.5, 2) mm; strike, raised cosine,
    centre U(0.2, 0.8) of each side, width U(0.03, 0.08) m, peak velocity U(0.1, 1) m/s (nonlinear U(0.5, 5) m/s).
    Pickup at (0.31 Lx, 0.27 Ly). Grid G x G.

Modes: ``--modes M`` for every example, or by default the most modes (up to 64 for strings, 40 for plates)
whose frequencies stay below 0.8 x Nyquist.

Presets (explicit options override them):

diaz2024-linear / diaz2024-nonlinear
    Diaz, De La Vega Martin & Sandler, DAFx24 (arXiv 2408.16650): the nylon B string with fixed parameters
    (``StringParams`` defaults), 101 grid points, 16 kHz, 25 modes, 4000 samples (0.25 s), 1000 examples,
    "Gaussian" pluck exp(-((x - c) / w)^2) as in their code (physmodjax), c ~ U(0.3, 0.7) L, w ~ U(2 dx, 0.1 L)
    (stored as the standard deviation w / sqrt 2, the ``gaussian`` shape's width), peak U(1, 10) mm,
    zero initial velocity; the nonlinear set adds Kirchhoff-Carrier tension modulation with the same ranges
    (at 10 mm the glide of the fundamental is tens of cents). Their 4 kHz / 10-mode variant is not
    reproducible as stated: modes 9 and 10 of this string (2.23, 2.51 kHz) lie above the 2 kHz Nyquist limit,
    so use ``--sample-rate 4000 --modes 8``. The paper's uniform-noise initial conditions are not drawn here.
plate2025
    Stands beside De La Vega Martin, Diaz & Sandler 2025 (arXiv 2507.12563, nonlinear elastic plates, evaluated
    over the first 250 ms). The values below are ours, chosen and documented here because the paper's exact
    set-up was not available to us: Berger (not von Karman) nonlinearity, the default steel plate
    0.4 x 0.3 x 0.001 m, 40 modes, 16 kHz, 4000 samples (0.25 s), 21 x 21 grid, 200 examples, raised-cosine
    strike at U(0.2, 0.8) of each side, width U(0.03, 0.08) m, peak velocity U(0.5, 5) m/s (peak displacement
    comparable to the thickness, where the nonlinearity matters).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import eigentone
from eigentone.errors import EigentoneError
from eigentone.files import atomic_path
from training.physics.modal import SHAPES

HELP = "simulate strings or plates with the reference physics solvers and save a training dataset"
EXAMPLE = "eigentone simulate string --nonlinear --count 100 --sample-rate 16000 --duration 0.25 --out data/strings.h5"

SHAPE_CODES: dict[str, int] = {name: code for code, name in enumerate(SHAPES)}
"""Values of ``excitation["shape"]``: 0 raised cosine, 1 triangle, 2 gaussian."""


@dataclass(frozen=True)
class Preset:
    """Default options and random ranges of one dataset recipe."""

    kind: str
    nonlinear: bool
    count: int
    sample_rate: float
    duration: float
    grid: int
    modes: int | None
    fixed_params: bool  # True: one physical instrument for every example
    shape: str
    position: tuple[float, float]  # fraction of the length (per side for plates)
    width: tuple[float, float]  # m; a lower bound of None-like 0 means "2 grid spacings" (see _draw_string)
    amplitude: tuple[float, float]  # m (pluck) or m/s (strike)
    strike_share: float


STRING_MATERIALS: dict[str, dict[str, float]] = {
    # the nylon B string of arXiv 2408.16650 (StringParams defaults)
    "nylon": {},
    # plain steel, 0.3 mm diameter (A = pi d^2 / 4, I = pi d^4 / 64): stiffer per unit mass and less
    # damped than nylon, so brighter and longer ringing; tension is set per note by params_for_f0
    "steel": {"rho": 7850.0, "A": 7.069e-8, "E": 2.0e11, "I": 3.976e-16, "T": 100.0, "d1": 4e-5, "d3": 4e-6},
}
"""Base string parameters of ``--material`` for random (non-preset) strings, SI units."""

PRESETS: dict[str, Preset] = {
    "diaz2024-linear": Preset("string", False, 1000, 16000.0, 0.25, 101, 25, True, "gaussian", (0.3, 0.7),
                              (0.0, 0.065), (1e-3, 1e-2), 0.0),
    "diaz2024-nonlinear": Preset("string", True, 1000, 16000.0, 0.25, 101, 25, True, "gaussian", (0.3, 0.7),
                                 (0.0, 0.065), (1e-3, 1e-2), 0.0),
    "plate2025": Preset("plate", True, 200, 16000.0, 0.25, 21, 40, True, "raised_cosine", (0.2, 0.8),
                        (0.03, 0.08), (0.5, 5.0), 1.0),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eigentone simulate``."""
    parser.add_argument("kind", choices=("string", "plate"), help="what to simulate")
    parser.add_argument("--nonlinear", action="store_true", default=None,
                        help="tension-modulated string (Kirchhoff-Carrier) or Berger plate")
    parser.add_argument("--count", type=int, help="number of examples (default 100, or the preset's)")
    parser.add_argument("--sample-rate", type=float, help="Hz (default 48000, or the preset's)")
    parser.add_argument("--duration", type=float, help="seconds per example (default 1.0, or the preset's)")
    parser.add_argument("--grid", type=int, help="grid points along the string / per plate side (default 64 / 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output dataset file (.h5)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a published set-up (see module docs)")
    parser.add_argument("--wav-dir", help="also write each pickup as a 24-bit WAV here (one gain for the folder) with "
                                          "labels.csv (file, note, velocity 1..127, position)")
    parser.add_argument("--excitation", choices=("mixed", "pluck", "strike"), default="mixed",
                        help="random strings: plucks and strikes (default mixed: 75 %% plucks), or only one kind")
    parser.add_argument("--modes", type=int, help="modes per example (default: as many as fit, see docs)")
    parser.add_argument("--material", choices=sorted(STRING_MATERIALS), default="nylon",
                        help="string material for random strings (default nylon; presets fix their own)")


def _settings(args: argparse.Namespace) -> dict:
    preset = PRESETS[args.preset] if args.preset else None
    if preset and preset.kind != args.kind:
        raise EigentoneError(f"preset {args.preset} simulates a {preset.kind}, not a {args.kind}")
    default_grid = 64 if args.kind == "string" else 16

    def pick(value, preset_value, default):
        return value if value is not None else (preset_value if preset else default)

    s = {
        "nonlinear": bool(pick(args.nonlinear, preset.nonlinear if preset else None, False)),
        "count": pick(args.count, preset.count if preset else None, 100),
        "sample_rate": pick(args.sample_rate, preset.sample_rate if preset else None, 48000.0),
        "duration": pick(args.duration, preset.duration if preset else None, 1.0),
        "grid": pick(args.grid, preset.grid if preset else None, default_grid),
        "modes": pick(args.modes, preset.modes if preset else None, None),
        "material": getattr(args, "material", "nylon"),
        "excitation": getattr(args, "excitation", "mixed"),
    }
    if s["count"] < 1:
        raise EigentoneError(f"--count must be at least 1, got {s['count']}")
    if not np.isfinite(s["sample_rate"]) or s["sample_rate"] <= 0:
        raise EigentoneError(f"--sample-rate must be a positive number of Hz, got {s['sample_rate']}")
    if not np.isfinite(s["duration"]) or s["duration"] * s["sample_rate"] < 2:
        raise EigentoneError(f"--duration {s['duration']} s is shorter than two samples")
    if s["grid"] < 2:
        raise EigentoneError(f"--grid must be at least 2, got {s['grid']}")
    if s["modes"] is not None and s["modes"] < 1:
        raise EigentoneError(f"--modes must be at least 1, got {s['modes']}")
    if preset and preset.kind == "string" and preset.fixed_params:
        _check_pluck_widths(args.preset, preset, s["grid"])
    return s


def _check_pluck_widths(name: str, preset: Preset, grid: int) -> None:
    """The preset's widths run from 2 grid spacings up to its largest width: refuse grids too coarse for that."""
    from training.physics.string_linear import StringParams

    length, widest = StringParams().L, preset.width[1]
    finest = math.ceil(1 + 2 * length / widest - 1e-9)  # 2 L / (grid - 1) <= widest
    if grid < finest:
        raise EigentoneError(f"--grid {grid} is too coarse for --preset {name}: its pluck widths start at 2 grid "
                             f"spacings and end at {widest * 1e3:g} mm; use --grid {finest} or more")


def _fitting_modes(omega: np.ndarray, sample_rate: float) -> int:
    """Number of leading modes below 0.8 x Nyquist (at least 1)."""
    return max(1, int(np.sum(np.cumprod(omega / (2 * np.pi) < 0.4 * sample_rate))))


def _draw_string(rng: np.random.Generator, preset: Preset | None, nonlinear: bool, grid: int, sample_rate: float,
                 modes: int | None, material: str = "nylon", excitation: str = "mixed"):
    from training.physics.modal import Excitation
    from training.physics.string_linear import StringParams, params_for_f0, string_modes

    base = StringParams(**STRING_MATERIALS[material]) if not preset else StringParams()
    if preset and preset.fixed_params:
        params = base
    else:
        length = rng.uniform(0.55, 0.75)
        scaled = replace(base, L=length, d1=base.d1 * rng.uniform(0.5, 2), d3=base.d3 * rng.uniform(0.5, 2))
        params = params_for_f0(440.0 * 2 ** ((rng.integers(40, 77) - 69) / 12), scaled)
    if preset:
        dx = params.L / (grid - 1)
        width = rng.uniform(min(max(preset.width[0], 2 * dx), preset.width[1]), preset.width[1])
        if preset.shape == "gaussian":  # drawn as w of exp(-(s / w)^2) (the published form); stored as the std
            width /= math.sqrt(2.0)
        kind = "strike" if rng.random() < preset.strike_share else "pluck"
        position, amplitude, shape = rng.uniform(*preset.position) * params.L, rng.uniform(*preset.amplitude), \
            preset.shape
    else:
        kind = "strike" if rng.random() < 0.25 else "pluck"
        kind = kind if excitation == "mixed" else excitation  # the draw is made anyway: same strings either way
        position, width = rng.uniform(0.15, 0.85) * params.L, rng.uniform(0.02, 0.1) * params.L
        ranges = {("pluck", False): (0.5e-3, 3e-3), ("pluck", True): (1e-3, 8e-3),
                  ("strike", False): (0.1, 1.0), ("strike", True): (0.3, 2.0)}
        amplitude, shape = rng.uniform(*ranges[(kind, nonlinear)]), "raised_cosine"
    if modes is None:
        _, omega = string_modes(params, 64)
        modes = _fitting_modes(omega, sample_rate)
    excitation = Excitation(kind, float(position), float(width), float(amplitude), shape)
    return params, excitation, modes


def _draw_plate(rng: np.random.Generator, preset: Preset | None, sample_rate: float, modes: int | None):
    from training.physics.modal import Excitation
    from training.physics.plate_linear import PlateParams, plate_modes

    base = PlateParams()
    if preset and preset.fixed_params:
        params = base
    else:
        lx = rng.uniform(0.3, 0.6)
        params = replace(base, Lx=lx, Ly=lx * rng.uniform(0.5, 1.0), h=rng.uniform(0.5e-3, 2e-3))
    position = preset.position if preset else (0.2, 0.8)
    width = rng.uniform(*(preset.width if preset else (0.03, 0.08)))
    amplitude = rng.uniform(*(preset.amplitude if preset else (0.1, 1.0)))
    excitation = Excitation("strike", float(rng.uniform(*position) * params.Lx), float(width), float(amplitude),
                            "raised_cosine", position_y=float(rng.uniform(*position) * params.Ly))
    if modes is None:
        _, omega = plate_modes(params, 40)
        modes = _fitting_modes(omega, sample_rate)
    return params, excitation, modes


def _solve(solver, auto_modes: bool, params, excitation, sample_rate, duration, grid, pickups, modes):
    """Run a solver whose step may be refused (tension modulation raising a mode above Nyquist).

    With automatic mode counts, drop a quarter of the modes while the step is refused. With a fixed
    mode count (presets), step at 2x, 4x or 8x the sample rate instead and keep every k-th sample, so a
    hard pluck keeps all the preset's modes and the dataset keeps its sample rate.
    """
    oversample = 1
    while True:
        try:
            result = solver(params, excitation, sample_rate * oversample, duration, grid, pickups, modes)
            return _decimate(result, oversample), modes
        except EigentoneError as exc:
            if "unstable" not in str(exc):
                raise
            if auto_modes and modes > 1:
                modes = max(1, modes * 3 // 4)
            elif not auto_modes and oversample < 8:
                oversample *= 2
            else:
                raise


def _decimate(result, factor: int):
    """Every ``factor``-th time sample of a SimResult (the solution at the lower rate)."""
    if factor == 1:
        return result
    return replace(result, field=result.field[::factor], pickups=result.pickups[:, ::factor],
                   t=result.t[::factor], modal=result.modal[::factor])


def _simulate_one(kind: str, nonlinear: bool, rng, preset, s: dict):
    """One example: (SimResult, params dict, excitation dict, label dict for the WAV sidecar)."""
    sr, duration, grid, modes = s["sample_rate"], s["duration"], s["grid"], s["modes"]
    if kind == "string":
        from training.physics.string_linear import simulate_string, string_modes
        from training.physics.string_nonlinear import simulate_string_nonlinear

        params, ex, modes = _draw_string(rng, preset, nonlinear, grid, sr, modes, s.get("material", "nylon"),
                                         s.get("excitation", "mixed"))
        pickup = 0.12 * params.L
        solver = simulate_string_nonlinear if nonlinear else simulate_string
        res, modes = _solve(solver, s["modes"] is None, params, ex, sr, duration, grid, [pickup], modes)
        f0 = string_modes(params, 1)[1][0] / (2 * np.pi)
        par = {**asdict(params), "f0": f0, "modes": float(modes), "pickup_x": pickup}
        position_fraction = ex.position / params.L
    else:
        from training.physics.plate_linear import plate_modes, simulate_plate
        from training.physics.plate_nonlinear import simulate_plate_nonlinear

        params, ex, modes = _draw_plate(rng, preset, sr, modes)
        pickup = (0.31 * params.Lx, 0.27 * params.Ly)
        solver = simulate_plate_nonlinear if nonlinear else simulate_plate
        res, modes = _solve(solver, s["modes"] is None, params, ex, sr, duration, (grid, grid), [pickup], modes)
        f0 = plate_modes(params, 1)[1][0] / (2 * np.pi)
        par = {**asdict(params), "f0": f0, "modes": float(modes), "pickup_x": pickup[0], "pickup_y": pickup[1]}
        position_fraction = ex.position / params.Lx
    from training.data.dataset import EXCITATION_CODES

    exc = {"kind": float(EXCITATION_CODES[ex.kind]), "position": ex.position, "width": ex.width,
           "amplitude": ex.amplitude, "shape": float(SHAPE_CODES[ex.shape])}
    if ex.position_y is not None:
        exc["position_y"] = ex.position_y
    label = {"f0_hz": f0, "excitation": ex.kind, "amplitude": ex.amplitude, "position": position_fraction}
    return res, {k: float(v) for k, v in par.items()}, {k: float(v) for k, v in exc.items()}, label


def run(args: argparse.Namespace) -> int:
    """Simulate ``--count`` examples into ``--out`` (and ``--wav-dir``); returns 0."""
    from tqdm import tqdm

    from training.data.dataset import DatasetWriter

    s = _settings(args)
    preset = PRESETS[args.preset] if args.preset else None
    wav_dir = Path(args.wav_dir) if args.wav_dir else None
    if wav_dir is not None and wav_dir.exists() and (not wav_dir.is_dir() or any(wav_dir.iterdir())):
        raise EigentoneError(f"{wav_dir}: --wav-dir must be a new or empty folder")
    rng = np.random.default_rng(args.seed)
    n_samples = round(s["duration"] * s["sample_rate"])
    grid_shape = (s["grid"],) if args.kind == "string" else (s["grid"], s["grid"])
    provenance = {
        "command": shlex.join(["eigentone", *sys.argv[1:]]) if sys.argv[1:2] == ["simulate"] else
        f"eigentone simulate {args.kind} (called from Python)",
        "seed": args.seed, "preset": args.preset, "eigentone_version": eigentone.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "solver": f"{args.kind} {'nonlinear' if s['nonlinear'] else 'linear'}", **s,
    }
    units = {"fields": "m", "pickups": "m", "grid": "m", "sample_rate": "Hz", "L": "m", "T": "N", "rho": "kg/m^3",
             "A": "m^2", "E": "Pa", "I": "m^4", "d1": "kg/(m s) string, kg/(m^2 s) plate",
             "d3": "kg m/s string, kg/s plate", "Lx": "m", "Ly": "m", "h": "m", "nu": "1", "f0": "Hz",
             "pickup_x": "m", "pickup_y": "m", "position": "m", "position_y": "m", "width": "m",
             "amplitude": "m (pluck), m/s (strike)", "kind": "0 pluck, 1 strike, 2 noise",
             "shape": "0 raised cosine, 1 triangle, 2 gaussian (width = std)"}
    labels = []
    with contextlib.ExitStack() as stack:
        wav_tmp = None
        if wav_dir:  # WAVs go to a temporary folder renamed onto --wav-dir only when everything succeeded
            wav_tmp = stack.enter_context(atomic_path(wav_dir, suffix=""))
            wav_tmp.unlink()
            wav_tmp.mkdir()
        first = _simulate_one(args.kind, s["nonlinear"], rng, preset, s)
        with DatasetWriter(args.out, args.kind, s["nonlinear"], s["sample_rate"],
                           (s["count"], n_samples, *grid_shape), first[0].x, provenance, units) as writer:
            for i in tqdm(range(s["count"]), desc=f"simulate {args.kind}", unit="example"):
                res, par, exc, label = first if i == 0 else _simulate_one(args.kind, s["nonlinear"], rng, preset, s)
                writer.write(i, res.field.astype(np.float32), res.pickups[0].astype(np.float32), par, exc)
                if wav_tmp is not None:
                    labels.append(_write_wav(wav_tmp, i, res.pickups[0], s["sample_rate"], label))
            if wav_tmp is not None:
                _share_gain(wav_tmp, labels)
                _write_labels(wav_tmp / "labels.csv", labels)
    print(f"wrote {s['count']} examples to {args.out}" + (f" and WAVs to {wav_dir}" if wav_dir else ""))
    return 0


def _write_wav(folder: Path, index: int, pickup: np.ndarray, sample_rate: float, label: dict) -> dict:
    """Write the raw pickup (metres) as a float WAV; ``_share_gain`` rescales the folder at the end."""
    import soundfile

    name = f"{index:05d}.wav"
    soundfile.write(folder / name, pickup.astype(np.float32), round(sample_rate), subtype="FLOAT")
    return {"file": name, "peak": float(np.max(np.abs(pickup))), **label}


def _share_gain(folder: Path, labels: list[dict]) -> None:
    """Rewrite every WAV as 24-bit PCM with one gain for the folder (the loudest peaks at 0.99), so the level
    differences between soft and hard plucks survive, as in recordings of one instrument."""
    import soundfile

    gain = 0.99 / max(max(row["peak"] for row in labels), 1e-30)
    for row in labels:
        path = folder / row["file"]
        audio, rate = soundfile.read(path, dtype="float64")
        soundfile.write(path, gain * audio, rate, subtype="PCM_24")


def _write_labels(path: Path, labels: list[dict]) -> None:
    import csv

    # velocity as MIDI 1..127 (the loader's convention): amplitude relative to the loudest example of the same
    # excitation kind (pluck amplitudes are metres, strike amplitudes metres per second: not comparable)
    top = {kind: max(row["amplitude"] for row in labels if row["excitation"] == kind) or 1.0
           for kind in {row["excitation"] for row in labels}}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "f0_hz", "note", "velocity", "amplitude", "excitation", "position"])
        for row in labels:
            note = 69 + 12 * np.log2(row["f0_hz"] / 440.0)
            velocity = int(np.clip(round(127 * row["amplitude"] / top[row["excitation"]]), 1, 127))
            writer.writerow([row["file"], f"{row['f0_hz']:.4f}", f"{note:.3f}", velocity,
                             f"{row['amplitude']:.6g}", row["excitation"], f"{row['position']:.4f}"])
