"""`eigentone install`: validate a bundle and copy it into the user's instrument folder.

The DAW plugin lists every bundle in two folders under ``$XDG_DATA_HOME/eigentone``
(``~/.local/share/eigentone`` when XDG_DATA_HOME is unset or not an absolute path):

* ``shipped/``: the project's bundles, replaced by every ``bash run.sh plugin``;
* ``instruments/``: yours, copied there by this command (plugins/native/dpf/library.cpp reads the same paths).

A bundle is validated with the engine's own loader first (engine/bundle.py), then copied atomically
(temporary file + rename), so the folder never holds a half-written or invalid bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path
from engine.bundle import load_bundle, resolve_model

HELP = "install instrument bundles into your instrument folder (the DAW plugin lists them)"
EXAMPLE = "eigentone install my-guitar.etone"


def data_dir() -> Path:
    """``$XDG_DATA_HOME/eigentone``, or ``~/.local/share/eigentone`` (XDG ignores relative paths)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg.startswith("/") else Path.home() / ".local" / "share"
    return base / "eigentone"


def user_instrument_dir() -> Path:
    """The folder ``eigentone install`` copies bundles into."""
    return data_dir() / "instruments"


def _digest(path: Path) -> str:
    """sha256 of a file's bytes (what the plugin saves in its state)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(bundle: str | Path, force: bool = False, folder: Path | None = None) -> Path:
    """Validate ``bundle`` (a path or a shipped name) and copy it to ``folder`` (default: the user folder).

    Returns the installed path. Raises EigentoneError (one line) for an invalid bundle, or when a different
    bundle of the same file name is installed already and ``force`` is False.
    """
    source = resolve_model(bundle)
    if source.is_dir():
        raise EigentoneError(f"{source}: a bundle folder; install the .etone file (zip) that `eigentone export` writes")
    load_bundle(source)  # every check the engine and the plugin apply; raises with the file named
    folder = folder or user_instrument_dir()
    target = folder / (source.stem + ".etone")
    if target.exists():
        if _digest(target) == _digest(source):
            return target
        if not force:
            raise EigentoneError(f"{source}: a different '{target.name}' is installed in {folder}; "
                                 "use --force to replace it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    except OSError as exc:
        raise EigentoneError(f"{target}: cannot write the bundle there ({exc.strerror or exc})") from None
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="+", help=".etone files (or shipped instrument names) to install")
    parser.add_argument("--force", action="store_true", help="replace an installed bundle of the same file name")


def run(args: argparse.Namespace) -> int:
    for bundle in args.bundles:
        target = install(bundle, force=args.force)
        print(f"installed {target} (sha256 {_digest(target)[:12]}...)")
    return 0
