"""
Defects where you want them: what is known of each sample, and where its mask and good image come from.

Modes (``scripts/sample.py --mode``):

- ``joint`` (the default): image and mask drawn together from noise; nothing is known.
- ``mask``: the mask channels are known (a class-index map, one-hot); the models draw the image around it.
  The output mask equals the given one.
- ``inpaint``: the mask channels and the RGB of a good image outside a band of `band` pixels around the
  defect region (a disk-shaped dilation) are known; the models draw the inside. Every pixel outside the
  band equals the good image. Each pair has its good image's own size (or ``--size N`` x N): the small
  model, a patch model, runs on any canvas; the large one runs on a downscaled copy or is skipped
  (:mod:`defect_gen.sampling.canvas`). By default the drawn band is then harmonized with the good image
  (:func:`defect_gen.sampling.seam.harmonize`), so that it shows no lighter or darker patch.

The known part is imposed after every step by :func:`defect_gen.two_stage.sample_two_stage` (forward-noised
to the next timestep, clean after the last one).

Mask sources (``--mask_source``), for candidate j (sample j, or the j-th candidate under ``--keep``):

- ``dir``: the sorted PNGs of ``--masks``, mask j % n (index maps, values 0..K, the model's resolution;
  in the inpaint mode the good images' size).
- ``train``: a training mask of the checkpoints' dataset (the same selection the models were trained on),
  resized to the canvas (the model's resolution, or in the inpaint mode the good image's size), then
  (``--mask_transform random``, the default) flipped, rotated by a multiple of 90 degrees, scaled and
  placed at random with the defect kept inside the image, or (``--mask_transform flip``) only mirrored
  left-right and top-bottom at random, so that it keeps its shape, its orientation and its place relative
  to the image's edges (a chip on an edge stays on an edge). With ``--per_class`` the first n_1
  candidates use masks of class 1, the next n_2 class 2, and so on; without it any training mask.
- ``joint``: the mask of the unconditional (joint) sample j, drawn first with seed + j.

The good image of candidate j (inpaint) is picked uniformly from the sorted images of ``--good_dir`` with a
generator seeded by (seed + j, GOOD_STREAM); the mask choice and transform use (seed + j, MASK_STREAM) and the
forward noise of the known part (seed + j, KNOWN_STREAM). So every choice depends on seed + j alone, whatever
the batch or process count, and the unconditional noise stream (seed + j) is not touched.
"""

from dataclasses import dataclass, field
from typing import Optional

import blobfile as bf
import numpy as np
import torch
from PIL import Image

from ..data.files import check_max_value, mask_values, open_image, read_mask, to_rgb
from ..data.layouts import IMAGE_EXTENSIONS, find_pairs
from ..errors import ConfigError, DatasetError
from ..fileio import absolute_path
from ..masks import encode
from .canvas import LARGE_AT_SIZE
from .seam import disk_dilate

MODES = ("joint", "mask", "inpaint")
MASK_SOURCES = ("dir", "train", "joint")
GOOD_FOLDERS = (
    "train/good",
    "test/good",
    "image/good",
    "good",
)  # looked for in the dataset, in order

MASK_STREAM, GOOD_STREAM, KNOWN_STREAM = 1, 2, 3
SCALE_RANGE = (
    0.75,
    1.25,
)  # train masks: the defect's bounding box is scaled by a factor in this range
TRANSFORM_TRIES = 8  # a transform that loses the wanted class is drawn again, then scale 1 is used


def default_band(resolution):
    """Give the default inpainting band in pixels: resolution / 16, at least 2 (2 px at 32 px, 8 at 128)."""
    return max(2, int(resolution) // 16)


def stream_rng(seed, index, stream):
    """Give a numpy Generator that depends on (seed + index, stream) alone."""
    return np.random.default_rng([int(stream), (int(seed) + int(index)) % 2**63])


def known_generator(seed, index):
    """Give the torch.Generator for the forward noise of candidate `index`'s known part."""
    value = int(stream_rng(seed, index, KNOWN_STREAM).integers(2**62))
    return torch.Generator().manual_seed(value)


def _image_files(folder, flag):
    """Give the sorted image file paths of `folder`; ConfigError when it is missing, unreadable or empty."""
    folder = str(folder)
    if not bf.exists(folder):
        raise ConfigError(f"{flag} {folder}: folder does not exist")
    if not bf.isdir(folder):
        raise ConfigError(f"{flag} {folder}: is a file, expected a folder")
    try:
        names = sorted(n for n in bf.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    except OSError as exc:
        raise ConfigError(f"{flag} {folder}: cannot list the folder ({exc})") from None
    if not names:
        raise ConfigError(f"{flag} {folder}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [bf.join(folder, n) for n in names]


def read_index_mask(path, num_defect, resolution, what="the models generate"):
    """
    Give the uint8 [H x W] class-index map of a user's mask; ConfigError on a wrong size or value.

    :param resolution: the side R of the expected R x R map, or an (H, W) pair; `what` says whose size.
    """
    expected = tuple(resolution) if isinstance(resolution, (tuple, list)) else (resolution,) * 2
    try:
        image = open_image(path)
        values = mask_values(image, path, binary=False)
        check_max_value(values, path, num_defect)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None
    if values.shape != expected:
        raise ConfigError(
            f"{path}: mask is {values.shape[1]}x{values.shape[0]}, {what} "
            f"{expected[1]}x{expected[0]}: resize the masks (nearest neighbour) first"
        )
    return values.astype(np.uint8)


def read_good(path, resolution, strict_size, size=None):
    """
    Give (uint8 [H x W x 3], original [w, h]) of a good image: at its own size when `size` is None
    (ConfigError when a side is below the models' `resolution`), else resized bilinearly to `size` x
    `size` (ConfigError instead with `strict_size`).
    """
    try:
        image = open_image(path)
        rgb = to_rgb(image, path)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None
    original = [int(rgb.shape[1]), int(rgb.shape[0])]
    if size is None:
        if min(original) < resolution:
            raise ConfigError(
                f"{path}: good image is {original[0]}x{original[1]}, smaller than the models' "
                f"{resolution}x{resolution}: pass --size N (N >= {resolution}) to resize the good images"
            )
        return rgb, original
    if original != [size, size]:
        if strict_size:
            raise ConfigError(
                f"{path}: good image is {original[0]}x{original[1]}, --size asks for "
                f"{size}x{size} (--strict_size refuses resizing)"
            )
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    return rgb, original


def main_class(index_map):
    """Give the defect class covering most pixels of a class-index map (lowest id on ties; 0 if none)."""
    counts = np.bincount(np.asarray(index_map).ravel(), minlength=2)
    counts[0] = 0
    return int(counts.argmax()) if counts.max() > 0 else 0


def transform_mask(index_map, rng, want=None):
    """
    Give (new map, record): the defect part of `index_map` flipped, rotated by k x 90 degrees, scaled
    (nearest) and placed at random, inside the image. `want`: a class that must survive the scaling.
    """
    height, width = index_map.shape
    flip = bool(rng.random() < 0.5)
    k = int(rng.integers(4))
    m = np.rot90(index_map[:, ::-1] if flip else index_map, k)
    ys, xs = np.nonzero(m)
    if not len(ys):
        return np.ascontiguousarray(m), {"flip": flip, "rot90": k, "scale": 1.0, "at": [0, 0]}
    crop = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scaled = crop
    for attempt in range(TRANSFORM_TRIES + 1):
        scale = float(rng.uniform(*SCALE_RANGE)) if attempt < TRANSFORM_TRIES else 1.0
        scale = min(scale, height / h, width / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        scaled = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((nw, nh), 0))
        if want is None or (scaled == want).any():
            break
    top, left = int(rng.integers(height - nh + 1)), int(rng.integers(width - nw + 1))
    out = np.zeros_like(index_map)
    out[top : top + nh, left : left + nw] = scaled
    return out, {"flip": flip, "rot90": k, "scale": round(scale, 4), "at": [top, left]}


def flip_mask(index_map, rng):
    """Give (new map, record): `index_map` mirrored left-right and top-bottom, each with probability 1/2."""
    lr, ud = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    m = index_map[:, ::-1] if lr else index_map
    m = m[::-1] if ud else m
    return np.ascontiguousarray(m), {"flip_lr": lr, "flip_ud": ud}


MASK_TRANSFORMS = ("random", "flip")  # --mask_transform: transform_mask, flip_mask


@dataclass
class Plan:
    """What is known of each candidate: built by :func:`build_plan`, used by sampling.generate."""

    mode: str
    mask_source: str
    num_defect: int
    resolution: int
    seed: int
    band: Optional[int] = 0  # None: default_band of each canvas
    classes: list = field(default_factory=list)
    masks: list = field(
        default_factory=list
    )  # dir: [(path, map)]; train: [(path, map at the original size, classes held)]
    per_class: Optional[dict] = None  # train: {class id: count}
    goods: list = field(default_factory=list)  # [(path, uint8 array, original [w, h])]
    size: Optional[int] = None  # inpaint: --size N (good images resized to N x N); None: their own
    harmonize: bool = True  # inpaint: harmonize the drawn band with the good image
    good_texture: bool = False  # inpaint: add the good image's fine texture to the drawn band
    large_at_size: str = "skip"  # inpaint on a canvas other than the models': skip | downscale
    mask_transform: str = "random"  # train masks: random (transform_mask) | flip (flip_mask)
    params: dict = field(default_factory=dict)  # what the manifest's generation holds
    _pools: dict = field(default_factory=dict, repr=False)  # train masks resized, per canvas

    @property
    def needs_joint_masks(self):
        return self.mask_source == "joint"

    def canvas_for(self, j):
        """Give (height, width) of candidate j's pair: its good image's (inpaint), else the models'."""
        if self.mode == "inpaint":
            return tuple(self.good_for(j)[0].shape[:2])
        return (self.resolution, self.resolution)

    def band_at(self, canvas):
        """Give the band in pixels on a canvas (height, width): --band, else default_band of its side."""
        return default_band(min(canvas)) if self.band is None else self.band

    def train_pool(self, canvas):
        """Give [(path, uint8 map, classes held)]: the training masks resized (nearest) to `canvas`."""
        if canvas not in self._pools:
            pool = []
            for path, index_map, _ in self.masks:
                if index_map.shape != canvas:
                    size = (canvas[1], canvas[0])
                    index_map = np.asarray(Image.fromarray(index_map).resize(size, Image.NEAREST))
                pool.append((path, index_map, set(np.unique(index_map).tolist()) - {0}))
            self._pools[canvas] = pool
        return self._pools[canvas]

    def wanted_class(self, j):
        """Give the class candidate j's mask must hold under --per_class, else None."""
        if not self.per_class:
            return None
        r = j % sum(self.per_class.values())
        for c, count in sorted(self.per_class.items()):
            if r < count:
                return c
            r -= count
        return None

    def mask_for(self, j):
        """Give (uint8 [H x W] map on candidate j's canvas, record) of its mask (not the joint source)."""
        if self.mask_source == "dir":
            path, index_map = self.masks[j % len(self.masks)]
            return index_map, {"source": path}
        rng = stream_rng(self.seed, j, MASK_STREAM)
        want = self.wanted_class(j)
        pool = self.train_pool(self.canvas_for(j))
        if want is not None:
            pool = [m for m in pool if want in m[2]]
        path, index_map, _ = pool[int(rng.integers(len(pool)))]
        if self.mask_transform == "flip":
            new, record = flip_mask(index_map, rng)
        else:
            new, record = transform_mask(index_map, rng, want)
        record = {"source": path, **record}
        if want is not None:
            record["class"] = self.classes[want - 1]
        return new, record

    def good_for(self, j):
        """Give (uint8 [H x W x 3], record) of candidate j's good image."""
        path, rgb, size = self.goods[
            int(stream_rng(self.seed, j, GOOD_STREAM).integers(len(self.goods)))
        ]
        return rgb, {"path": path, "size": size, "resized": list(rgb.shape[1::-1]) != size}

    def record(self, j):
        """Give candidate j's manifest record: which mask (and transform) and good image it uses."""
        if self.mask_source == "joint":
            rec = {"mask": {"source": "joint", "seed": self.seed + j}}
        else:
            rec = {"mask": self.mask_for(j)[1]}
        if self.mode == "inpaint":
            rec["good"] = self.good_for(j)[1]
        return rec

    def known(self, indices, joint_maps=None):
        """
        Give (known, weight) float32 [B x (4 + K) x H x W] of candidates `indices`, which share one
        canvas (H, W) (see :meth:`canvas_for`).

        :param joint_maps: for the joint source, the [B x R x R] masks of the unconditional samples.
        """
        maps, rgbs = [], []
        for b, j in enumerate(indices):
            if self.mask_source == "joint":
                maps.append(torch.as_tensor(np.asarray(joint_maps[b])).long())
            else:
                maps.append(torch.from_numpy(self.mask_for(j)[0].astype(np.int64)))
            if self.mode == "inpaint":
                rgbs.append(torch.from_numpy(np.array(self.good_for(j)[0])).permute(2, 0, 1))
        index = torch.stack(maps)
        onehot = encode(index, self.num_defect)
        n, (h, w) = len(indices), index.shape[-2:]
        if self.mode == "mask":
            rgb = torch.zeros(n, 3, h, w)
            w_rgb = torch.zeros(n, 3, h, w)
        else:
            rgb = torch.stack(rgbs).float() / 127.5 - 1
            outside = ~disk_dilate(index > 0, self.band_at((h, w)))
            w_rgb = outside[:, None].float().expand(n, 3, h, w)
        known = torch.cat([rgb, onehot], dim=1)
        weight = torch.cat([w_rgb, torch.ones_like(onehot)], dim=1)
        return known, weight


def parse_counts(text, classes, flag):
    """
    Give {class id: count} from "N" (every class) or "Name=N,Name=N" (class names or ids 1..K).

    Classes not named get 0. ConfigError naming `flag` on anything else.
    """
    text = str(text).strip()
    k = len(classes)
    if text.isdigit():
        return {c: int(text) for c in range(1, k + 1)}
    counts = {c: 0 for c in range(1, k + 1)}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not value.strip().isdigit():
            raise ConfigError(
                f"{flag} {text!r}: expected N or Name=N,Name=N (N >= 0), got {part!r}"
            )
        if name in classes:
            c = classes.index(name) + 1
        elif name.isdigit() and 1 <= int(name) <= k:
            c = int(name)
        else:
            raise ConfigError(
                f"{flag}: unknown class {name!r}; the classes are {', '.join(classes)}"
            )
        counts[c] = int(value)
    if sum(counts.values()) < 1:
        raise ConfigError(f"{flag} {text!r}: asks for no samples")
    return counts


def dataset_dir(pair, data_dir):
    """
    Give the dataset folder: `data_dir`, else the one the large checkpoint (without one, the small
    checkpoint) was trained on.
    """
    data_dir = data_dir or pair.reference.cfg["data"]["params"].get("dir")
    if not data_dir:
        raise ConfigError(f"{pair.reference.path}: names no dataset folder; pass --data_dir")
    return str(data_dir)


def _train_masks(pair, data_dir):
    """Give [(path, uint8 [H x W] map, classes held)] of the training masks at their own size."""
    params = pair.reference.cfg["data"]["params"]
    try:
        index = find_pairs(
            data_dir, num_defect=pair.num_defect, classes=params.get("classes"),
            num_image_train=params.get("num_image_train"),
        )  # fmt: skip
        trained = next((m.classes for m in pair.models if m.classes), None)
        if trained and list(index.classes) != list(trained):  # class ids are matched by name
            raise ConfigError(
                f"--mask_source train: {data_dir} has the classes {', '.join(index.classes)}, the "
                f"checkpoints were trained on {', '.join(trained)} (in this order); its masks would "
                f"be written under the wrong class ids: use a dataset with the checkpoints' classes"
            )
        out = []
        for p in index.pairs:
            index_map = read_mask(p, index).astype(np.uint8)
            out.append((p.mask, index_map, set(np.unique(index_map).tolist()) - {0}))
    except DatasetError as exc:
        raise ConfigError(f"--mask_source train: {exc}") from None
    return out


def build_plan(
    pair, *, mode, mask_source=None, masks=None, good_dir=None, data_dir=None, band=None,
    per_class=None, strict_size=False, resample=0, seed=0, size=None, harmonize=True,
    large_at_size="skip", good_texture=False, mask_transform="random",
):  # fmt: skip
    """
    Give the Plan of a mode (None for the joint mode) after checking every input; ConfigError naming the
    flag or file on a problem, before anything is written.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "joint":
        given = {
            "--mask_source": mask_source, "--masks": masks, "--good_dir": good_dir, "--band": band,
            "--per_class": per_class, "--resample": resample or None,
            "--strict_size": strict_size or None, "--size": size,
            "--large_at_size": None if large_at_size == "skip" else large_at_size,
            "--harmonize": None if harmonize else harmonize,
            "--good_texture": good_texture or None,
            "--mask_transform": None if mask_transform == "random" else mask_transform,
        }  # fmt: skip
        used = [flag for flag, value in given.items() if value is not None]
        if used:
            raise ConfigError(
                f"{used[0]} has no effect in --mode joint; use --mode mask or inpaint"
            )
        return None
    mask_source = mask_source or ("dir" if masks else "train")
    if mask_source not in MASK_SOURCES:
        raise ConfigError(
            f"--mask_source must be one of {', '.join(MASK_SOURCES)}, got {mask_source!r}"
        )
    if resample < 0:
        raise ConfigError(f"--resample must be at least 0, got {resample}")
    inpaint_only = {
        "--good_dir": good_dir is not None, "--band": band is not None, "--strict_size": strict_size,
        "--size": size is not None, "--large_at_size": large_at_size != "skip",
        "--harmonize": not harmonize, "--good_texture": bool(good_texture),
    }  # fmt: skip
    if mode == "mask" and any(inpaint_only.values()):
        flag = next(f for f, used in inpaint_only.items() if used)
        raise ConfigError(f"{flag} applies to --mode inpaint only")
    if large_at_size not in LARGE_AT_SIZE:
        raise ConfigError(
            f"--large_at_size must be one of {', '.join(LARGE_AT_SIZE)}, got {large_at_size!r}"
        )
    if masks is not None and mask_source != "dir":
        raise ConfigError(f"--masks is read by --mask_source dir only, not {mask_source}")
    if per_class is not None and mask_source != "train":
        raise ConfigError(f"--per_class applies to --mask_source train only, not {mask_source}")
    if mask_transform not in MASK_TRANSFORMS:
        raise ConfigError(
            f"--mask_transform must be one of {', '.join(MASK_TRANSFORMS)}, got {mask_transform!r}"
        )
    if mask_transform != "random" and mask_source != "train":
        raise ConfigError(
            f"--mask_transform applies to --mask_source train only, not {mask_source}"
        )

    res, k = pair.resolution, pair.num_defect
    if size is not None and not res <= int(size) <= MAX_SIZE:
        raise ConfigError(f"--size must lie in {res}..{MAX_SIZE} (the models' size and up), got {size}")
    plan = Plan(
        mode=mode, mask_source=mask_source, num_defect=k, resolution=res, seed=int(seed),
        classes=list(pair.classes), size=None if size is None else int(size),
        harmonize=bool(harmonize), large_at_size=large_at_size, good_texture=bool(good_texture),
        mask_transform=mask_transform,
    )  # fmt: skip
    params = {"mode": mode, "mask_source": mask_source, "resample": int(resample)}
    if mask_source == "dir":
        if masks is None:
            raise ConfigError("--mask_source dir needs --masks DIR (a folder of class-index PNGs)")
        files = _image_files(masks, "--masks")
        plan.masks = [(path, read_index_mask(path, k, res)) for path in files] if mode == "mask" else []
        params["masks"] = {
            "dir": absolute_path(masks),
            "files": [bf.basename(p) for p in files],
        }
    elif mask_source == "train":
        root = dataset_dir(pair, data_dir)
        plan.masks = _train_masks(pair, root)
        params["masks"] = {"data_dir": root, "count": len(plan.masks)}
        if mask_transform != "random":  # recorded only when not the default: older folders resume
            params["mask_transform"] = mask_transform
        if per_class is not None:
            plan.per_class = parse_counts(per_class, plan.classes, "--per_class")
            params["per_class"] = {plan.classes[c - 1]: n for c, n in plan.per_class.items()}
    if mode == "inpaint":
        _plan_inpaint(plan, params, pair, good_dir, data_dir, band, strict_size, masks)
    if plan.per_class:
        _check_per_class(plan, params["masks"]["data_dir"])
    plan.params = params
    return plan


MAX_SIZE = 8192  # --size: a larger canvas is a typo, not an image


def _plan_inpaint(plan, params, pair, good_dir, data_dir, band, strict_size, masks):
    """Read the good images (and the --masks of their size) of the inpaint mode into `plan`."""
    res, k = plan.resolution, plan.num_defect
    if good_dir is None:
        root = dataset_dir(pair, data_dir)
        found = [bf.join(root, g) for g in GOOD_FOLDERS if bf.isdir(bf.join(root, g))]
        if not found:
            raise ConfigError(
                f"--mode inpaint needs good images: {root} has no {' or '.join(GOOD_FOLDERS)} "
                f"folder; pass --good_dir"
            )
        good_dir = found[0]
    files = _image_files(good_dir, "--good_dir")
    plan.goods = [(path, *read_good(path, res, strict_size, plan.size)) for path in files]
    canvases = sorted({g[1].shape[:2] for g in plan.goods})
    if band is not None and int(band) < 0:
        raise ConfigError(f"--band must be at least 0 pixels, got {band}")
    side = min(min(c) for c in canvases)
    if band is not None and int(band) > side:  # wider than the image changes nothing but the cost
        raise ConfigError(f"--band must be at most the good images' side ({side} px), got {band}")
    plan.band = None if band is None else int(band)
    if plan.mask_source == "dir":
        if len(canvases) > 1:
            raise ConfigError(
                f"--masks: the good images of {good_dir} come in {len(canvases)} sizes, so one "
                f"folder of masks cannot fit them all; pass --size N and masks of N x N"
            )
        what = "its good images are" if plan.size is None else "--size asks for"
        plan.masks = [
            (path, read_index_mask(path, k, canvases[0], what)) for path in _image_files(masks, "--masks")
        ]
    if plan.mask_source == "joint" and canvases != [(res, res)]:
        raise ConfigError(
            f"--mask_source joint draws masks at the models' {res}x{res}, but the good images are "
            f"{_sizes(canvases)}: pass --size {res}, or use --mask_source train or dir"
        )
    params["good_dir"] = absolute_path(good_dir)
    params["good_images"] = len(files)
    bands = sorted({plan.band_at(c) for c in canvases})
    params["band"] = bands[0] if len(bands) == 1 else bands
    params["strict_size"] = bool(strict_size)
    params["resized_good_images"] = sum(list(g[1].shape[1::-1]) != g[2] for g in plan.goods)
    if canvases != [(res, res)]:  # at the models' size, the parameters stay as they were
        params["size"] = "native" if plan.size is None else plan.size
        params["canvas_sizes"] = [list(c) for c in canvases]
        params["large_at_size"] = plan.large_at_size
    params["band_shape"] = "disk"
    params["harmonize"] = plan.harmonize
    if plan.good_texture:  # recorded only when on: folders sampled before it existed still resume
        params["good_texture"] = True


def _sizes(canvases):
    """Give "HxW, HxW" of a list of (height, width) canvases, as width x height."""
    return ", ".join(f"{w}x{h}" for h, w in canvases)


def _check_per_class(plan, root):
    """ConfigError when no training mask holds a class --per_class asks for (on any canvas used)."""
    canvases = sorted({g[1].shape[:2] for g in plan.goods}) or [(plan.resolution,) * 2]
    for canvas in canvases:
        pool = plan.train_pool(canvas)
        for c, count in plan.per_class.items():
            if count and not any(c in m[2] for m in pool):
                raise ConfigError(
                    f"--mask_source train: no training mask of {root} holds class "
                    f"{plan.classes[c - 1]!r} (class {c}), asked for by --per_class"
                    + (f" (at {canvas[1]}x{canvas[0]})" if canvas != (plan.resolution,) * 2 else "")
                )
