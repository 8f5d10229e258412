"""
Training samples of a dataset: the torch Dataset, joint augmentation (crops near defects, flips),
deterministic sharded batches, and the per-class mask-loss weights.

Finding, pairing and checking the files is :mod:`defect_gen.data.layouts`; reading one file is
:mod:`defect_gen.data.files`. A sample is ``cat([rgb, onehot])`` (see :mod:`defect_gen.masks`), a
pure function of (pair index, augmentation seed), so a run and its resume see the same batches.
"""

import logging
import math

import blobfile as bf
import numpy as np
import torch

from .. import masks
from ..errors import DatasetError
from .files import check_max_value, read_pair, resize_pair
from .layouts import find_pairs

logger = logging.getLogger(__name__)

DEFAULT_CROP_RANDOM = 0.25  # data.params.crop_random when not set


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
        check_max_value(index_map, pair.mask, self.num_defect)
        height, width = index_map.shape
        size = self.resolution
        if self.keep_aspect:
            scale = size / min(height, width)
            target = (max(size, round(width * scale)), max(size, round(height * scale)))
        else:
            target = (size, size)
        rgb, index_map = resize_pair(rgb, index_map, target)
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
    *, data_dir=None, index=None, batch_size, resolution, num_defect, num_image_train=None,
    classes=None, keep_aspect=False, random_flip=False, crop=None, crop_random=DEFAULT_CROP_RANDOM,
    num_workers=0, shard=0, num_shards=1, seed=0, start_step=0, drop_last=True,
):  # fmt: skip
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
        index, resolution=resolution, num_defect=num_defect, keep_aspect=keep_aspect,
        random_flip=random_flip, crop=crop, crop_random=crop_random,
    )  # fmt: skip
    sampler = ShardBatchSampler(
        len(dataset), batch_size=batch_size, shard=shard, num_shards=num_shards, seed=seed,
        start_step=start_step, drop_last=drop_last,
    )  # fmt: skip
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
# Mask-loss weights
