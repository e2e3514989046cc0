"""The one exception type that means "the user gave bad input".

The CLI turns an :class:`InputError` into a single ``edgepress: error: ...`` line and exit code 2;
every other exception is an internal failure (exit code 1).
"""


class InputError(ValueError):
    """Bad input or usage: a missing file, a corrupt model, an impossible option.

    Example:
        >>> raise InputError("run directory 'runs/x' does not exist")
        Traceback (most recent call last):
        ...
        edgepress.errors.InputError: run directory 'runs/x' does not exist
    """


_NOTED: set[str] = set()


def note_once(text: str) -> None:
    """One ``edgepress: note: text`` line on stderr, once per process: a default that had to
    give way says so (an explicit setting that cannot be honoured raises instead).
    """
    import sys

    if text not in _NOTED:
        _NOTED.add(text)
        print(f"edgepress: note: {text}", file=sys.stderr)
