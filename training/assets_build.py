"""`eigentone assets build`: rebuild the shipped instruments in assets/models/ from nothing.

Every shipped bundle is made by a recipe below: generate data with the project's own reference
solvers (a simulated dataset, or a "recording" WAV written by a solver, the same path a user's own
recordings take), train one family with a fixed seed, export with the parity check. The bundle's
manifest records the recipe and the exact commands (``training.recipe``, ``training.commands``),
so ``eigentone list`` and the tests can tell how each instrument was made.

Torch on the CPU is deterministic for a fixed seed and thread count, so rebuilding on the same kind
of machine reproduces the shipped metrics; tests/test_assets.py checks one recipe within tolerance.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import assets
from eigentone.errors import EigentoneError

HELP = "rebuild the shipped instruments (simulate -> train -> export, fixed seeds) into assets/models/"
EXAMPLE = "eigentone assets build --only gong --out /tmp/instruments"

ASSETS_MODELS = assets.path("models")
TRAIN_THREADS = 1  # fixed, so that a rebuild reproduces the shipped metrics


@dataclass(frozen=True)
class Recipe:
    """How one shipped instrument is made. ``make_data(work)`` returns the training data path;
    ``train`` is the `eigentone train ...` argument list after the data path (the run dir is added)."""

    name: str
    family: str
    description: str
    make_data: Callable[[Path], tuple[Path, list[str]]]
    train: list[str]


def _eigentone(argv: list[str]) -> None:
    from eigentone.cli import main

    code = main(argv)
    if code != 0:
        raise EigentoneError(f"`eigentone {shlex.join(argv)}` failed with exit code {code}")


def _simulated(kind: str, options: list[str], wav_dir: bool = False) -> Callable[[Path], tuple[Path, list[str]]]:
    """Data step: `eigentone simulate KIND OPTIONS` into the work dir (the WAV folder when ``wav_dir``)."""

    def make(work: Path) -> tuple[Path, list[str]]:
        out = work / "data.h5"
        argv = ["simulate", kind, *options, "--out", str(out)]
        if wav_dir:
            argv += ["--wav-dir", str(work / "recordings")]
        _eigentone(argv)
        return (work / "recordings" if wav_dir else out), [f"eigentone {shlex.join(argv)}"]

    return make


def _gong_recording(work: Path) -> tuple[Path, list[str]]:
    """Data step: one 'recording' of a large struck steel plate, written as a WAV by the modal solver.

    0.9 x 0.8 m, 2 mm steel (fundamental 13.4 Hz, 128 modes up to 1.2 kHz), struck at (0.31, 0.43)
    with a 6 cm raised cosine at 8 m/s, picked up at (0.37, 0.29); 3 s at 32 kHz, 16-bit. The file is
    named for the note it is played as (G2), like a user's labelled recording.
    """
    import soundfile as sf

    from training.physics.modal import Excitation
    from training.physics.plate_linear import PlateParams, simulate_plate

    params = PlateParams(Lx=0.9, Ly=0.8, h=2e-3, d1=35.0, d3=0.012)
    strike = Excitation("strike", 0.31 * params.Lx, 0.06, 8.0, "raised_cosine", position_y=0.43 * params.Ly)
    result = simulate_plate(params, strike, 32000, 3.0, (8, 8), [(0.37 * params.Lx, 0.29 * params.Ly)], 128)
    pickup = result.pickups[0]
    path = work / "G2_v110.wav"
    sf.write(path, 0.9 * pickup / np.max(np.abs(pickup)), 32000, subtype="PCM_16")
    return path, ["training.assets_build._gong_recording (modal plate solver, see its docstring)"]


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in [
        Recipe(
            "nylon-string", "diag_ssm",
            "nylon-like plucked string: conditioned diagonal SSM trained on 16 simulated notes E2-E5",
            _simulated("string", ["--count", "16", "--sample-rate", "32000", "--duration", "2.0", "--grid", "32",
                                  "--seed", "7"], wav_dir=True),
            ["ssm", "--steps", "2500", "--modes", "48", "--seed", "0", "--quiet"],
        ),
        Recipe(
            "steel-string", "modal_fno",
            "steel-like plucked string: modal FNO over tension (note) trained on 32 simulated steel strings",
            _simulated("string", ["--material", "steel", "--count", "32", "--sample-rate", "16000", "--duration",
                                  "0.5", "--grid", "64", "--seed", "11"]),
            ["fno", "--steps", "100", "--seed", "0", "--quiet"],
        ),
        Recipe(
            "small-plate", "modal_fno",
            "small struck steel plate (0.3-0.6 m): 2-D modal FNO trained on 24 simulated plates",
            _simulated("plate", ["--count", "24", "--sample-rate", "16000", "--duration", "0.5", "--grid", "12",
                                 "--seed", "5"]),
            ["fno", "--steps", "100", "--seed", "0", "--quiet"],
        ),
        Recipe(
            "hard-pluck", "koopman",
            "hard-plucked tension-modulated nylon string with pitch glide: deep Koopman, arXiv 2408.16650 set-up",
            _simulated("string", ["--nonlinear", "--preset", "diaz2024-nonlinear", "--count", "60", "--seed", "0"]),
            ["koopman", "--steps", "300", "--seed", "0", "--threads", str(TRAIN_THREADS)],
        ),
        Recipe(
            "gong", "diag_ssm",
            "large struck steel plate (gong-like): diagonal SSM fitted to one solver-made recording",
            _gong_recording,
            ["ssm", "--modes", "128", "--seed", "0", "--quiet"],
        ),
    ]
}


def build(recipe: Recipe, out_dir: Path, work_root: Path | None = None, keep_work: bool = False) -> dict:
    """Run one recipe; writes OUT_DIR/NAME.etone and returns its manifest."""
    import torch

    from export.cli import export_run

    torch.set_num_threads(TRAIN_THREADS)
    work = Path(tempfile.mkdtemp(prefix=f"eigentone-{recipe.name}-", dir=work_root))
    try:
        data, commands = recipe.make_data(work)
        run_dir = work / "run"
        train_argv = ["train", recipe.train[0], str(data), "--out", str(run_dir), *recipe.train[1:]]
        _eigentone(train_argv)
        commands.append(f"eigentone {shlex.join(train_argv)}")
        out = out_dir / f"{recipe.name}.etone"
        commands.append(f"eigentone export RUN_DIR --out {out.name} --name {recipe.name}")
        provenance = {"recipe": recipe.name, "commands": commands, "built_by": "eigentone assets build"}
        return export_run(run_dir, out, recipe.name, verbose=True, description=recipe.description,
                          provenance=provenance)
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), metavar="NAME",
                        help=f"build only these (repeatable): {', '.join(RECIPES)}")
    parser.add_argument("--out", default=str(ASSETS_MODELS), help="folder for the bundles (default: assets/models/)")
    parser.add_argument("--keep-work", action="store_true", help="keep the generated data and run dirs")


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = args.only or list(RECIPES)
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        manifest = build(RECIPES[name], out_dir, keep_work=args.keep_work)
        size = (out_dir / f"{name}.etone").stat().st_size
        print(f"built {name}: {manifest['family']}, {manifest['modes']} modes, {size / 1024:.0f} kB "
              f"in {time.perf_counter() - t0:.0f} s")
    print(f"built {len(names)} instrument(s) into {out_dir} in {time.perf_counter() - started:.0f} s")
    return 0
