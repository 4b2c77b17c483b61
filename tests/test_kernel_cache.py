"""engine/kernel_cache.py: cached kernels older than a module they compile in are deleted, nothing else."""

from __future__ import annotations

import os
from types import SimpleNamespace

from engine import excite_cache, excite_worker, synth_kernel
from engine.kernel_cache import drop_stale_kernels


def test_cached_kernels_older_than_a_dependency_are_dropped(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dependency = tmp_path / "dependency.py"
    dependency.write_text("X = 1\n")
    os.utime(dependency, (2000, 2000))
    old = [cache / "kernels.play-10.py311.nbi", cache / "kernels.play-10.py311.1.nbc"]
    fresh = cache / "kernels.due-20.py311.nbi"
    other = cache / "others.play-10.py311.nbi"  # another module's kernel: not ours to judge
    for path, stamp in ((old[0], 1000), (old[1], 1000), (fresh, 3000), (other, 1000)):
        path.write_bytes(b"")
        os.utime(path, (stamp, stamp))
    kernel = SimpleNamespace(_cache=SimpleNamespace(_cache_path=str(cache)))
    module = SimpleNamespace(__file__=str(dependency))

    assert drop_stale_kernels(kernel, str(tmp_path / "kernels.py"), (module,)) == 2
    assert not any(path.exists() for path in old) and fresh.exists() and other.exists()
    assert drop_stale_kernels(SimpleNamespace(), str(tmp_path / "kernels.py"), (module,)) == 0  # no disk cache


def test_the_engine_kernels_use_numbas_cache_folder():
    """drop_stale_kernels finds the folder through a numba internal: if numba renames it, this fails."""
    for kernel in (synth_kernel.play, excite_worker.gather, excite_cache.lookup):
        assert isinstance(kernel._cache._cache_path, str) and kernel._cache._cache_path, kernel
