"""
Checkpoints: where a run keeps them, which file a user means, reading and validating them, and writing
them atomically with the RNG state of every rank.

A run folder keeps `checkpoints/ckpt_NNNNNN.pt` files and a `checkpoints/latest` pointer (a text file
holding the newest complete file's name). Ours hold {model, ema, optimizer, scaler, step, config, rng,
kind, classes, data_stats, world_size, version}; the release's hold {model, ema, optimizer} only. Both
training (resume, initialisation) and sampling read them through this module, so the sampler does not
depend on the training loop.
"""

import random
import re

import blobfile as bf
import numpy as np
import torch

from ..errors import CheckpointError
from ..fileio import atomic_write_text, load_torch, save_torch

LATEST = "latest"
# The exact name of a checkpoint the training writes; anything else in checkpoints/ is never pruned.
CHECKPOINT_NAME = re.compile(r"^ckpt_\d{6,}\.pt$")


def checkpoint_dir(work_dir):
    """Give the folder that holds a run's checkpoints."""
    return bf.join(work_dir, "checkpoints")


def latest_checkpoint(work_dir):
    """Give the path of the newest complete checkpoint of a run, or None."""
    pointer = bf.join(checkpoint_dir(work_dir), "latest")
    if not bf.exists(pointer):
        return None
    with bf.BlobFile(pointer, "r") as f:
        name = f.read().strip()
    return bf.join(checkpoint_dir(work_dir), name)


def resolve_checkpoint(path):
    """
    Give the checkpoint file a user means by `path`: a checkpoint file, a `latest` pointer file, a run's
    `checkpoints/` folder or the run folder itself (the last two mean their newest complete checkpoint).
    """
    path = str(path)
    if bf.isdir(path):
        run = path if bf.exists(bf.join(path, "checkpoints")) else bf.dirname(path.rstrip("/"))
        latest = latest_checkpoint(run)
        if latest is None:
            raise CheckpointError(f"{path}: folder holds no checkpoints/latest pointer")
        return latest
    if bf.basename(path) == "latest" and bf.exists(path):
        return latest_checkpoint(bf.dirname(bf.dirname(path)))
    return path


def read_checkpoint(path):
    """Give a checkpoint dict in our format; CheckpointError if it is unreadable or not ours."""
    ckpt = load_torch(path)
    missing = [k for k in ("model", "ema", "optimizer", "step", "config") if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise CheckpointError(
            f"{path}: not a Defect-Gen training checkpoint (missing {', '.join(missing)})"
        )
    return ckpt


def read_model_checkpoint(path):
    """
    Give the checkpoint dict of a model to sample with: ours, or the release's ``{model, ema, optimizer}``;
    CheckpointError when it holds no model state_dict.
    """
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: holds no 'model' state_dict: not a Defect-Gen checkpoint")
    return ckpt


def load_checkpoint(path):
    """Give whatever a checkpoint file holds, unchecked (for callers that report problems their way)."""
    return load_torch(path)


def read_weights(path):
    """
    Give (model state_dict, EMA state_dict) of a checkpoint in our format or the release's
    ({model, ema, optimizer}, or a bare state_dict); CheckpointError when it holds no model weights.
    """
    ckpt = load_torch(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds no model state_dict")
    return state, ckpt.get("ema", state)


def checkpoint_name(step):
    """Give the file name of the checkpoint written at `step`."""
    return f"ckpt_{step:06d}.pt"


def write_checkpoint(state, work_dir, step, *, interrupt=None):
    """
    Write `state` to checkpoints/ckpt_NNNNNN.pt atomically, then point `latest` at it; give its path.

    A reader sees the previous checkpoint until both writes are complete.

    :param interrupt: a test hook called halfway through writing the file (see fileio.atomic_write_bytes).
    """
    name = checkpoint_name(step)
    path = bf.join(checkpoint_dir(work_dir), name)
    save_torch(state, path, interrupt=interrupt)
    atomic_write_text(bf.join(checkpoint_dir(work_dir), LATEST), name + "\n")
    return path


def prune_checkpoints(work_dir, keep, written):
    """
    Remove the oldest of the checkpoint files this run wrote beyond the newest `keep`; give the removed
    paths. Only names of `written` of the exact form ckpt_NNNNNN.pt are candidates, never the file
    `latest` names nor the newest written one, so a user's files in checkpoints/ and the run's resume
    point stay. None keeps all; so does any value that is not a positive integer (the config check
    refuses those, and on doubt nothing is pruned).

    :param written: the names this run wrote, oldest first.
    """
    if keep is None or isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        return []
    folder = checkpoint_dir(work_dir)
    latest = latest_checkpoint(work_dir)
    protected = {bf.basename(latest)} if latest else set()
    ours = [n for n in dict.fromkeys(written) if CHECKPOINT_NAME.match(n)]
    protected.update(ours[-1:])
    removed = []
    for name in ours[:-keep]:
        path = bf.join(folder, name)
        if name not in protected and bf.exists(path):
            bf.remove(path)
            removed.append(path)
    return removed


def rng_state(generator):
    """Give the state of every random number generator a training step draws from."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
    }


def set_rng_state(state, generator):
    """Restore a state given by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])
