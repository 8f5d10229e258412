"""
Dataset folders: the three layouts, pairing by name, validation, few-shot selection, official copies.

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
``blobfile``, so a dataset may live in a bucket. Reading one file is :mod:`defect_gen.data.files`;
the torch side (Dataset, augmentation, batches) is :mod:`defect_gen.data.dataset`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import posixpath
from dataclasses import dataclass, field

import blobfile as bf
import numpy as np

from ..errors import DatasetError
from ..fileio import write_png
from .files import open_image, read_pair, to_rgb, try_inspect_pair

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
        data_dir, num_defect=num_defect, classes=classes, num_image_train=num_image_train,
        check_files=check_files,
    )  # fmt: skip
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
    classes = _check_arguments(num_defect, classes, num_image_train)
    try:
        layout, image_root, mask_root = _detect_layout(data_dir)
    except DatasetError as exc:
        return None, [str(exc)]

    problems = []
    folders, all_types = _type_folders(layout, image_root, mask_root, problems)
    binary = layout == "mvtec"
    type_class = {}
    if binary:
        classes, type_class, num_defect = _type_classes(
            data_dir, folders, all_types, classes, num_defect, problems
        )
    elif classes is not None and num_defect is not None and len(classes) != num_defect:
        problems.append(
            f"{data_dir}: classes names {len(classes)} classes but num_defect={num_defect}"
        )
    max_value = num_defect if num_defect is not None else (len(classes) if classes else None)

    counts, candidates = _candidates(layout, folders, num_image_train, problems)
    if binary:
        candidates = [c for c in candidates if c[0] in type_class]
    mask_counts = [None] * len(candidates)
    if check_files and candidates:
        jobs = [(image, mask, binary, max_value) for _, image, mask in candidates]
        with concurrent.futures.ThreadPoolExecutor(min(_CHECK_THREADS, len(jobs))) as pool:
            results = list(pool.map(try_inspect_pair, jobs))
        mask_counts = [c for c, _ in results]
        problems += [p for _, p in results if p is not None]
    pairs, largest = _classified_pairs(candidates, mask_counts, type_class, binary, check_files)

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


def _check_arguments(num_defect, classes, num_image_train):
    """Raise DatasetError on a bad argument of check_dataset; give `classes` as strings (or None)."""
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
    return classes


def _type_classes(data_dir, folders, all_types, classes, num_defect, problems):
    """
    Give (classes, {defect type: class id}, num_defect) of a binary-mask (MVTec) layout, where the
    type folder names the class; problems found are appended to `problems`.
    """
    # All type folders count, so that a broken folder does not shift the others' class ids.
    classes = list(classes) if classes is not None else all_types
    type_class = {}
    for defect_type, image_dir, _ in folders:
        if defect_type not in classes:
            problems.append(f"{image_dir}: defect type {defect_type!r} is not in classes {classes}")
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
    return classes, type_class, num_defect


def _candidates(layout, folders, num_image_train, problems):
    """Give ({type: (images, selected)}, [(type, image, mask)]): the pairs matched by name, per type."""
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
    return counts, candidates


def _classified_pairs(candidates, mask_counts, type_class, binary, check_files):
    """
    Give (the Pairs that passed the checks, each with its class id; the largest class value seen).

    A binary layout's class is its type folder's; otherwise the mask's most frequent defect value.
    """
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
    return pairs, largest


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
        to_rgb(open_image(pair.image), pair.image)
    logger.info("good images: %d from %s, with all-background masks", len(pairs), folder)
    return pairs


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
            write_png(bf.join(out_dir, folder, pair.defect_type, stem + ".png"), array)
    return len(index.pairs)
