"""A non-editable `pip install .` into a fresh virtual environment renders the demo with the shipped instruments.

Slow (it builds the package and installs the runtime dependencies from the package registry): run with
``pytest -m slow tests/test_packaging.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "out", "build", "*.egg-info", "__pycache__", ".pytest_cache", "runs")


def _env() -> dict[str, str]:
    """This environment without PYTHONPATH, so the fresh venv imports its installed copy, not a checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(args: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    result = subprocess.run(args, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.mark.slow
def test_pip_install_renders_the_demo_with_the_runtime_dependencies_only(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)  # a clean copy: the build leaves nothing in the checkout
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, eigentone = env_dir / "bin" / "python", env_dir / "bin" / "eigentone"
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)], tmp_path)
    show = _run([python, "-m", "pip", "show", "eigentone"], tmp_path).stdout
    print(show)
    requires = next(line for line in show.splitlines() if line.startswith("Requires:"))
    assert "torch" not in requires and "h5py" not in requires and "matplotlib" not in requires
    location = _run([python, "-c", "import assets, engine; print(assets.path('demo/demo.mid')); print(engine.__file__)"],
                    tmp_path).stdout.split()
    demo, engine_file = Path(location[0]), Path(location[1])
    assert "site-packages" in str(engine_file) and demo.is_file()  # the installed copy, not the checkout
    listing = _run([eigentone, "list"], tmp_path).stdout
    assert "nylon-string" in listing and "hard-pluck" in listing
    work = tmp_path / "work"
    work.mkdir()
    _run([eigentone, "render", str(demo), "--out", "demo.wav"], work)
    audio, rate = sf.read(work / "demo.wav")
    assert rate > 0 and audio.shape[0] > 10 * rate and np.isfinite(audio).all() and np.abs(audio).max() > 0.1
    torchless = subprocess.run([python, "-c", "import torch"], check=False, capture_output=True, env=_env())
    assert torchless.returncode != 0  # render needed none of the training extra
    assert sys.executable != str(python)
