"""The command line: the overview, --help with an example on every command, one-line errors."""

from __future__ import annotations

import pytest

from eigentone.cli import COMMANDS, main

LEAVES = [[name] if isinstance(target, str) else [name, sub]
          for name, target in COMMANDS.items()
          for sub in ([None] if isinstance(target, str) else target)]
LEAVES = [[part for part in leaf if part] for leaf in LEAVES]


def test_no_arguments_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("argv", LEAVES, ids=[" ".join(leaf) for leaf in LEAVES])
def test_every_command_has_help_with_an_example(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "eigentone " in out.split("example:")[1]


def test_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.mid"), "--out", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eigentone: error: ") and err.count("\n") == 1 and "nope.mid" in err
    assert not (tmp_path / "x.wav").exists()
