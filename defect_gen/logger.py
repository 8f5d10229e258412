"""
Training metrics to stdout (through `logging`), `progress.csv`, `log.jsonl`, and tensorboard when installed.

Files go through blobfile, as checkpoints do, so a run folder may be a bucket URL.
"""

import csv
import io
import json
import logging
import math

import blobfile as bf

logger = logging.getLogger("defect_gen")


def configure_logging(rank=0):
    """Send the library's log records to stderr: INFO on rank 0, warnings only elsewhere."""
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=(
            "%(asctime)s %(levelname)s %(message)s" if rank == 0 else f"[rank {rank}] %(message)s"
        ),
        datefmt="%H:%M:%S",
    )


class MetricsWriter:
    """
    Append rows of scalar metrics to a run folder (rank 0 only).

    The CSV's columns are fixed by the first row written to it (or by its existing header when a run
    resumes); `log.jsonl` keeps every key.
    """

    def __init__(self, folder, *, tensorboard=True):
        folder = str(folder)
        bf.makedirs(folder)
        self.csv_path = bf.join(folder, "progress.csv")
        self.jsonl_path = bf.join(folder, "log.jsonl")
        self.columns = None
        if bf.exists(self.csv_path):
            with bf.BlobFile(self.csv_path, "r") as f:
                self.columns = next(csv.reader(f), None)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(bf.join(folder, "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def write(self, step, metrics):
        """Append one row of `metrics` (a dict of floats) at `step`."""
        row = {"step": step, **metrics}
        _append(self.jsonl_path, json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
        lines = []
        if self.columns is None:
            self.columns = list(row)
            lines.append(self.columns)
        lines.append([row.get(k, "") for k in self.columns])
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows(lines)
        _append(self.csv_path, buf.getvalue())
        if self.tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"train/{key}", value, step)

    def event(self, name, **fields):
        """Append a non-metric record (e.g. a resume) to log.jsonl."""
        _append(self.jsonl_path, json.dumps({"event": name, **fields}) + "\n")

    def close(self):
        if self.tb is not None:
            self.tb.close()


def _append(path, text):
    with bf.BlobFile(path, "ab") as f:
        f.write(text.encode("utf-8"))


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
