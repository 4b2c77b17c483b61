"""The ``eigentone`` command line: one table of subcommands, each a small module.

A command module defines::

    HELP = "one line shown in `eigentone` with no arguments"
    EXAMPLE = "eigentone render assets/demo/demo.mid --out demo.wav"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

Modules are imported only when their command runs, so ``eigentone render``
never imports torch. ``EigentoneError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from eigentone.errors import EigentoneError

# command -> module, or command -> {subcommand: module}
COMMANDS: dict[str, str | dict[str, str]] = {
    "simulate": "training.data.simulate_cli",
    "train": {
        "ssm": "training.train_ssm",
        "koopman": "training.train_koopman",
        "fno": "training.train_fno",
    },
    "export": "export.cli",
    "eval": "training.eval_cli",
    "render": "engine.render_cli",
    "play": "engine.play_cli",
    "list": "engine.list_cli",
    "install": "engine.install_cli",
    "animate": "training.animate_cli",
    "assets": {"build": "training.assets_build"},
    "bench": {
        "engine": "benchmarks.bench_engine",
        "physics": "benchmarks.bench_physics",
        "koopman-paper": "benchmarks.paper_koopman",
        "fno-paper": "benchmarks.paper_fno",
        "families": "benchmarks.bench_families",
    },
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch":
            raise EigentoneError(
                "this command needs PyTorch: install the training extra (pip install torch==2.13.0 'eigentone[train]')"
            ) from exc
        raise


def _available(module_name: str) -> bool:
    return importlib.util.find_spec(module_name) is not None


def _add_command(subparsers, name: str, module_name: str) -> None:
    module = _load(module_name)
    parser = subparsers.add_parser(
        name,
        help=getattr(module, "HELP", None),
        description=getattr(module, "HELP", None),
        epilog=f"example:\n  {module.EXAMPLE}" if getattr(module, "EXAMPLE", None) else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Parser for the whole CLI; only the modules of the command named in ``argv`` are imported."""
    parser = argparse.ArgumentParser(prog="eigentone", description="Learned physical instruments, played in real time.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    wanted = argv[0] if argv else None
    for name, target in COMMANDS.items():
        if isinstance(target, str):
            if name == wanted:
                _add_command(subparsers, name, target)
            elif _available(target):
                subparsers.add_parser(name, help=_summary(target))
        else:
            group = subparsers.add_parser(name, help=f"{name} {'|'.join(target)}")
            inner = group.add_subparsers(title=f"{name} commands", metavar="KIND")
            for sub, module_name in target.items():
                if name == wanted and (len(argv) < 2 or argv[1] == sub or argv[1].startswith("-")):
                    if _available(module_name):
                        _add_command(inner, sub, module_name)
                elif _available(module_name):
                    inner.add_parser(sub, help=_summary(module_name))
    return parser


def _summary(module_name: str) -> str | None:
    """First line of a command module's HELP without importing heavy dependencies."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("HELP = "):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eigentone`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        if not hasattr(args, "_run"):
            parser.parse_args([*argv, "--help"])
            return 2
        return int(args._run(args) or 0)
    except EigentoneError as exc:
        print(f"eigentone: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eigentone: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(1)


if __name__ == "__main__":
    raise SystemExit(main())
