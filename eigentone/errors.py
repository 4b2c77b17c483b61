"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class EigentoneError(Exception):
    """A problem with the user's input (file, parameter, device), worded for the user.

    The message should name the file or parameter and the problem, e.g.
    ``"song.mid: not a MIDI file (truncated header)"``.
    """
