"""
Errors of the training loop that the command-line scripts report as one `error:` line (see cli.py), and
the one-line reason that such messages quote from a lower-level exception.
"""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what and where."""


def first_line(exc):
    """Give the first line of an exception's message, or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
