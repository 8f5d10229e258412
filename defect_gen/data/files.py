"""
Reading one dataset file: images and class-index masks as arrays, and resizing a pair.

Every problem is a DatasetError whose message is one line naming the file. Paths go through
``blobfile``, so a file may live in a bucket. Masks are class-index maps (0 = background) or, in the
MVTec layout, 0/255 images that become 0 / the pair's class id.
"""

import posixpath

import blobfile as bf
import numpy as np
from PIL import Image

from ..errors import DatasetError

# Formats whose compression changes pixel values: a mask's class ids would not survive them.
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP", "JPEG2000")
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".jp2", ".j2k")


def open_image(path):
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


def to_rgb(image, path):
    """Give an [H x W x 3] uint8 array of a PIL image (grayscale copied to three channels)."""
    if image.mode.startswith("I;16"):
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("I", "F"):
        raise DatasetError(
            f"{path}: {image.mode}-mode (32-bit) image, expected 8-bit RGB or grayscale"
        )
    return np.asarray(image.convert("RGB"))


def check_lossless(mask, path):
    """Raise DatasetError naming `path` when a mask is stored in a lossy format (JPEG, WebP, ...)."""
    ext = posixpath.splitext(str(path))[1].lower()
    if ext in LOSSY_EXTENSIONS or (mask.format or "").upper() in LOSSY_FORMATS:
        kind = mask.format or ext
        raise DatasetError(
            f"{path}: {kind} mask: lossy compression turns class borders into other values; "
            f"save masks in a lossless format (PNG)"
        )


def mask_values(mask, path, binary):
    """
    Give the [H x W] int64 values of a mask image (palette images: the palette indices); DatasetError
    for a lossy file format, whose artefacts would become classes.
    """
    check_lossless(mask, path)
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


def check_max_value(values, path, max_value):
    if max_value is None or not values.size:
        return
    top = int(values.max())
    if top > max_value:
        hint = " (a 0/255 binary mask? use the MVTec layout ground_truth/)" if top == 255 else ""
        raise DatasetError(f"{path}: mask value {top} > num_defect={max_value}{hint}")


def try_inspect_pair(job):
    """Give (mask value counts, None) of an (image, mask, binary, max_value) job, or (None, problem)."""
    try:
        return _inspect_pair(*job), None
    except DatasetError as exc:
        return None, str(exc)


def _inspect_pair(image_path, mask_path, binary, max_value):
    """Give the mask's pixel count per value (binary: [background, defect]) after checking the pair."""
    image = open_image(image_path)
    mask = open_image(mask_path)
    _check_sizes(image, mask, image_path, mask_path)
    to_rgb(image, image_path)
    values = mask_values(mask, mask_path, binary)
    if binary:
        return np.bincount((values != 0).ravel().astype(np.int64), minlength=2)
    check_max_value(values, mask_path, max_value)
    return np.bincount(values.ravel())


def read_mask(pair, index):
    """Give the [H x W] int64 class-index map of a pair (MVTec: 0 / the pair's class id)."""
    if pair.mask is None:
        width, height = open_image(pair.image).size
        return np.zeros((height, width), np.int64)
    values = mask_values(open_image(pair.mask), pair.mask, index.binary_masks)
    if index.binary_masks:
        return np.where(values != 0, pair.class_id, 0).astype(np.int64)
    check_max_value(values, pair.mask, index.num_defect)
    return values


def read_pair(pair, index):
    """
    Give a pair's image and class-index map at full resolution.

    :return: (uint8 [H x W x 3] RGB array, int64 [H x W] class-index map). MVTec 0/255 masks become
        0 / the pair's class id (any nonzero value is defect). A good image (mask None) gives zeros.
    """
    image = open_image(pair.image)
    if pair.mask is None:
        rgb = to_rgb(image, pair.image)
        return rgb, np.zeros(rgb.shape[:2], np.int64)
    mask = open_image(pair.mask)
    _check_sizes(image, mask, pair.image, pair.mask)
    rgb = to_rgb(image, pair.image)
    values = mask_values(mask, pair.mask, index.binary_masks)
    if index.binary_masks:
        return rgb, np.where(values != 0, pair.class_id, 0).astype(np.int64)
    check_max_value(values, pair.mask, index.num_defect)
    return rgb, values


def read_masks(index, num_defect):
    """
    Give the [H x W] int64 class-index maps of an index's pairs, one at a time, in pair order.

    Each map is checked against `num_defect` first, so that a value above it is a DatasetError naming
    the mask file (what :func:`defect_gen.data.stats.mask_statistics` is fed).
    """
    for pair in index.pairs:
        index_map = read_mask(pair, index)
        check_max_value(index_map, pair.mask, num_defect)
        yield index_map


def resize_pair(rgb, index_map, size):
    """
    Give an image and its class-index map resized to `size` = (width, height): bilinear RGB, nearest
    class indices (so no value appears that was not there).

    :param rgb: uint8 [H x W x 3]. :param index_map: integer [H x W], values >= 0.
    :return: (uint8 [h x w x 3], [h x w] map); an array already at `size` comes back as it is, a resized
        map is uint8 when its values fit 8 bits, else int32.
    """
    width, height = size
    if rgb.shape[:2] != (height, width):
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    if index_map.shape != (height, width):
        narrow = not index_map.size or index_map.max() < 256
        compact = index_map.astype(np.uint8 if narrow else np.int32)
        index_map = np.asarray(Image.fromarray(compact).resize(size, Image.NEAREST))
    return rgb, index_map
