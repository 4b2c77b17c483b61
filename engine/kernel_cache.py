"""Keeping numba's on-disk kernel cache in step with the modules a kernel compiles in.

numba checks a cached kernel against the modification time of its own source file only, but a kernel that calls
compiled functions of other modules, or reads their constants, contains their code as it was when it was compiled:
after one of those modules changes (an update, a ``git pull``) the cached kernel would run the old code.
:func:`drop_stale_kernels` deletes a module's cached kernels that are older than any module they depend on, so
numba compiles them again on first use.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType


def drop_stale_kernels(kernel, source: str, depends_on: tuple[ModuleType, ...]) -> int:
    """Delete the cached kernels of the module in file ``source`` that are older than any module in ``depends_on``;
    ``kernel``: one of that module's ``numba.njit(cache=True)`` functions (it locates numba's cache folder).
    Returns how many files were deleted."""
    folder = getattr(getattr(kernel, "_cache", None), "_cache_path", None)  # numba's cache folder (internal name)
    if folder is None:
        return 0
    newest = max(Path(module.__file__).stat().st_mtime for module in depends_on)
    dropped = 0
    for path in Path(folder).glob(f"{Path(source).stem}.*.nb[ic]"):
        try:
            if path.stat().st_mtime < newest:
                path.unlink()
                dropped += 1
        except OSError:  # another process removed or rewrote it
            pass
    return dropped
