"""Shipped data: instruments (``models/*.etone``), the demo song (``demo/``), effects chains (``effects/``) and
a short test recording (``audio/``).

Found through ``importlib.resources``, so an installed eigentone (``pip install .``, not only a source checkout)
plays its shipped instruments. Example::

    import assets
    assets.path("models")               # folder of the shipped bundles
    assets.path("demo/demo.mid")        # the demo song
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(relative: str = "") -> Path:
    """Filesystem path of a shipped file or folder (``relative`` to the assets folder, "/"-separated)."""
    return Path(str(files(__name__).joinpath(relative)))
