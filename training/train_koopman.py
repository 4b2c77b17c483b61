"""`eigentone train koopman DATA --out RUN_DIR`: the deep Koopman family (``training/families/koopman.py``)
through the shared trainer (``training/fit.py``)."""

from __future__ import annotations

import argparse

from training import fit
from training.registry import get_family

HELP = "train a deep Koopman model (encoder -> diagonal latent poles -> decoder) on simulated fields"
EXAMPLE = "eigentone train koopman data/string_nl.h5 --out runs/koopman --steps 1500 --latent 32"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fit.add_arguments(parser, get_family("koopman"))


def run(args: argparse.Namespace) -> int:
    return fit.run("koopman", args)
