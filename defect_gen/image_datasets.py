"""
Defect datasets: layouts, pairing by name, validation, few-shot selection, joint augmentation, sharding.

Three folder layouts are read; defect types are the sub-folder names and ``good`` folders are skipped:

=================== =========================== ========================================= ==============
layout              images                      masks                                     mask values
=================== =========================== ========================================= ==============
``official``        ``test/<type>/X.png``       ``converted_ground_truth/<type>/X.png``   class 0..K
``mvtec``           ``test/<type>/X.png``       ``ground_truth/<type>/X_mask.png``        0/255
``defect_spectrum`` ``image/<type>/X.png``      ``mask/<type>/X_mask.png``                class 0..K
=================== =========================== ========================================= ==============

Defect Spectrum also comes flat (``image/X.png`` + ``mask/X_mask.png``, defect type ``"all"``).
An image ``X.<ext>`` pairs with the mask ``X.<ext>`` or ``X_mask.<ext>`` of the same type folder
(extensions may differ); anything left over is an error naming the file. Every path goes through
``blobfile``, so a dataset may live in a bucket.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import posixpath
from dataclasses import dataclass, field

import blobfile as bf
import numpy as np
import torch
from PIL import Image

from defect_gen import masks

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = "_mask"
SKIPPED_TYPES = ("good",)
FLAT_TYPE = "all"

# layout name -> (image folder, mask folder, mask name for image X); checked in this order.
LAYOUTS = {
    "official": ("test", "converted_ground_truth", "{stem}.png"),
    "mvtec": ("test", "ground_truth", "{stem}_mask.png"),
    "defect_spectrum": ("image", "mask", "{stem}_mask.png"),
}

_CHECK_THREADS = 16
DEFAULT_CROP_RANDOM = 0.25  # data.params.crop_random when not set


class DatasetError(ValueError):
    """
    A problem with a dataset; the message is one line naming the file (or folder) and what is wrong.

    ``problems`` holds every problem found when several were collected (the message gives the first).
    """

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


@dataclass(frozen=True)
class Pair:
    """
    One training image and its mask.

    ``class_id``: for the MVTec layout the class of the pair's defect type; for the class-index layouts
    the mask's most frequent defect class (0 when it has none, or when files were not checked).
    ``mask`` is None for a good image (see :func:`find_good_pairs`): its mask is all background.
    """

    image: str
    mask: str | None
    defect_type: str
    class_id: int


@dataclass
class DatasetIndex:
    """
    The selected pairs of a dataset folder.

    ``classes[k - 1]`` names class k. ``num_defect`` is the number of defect classes (given, else the
    length of ``classes``, else the largest mask value seen; None when unknown). ``counts`` maps each
    defect type to (images in its folder, images selected).
    """

    root: str
    layout: str
    classes: list[str]
    pairs: list[Pair]
    num_defect: int | None = None
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def binary_masks(self):
        """Whether masks are 0/255 (MVTec) rather than class-index maps."""
        return self.layout == "mvtec"

    @property
    def defect_types(self):
        """Give the defect types in sorted order."""
        return sorted(self.counts)

    def subset(self, pairs):
        """Give a copy of this index holding only `pairs`."""
        return dataclasses.replace(self, pairs=list(pairs))


# ----------------------------------------------------------------------------------------------
# Finding and checking pairs


def find_pairs(data_dir, *, num_defect=None, classes=None, num_image_train=None, check_files=True):
    """
    Give the DatasetIndex of a dataset folder; raise DatasetError when anything is wrong with it.

    :param data_dir: the dataset folder (local path or bucket URL) in one of the three layouts.
    :param num_defect: the number of defect classes; mask values (MVTec: class ids) above it are errors.
    :param classes: MVTec: the defect type of each class (class k = classes[k-1]); else sorted types.
        Class-index layouts: class names only.
    :param num_image_train: take the first N (sorted by file name) images of each defect type; None = all.
    :param check_files: open every selected file (readable, image and mask sizes agree, mask values).
    """
    index, problems = check_dataset(
        data_dir,
        num_defect=num_defect,
        classes=classes,
        num_image_train=num_image_train,
        check_files=check_files,
    )
    if problems:
        for problem in problems:
            logger.error("dataset problem: %s", problem)
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DatasetError(problems[0] + more, problems)
    return index


def check_dataset(
    data_dir, *, num_defect=None, classes=None, num_image_train=None, check_files=True
):
    """
    Give (DatasetIndex or None, list of problem lines) for a dataset folder: every problem, not the first.

    Takes find_pairs' arguments. The index holds the selected pairs that passed the checks; it is None
    when no layout was found. Bad argument values raise DatasetError.
    """
    data_dir = str(data_dir)
    if num_defect is not None and (int(num_defect) != num_defect or num_defect < 1):
        raise DatasetError(f"num_defect must be a positive integer, got {num_defect!r}")
    if num_image_train is not None and (
        int(num_image_train) != num_image_train or num_image_train < 1
    ):
        raise DatasetError(f"num_image_train must be a positive integer, got {num_image_train!r}")
    if classes is not None:
        classes = [str(c) for c in classes]
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise DatasetError(f"classes lists {', '.join(repeated)} more than once: {classes}")

    try:
        layout, image_root, mask_root = _detect_layout(data_dir)
    except DatasetError as exc:
        return None, [str(exc)]

    problems = []
    folders, all_types = _type_folders(layout, image_root, mask_root, problems)
    binary = layout == "mvtec"

    type_class = {}
    if binary:
        # All type folders count, so that a broken folder does not shift the others' class ids.
        classes = list(classes) if classes is not None else all_types
        for defect_type, image_dir, _ in folders:
            if defect_type not in classes:
                problems.append(
                    f"{image_dir}: defect type {defect_type!r} is not in classes {classes}"
                )
                continue
            type_class[defect_type] = classes.index(defect_type) + 1
            if num_defect is not None and type_class[defect_type] > num_defect:
                problems.append(
                    f"{image_dir}: defect type {defect_type!r} has class id "
                    f"{type_class[defect_type]} > num_defect={num_defect}"
                )
        unused = [c for c in classes if c not in all_types]
        if unused:
            logger.info("classes without a type folder in %s: %s", data_dir, ", ".join(unused))
        if num_defect is None:
            num_defect = len(classes)
    elif classes is not None and num_defect is not None and len(classes) != num_defect:
        problems.append(
            f"{data_dir}: classes names {len(classes)} classes but num_defect={num_defect}"
        )
    max_value = num_defect if num_defect is not None else (len(classes) if classes else None)

    counts, candidates = {}, []
    for defect_type, image_dir, mask_dir in folders:
        matched, num_images = _pair_folder(layout, image_dir, mask_dir, problems)
        selected = matched if num_image_train is None else matched[:num_image_train]
        counts[defect_type] = (num_images, len(selected))
        if num_image_train is not None and num_images < num_image_train:
            logger.warning(
                "%s: %d images, fewer than num_image_train=%d",
                image_dir,
                num_images,
                num_image_train,
            )
        candidates += [
            (defect_type, image, mask) for image, mask in selected if image is not None and mask
        ]
    if binary:
        candidates = [c for c in candidates if c[0] in type_class]

    mask_counts = [None] * len(candidates)
    if check_files and candidates:
        jobs = [(image, mask, binary, max_value) for _, image, mask in candidates]
        with concurrent.futures.ThreadPoolExecutor(min(_CHECK_THREADS, len(jobs))) as pool:
            results = list(pool.map(_try_inspect_pair, jobs))
        mask_counts = [c for c, _ in results]
        problems += [p for _, p in results if p is not None]

    pairs, largest = [], 0
    for (defect_type, image, mask), value_counts in zip(candidates, mask_counts):
        if check_files and value_counts is None:
            continue
        if binary:
            class_id = type_class[defect_type]
        else:
            class_id = 0
            if value_counts is not None and value_counts[1:].sum() > 0:
                class_id = int(np.argmax(value_counts[1:])) + 1
                largest = max(largest, len(value_counts) - 1)
        pairs.append(Pair(image, mask, defect_type, class_id))

    if num_defect is None:
        if classes:
            num_defect = len(classes)
        elif largest:
            num_defect = largest
    names = list(classes or [])
    names += [f"class_{k}" for k in range(len(names) + 1, (num_defect or 0) + 1)]

    if not pairs and not problems:
        problems.append(f"{data_dir}: no image/mask pairs found")
    index = DatasetIndex(data_dir, layout, names, pairs, num_defect, counts)
    _log_index(index, type_class)
    return index, problems


def _log_index(index, type_class):
    logger.info(
        "dataset %s: layout %s, %d pairs selected", index.root, index.layout, len(index.pairs)
    )
    logger.info(
        "class ids: %s", ", ".join(f"{k}={n}" for k, n in enumerate(index.classes, 1)) or "unknown"
    )
    for defect_type in index.defect_types:
        total, selected = index.counts[defect_type]
        cls = f" (class {type_class[defect_type]})" if defect_type in type_class else ""
        logger.info("  %s%s: %d of %d images", defect_type, cls, selected, total)


def _entries(folder):
    """Give (file names, folder names) of a folder, sorted, hidden names left out."""
    files, dirs = [], []
    for entry in bf.scandir(folder):
        name = entry.name.rstrip("/")
        if not name or name.startswith("."):
            continue
        (dirs if entry.is_dir else files).append(name)
    return sorted(files), sorted(dirs)


def _is_image(name):
    return posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_skipped(name):
    return name.lower() in SKIPPED_TYPES


def _detect_layout(root):
    """Give (layout, image folder, mask folder) of a dataset folder; DatasetError when none fits."""
    if not bf.exists(root):
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not bf.isdir(root):
        raise DatasetError(f"{root}: is a file, expected a dataset folder")
    _, dirs = _entries(root)
    for layout, (image_dir, mask_dir, _) in LAYOUTS.items():
        if image_dir in dirs and mask_dir in dirs:
            return layout, bf.join(root, image_dir), bf.join(root, mask_dir)
    if "test" in dirs:
        raise DatasetError(
            f"{bf.join(root, 'test')}: no mask folder beside it "
            "(expected converted_ground_truth/ or ground_truth/)"
        )
    if "image" in dirs:
        raise DatasetError(f"{bf.join(root, 'image')}: no mask/ folder beside it")
    raise DatasetError(
        f"{root}: no dataset layout found (expected test/ + converted_ground_truth/, "
        "test/ + ground_truth/ or image/ + mask/)"
    )


def _type_folders(layout, image_root, mask_root, problems):
    """
    Give ([(defect type, image folder, mask folder)], all type names), sorted; problems appended.

    A type whose mask folder is missing is left out of the first list, not the second.
    """
    image_files, image_dirs = _entries(image_root)
    mask_files, mask_dirs = _entries(mask_root)
    image_dirs = [d for d in image_dirs if not _is_skipped(d)]
    mask_dirs = [d for d in mask_dirs if not _is_skipped(d)]
    image_files = [f for f in image_files if _is_image(f)]

    if not image_dirs:
        if layout == "defect_spectrum" and image_files:
            return [(FLAT_TYPE, image_root, mask_root)], [FLAT_TYPE]
        problems.append(
            f"{image_root}: no image/mask pairs found (no defect-type folders, only 'good' or nothing)"
        )
        return [], []

    for name in image_files:
        problems.append(f"{bf.join(image_root, name)}: image outside the defect-type folders")
    folders = []
    for defect_type in image_dirs:
        if defect_type not in mask_dirs:
            problems.append(
                f"{bf.join(mask_root, defect_type)}: mask folder missing for defect type "
                f"{defect_type!r}"
            )
            continue
        folders.append(
            (defect_type, bf.join(image_root, defect_type), bf.join(mask_root, defect_type))
        )
    for defect_type in mask_dirs:
        if defect_type not in image_dirs:
            problems.append(
                f"{bf.join(mask_root, defect_type)}: mask folder without an image folder "
                f"{bf.join(image_root, defect_type)}"
            )
    return folders, image_dirs


def _pair_folder(layout, image_dir, mask_dir, problems):
    """
    Give ([(image path, mask path or None)] sorted by image name, number of images) of one type.

    Pairs are matched by name; unmatched or doubly matched files are appended to problems.
    """
    image_names = [f for f in _entries(image_dir)[0] if _is_image(f)]
    if not image_names:
        problems.append(f"{image_dir}: empty defect-type folder (no images)")
        return [], 0
    mask_names = [f for f in _entries(mask_dir)[0] if _is_image(f)]

    by_stem = {}
    for name in image_names:
        stem = posixpath.splitext(name)[0]
        if stem in by_stem:
            problems.append(
                f"{bf.join(image_dir, name)}: second image named {stem!r} "
                f"(also {by_stem[stem]}); cannot pair by name"
            )
            continue
        by_stem[stem] = name

    mask_of = {}
    for name in mask_names:
        stem = posixpath.splitext(name)[0]
        if stem in by_stem:
            key = stem
        elif stem.endswith(MASK_SUFFIX) and stem[: -len(MASK_SUFFIX)] in by_stem:
            key = stem[: -len(MASK_SUFFIX)]
        else:
            problems.append(
                f"{bf.join(mask_dir, name)}: mask without an image (no "
                f"{bf.join(image_dir, _strip_mask_suffix(stem))}.<ext>)"
            )
            continue
        if key in mask_of:
            problems.append(
                f"{bf.join(mask_dir, name)}: second mask for image {bf.join(image_dir, by_stem[key])} "
                f"(also {mask_of[key]})"
            )
            continue
        mask_of[key] = name

    expected = LAYOUTS[layout][2]
    matched = []
    for name in image_names:
        stem = posixpath.splitext(name)[0]
        if by_stem.get(stem) != name:
            matched.append((None, None))  # a duplicate stem, reported above
            continue
        if stem not in mask_of:
            problems.append(
                f"{bf.join(image_dir, name)}: image without a mask "
                f"(expected {bf.join(mask_dir, expected.format(stem=stem))})"
            )
            matched.append((bf.join(image_dir, name), None))
            continue
        matched.append((bf.join(image_dir, name), bf.join(mask_dir, mask_of[stem])))
    return matched, len(image_names)


def _strip_mask_suffix(stem):
    return stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else stem


def _try_inspect_pair(job):
    try:
        return _inspect_pair(*job), None
    except DatasetError as exc:
        return None, str(exc)


def _inspect_pair(image_path, mask_path, binary, max_value):
    """Give the mask's pixel count per value (binary: [background, defect]) after checking the pair."""
    image = _open(image_path)
    mask = _open(mask_path)
    _check_sizes(image, mask, image_path, mask_path)
    _to_rgb(image, image_path)
    values = _mask_values(mask, mask_path, binary)
    if binary:
        return np.bincount((values != 0).ravel().astype(np.int64), minlength=2)
    _check_max(values, mask_path, max_value)
    return np.bincount(values.ravel())


def find_good_pairs(data_dir, num_good):
    """
    Give the first `num_good` (sorted by name) good images of a dataset as Pairs with mask None.

    Good images are read from ``train/good`` (the MVTec layout's training images) when it holds
    images, else from the ``good`` folder beside the defect-type folders (``test/good`` or
    ``image/good``). Fewer than `num_good` gives those found, with a warning; none is a DatasetError.
    Each selected image is opened (readable, 8-bit).
    """
    data_dir = str(data_dir)
    if int(num_good) != num_good or num_good < 1:
        raise DatasetError(f"num_good must be a positive integer, got {num_good!r}")
    _, image_root, _ = _detect_layout(data_dir)
    folders = [bf.join(data_dir, "train", "good")]
    folders += [bf.join(image_root, d) for d in _entries(image_root)[1] if _is_skipped(d)]
    for folder in folders:
        if not bf.isdir(folder):
            continue
        names = [n for n in _entries(folder)[0] if _is_image(n)]
        if names:
            break
    else:
        raise DatasetError(
            f"{data_dir}: data.params.num_good={num_good} but no good images found "
            f"(looked in {' and '.join(folders)})"
        )
    if len(names) < num_good:
        logger.warning("%s: %d good images, fewer than num_good=%d", folder, len(names), num_good)
    pairs = [Pair(bf.join(folder, name), None, "good", 0) for name in names[:num_good]]
    for pair in pairs:
        _to_rgb(_open(pair.image), pair.image)
    logger.info("good images: %d from %s, with all-background masks", len(pairs), folder)
    return pairs


# ----------------------------------------------------------------------------------------------
# Reading files


def _open(path):
    """Give the decoded PIL image at `path`; DatasetError naming it when it cannot be read."""
    try:
        with bf.BlobFile(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except Exception as exc:  # PIL and blobfile raise many kinds (OSError, SyntaxError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"{path}: unreadable image ({reason})") from exc
    return image


def _check_sizes(image, mask, image_path, mask_path):
    if image.size != mask.size:
        raise DatasetError(
            f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_path} "
            f"is {image.size[0]}x{image.size[1]}"
        )


def _to_rgb(image, path):
    """Give an [H x W x 3] uint8 array of a PIL image (grayscale copied to three channels)."""
    if image.mode.startswith("I;16"):
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("I", "F"):
        raise DatasetError(
            f"{path}: {image.mode}-mode (32-bit) image, expected 8-bit RGB or grayscale"
        )
    return np.asarray(image.convert("RGB"))


def _mask_values(mask, path, binary):
    """Give the [H x W] int64 values of a mask image (palette images: the palette indices)."""
    values = np.asarray(mask)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.dtype.kind == "f":
        raise DatasetError(f"{path}: floating-point mask, expected integer class values")
    if values.ndim == 3:
        colour = values[..., :1] if mask.mode == "LA" else values[..., :3]
        if binary:
            values = colour.max(axis=2)
        elif (colour == colour[..., :1]).all():
            values = colour[..., 0]
        else:
            raise DatasetError(
                f"{path}: colour ({mask.mode}) mask, expected a single-channel class-index image"
            )
    values = values.astype(np.int64)
    if values.size and values.min() < 0:
        raise DatasetError(f"{path}: negative mask value {int(values.min())}")
    return values


def _check_max(values, path, max_value):
    if max_value is None or not values.size:
        return
    top = int(values.max())
    if top > max_value:
        hint = " (a 0/255 binary mask? use the MVTec layout ground_truth/)" if top == 255 else ""
        raise DatasetError(f"{path}: mask value {top} > num_defect={max_value}{hint}")


def read_mask(pair, index):
    """Give the [H x W] int64 class-index map of a pair (MVTec: 0 / the pair's class id)."""
    if pair.mask is None:
        width, height = _open(pair.image).size
        return np.zeros((height, width), np.int64)
    values = _mask_values(_open(pair.mask), pair.mask, index.binary_masks)
    if index.binary_masks:
        return np.where(values != 0, pair.class_id, 0).astype(np.int64)
    _check_max(values, pair.mask, index.num_defect)
    return values


def read_pair(pair, index):
    """
    Give a pair's image and class-index map at full resolution.

    :return: (uint8 [H x W x 3] RGB array, int64 [H x W] class-index map). MVTec 0/255 masks become
        0 / the pair's class id (any nonzero value is defect). A good image (mask None) gives zeros.
    """
    image = _open(pair.image)
    if pair.mask is None:
        rgb = _to_rgb(image, pair.image)
        return rgb, np.zeros(rgb.shape[:2], np.int64)
    mask = _open(pair.mask)
    _check_sizes(image, mask, pair.image, pair.mask)
    rgb = _to_rgb(image, pair.image)
    values = _mask_values(mask, pair.mask, index.binary_masks)
    if index.binary_masks:
        return rgb, np.where(values != 0, pair.class_id, 0).astype(np.int64)
    _check_max(values, pair.mask, index.num_defect)
    return rgb, values


# ----------------------------------------------------------------------------------------------
# Dataset and loader


class DefectDataset(torch.utils.data.Dataset):
    """
    Training samples of a DatasetIndex: RGB in [-1, 1] concatenated with the one-hot mask.

    An item is ``(idx, aug_seed)`` or a plain ``idx`` (aug_seed 0). All randomness (crop, flip) is drawn
    from a torch.Generator seeded with aug_seed, so a sample is a pure function of (idx, aug_seed).
    Resized images are cached in memory.

    :param crop: None, or the side in pixels of a crop taken from the resized (resolution-sized) sample:
        centred near a defect pixel (see :func:`defect_crop_window`), or with probability `crop_random`
        (and for masks without defects) a uniform random crop. Samples are then crop x crop.
    """

    def __init__(
        self, index, *, resolution, num_defect, keep_aspect=False, random_flip=False, crop=None,
        crop_random=DEFAULT_CROP_RANDOM,
    ):  # fmt: skip
        masks.num_channels(num_defect)
        if int(resolution) != resolution or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        if not index.pairs:
            raise DatasetError(f"{index.root}: no image/mask pairs to train on")
        for pair in index.pairs:
            if index.binary_masks and pair.class_id > num_defect:
                raise DatasetError(
                    f"{bf.dirname(pair.image)}: defect type {pair.defect_type!r} has class id "
                    f"{pair.class_id} > num_defect={num_defect}"
                )
        self.index = index
        self.resolution = int(resolution)
        self.num_defect = int(num_defect)
        self.keep_aspect = keep_aspect
        self.random_flip = random_flip
        if crop is not None and (int(crop) != crop or not 1 <= crop <= self.resolution):
            raise ValueError(f"crop must be an integer in 1..{self.resolution}, got {crop!r}")
        if not 0 <= crop_random <= 1:
            raise ValueError(f"crop_random must lie in [0, 1], got {crop_random!r}")
        self.crop = None if crop is None else int(crop)
        self.crop_random = float(crop_random)
        self._cache = {}

    def __len__(self):
        return len(self.index.pairs)

    def __getitem__(self, item):
        """
        Give (x, info) for item ``(idx, aug_seed)`` or ``idx``.

        :return: x, a float32 Tensor [(num_defect + 4) x R x R]; info, a dict with ``index``,
            ``aug_seed``, ``class_id`` (the pair's) and ``class_ids`` (LongTensor of the defect classes
            present in x's mask, background left out).
        """
        idx, aug_seed = item if isinstance(item, (tuple, list)) else (item, 0)
        idx = int(idx)
        if not 0 <= idx < len(self):
            raise IndexError(f"sample {idx} out of range 0..{len(self) - 1}")
        rgb, index_map = self._resized(idx)

        # Drawn whatever the options, so that turning one option on never shifts another's randomness.
        generator = torch.Generator().manual_seed(int(aug_seed))
        u_top, u_left, u_flip = torch.rand(3, generator=generator).tolist()
        u_crop = torch.rand(5, generator=generator).tolist()
        size = self.resolution
        height, width = index_map.shape
        top = min(int(u_top * (height - size + 1)), height - size)
        left = min(int(u_left * (width - size + 1)), width - size)
        rgb = rgb[top : top + size, left : left + size]
        index_map = index_map[top : top + size, left : left + size]
        if self.random_flip and u_flip < 0.5:
            rgb, index_map = rgb[:, ::-1], index_map[:, ::-1]
        if self.crop is not None:
            top, left, _ = defect_crop_window(index_map, self.crop, u_crop, self.crop_random)
            rgb = rgb[top : top + self.crop, left : left + self.crop]
            index_map = index_map[top : top + self.crop, left : left + self.crop]

        # Copies: the cache must not share memory with what callers get.
        rgb = torch.from_numpy(np.array(rgb, order="C")).permute(2, 0, 1).float() / 127.5 - 1
        index_map = torch.from_numpy(np.array(index_map, order="C")).long()
        x = torch.cat([rgb, masks.encode(index_map, self.num_defect)], dim=0)
        present = torch.unique(index_map)
        info = {
            "index": idx,
            "aug_seed": int(aug_seed),
            "class_id": self.index.pairs[idx].class_id,
            "class_ids": present[present > 0],
        }
        return x, info

    def _resized(self, idx):
        """Give (uint8 [h x w x 3], integer [h x w]) of pair idx resized, from the cache when there."""
        if idx in self._cache:
            return self._cache[idx]
        pair = self.index.pairs[idx]
        rgb, index_map = read_pair(pair, self.index)
        _check_max(index_map, pair.mask, self.num_defect)
        height, width = index_map.shape
        size = self.resolution
        if self.keep_aspect:
            scale = size / min(height, width)
            target = (max(size, round(width * scale)), max(size, round(height * scale)))
        else:
            target = (size, size)
        if target != (width, height):
            rgb = np.asarray(Image.fromarray(rgb).resize(target, Image.BILINEAR))
            compact = index_map.astype(np.uint8 if self.num_defect < 256 else np.int32)
            index_map = np.asarray(Image.fromarray(compact).resize(target, Image.NEAREST))
        self._cache[idx] = (rgb, index_map)
        return self._cache[idx]


def defect_crop_window(index_map, size, u, random_share=DEFAULT_CROP_RANDOM):
    """
    Give (top, left, centre) of a size x size crop of an [H x W] class-index map.

    With probability 1 - `random_share` (and when the map holds a defect) the crop is centred near a
    defect pixel: a class drawn uniformly from the defect classes present (so a thin class is not
    outweighed by a large one), a pixel drawn uniformly from that class, the centre moved from it by a
    uniform offset of at most size // 4 per axis, the window then shifted inside the map; it always
    holds that pixel, `centre` = (row, col). Otherwise a uniform random crop, `centre` None.

    :param u: five numbers in [0, 1): random-or-defect, class, pixel, row offset, column offset.
    """
    u_random, u_class, u_pixel, u_row, u_col = u
    height, width = index_map.shape
    if not 1 <= size <= min(height, width):
        raise ValueError(f"crop {size} does not fit a {height}x{width} sample")
    present = np.unique(index_map)
    present = present[present > 0]
    if not len(present) or u_random < random_share:
        top = min(int(u_row * (height - size + 1)), height - size)
        left = min(int(u_col * (width - size + 1)), width - size)
        return top, left, None
    k = present[min(int(u_class * len(present)), len(present) - 1)]
    rows, cols = np.nonzero(index_map == k)
    i = min(int(u_pixel * len(rows)), len(rows) - 1)
    row, col = int(rows[i]), int(cols[i])
    reach = size // 4
    top = row + int(round((2 * u_row - 1) * reach)) - size // 2
    left = col + int(round((2 * u_col - 1) * reach)) - size // 2
    top = min(max(top, 0), height - size)
    left = min(max(left, 0), width - size)
    return top, left, (row, col)


def collate(samples):
    """
    Give (x, info) of a batch of DefectDataset samples.

    :return: x, a float32 Tensor [B x (num_defect + 4) x R x R]; info with LongTensors [B] ``index``,
        ``aug_seed``, ``class_id`` and a list of B LongTensors ``class_ids``.
    """
    xs, infos = zip(*samples)
    info = {key: torch.tensor([i[key] for i in infos]) for key in ("index", "aug_seed", "class_id")}
    info["class_ids"] = [i["class_ids"] for i in infos]
    return torch.stack(xs), info


def derive_seed(*values):
    """Give a well-mixed 63-bit seed from non-negative integers (the same on every platform)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


class ShardBatchSampler(torch.utils.data.Sampler):
    """
    An endless sampler of batches of ``(idx, aug_seed)`` for one shard, starting at ``start_step``.

    The shard is ``range(num_pairs)[shard::num_shards]`` (wrapped to one pair when that is empty).
    Each epoch is a permutation of the shard drawn from a generator seeded by (seed, shard, epoch);
    sample number p of the shard's stream gets aug_seed derived from (seed, shard, p). With
    ``drop_last=True`` epochs run into each other and every batch has ``batch_size`` samples; with
    False batches end at epoch ends, so an epoch's last batch may be smaller. ``batch(step)`` is a
    pure function of (seed, shard, step).
    """

    def __init__(
        self, num_pairs, *, batch_size, shard=0, num_shards=1, seed=0, start_step=0, drop_last=True
    ):
        if num_pairs < 1:
            raise ValueError("the dataset has no pairs")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard must lie in 0..{num_shards - 1}, got {shard}")
        if seed < 0 or start_step < 0:
            raise ValueError(f"seed and start_step must be non-negative, got {seed}, {start_step}")
        self.indices = list(range(shard, num_pairs, num_shards))
        if not self.indices:
            self.indices = [shard % num_pairs]
            logger.warning(
                "%d pairs for %d shards: shard %d reuses pair %d",
                num_pairs,
                num_shards,
                shard,
                self.indices[0],
            )
        self.batch_size = batch_size
        self.shard = shard
        self.seed = seed
        self.start_step = start_step
        self.drop_last = drop_last
        self._permutation = (None, None)

    def epoch_order(self, epoch):
        """Give the shard's pair indices in the order of `epoch`."""
        if self._permutation[0] != epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.shard, 0, epoch))
            order = torch.randperm(len(self.indices), generator=generator).tolist()
            self._permutation = (epoch, [self.indices[i] for i in order])
        return self._permutation[1]

    def batch(self, step):
        """Give the list of (idx, aug_seed) of batch `step`."""
        n, size = len(self.indices), self.batch_size
        if self.drop_last:
            positions = range(step * size, (step + 1) * size)
        else:
            per_epoch = math.ceil(n / size)
            epoch, offset = divmod(step, per_epoch)
            start = epoch * n + offset * size
            positions = range(start, min(start + size, (epoch + 1) * n))
        return [
            (self.epoch_order(p // n)[p % n], derive_seed(self.seed, self.shard, 1, p))
            for p in positions
        ]

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def load_data(
    *,
    data_dir=None,
    index=None,
    batch_size,
    resolution,
    num_defect,
    num_image_train=None,
    classes=None,
    keep_aspect=False,
    random_flip=False,
    crop=None,
    crop_random=DEFAULT_CROP_RANDOM,
    num_workers=0,
    shard=0,
    num_shards=1,
    seed=0,
    start_step=0,
    drop_last=True,
):
    """
    Give an endless iterator of training batches (x, info) for one shard.

    x is a float32 Tensor [B x (num_defect + 4) x R x R], info as in `collate`. The batch yielded for
    step s is a pure function of (seed, shard, s), whatever num_workers: ``start_step=k`` starts with
    exactly the batch a run from step 0 yielded k-th (0-based). See ShardBatchSampler for the order.
    A shard that would be empty (fewer pairs than shards) wraps to pair ``shard % num_pairs``.

    :param data_dir: a dataset folder, read with find_pairs(num_defect, classes, num_image_train);
        or pass a ready ``index`` instead.
    :param crop, crop_random: see DefectDataset.
    """
    if (data_dir is None) == (index is None):
        raise ValueError("load_data needs exactly one of data_dir and index")
    if index is None:
        index = find_pairs(
            data_dir, num_defect=num_defect, classes=classes, num_image_train=num_image_train
        )
    dataset = DefectDataset(
        index,
        resolution=resolution,
        num_defect=num_defect,
        keep_aspect=keep_aspect,
        random_flip=random_flip,
        crop=crop,
        crop_random=crop_random,
    )
    sampler = ShardBatchSampler(
        len(dataset),
        batch_size=batch_size,
        shard=shard,
        num_shards=num_shards,
        seed=seed,
        start_step=start_step,
        drop_last=drop_last,
    )
    logger.info(
        "shard %d of %d: %d of %d pairs, batch %d, from step %d",
        shard,
        num_shards,
        len(sampler.indices),
        len(dataset),
        batch_size,
        start_step,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate
    )
    return iter(loader)


# ----------------------------------------------------------------------------------------------
# Statistics and conversion


def mask_class_weights(mean_area, power, cap):
    """
    Give per-class mask-loss weights [K + 1] (background first) from the classes' pixel shares.

    w_k = min(cap, (a_max / a_k) ** power), a_k the mean share of the masks' pixels in class k
    (``mask_statistics``' "mean_area") and a_max the largest share (usually background, weight 1):
    a class 100 times rarer than background weighs 10 at power 0.5. A class with no pixels in the
    training masks never is a target; it gets weight 1. Plain floats, rounded to 6 significant digits
    so that they survive a YAML/JSON round trip unchanged.
    """
    if power < 0 or cap < 1:
        raise ValueError(f"need power >= 0 and cap >= 1, got power {power} and cap {cap}")
    area = [float(a) for a in mean_area]
    top = max(area)
    if top <= 0:
        raise ValueError("the training masks hold no pixels")
    return [float(f"{min(cap, (top / a) ** power):.6g}") if a > 0 else 1.0 for a in area]


def mask_statistics(index, *, num_defect):
    """
    Give class statistics of the index's full-resolution masks.

    :return: {"num_images": n, "share_with_class": [K + 1] fraction of masks holding class k,
        "mean_area": [K + 1] mean fraction of a mask's pixels in class k} (entry 0 = background).
    """
    if not index.pairs:
        raise DatasetError(f"{index.root}: no image/mask pairs")
    share = np.zeros(num_defect + 1)
    area = np.zeros(num_defect + 1)
    for pair in index.pairs:
        index_map = read_mask(pair, index)
        _check_max(index_map, pair.mask, num_defect)
        counts = np.bincount(index_map.ravel(), minlength=num_defect + 1)
        share += counts > 0
        area += counts / max(index_map.size, 1)
    n = len(index.pairs)
    return {
        "num_images": n,
        "share_with_class": (share / n).tolist(),
        "mean_area": (area / n).tolist(),
    }


def write_official(index, out_dir):
    """
    Write the index's pairs in the official layout; give the number of pairs written.

    ``out_dir/test/<type>/X.png`` (RGB) and ``out_dir/converted_ground_truth/<type>/X.png`` (8-bit
    class-index map). `out_dir` must not exist yet or be empty, so that nothing is mixed or overwritten.
    """
    out_dir = str(out_dir)
    if bf.exists(out_dir) and (not bf.isdir(out_dir) or any(True for _ in bf.scandir(out_dir))):
        raise DatasetError(f"{out_dir}: output folder exists and is not empty")
    for pair in index.pairs:
        rgb, index_map = read_pair(pair, index)
        if index_map.size and index_map.max() > 255:
            raise DatasetError(
                f"{pair.mask}: class {int(index_map.max())} does not fit an 8-bit mask"
            )
        stem = posixpath.splitext(bf.basename(pair.image))[0]
        for folder, array in (
            ("test", rgb),
            ("converted_ground_truth", index_map.astype(np.uint8)),
        ):
            path = bf.join(out_dir, folder, pair.defect_type, stem + ".png")
            bf.makedirs(bf.dirname(path))
            with bf.BlobFile(path, "wb") as f:
                Image.fromarray(array).save(f, format="PNG")
    return len(index.pairs)
