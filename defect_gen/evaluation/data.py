"""
The evaluation's data, decoded once: the real train / validation split and the synthetic folder.

Every image is resized to a square `resolution` (RGB bilinear, masks nearest), as the generator's
training does, and kept in memory as uint8 arrays.
"""

import json
import logging
from dataclasses import dataclass, field

import blobfile as bf
import numpy as np

from ..data import layouts
from ..data.files import read_pair, resize_pair
from ..errors import EvaluationError
from ..fileio import read_png

logger = logging.getLogger(__name__)

_MULTI_CHANNEL_MODES = {"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "La"}
_FLOAT_MODES = {"F"}


@dataclass
class PairSet:
    """
    Image / mask pairs held in memory at one square resolution.

    images: uint8 [N x R x R x 3]; masks: uint8 [N x R x R] class indices (0 = background);
    names: N identifiers (file paths); types: N defect-type names (None for synthetic pairs).
    """

    images: np.ndarray
    masks: np.ndarray
    names: list
    types: list = field(default_factory=list)

    def __len__(self):
        return len(self.names)

    def subset(self, indices):
        """Give the PairSet of the given positions, in that order."""
        indices = list(indices)
        return PairSet(
            images=self.images[indices],
            masks=self.masks[indices],
            names=[self.names[i] for i in indices],
            types=[self.types[i] for i in indices] if self.types else [],
        )

    @staticmethod
    def concat(a, b):
        """Give a followed by b."""
        return PairSet(
            images=np.concatenate([a.images, b.images]),
            masks=np.concatenate([a.masks, b.masks]),
            names=a.names + b.names,
            types=(a.types or [None] * len(a)) + (b.types or [None] * len(b)),
        )


@dataclass
class RealSplit:
    """The real data: classes (classes[k-1] names class k), num_defect, train and validation."""

    classes: list
    num_defect: int
    layout: str
    train: PairSet
    val: PairSet


@dataclass
class SyntheticSet:
    """The synthetic sample folder's pairs and its manifest (None when absent)."""

    pairs: PairSet
    manifest: object


def _square(image, mask, resolution):
    """
    Give (image, mask) resized to resolution x resolution as training resizes them (`resize_pair`).

    :param image: uint8 [H x W x 3]; :param mask: integer [H x W] with values in 0..255.
    :return: uint8 [R x R x 3], uint8 [R x R].
    """
    size = (resolution, resolution)
    image, mask = resize_pair(np.asarray(image, dtype=np.uint8), np.asarray(mask), size)
    return image, mask.astype(np.uint8)


def _stack(pairs, names, types, resolution):
    if not pairs:
        return PairSet(
            images=np.zeros((0, resolution, resolution, 3), np.uint8),
            masks=np.zeros((0, resolution, resolution), np.uint8),
            names=[],
            types=[],
        )
    images, masks = zip(*pairs)
    return PairSet(images=np.stack(images), masks=np.stack(masks), names=names, types=types)


def load_real_split(
    data_dir,
    *,
    num_train_per_type,
    resolution,
    num_defect=None,
    classes=None,
    max_val=None,
    load_val=True,
):
    """
    Give the RealSplit of a dataset folder: the first `num_train_per_type` sorted files of each
    defect type train (exactly the generator's `num_image_train` selection), the rest validate.

    :param max_val: keep at most this many validation pairs per defect type (None = all).
    :param load_val: False leaves the validation images unread (an empty PairSet): the tuning
        mode never looks at the reported images.
    """
    if num_train_per_type < 1:
        raise EvaluationError(f"--num_train_per_type must be at least 1, got {num_train_per_type}")
    kwargs = dict(num_defect=num_defect, classes=classes)
    full_index = layouts.find_pairs(data_dir, num_image_train=None, **kwargs)
    # The same call the generator's training makes, so the split is exactly its selection.
    train_index = layouts.find_pairs(
        data_dir, num_image_train=num_train_per_type, check_files=False, **kwargs
    )
    train_keys = {str(p.image) for p in train_index.pairs}
    num_defect = full_index.num_defect
    if not num_defect:
        raise EvaluationError(
            f"{data_dir}: cannot tell the number of defect classes (no defect pixels); "
            "pass --num_defect"
        )
    classes = list(full_index.classes)[:num_defect]
    classes += [f"class_{k}" for k in range(len(classes) + 1, num_defect + 1)]

    ordered = sorted(full_index.pairs, key=lambda p: (p.defect_type, str(p.image)))
    train_pairs = [p for p in ordered if str(p.image) in train_keys]
    val_pairs, val_count = [], {}
    for pair in ordered:
        if str(pair.image) in train_keys:
            continue
        if max_val is not None and val_count.get(pair.defect_type, 0) >= max_val:
            continue
        val_count[pair.defect_type] = val_count.get(pair.defect_type, 0) + 1
        val_pairs.append(pair)
    for t in sorted({p.defect_type for p in ordered}):
        if not val_count.get(t):
            logger.warning(
                "defect type %s has no validation pairs left after the first %d",
                t,
                num_train_per_type,
            )
    if not val_pairs:
        raise EvaluationError(
            f"{data_dir}: no validation pairs: every defect type has at most "
            f"{num_train_per_type} images (--num_train_per_type)"
        )

    def read(pairs):
        decoded = []
        for pair in pairs:
            image, mask = read_pair(pair, full_index)
            decoded.append(_square(image, mask, resolution))
        names, types = [str(p.image) for p in pairs], [p.defect_type for p in pairs]
        return _stack(decoded, names, types, resolution)

    return RealSplit(
        classes=classes,
        num_defect=num_defect,
        layout=str(full_index.layout),
        train=read(train_pairs),
        val=read(val_pairs) if load_val else read([]),
    )


def _read_png(path):
    try:
        return read_png(path)
    except (OSError, SyntaxError, ValueError) as e:
        raise EvaluationError(f"{path}: cannot read image ({e})") from None


def load_synthetic(folder, *, num_defect, resolution, max_count=None):
    """
    Give the SyntheticSet of a sample folder (images/NNNNNN.png, masks/NNNNNN.png, manifest.json).

    Pairs are matched by file name. A missing or extra mask, an image / mask size mismatch, a
    multi-channel mask or a class value above `num_defect` raises EvaluationError naming the file.

    :param max_count: read only the first `max_count` sorted pairs (None = all).
    """
    images_dir, masks_dir = bf.join(folder, "images"), bf.join(folder, "masks")
    for d in (folder, images_dir, masks_dir):
        if not bf.isdir(d):
            raise EvaluationError(
                f"{d}: folder not found (a synthetic folder holds images/, masks/, manifest.json)"
            )
    image_names = sorted(n for n in bf.listdir(images_dir) if n.lower().endswith(".png"))
    mask_names = {n for n in bf.listdir(masks_dir) if n.lower().endswith(".png")}
    if not image_names:
        raise EvaluationError(f"{images_dir}: no .png images")
    for name in image_names:
        if name not in mask_names:
            raise EvaluationError(
                f"{bf.join(masks_dir, name)}: mask missing for {bf.join(images_dir, name)}"
            )
    extra = sorted(mask_names - set(image_names))
    if extra:
        raise EvaluationError(
            f"{bf.join(masks_dir, extra[0])}: mask without an image in {images_dir}"
        )
    if max_count is not None:
        image_names = image_names[:max_count]

    decoded, names = [], []
    for name in image_names:
        image_path, mask_path = bf.join(images_dir, name), bf.join(masks_dir, name)
        image, mask = _read_png(image_path), _read_png(mask_path)
        if mask.mode in _FLOAT_MODES:
            raise EvaluationError(f"{mask_path}: floating-point mask, expected 8-bit class indices")
        if mask.mode in _MULTI_CHANNEL_MODES:
            raise EvaluationError(
                f"{mask_path}: mask must be a single-channel class-index PNG, got mode {mask.mode} "
                "(masks_rgb/ holds colour masks; use masks/)"
            )
        if mask.size != image.size:
            raise EvaluationError(
                f"{mask_path}: mask size {mask.size[0]}x{mask.size[1]} differs from its image's "
                f"{image.size[0]}x{image.size[1]}"
            )
        mask = np.asarray(mask).astype(np.int64)
        if mask.size and (mask.min() < 0 or mask.max() > num_defect):
            raise EvaluationError(
                f"{mask_path}: mask value {int(mask.max())} exceeds num_defect={num_defect} "
                f"(classes 0..{num_defect}; pass --num_defect if the real data show fewer classes)"
            )
        decoded.append(_square(np.asarray(image.convert("RGB")), mask, resolution))
        names.append(image_path)

    manifest = None
    manifest_path = bf.join(folder, "manifest.json")
    if bf.exists(manifest_path):
        try:
            with bf.BlobFile(manifest_path, "r") as f:
                manifest = json.load(f)
        except ValueError as e:
            raise EvaluationError(f"{manifest_path}: not valid JSON ({e})") from None
    else:
        logger.warning(
            "%s: no manifest.json; the report will not name the generator settings", folder
        )
    return SyntheticSet(
        pairs=_stack(decoded, names, [None] * len(names), resolution), manifest=manifest
    )
