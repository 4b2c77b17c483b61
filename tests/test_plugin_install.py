"""`eigentone install`: validate, copy atomically into $XDG_DATA_HOME/eigentone/instruments, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from eigentone.cli import main
from engine.install_cli import user_instrument_dir

ROOT = Path(__file__).resolve().parent.parent
NYLON = ROOT / "assets" / "models" / "nylon-string.etone"


@pytest.fixture
def data_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "eigentone" / "instruments"


def test_install_copies_the_bundle_into_the_user_folder(data_home, capsys):
    assert main(["install", str(NYLON)]) == 0
    assert user_instrument_dir() == data_home
    assert (data_home / "nylon-string.etone").read_bytes() == NYLON.read_bytes()
    assert "installed" in capsys.readouterr().out
    assert main(["install", str(NYLON)]) == 0  # the same bytes again: nothing to do
    assert sorted(p.name for p in data_home.iterdir()) == ["nylon-string.etone"]


def test_relative_xdg_data_home_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_instrument_dir() == tmp_path / ".local" / "share" / "eigentone" / "instruments"


def test_invalid_bundle_is_refused_in_one_line_and_nothing_is_written(data_home, tmp_path, capsys):
    bad = tmp_path / "broken.etone"
    bad.write_bytes(NYLON.read_bytes()[: len(NYLON.read_bytes()) // 2])
    assert main(["install", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eigentone: error: ") and err.count("\n") == 1 and "broken.etone" in err
    assert not data_home.exists() or not any(data_home.iterdir())


def test_a_different_bundle_of_the_same_name_needs_force(data_home, tmp_path, capsys):
    other = tmp_path / "nylon-string.etone"
    other.write_bytes((ROOT / "assets" / "models" / "gong.etone").read_bytes())
    assert main(["install", str(NYLON)]) == 0
    assert main(["install", str(other)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (data_home / "nylon-string.etone").read_bytes() == NYLON.read_bytes()
    assert main(["install", "--force", str(other)]) == 0
    assert (data_home / "nylon-string.etone").read_bytes() == other.read_bytes()
    assert sorted(p.name for p in data_home.iterdir()) == ["nylon-string.etone"]  # no temporary files left
