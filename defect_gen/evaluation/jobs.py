"""
Running segmenter trainings: in worker processes, and with each finished result kept on disk.

A benchmark at 128 px is tens of trainings of minutes each, longer than one sitting on a CPU. Every
finished training is written to the cache folder (`--cache`, default OUT/runs) under the digest of
everything that decides its result: the training code, the arrays it trains and scores on, its
settings, seed, augmentations and streams. Re-running the command (or another one that needs some of
the same trainings, e.g. the same baseline rows next to another synthetic set) takes those results
from the folder and trains only the missing ones. Two processes may share one folder: each entry is
written atomically, and the worst case is that both train the same job.

A result found in the cache is the same object the training gave (the scores dict and the per-image
confusion matrices, as JSON and an array in one .npz: no pickles), so a report built from cached
and fresh results is the report of one run. An entry that cannot be read (a foreign or damaged file)
is reported and trained again; the cache never deletes files.
"""

import concurrent.futures
import dataclasses
import hashlib
import inspect
import io
import json
import logging
import multiprocessing
import os
import zipfile

import numpy as np
import torch

from ..fileio import atomic_write_bytes
from . import augment, blend, good, metrics, segnet, segtrain

logger = logging.getLogger(__name__)

CACHE_FORMAT = "defect-gen-segmenter-run/1"
# The modules whose code decides a training's result: a change to any of them changes every digest.
TRAINING_CODE = (segtrain, segnet, augment, good, blend, metrics)


def _code_digest():
    h = hashlib.sha256()
    for module in TRAINING_CODE:
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()


def _feed(h, obj):
    """Add a canonical encoding of `obj` (arrays, containers, dataclasses, plain objects) to h."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"nd{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif obj is None or isinstance(obj, (bool, int, float, str, np.generic)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"dict{{{len(obj)}".encode())
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
        h.update(b"}")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dc:{type(obj).__qualname__}".encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    elif inspect.isfunction(obj) or inspect.isbuiltin(obj) or isinstance(obj, type):
        h.update(f"fn:{obj.__module__}.{obj.__qualname__};".encode())
    elif hasattr(obj, "__dict__"):  # augmenters: their class and their state
        h.update(f"obj:{type(obj).__module__}.{type(obj).__qualname__}".encode())
        _feed(h, vars(obj))
    else:
        raise TypeError(f"cannot digest a {type(obj).__name__} for the results cache")


def job_digest(args, kwargs, code=None):
    """Give the hex digest of one train_and_score call (args, kwargs) and the training code."""
    h = hashlib.sha256()
    h.update(CACHE_FORMAT.encode())
    h.update((code or _code_digest()).encode())
    _feed(h, list(args))
    _feed(h, kwargs)
    return h.hexdigest()


class ResultCache:
    """The cache folder: digest -> (scores, per-image confusion). `folder` None: a no-op cache."""

    def __init__(self, folder):
        self.folder = folder
        self.code = _code_digest() if folder else None

    def _path(self, digest):
        return os.path.join(self.folder, digest[:2], digest + ".npz")

    def get(self, digest):
        """Give the cached result of `digest`, or None (missing or unreadable: logged)."""
        if not self.folder:
            return None
        path = self._path(digest)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                meta = json.loads(str(entry["meta"]))
                per_image = entry["per_image"]
            if meta.get("format") != CACHE_FORMAT or meta.get("digest") != digest:
                raise ValueError("not a result of this job")
            scores = meta["scores"]
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            # a damaged or foreign file
            logger.warning("results cache: %s: unreadable (%s); training it again", path, e)
            return None
        return scores, per_image

    def put(self, digest, result, label=""):
        if not self.folder:
            return
        scores, per_image = result
        meta = {"format": CACHE_FORMAT, "digest": digest, "label": label, "scores": scores}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), per_image=np.asarray(per_image))
        path = self._path(digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())


def _job(args, kwargs):
    return segtrain.train_and_score(*args, **kwargs)


def _worker_init():
    torch.set_num_threads(1)


def run_jobs(jobs, workers, finished, cache=None):
    """
    Run [(job id, args, kwargs)] of train_and_score, taking what `cache` holds; call
    finished(job id, result, cached) as each ends (cached ones first, in order).
    """
    cache = cache or ResultCache(None)
    todo = []
    for job_id, args, kwargs in jobs:
        digest = job_digest(args, kwargs, cache.code) if cache.folder else None
        result = cache.get(digest) if digest else None
        if result is not None:
            finished(job_id, result, True)
        else:
            todo.append((job_id, digest, args, kwargs))

    def done(job_id, digest, result):
        if digest:
            cache.put(digest, result, label=str(job_id))
        finished(job_id, result, False)

    if workers <= 1 or len(todo) <= 1:
        for job_id, digest, args, kwargs in todo:
            done(job_id, digest, _job(args, kwargs))
        return
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=context, initializer=_worker_init
    ) as pool:
        futures = {
            pool.submit(_job, args, kwargs): (job_id, digest)
            for job_id, digest, args, kwargs in todo
        }
        for future in concurrent.futures.as_completed(futures):
            done(*futures[future], future.result())
