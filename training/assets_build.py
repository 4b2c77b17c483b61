"""`eigentone assets build`: rebuild the shipped instruments in assets/models/ and assets/recorded/ from nothing.

Every bundle of assets/models/ is made by a recipe below: generate data with the project's own reference
solvers (a simulated dataset, or a "recording" WAV written by a solver, the same path a user's own
recordings take), train one family with a fixed seed, export with the parity check. Every bundle of
assets/recorded/ is made from real recordings: one instrument of the development set extracted from its
Debian sample bank (``eigentone devset build``, this instrument only), laws fitted across its notes
(``training.conditioned_laws``, its default laws), exported. The bundle's manifest records the
recipe and the exact commands (``training.recipe``, ``training.commands``), so ``eigentone list`` and the
tests can tell how each instrument was made.

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

HELP = "rebuild the shipped instruments into assets/models/ (simulate -> train -> export, fixed seeds) and assets/recorded/"
EXAMPLE = "eigentone assets build --only gong --out /tmp/instruments"

ASSETS_MODELS = assets.path("models")
ASSETS_RECORDED = assets.path("recorded")
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


@dataclass(frozen=True)
class RecordedRecipe:
    """A shipped instrument made from real recordings: ``name`` is its instrument in the development set
    (``training.data.devset.INSTRUMENTS``), whose bank's licence must allow shipping a bundle made from it."""

    name: str
    description: str


RECORDED: dict[str, RecordedRecipe] = {
    recipe.name: recipe
    for recipe in [
        RecordedRecipe("fluid-nylon-guitar",
                       "nylon guitar from the 9 FluidR3 GM recordings (MIT, Frank Wen): laws across notes"),
    ]
}


def build_recorded(recipe: RecordedRecipe, out_dir: Path, work_root: Path | None = None,
                   keep_work: bool = False) -> dict:
    """Extract the instrument's recordings, fit its laws (the default ones), export OUT_DIR/NAME.etone; returns its
    manifest (``training.laws``: the laws it plays)."""
    import torch

    from training.conditioned_laws import export_laws_bundle, fit_instrument
    from training.data.audio import load_folder
    from training.data.devset import extract_instrument

    torch.set_num_threads(TRAIN_THREADS)
    work = Path(tempfile.mkdtemp(prefix=f"eigentone-{recipe.name}-", dir=work_root))
    try:
        recordings = extract_instrument(recipe.name, work / "devset")
        report: dict = {}
        model = fit_instrument(load_folder(recordings), report=report)
        out = out_dir / f"{recipe.name}.etone"
        commands = [f"eigentone devset build (instrument {recipe.name} only: training.data.devset.build)",
                    (f"python -m training.conditioned_laws DEVSET/{recordings.parent.name}/{recipe.name} "
                     f"--out {out.name}")]
        provenance = {"recipe": recipe.name, "commands": commands, "built_by": "eigentone assets build",
                      "data": recipe.name, **report}
        return export_laws_bundle(model, out, name=recipe.name, description=recipe.description,
                                  provenance=provenance)
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


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
    parser.add_argument("--only", action="append", choices=sorted([*RECIPES, *RECORDED]), metavar="NAME",
                        help=f"build only these (repeatable): {', '.join([*RECIPES, *RECORDED])}")
    parser.add_argument("--out", default=None, help="folder for the bundles (default: assets/models/, and "
                        "assets/recorded/ for those made from real recordings)")
    parser.add_argument("--keep-work", action="store_true", help="keep the generated data and run dirs")


def run(args: argparse.Namespace) -> int:
    names = args.only or [*RECIPES, *RECORDED]
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        out_dir = Path(args.out or (ASSETS_RECORDED if name in RECORDED else ASSETS_MODELS))
        out_dir.mkdir(parents=True, exist_ok=True)
        if name in RECORDED:
            manifest = build_recorded(RECORDED[name], out_dir, keep_work=args.keep_work)
        else:
            manifest = build(RECIPES[name], out_dir, keep_work=args.keep_work)
        size = (out_dir / f"{name}.etone").stat().st_size
        print(f"built {out_dir / name}.etone: {manifest['family']}, {manifest['modes']} modes, {size / 1024:.0f} kB "
              f"in {time.perf_counter() - t0:.0f} s")
    print(f"built {len(names)} instrument(s) in {time.perf_counter() - started:.0f} s")
    return 0
