"""
Errors of the training loop that the command-line scripts report as one `error:` line (see cli.py).
"""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what and where."""
