"""
The leakage and consistency guard: may this synthetic folder be scored on these validation images?

For each synthetic folder it reads `manifest.json` and every checkpoint the manifest names (any
entry of `generation` holding a `path`: large_recep, small_recep, and whatever later modes add), and
gives one-line problems (each naming the file) when:

- the manifest is missing or names no checkpoint, or a named checkpoint cannot be read (the
  generator's training data cannot be checked);
- class names or `num_defect` of the manifest or of a checkpoint differ from the real data's;
- a generator's training images include a reported (validation) image. The training images are
  the checkpoint config's `data.params.dir` with its `num_image_train` (first N sorted per type, the
  loader's own selection). When that folder is readable here, images are compared by decoded pixel
  content (so a copy under another path is caught); when it is not, the folder is assumed to be the
  evaluated dataset and the rule "first num_image_train per type" is applied to it, which the
  record says;
- any string in the manifest (per-sample mask or good-image records of the mask / inpaint modes) is
  the path of a validation image or mask.

Masks taken from the generator's own training masks (mask source `train`) are on the training side
by construction. The good images a manifest records per sample (`good.path`, inpaint mode) must not
be reported images either: they are compared by pixel content too. The caller refuses on the first
problem unless --allow_overlap is given, in which case the problems become warnings in the report.
"""

import hashlib
import logging
import os

import blobfile as bf
import numpy as np
from PIL import Image

from ..data.layouts import find_pairs
from ..errors import DatasetError
from ..fileio import is_local_path
from ..training.checkpoints import load_checkpoint
from .good import manifest_good_paths

logger = logging.getLogger(__name__)

_HINT = "pass --allow_overlap to evaluate it anyway"
_ALLOWED = "the set is evaluated anyway because --allow_overlap was given"


def allowed_problem(problem):
    """
    Give a problem's text as the warning it becomes once --allow_overlap is given: the hint to pass
    the flag is replaced by the statement that the set is evaluated anyway.
    """
    for tail in (f", or {_HINT}", f"; {_HINT}"):
        if problem.endswith(tail):
            problem = problem[: -len(tail)]
            break
    return f"{problem}; {_ALLOWED}"


def _local(path):
    path = str(path)
    return os.path.realpath(path) if is_local_path(path) else path


def pixel_digest(path):
    """Give a hex digest of an image file's decoded RGB pixels and size (None if unreadable)."""
    try:
        with bf.BlobFile(str(path), "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, ValueError):
        return None
    arr = np.asarray(image.convert("RGB"))
    h = hashlib.sha1(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class ValidationIdentity:
    """The reported images: their paths, their masks' paths and their pixel digests (lazy)."""

    def __init__(self, data_dir, val_names, *, num_defect=None, classes=None):
        self.data_dir = str(data_dir)
        self.images = {_local(n) for n in val_names}
        index = find_pairs(data_dir, num_defect=num_defect, classes=classes, check_files=False)
        by_image = {_local(p.image): p for p in index.pairs}
        self.masks = {_local(by_image[n].mask) for n in self.images if n in by_image}
        self.relative = {}  # (defect type, file name) -> path of each reported image
        self.type_files = {}  # defect type -> sorted file names of all its images
        for p in index.pairs:
            self.type_files.setdefault(p.defect_type, []).append(os.path.basename(str(p.image)))
        for names in self.type_files.values():
            names.sort()
        for n in self.images:
            if n in by_image:
                self.relative[(by_image[n].defect_type, os.path.basename(n))] = n
        self._digests = None
        self._seen = {}

    def digests(self):
        """Give {pixel digest: path} of the validation images (computed once)."""
        if self._digests is None:
            self._digests = {}
            for n in sorted(self.images):
                d = pixel_digest(n)
                if d is not None:
                    self._digests[d] = n
        return self._digests

    def overlap_by_content(self, paths):
        """Give the sorted validation paths whose pixels equal one of `paths`' images."""
        digests = self.digests()
        hits = set()
        for p in paths:
            key = _local(p)
            if key in self.images:
                hits.add(key)
                continue
            if key not in self._seen:
                self._seen[key] = pixel_digest(p)
            if self._seen[key] in digests:
                hits.add(digests[self._seen[key]])
        return sorted(hits)


def _strings(obj, where=""):
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{where}[{i}]")


def _checkpoints(manifest):
    generation = manifest.get("generation") if isinstance(manifest, dict) else None
    if not isinstance(generation, dict):
        return []
    return [
        (key, str(value["path"]))
        for key, value in generation.items()
        if isinstance(value, dict) and isinstance(value.get("path"), str)
    ]


def _same_classes(theirs, ours):
    return theirs is None or [str(c) for c in theirs] == [str(c) for c in ours]


def check_synthetic_set(folder, manifest, *, real, identity, num_train_per_type):
    """
    Give {problems: [one-line strings], generators: [per checkpoint record], checked: bool}.

    :param folder: the synthetic folder; :param manifest: its parsed manifest.json (None if absent).
    :param real: the RealSplit (classes, num_defect); :param identity: its ValidationIdentity.
    """
    mpath = bf.join(str(folder), "manifest.json")
    problems, generators = [], []
    if manifest is None:
        problems.append(
            f"{mpath}: missing, so the generator's training data cannot be checked; {_HINT}"
        )
        return {"problems": problems, "generators": generators}
    classes = manifest.get("classes")
    if classes is not None and not _same_classes(classes, real.classes):
        problems.append(
            f"{mpath}: generator classes {list(classes)} differ from the real data's "
            f"{list(real.classes)}"
        )
    k = (manifest.get("generation") or {}).get("num_defect")
    if k is not None and int(k) != real.num_defect:
        problems.append(
            f"{mpath}: generator num_defect {k} differs from the real data's {real.num_defect}"
        )
    for key, value in _strings(manifest):
        if key.startswith("generation.") and key.endswith(".path"):
            continue
        path = _local(value) if ("/" in value or os.sep in value) else None
        if path and (path in identity.images or path in identity.masks):
            problems.append(f"{mpath}: {key} is the reported validation file {value}")
            break
    problems += good_source_problems(manifest, mpath, identity)
    ckpts = _checkpoints(manifest)
    if not ckpts:
        problems.append(
            f"{mpath}: names no generator checkpoint (generation.*.path), so its training data "
            f"cannot be checked; {_HINT}"
        )
    for key, path in ckpts:
        problems += _check_checkpoint(key, path, mpath, real, identity, generators)
    return {"problems": problems, "generators": generators}


def _check_checkpoint(key, path, mpath, real, identity, generators):
    try:
        ckpt = load_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user problem
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return [f"{mpath}: {key} checkpoint cannot be read ({reason}); {_HINT}"]
    cfg = ckpt.get("config") if isinstance(ckpt, dict) else None
    data = (((cfg or {}).get("data") or {}).get("params")) if isinstance(cfg, dict) else None
    if not isinstance(data, dict):
        return [
            f"{path}: holds no training config (data.params), so its data cannot be checked; "
            f"{_HINT}"
        ]
    record = {
        "role": key,
        "checkpoint": path,
        "data_dir": data.get("dir"),
        "num_image_train": data.get("num_image_train"),
        "num_defect": data.get("num_defect"),
        "classes": ckpt.get("classes") or data.get("classes"),
    }
    generators.append(record)
    problems = []
    if record["num_defect"] is not None and int(record["num_defect"]) != real.num_defect:
        problems.append(
            f"{path}: generator num_defect {record['num_defect']} differs from the real data's "
            f"{real.num_defect}"
        )
    if not _same_classes(record["classes"], real.classes):
        problems.append(
            f"{path}: generator classes {list(record['classes'])} differ from the real data's "
            f"{list(real.classes)}"
        )
    nit, gen_dir = record["num_image_train"], record["data_dir"]
    hits, readable = [], bool(gen_dir) and bf.isdir(str(gen_dir))
    if readable:
        try:
            index = find_pairs(
                gen_dir,
                num_defect=data.get("num_defect"),
                classes=data.get("classes"),
                num_image_train=nit,
                check_files=False,
            )
        except DatasetError as e:
            reason = str(e).splitlines()[0]
            return problems + [f"{path}: its training data {gen_dir} cannot be listed ({reason})"]
        record["layout"] = str(index.layout)
        record["checked_by"] = "pixel content of its training images"
        record["num_training_images"] = len(index.pairs)
        hits = identity.overlap_by_content([p.image for p in index.pairs])
    else:
        # Not readable here: assume it is the evaluated dataset and apply the loader's rule.
        record["checked_by"] = (
            f"assumed to be --data_dir ({gen_dir} is not readable here): first num_image_train "
            "files per type"
        )
        for (dtype, name), full in identity.relative.items():
            position = identity.type_files[dtype].index(name)
            if nit is None or position < int(nit):
                hits.append(full)
        hits = sorted(hits)
    record["reported_images_seen"] = len(hits)
    if hits:
        problems.append(
            f"{path}: the generator trained on {len(hits)} reported validation image(s), e.g. "
            f"{hits[0]} (data {gen_dir}, num_image_train {nit}); train it on the first "
            f"--num_train_per_type images per type only, or {_HINT}"
        )
    return problems


def good_source_problems(manifest, mpath, identity):
    """
    Give a one-line problem when a good image a sample manifest records (samples[*].good.path) is a
    reported validation image, by path or by decoded pixel content (a copy under another name).
    """

    paths = manifest_good_paths(manifest)
    hits = identity.overlap_by_content(paths) if paths else []
    if not hits:
        return []
    return [
        f"{mpath}: {len(hits)} good image(s) its samples were inpainted into are reported "
        f"validation images, e.g. {hits[0]}; take good images from the training side, or {_HINT}"
    ]
