"""
What the command-line scripts share: user errors, and errors of the environment (a full disk, a folder
that cannot be written), become one `error:` line and exit code 2; the parser that shows a command's
docstring as its help; the --device flag; and the start of a (possibly distributed) run.
"""

import argparse
import sys

from .. import dist_util
from ..errors import CheckpointError, ConfigError, DatasetError, EvaluationError, TrainingError
from ..logger import configure_logging

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, TrainingError, EvaluationError)
EXIT_USER_ERROR = 2


def run_cli(main, argv=None):
    """
    Run `main(argv)` and give what it returns (an exit code or None); a user error prints one line to
    stderr and exits with code 2, no traceback. Every command and script runs its main() through it.
    """
    try:
        return main(argv)
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split("\n")[0].split())
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:  # the environment: a full disk, a folder that cannot be written, ...
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        print(f"error: {where}{' '.join(reason.split())}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


def str2bool(value):
    """Give a bool from 1/0, true/false, yes/no (for argparse flags that the release passes as ints)."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def make_parser(doc):
    """Give an ArgumentParser whose help is `doc` (a command's module docstring) laid out as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_device_argument(parser):
    """Add --device, as dist_util.setup_dist reads it."""
    parser.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda, cuda:N or gpu (default: cuda when available)",
    )


def start_processes(device):
    """
    Set up this process of a (possibly distributed) run and its logging; give (device, rank, world size).

    :param device: the --device value (see :func:`defect_gen.dist_util.setup_dist`).
    """
    device = dist_util.setup_dist(device)
    rank = dist_util.get_rank()
    configure_logging(rank)
    return device, rank, dist_util.get_world_size()
