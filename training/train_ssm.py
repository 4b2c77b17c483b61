"""`eigentone train ssm DATA --out RUN_DIR`: the diagonal SSM family (``training/families/diag_ssm.py``)
through the shared trainer (``training/fit.py``)."""

from __future__ import annotations

import argparse

from training import fit
from training.registry import get_family

HELP = "fit a diagonal state-space model (S4D/LRU style) to a simulated dataset or recordings"
EXAMPLE = "eigentone train ssm assets/audio/nylon_b3.flac --out runs/nylon --steps 200"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fit.add_arguments(parser, get_family("diag_ssm"))


def run(args: argparse.Namespace) -> int:
    return fit.run("diag_ssm", args)
