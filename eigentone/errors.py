"""The exception types the CLI turns into one line on stderr and a non-zero exit, and text made safe to print."""

from __future__ import annotations

import re
import unicodedata


class EigentoneError(Exception):
    """A problem with the user's input (file, parameter, device), worded for the user.

    The message should name the file or parameter and the problem, e.g.
    ``"song.mid: not a MIDI file (truncated header)"``.
    """


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived: unwind like Ctrl-C so temporary files are removed (raised by the CLI's handler)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


def printable(text: object, max_chars: int = 400) -> str:
    """``text`` safe to print on a terminal, on one line: control characters (escape sequences, newlines,
    C1 codes) and bidirectional overrides shown as ``\\xNN``/``\\uNNNN``, runs of spaces collapsed, and at
    most ``max_chars`` characters (``...`` marks a cut)."""
    out = []
    for ch in str(text):
        if ch in "\n\r\t":
            out.append(" ")
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    line = re.sub(r" {2,}", " ", "".join(out)).strip()
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (library errors often carry pages of detail,
    e.g. pybind11's "Invoked with:" listings), or its type name."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith("Invoked with"):
            return printable(line, 200)
    return type(exc).__name__
