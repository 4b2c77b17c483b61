"""The ``eigentone`` command line: one table of subcommands, each a small module.

A command module defines::

    HELP = "one line shown in `eigentone` with no arguments"
    EXAMPLE = "eigentone render assets/demo/demo.mid --out demo.wav"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

Modules are imported only when their command runs, so ``eigentone render``
never imports torch. ``EigentoneError`` and usage errors become one line on stderr and exit
code 2; every command takes ``--limit NAME=VALUE`` (eigentone/limits.py). SIGTERM and SIGHUP
unwind like Ctrl-C (temporary output files are removed) and exit with 128 + the signal number.
While ``render``, ``play`` and ``list`` run, what native libraries write straight to the stderr
file descriptor (ALSA, JACK, JUCE, onnxruntime) goes to a hidden file instead of the terminal;
it is shown only if the command dies of an unexpected error (``EIGENTONE_NATIVE_STDERR=1``
keeps it on the terminal).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import signal
import sys
import tempfile
from collections.abc import Iterator

from eigentone import limits
from eigentone.errors import EigentoneError, Terminated, printable
from eigentone.files import remove_pending

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
    "devset": "training.data.devset",
    "assets": {"build": "training.assets_build"},
    "bench": {
        "engine": "benchmarks.bench_engine",
        "physics": "benchmarks.bench_physics",
        "koopman-paper": "benchmarks.paper_koopman",
        "fno-paper": "benchmarks.paper_fno",
        "families": "benchmarks.bench_families",
        "fidelity": "benchmarks.bench_fidelity",
        "t60-bounds": "benchmarks.t60_predictability",
        "probes": "benchmarks.bench_probes",
        "soak": "benchmarks.bench_soak",
    },
}


QUIET_NATIVE = {"render", "play", "list"}
"""Commands whose native-library noise on stderr is kept off the terminal (see the module doc)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (argparse's own print the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"eigentone: error: {printable(message)} (see {self.prog} --help)\n")


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
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="raise a safety limit, e.g. --limit song-seconds=7200 (names: " + ", ".join(limits.LIMITS)
                             + "; defaults in eigentone/limits.py)")
    parser.set_defaults(_run=module.run)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Parser for the whole CLI; only the modules of the command named in ``argv`` are imported."""
    parser = _Parser(prog="eigentone", description="Learned physical instruments, played in real time.")
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


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _native_stderr_hidden(active: bool) -> Iterator[None]:
    """Point file descriptor 2 at a hidden temporary file while keeping Python's ``sys.stderr`` on the
    terminal; replay what was captured if the block dies of an unexpected exception."""
    if not active or os.environ.get("EIGENTONE_NATIVE_STDERR"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = sys.stderr
    with tempfile.TemporaryFile() as capture, open(saved, "w", buffering=1, encoding=getattr(terminal, "encoding", None),
                                                   errors="backslashreplace", closefd=False) as visible:
        os.dup2(capture.fileno(), 2)
        sys.stderr = visible
        try:
            yield
        except (EigentoneError, KeyboardInterrupt, Terminated, SystemExit):
            raise
        except BaseException:
            capture.seek(0)
            noise = capture.read()[-8192:].decode("utf-8", "replace")
            if noise.strip():
                visible.write(noise)
            raise
        finally:
            visible.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr = terminal


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eigentone`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
                handlers[signum] = signal.signal(signum, _terminate)
        parser = build_parser(argv)
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        if not hasattr(args, "_run"):
            parser.parse_args([*argv, "--help"])
            return 2
        limits.configure(vars(args).pop("limit", None))  # not an option of the command itself
        with _native_stderr_hidden(argv[0] in QUIET_NATIVE):
            return int(args._run(args) or 0)
    except EigentoneError as exc:
        print(f"eigentone: error: {printable(exc, 600)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        remove_pending()
        print("eigentone: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        remove_pending()
        print(f"eigentone: terminated by signal {exc.signum} (unfinished outputs removed)", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:
        os._exit(1)
    finally:
        limits.configure(None)
        for signum, previous in handlers.items():
            signal.signal(signum, previous)


if __name__ == "__main__":
    raise SystemExit(main())
