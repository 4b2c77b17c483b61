"""Real-time safety of the native core: Synth::process allocates, locks and touches files on nothing.

plugins/native/tools/rt-check.cpp replaces malloc & co (and operator new/delete) and wraps pthread_mutex_lock,
open/fopen/read/write and nanosleep, then counts every call made while it renders a busy score through
Synth::process (notes, chords that steal voices, bends, sustain, all notes/sound off, option changes, reset).
"""

from __future__ import annotations

import subprocess

import pytest
from native_helpers import SHIPPED, build_native, shipped_ids, write_modal

from plugins.native.binding import BUILD_DIR


@pytest.fixture(scope="module", autouse=True)
def native_core():
    return build_native()



def _rt_check(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUILD_DIR / "rt-check"), *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("bundle", SHIPPED, ids=shipped_ids())
def test_process_allocates_locks_and_opens_nothing(bundle):
    result = _rt_check(bundle)
    print(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 allocations, 0 frees, 0 locks, 0 file/sleep calls" in result.stdout


def test_a_bundle_with_readout_modulation_and_nan_notes_too(tmp_path):
    path = write_modal(tmp_path / "m.etone", modes=32, readout=True, modulation=True, nan_notes=(45, 50))
    result = _rt_check(path)
    assert result.returncode == 0 and "0 allocations" in result.stdout, result.stdout + result.stderr


def test_the_counters_see_an_allocation_a_lock_and_a_file():
    result = _rt_check(SHIPPED[0], "--self-test")
    assert result.returncode == 1
    assert "1 allocations, 1 frees, 1 locks" in result.stdout, result.stdout
    assert "0 file/sleep calls" not in result.stdout
