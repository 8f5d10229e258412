"""
Every user-facing error of Defect-Gen, and the one-line reason that messages quote from a lower-level
exception. The commands report these as one `error:` line (see commands/cli.py). This module imports
nothing from the package, so any module can raise them without loading models or data code.
"""


class ConfigError(ValueError):
    """A configuration problem a user must fix; the message names the file and the key."""


class DatasetError(ValueError):
    """
    A problem with a dataset; the message is one line naming the file (or folder) and what is wrong.

    ``problems`` holds every problem found when several were collected (the message gives the first).
    """

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


class DeviceError(ConfigError):
    """A device asked for that this machine does not have, or a device name not understood."""


class FolderError(ConfigError):
    """A folder that cannot be used (locked, not writable, a file, holding foreign files)."""


class SampleFolderError(ConfigError):
    """A sample folder that cannot take this run's samples; the message names the folder or file."""


class ToyDataError(ValueError):
    """A bad value given to the toy data generator; the message is one line."""


class EvaluationError(ValueError):
    """A user error in the evaluation's inputs; its message is one line naming file and problem."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what and where."""


def first_line(exc):
    """Give the first line of an exception's message, or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
