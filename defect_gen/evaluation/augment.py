"""
Joint image / mask augmentations for the baselines: classic (flips, 90° rotations, brightness and
contrast jitter) and copy-paste (a real defect region pasted with its mask onto another real image).

All functions take uint8 [H x W x 3] images and integer [H x W] masks (numpy) and a numpy Generator;
geometric changes are applied to image and mask alike, photometric ones to the image only.
"""

import numpy as np


def classic_augment(image, mask, rng, *, brightness=0.2, contrast=0.2):
    """
    Give (image, mask) after a random flip / 90° rotation and brightness / contrast jitter.

    Each of the 8 square symmetries is equally likely (for non-square inputs rotations by 90° and
    270° are skipped). Contrast scales around the image mean by a factor in [1 - contrast, 1 +
    contrast], brightness adds an offset in [-brightness, brightness] * 255; both are monotonic, so
    pixels of one value stay of one value.

    :param image: uint8 [H x W x 3]; :param mask: integer [H x W].
    :return: uint8 [H' x W' x 3], mask [H' x W'] of mask's dtype.
    """
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    k = int(rng.integers(0, 4))
    if image.shape[0] != image.shape[1]:
        k = 2 * (k % 2)
    if k:
        image, mask = np.rot90(image, k), np.rot90(mask, k)
    c = 1.0 + rng.uniform(-contrast, contrast)
    b = rng.uniform(-brightness, brightness) * 255.0
    img = image.astype(np.float32)
    img = (img - img.mean()) * c + img.mean() + b
    return np.clip(np.round(img), 0, 255).astype(np.uint8), np.ascontiguousarray(mask)


def pick_region(source_mask, rng, class_id=None):
    """
    Give (class id, bool [H x W] region) of one defect class of `source_mask`: `class_id`, or one drawn
    among the classes present; (class id, None) when that class (or any defect) is absent.
    """
    if class_id is None:
        present = np.unique(source_mask)
        present = present[present > 0]
        if not present.size:
            return None, None
        class_id = int(rng.choice(present))
    region = source_mask == class_id
    return class_id, (region if region.any() else None)


def copy_paste(target_image, target_mask, source_image, source_mask, rng, *, class_id=None):
    """
    Give (image, mask, pasted): the target with one defect class of the source pasted at a random
    place.

    The region is the source's pixels of one defect class (`class_id`, or one drawn among those
    present), cut out along its bounding box and pasted pixel-exactly (only the class's pixels, not
    the whole box) at a uniformly drawn position where the box fits; those target pixels take the
    source's colour and class. With no defect in the source, the target is returned unchanged.

    :param target_image, source_image: uint8 [H x W x 3] (sizes may differ; the box must fit the
        target).
    :param target_mask, source_mask: integer [H x W].
    :return: uint8 image, mask, and the bool [H x W] map of pasted pixels.
    """
    image, mask = target_image.copy(), target_mask.copy()
    pasted = np.zeros(mask.shape, dtype=bool)
    class_id, region = pick_region(source_mask, rng, class_id)
    if region is None:
        return image, mask, pasted
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = y1 - y0, x1 - x0
    if h > mask.shape[0] or w > mask.shape[1]:
        return image, mask, pasted
    ty = int(rng.integers(0, mask.shape[0] - h + 1))
    tx = int(rng.integers(0, mask.shape[1] - w + 1))
    cut = region[y0:y1, x0:x1]
    pasted[ty : ty + h, tx : tx + w] = cut
    image[pasted] = source_image[y0:y1, x0:x1][cut]
    mask[pasted] = class_id
    return image, mask, pasted


class CopyPaste:
    """
    Copy-paste augmentation over a fixed pool of real training pairs.

    :param images: uint8 [N x H x W x 3]; :param masks: integer [N x H x W].
    :param probability: chance that a sample gets one pasted region.
    """

    def __init__(self, images, masks, *, probability=0.5):
        self.images, self.masks, self.probability = images, masks, probability
        self.sources = [i for i in range(len(masks)) if (masks[i] > 0).any()]

    def __call__(self, index, image, mask, rng):
        """Give (image, mask) of pool sample `index`, maybe with a region from another sample."""
        if not self.sources or rng.random() >= self.probability:
            return image, mask
        candidates = [j for j in self.sources if j != index] or self.sources
        j = candidates[int(rng.integers(0, len(candidates)))]
        image, mask, _ = copy_paste(image, mask, self.images[j], self.masks[j], rng)
        return image, mask
