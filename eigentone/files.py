"""Safe output files: written to a temporary file beside the target, then renamed into place.

A crash, a Ctrl-C, a SIGTERM or a validation error therefore never leaves a half-written
WAV, bundle or dataset at the requested path, and the temporary file is removed. On top:

* the target may not be an input of the same command (the MIDI file, the bundle being played, ...):
  readers call :func:`register_input`, and :func:`atomic_path` refuses a target that is the same
  file (same device and inode, so symlinks and hard links are caught too);
* a target that is a directory or a special file (``/dev/...``, a FIFO) is refused;
* the finished file gets the permissions an ordinary ``open(path, "w")`` would give it (the
  user's umask, or the mode of the file it replaces), not the temporary file's 0600;
* every OS error (read-only folder, full disk, ``/proc``) becomes one EigentoneError line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from eigentone.errors import EigentoneError

_inputs: dict[tuple[int, int], str] = {}
_pending: set[Path] = set()
_umask_lock = threading.Lock()


def register_input(path: str | os.PathLike) -> None:
    """Remember that this process reads ``path``: no atomic_path of this process may replace it."""
    with contextlib.suppress(OSError):
        info = os.stat(path)
        _inputs[(info.st_dev, info.st_ino)] = str(path)


def clear_inputs() -> None:
    """Forget the registered inputs (tests; a long-lived process starting an unrelated job)."""
    _inputs.clear()


def user_umask() -> int:
    """The process umask (read without changing it for longer than two system calls)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def check_output(target: str | os.PathLike, what: str = "output", *, allow_directory: bool = False) -> Path:
    """Validate an output path before any work: not an input of this command, not a directory (unless
    ``allow_directory``: an output folder replacing an empty one) and not a special file.
    Returns the path to write (a symlink's target). EigentoneError otherwise."""
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise EigentoneError(f"{target}: cannot use this {what} path ({exc.strerror})") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode) and not allow_directory:
            raise EigentoneError(f"{target}: is a directory; give a file name for the {what}")
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            raise EigentoneError(f"{target}: is not a regular file (device, FIFO or socket); give a file name")
        source = _inputs.get((info.st_dev, info.st_ino))
        if source is not None:
            same = "" if os.path.abspath(source) == os.path.abspath(target) else f" (via a link: {source})"
            raise EigentoneError(f"{target}: is an input of this command{same}; choose another {what} path")
    return target


def _folder_for(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EigentoneError(f"{target}: cannot create the folder {target.parent} ({exc.strerror})") from None


def _final_mode(target: Path, is_dir: bool) -> int:
    with contextlib.suppress(OSError):
        info = os.stat(target)
        if stat.S_ISREG(info.st_mode) and not is_dir:
            return stat.S_IMODE(info.st_mode)
    return (0o777 if is_dir else 0o666) & ~user_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    On any exception (and on SIGTERM/SIGINT, which the CLI turns into exceptions) the temporary file
    is removed and the target is untouched. ``suffix`` defaults to the target's suffix (so libraries
    that infer formats from the extension, e.g. soundfile, still work). OS errors while creating,
    writing or renaming become one EigentoneError line naming the target.
    """
    target = check_output(target, allow_directory=True)
    _folder_for(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                                   dir=target.parent)
    except OSError as exc:
        raise EigentoneError(f"{target}: cannot write in {target.parent} ({exc.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    _pending.add(tmp_path)
    try:
        try:
            yield tmp_path
            os.chmod(tmp_path, _final_mode(target, tmp_path.is_dir()))
            os.replace(tmp_path, target)
        except OSError as exc:
            raise EigentoneError(f"{target}: could not write ({exc.strerror or exc})") from None
    except BaseException:
        remove_temporary(tmp_path)
        raise
    finally:
        _pending.discard(tmp_path)


def remove_temporary(path: Path) -> None:
    """Delete a temporary file or folder made by atomic_path (missing is fine)."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_pending() -> None:
    """Delete every temporary file of an atomic_path still open (last resort when the process must exit)."""
    for path in list(_pending):
        remove_temporary(path)
        _pending.discard(path)
