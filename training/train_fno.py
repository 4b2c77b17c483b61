"""`eigentone train fno DATA --out RUN_DIR`: the modal FNO family (``training/families/modal_fno.py``)
through the shared trainer (``training/fit.py``)."""

from __future__ import annotations

import argparse

from training import fit
from training.registry import get_family

HELP = "train a modal FNO (e^{Lambda t} spectral multipliers) on a string or plate field dataset"
EXAMPLE = "eigentone train fno data/string.h5 --out runs/fno-string --steps 300"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fit.add_arguments(parser, get_family("modal_fno"))


def run(args: argparse.Namespace) -> int:
    return fit.run("modal_fno", args)
