"""`eigentone list`: the shipped instrument bundles (or given ones), validated.

Names, descriptions and paths come from files anyone can write: they are printed through
``printable`` (no terminal escape sequences, one line each, cut to the column width).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eigentone.errors import EigentoneError, printable
from engine.bundle import MODELS_DIR, load_bundle
from export.op_subset import plugin_ready

HELP = "list instrument bundles: name, family, modes, note range, size, whether the DAW plugin plays it"
EXAMPLE = "eigentone list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="*", help="bundle files (default: every .etone in assets/models/)")


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.bundles] or (sorted(MODELS_DIR.glob("*.etone")) if MODELS_DIR.is_dir() else [])
    if not paths:
        print(f"no bundles in {MODELS_DIR}")
        return 0
    print(f"{'name':<22} {'family':<10} {'modes':>5} {'notes':>7} {'size':>8} {'plugin':>6}  description")
    failed = 0
    for path in paths:
        try:
            bundle = load_bundle(path)
        except EigentoneError as exc:
            print(f"{printable(path.name, 22):<22} invalid: {printable(exc, 300)}")
            failed += 1
            continue
        m = bundle.manifest
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        notes = f"{m['note_range'][0]}-{m['note_range'][1]}"
        plugin = "yes" if plugin_ready(path) else "no"  # from the graphs (export/op_subset.py), not the manifest
        print(f"{printable(m['name'], 22):<22} {m['family']:<10} {m['modes']:>5} {notes:>7} {size / 1024:>6.0f}kB "
              f"{plugin:>6}  {printable(m.get('description', ''), 100)}")
    return 1 if failed else 0
