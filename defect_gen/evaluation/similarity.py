"""
Memorisation and diversity of generated images, measured on tiny grayscale thumbnails.

Features: each image converted to grayscale, downscaled to 32 x 32 (PIL bilinear, which averages on
reduction), scaled to [0, 1]. Distance: root-mean-square difference per pixel, so 0 = identical and
1 = black vs white everywhere.

Memorisation: for each generated image g, d(g) = distance to its nearest training image, mirror
images included (the generator may train with random horizontal flips, so a mirrored copy is still a
copy). The reference scale m is the median over training images of the distance to their nearest
*other* training image (or its mirror). A generated image is a near-copy when d(g) / m < `threshold`
(default 1/3): it sits three times closer to a training image than the training images sit to each
other, which a sample of the learned distribution rarely does and a memorised one always does (an
exact copy has ratio 0).

Diversity: mean distance over all unordered pairs within a set; the gap is generated minus training
(negative = generated images are less varied than the real ones).
"""

import numpy as np
from PIL import Image

DEFAULT_FEATURE_SIZE = 32
DEFAULT_THRESHOLD = 1.0 / 3.0


def thumbnail_features(images, size=DEFAULT_FEATURE_SIZE):
    """Give float64 [N x size*size] grayscale thumbnails in [0, 1] of uint8 [N x H x W x 3]."""
    feats = [
        np.asarray(
            Image.fromarray(np.asarray(im)).convert("L").resize((size, size), Image.BILINEAR)
        )
        for im in images
    ]
    if not feats:
        return np.zeros((0, size * size))
    return np.stack(feats).reshape(len(feats), -1).astype(np.float64) / 255.0


def pairwise_distances(a, b):
    """
    Give the [Na x Nb] RMS-per-pixel distances between rows of a [Na x D] and b [Nb x D].

    Uses |a|^2 + |b|^2 - 2 a.b, then recomputes near-zero entries as sums of squared differences,
    where that expansion loses every digit (so a copy is at distance exactly 0).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    rows, cols = np.nonzero(sq < 1e-3)
    for start in range(0, len(rows), 4096):
        i, j = rows[start : start + 4096], cols[start : start + 4096]
        sq[i, j] = ((a[i] - b[j]) ** 2).sum(1)
    return np.sqrt(np.maximum(sq, 0.0) / a.shape[1])


def mirror_features(feats, size=DEFAULT_FEATURE_SIZE):
    """Give the features of the horizontally mirrored thumbnails of [N x size*size] features."""
    feats = np.asarray(feats)
    return feats.reshape(len(feats), size, size)[:, :, ::-1].reshape(len(feats), -1)


def nearest_neighbours(gen_feats, train_feats, *, mirror=True):
    """
    Give (index [N_gen] of each generated image's nearest training image, its distance [N_gen],
    whether the nearest is the mirror image [N_gen] bool).
    """
    n = len(train_feats)
    refs = np.concatenate([train_feats, mirror_features(train_feats)]) if mirror else train_feats
    d = pairwise_distances(gen_feats, refs)
    idx = d.argmin(1)
    return idx % n, d[np.arange(len(idx)), idx], idx >= n


def train_nn_distances(train_feats, *, mirror=True):
    """Give each training image's distance [N] to its nearest *other* training image (N >= 2)."""
    n = len(train_feats)
    if n < 2:
        raise ValueError("memorisation needs at least 2 training images")
    d = pairwise_distances(train_feats, train_feats)
    np.fill_diagonal(d, np.inf)
    if mirror:
        dm = pairwise_distances(train_feats, mirror_features(train_feats))
        np.fill_diagonal(dm, np.inf)
        d = np.minimum(d, dm)
    return d.min(1)


def memorisation(gen_feats, train_feats, *, threshold=DEFAULT_THRESHOLD, mirror=True):
    """
    Give the memorisation summary of generated vs training features (see the module docstring).

    :param mirror: also compare with the training images' horizontal mirror images.
    :return: dict with `threshold`, `train_nn_median` (m), `ratio`, `nn_index`, `nn_distance` and
        `nn_mirrored` per generated image, `near_copies` (indices with ratio < threshold, sorted by
        ratio), `near_copy_share`, and the ratio's minimum and median.
    """
    nn_idx, nn_dist, nn_mirrored = nearest_neighbours(gen_feats, train_feats, mirror=mirror)
    train_nn = train_nn_distances(train_feats, mirror=mirror)
    scale = float(np.median(train_nn))
    # Duplicate training images make the scale 0; any positive floor keeps exact copies at ratio 0.
    ratio = nn_dist / max(scale, 1e-12)
    order = np.argsort(ratio, kind="stable")
    copies = [int(i) for i in order if ratio[i] < threshold]
    return {
        "threshold": threshold,
        "mirror": mirror,
        "train_nn_median": scale,
        "train_nn_distance": train_nn.tolist(),
        "nn_index": nn_idx.tolist(),
        "nn_distance": nn_dist.tolist(),
        "nn_mirrored": nn_mirrored.tolist(),
        "ratio": ratio.tolist(),
        "near_copies": copies,
        "near_copy_share": len(copies) / len(ratio) if len(ratio) else float("nan"),
        "ratio_min": float(ratio.min()) if len(ratio) else float("nan"),
        "ratio_median": float(np.median(ratio)) if len(ratio) else float("nan"),
    }


def mean_pairwise_distance(feats):
    """Give the mean distance over all unordered pairs of rows of [N x D] (NaN when N < 2)."""
    n = len(feats)
    if n < 2:
        return float("nan")
    d = pairwise_distances(feats, feats)
    return float(d[np.triu_indices(n, k=1)].mean())


def diversity(gen_feats, train_feats):
    """Give mean pair distances {generated, train, gap = generated - train, ratio = gen / train}."""
    gen, train = mean_pairwise_distance(gen_feats), mean_pairwise_distance(train_feats)
    return {
        "generated": gen,
        "train": train,
        "gap": gen - train,
        "ratio": gen / train if train > 0 else float("nan"),
    }
