"""
Good (defect-free) images in the benchmark: where they are read from, the guard over them, and the
copy-paste of real defect regions onto them (baseline c).

Good images come from the TRAINING side only: `train/good` (MVTec), else the `good` folder beside
the defect types (`test/good`, `image/good`), never a defect type's folder, so never a reported
(validation) image; the guard still compares their pixels with the reported images'. They are
resized like the real pairs (square `resolution`, bilinear) and carry all-background masks.
"""

import logging

import numpy as np
from PIL import Image

from ..data import layouts as dataset_layouts
from ..errors import DatasetError, EvaluationError
from . import blend as blend_lib
from . import data as data_lib
from .augment import pick_region
from .data import PairSet

logger = logging.getLogger(__name__)

BLENDS = ("alpha", "poisson")
TARGETS = ("good", "defective", "both")
SCALE_RANGE = (0.75, 1.25)
_ALL = 10**9  # "every good image there is" for find_good_pairs


def load_good(data_dir, *, resolution, num_good=None):
    """
    Give a PairSet of the dataset's first `num_good` sorted good images (None: all; 0: none) at
    `resolution` with all-zero masks; an empty PairSet when the dataset has none (logged).

    images: uint8 [G x R x R x 3]; masks: uint8 [G x R x R] zeros; types: "good".
    """
    empty = data_lib._stack([], [], [], resolution)
    if num_good == 0:
        return empty
    layouts_log = logging.getLogger(dataset_layouts.__name__)
    level = layouts_log.level
    if num_good is None:
        # "All of them" is asked as a huge count; its "fewer than asked" warning would be noise.
        layouts_log.setLevel(logging.ERROR)
    try:
        pairs = dataset_layouts.find_good_pairs(data_dir, _ALL if num_good is None else num_good)
    except DatasetError as e:
        if "no good images found" not in str(e):
            raise
        logger.warning("%s: no good images on the training side", data_dir)
        return empty
    finally:
        layouts_log.setLevel(level)
    decoded = []
    for pair in pairs:
        image, mask = data_lib.read_pair(pair, None)
        decoded.append(data_lib._square(image, mask, resolution))
    names = [str(p.image) for p in pairs]
    return data_lib._stack(decoded, names, ["good"] * len(names), resolution)


def good_overlap_problems(good_names, identity):
    """
    Give one-line problems when a good image's pixels (or path) equal a reported image's.

    :param identity: guard.ValidationIdentity of the reported images.
    """
    hits = identity.overlap_by_content(good_names)
    if not hits:
        return []
    return [
        f"{hits[0]}: a reported validation image is also among the good images read from the "
        f"training side ({len(hits)} such image(s)); remove it from the good folder or pass "
        "--allow_overlap to evaluate anyway"
    ]


def manifest_good_paths(manifest):
    """Give the good-image paths a sample manifest records (samples[*].good.path, or a string)."""
    out = []

    def walk(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key == "good":
                    if isinstance(value, dict) and isinstance(value.get("path"), str):
                        out.append(value["path"])
                    elif isinstance(value, str):
                        out.append(value)
                walk(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value)

    walk(manifest)
    return list(dict.fromkeys(out))


def _region_box(region):
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def transform_region(image, region, rng, *, margin, scale_range=SCALE_RANGE, max_size=None):
    """
    Give (image crop uint8 [h x w x 3], region crop bool [h x w]) of a defect region: its bounding
    box grown by `margin` px (edge-padded), randomly flipped, rotated by k * 90 degrees and scaled
    by a factor in `scale_range` (image bilinear, region nearest), shrunk further to fit within
    `max_size` (h, w) if needed.
    """
    y0, y1, x0, x1 = _region_box(region)
    pad = ((margin, margin), (margin, margin))
    img = np.pad(image, pad + ((0, 0),), mode="edge")[y0 : y1 + 2 * margin, x0 : x1 + 2 * margin]
    reg = np.pad(region, pad)[y0 : y1 + 2 * margin, x0 : x1 + 2 * margin]
    if rng.random() < 0.5:
        img, reg = img[:, ::-1], reg[:, ::-1]
    if rng.random() < 0.5:
        img, reg = img[::-1], reg[::-1]
    k = int(rng.integers(0, 4))
    img, reg = np.rot90(img, k), np.rot90(reg, k)
    scale = float(rng.uniform(*scale_range))
    h, w = reg.shape
    if max_size is not None:
        scale = min(scale, max_size[0] / h, max_size[1] / w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) != (h, w):
        img = np.asarray(
            Image.fromarray(np.ascontiguousarray(img)).resize((nw, nh), Image.BILINEAR)
        )
        reg = np.asarray(
            Image.fromarray(np.ascontiguousarray(reg).astype(np.uint8) * 255).resize(
                (nw, nh), Image.NEAREST
            )
        ) > 0
    return np.ascontiguousarray(img), np.ascontiguousarray(reg)


def paste_region(
    target_image,
    target_mask,
    source_image,
    source_mask,
    rng,
    *,
    class_id=None,
    blend="alpha",
    feather=2.0,
    scale_range=SCALE_RANGE,
    poisson_iterations=200,
):
    """
    Give (image, mask, box): the target with one defect region of the source pasted fully inside it.

    The region is the source's pixels of one class (`class_id`, or one drawn among those present),
    transformed by `transform_region` together with a `ceil(feather)` px margin of its
    surroundings, and placed at a uniformly drawn position where the whole box fits. blend "alpha":
    image = a * source + (1 - a) * target with a = feather_alpha(region grown by the margin,
    feather), so a = 1 on the region itself and falls to 0 over the margin; "poisson": the grown
    region is Poisson-edited (source gradients, target boundary). The MASK takes the class on the
    transformed region (nearest) and is unchanged elsewhere; pixels outside the box are untouched.
    With no defect in the source, the target is returned unchanged and box is None.

    :param target_image: uint8 [H x W x 3]; :param target_mask: integer [H x W].
    :return: uint8 image, mask of target_mask's dtype, box (y0, y1, x0, x1) or None.
    """
    image, mask = target_image.copy(), target_mask.copy()
    class_id, region = pick_region(source_mask, rng, class_id)
    if region is None:
        return image, mask, None
    margin = int(np.ceil(feather))
    crop, reg = transform_region(
        source_image, region, rng, margin=margin, scale_range=scale_range, max_size=mask.shape
    )
    if not reg.any():
        return image, mask, None
    h, w = reg.shape
    ty = int(rng.integers(0, mask.shape[0] - h + 1))
    tx = int(rng.integers(0, mask.shape[1] - w + 1))
    box = (ty, ty + h, tx, tx + w)
    grown = blend_lib.dilate(reg, margin)
    if blend == "poisson":
        placed = image.copy()
        placed[ty : ty + h, tx : tx + w] = crop
        full = np.zeros(mask.shape, dtype=bool)
        full[ty : ty + h, tx : tx + w] = grown
        image = blend_lib.poisson_blend(image, placed, full, iterations=poisson_iterations)
    else:
        alpha = blend_lib.feather_alpha(grown, feather)[..., None]
        under = image[ty : ty + h, tx : tx + w].astype(np.float32)
        mixed = alpha * crop.astype(np.float32) + (1.0 - alpha) * under
        image[ty : ty + h, tx : tx + w] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    mask[ty : ty + h, tx : tx + w][reg] = class_id
    return image, mask, box


class PasteOnto:
    """
    Copy-paste augmentation (baseline c): with `probability`, one real defect region of a random
    pool pair is pasted onto the drawn sample (`paste_region`); a pool sample never pastes onto
    itself.

    :param images: uint8 [N x H x W x 3]; :param masks: integer [N x H x W] (the real pairs).
    :param exclude_self: True when the drawn samples are the pool's own pairs (index = position).
    """

    def __init__(
        self, images, masks, *, probability=0.5, blend="alpha", feather=2.0, exclude_self=False
    ):
        self.images, self.masks = images, masks
        self.probability, self.blend, self.feather = probability, blend, feather
        self.exclude_self = exclude_self
        self.sources = [i for i in range(len(masks)) if (masks[i] > 0).any()]

    def __call__(self, index, image, mask, rng):
        """Give (image, mask) of a drawn sample, maybe with a pasted region."""
        if not self.sources or rng.random() >= self.probability:
            return image, mask
        candidates = self.sources
        if self.exclude_self:
            candidates = [j for j in self.sources if j != index] or self.sources
        j = candidates[int(rng.integers(0, len(candidates)))]
        image, mask, _ = paste_region(
            image, mask, self.images[j], self.masks[j], rng, blend=self.blend, feather=self.feather
        )
        return image, mask


def check_good_settings(probability, blend, feather, target):
    """Raise EvaluationError naming the option of the first bad copy-paste setting."""
    _finite_in("--copy_paste_probability", probability, 0.0, 1.0)
    _finite_in("--copy_paste_feather", feather, 0.0, 64.0)
    if blend not in BLENDS:
        raise EvaluationError(
            f"--copy_paste_blend must be one of {', '.join(BLENDS)}, got {blend!r}"
        )
    if target not in TARGETS:
        raise EvaluationError(
            f"--copy_paste_target must be one of {', '.join(TARGETS)}, got {target!r}"
        )


def _finite_in(option, value, lo, hi):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and np.isfinite(value) and lo <= value <= hi
    if not ok:
        raise EvaluationError(
            f"{option} must be a finite number in [{lo:g}, {hi:g}], got {value!r}"
        )


__all__ = [
    "BLENDS",
    "TARGETS",
    "PairSet",
    "PasteOnto",
    "check_good_settings",
    "good_overlap_problems",
    "load_good",
    "manifest_good_paths",
    "paste_region",
    "transform_region",
]
