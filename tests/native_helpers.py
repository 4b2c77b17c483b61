"""Shared pieces of the native-core tests: the build fixture and small bundles built on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bundle import MODELS_DIR

RECORDED = sorted((MODELS_DIR.parent / "recorded").glob("*.etone"))
"""The conditioned (laws) instruments fitted to recordings (assets/recorded)."""
SHIPPED = sorted(MODELS_DIR.glob("*.etone")) + RECORDED


def build_native():
    """Build plugins/native (make core; a no-op when up to date) and load it. Test modules call this from a
    module fixture (``pytestmark = pytest.mark.usefixtures("native_core")``); a missing toolchain or header
    fails them with the one line the build prints."""
    from plugins.native.binding import NativeBuildError, build, library

    try:
        build()
    except NativeBuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    return library()


def shipped_ids() -> list[str]:
    return [path.stem for path in SHIPPED]


def write_modal(path: Path, **options) -> Path:
    """An analytic modal bundle (export/modal_bundle.py) at ``path``."""
    from export.modal_bundle import write_modal_bundle

    write_modal_bundle(path, **options)
    return path
