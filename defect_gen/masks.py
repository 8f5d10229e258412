"""
The channel layout shared by every part of Defect-Gen, and conversions between masks and tensors.

A training or sampled tensor is ``cat([rgb, onehot], dim=1)``: 3 RGB channels in [-1, 1], then
``num_defect + 1`` mask channels (channel 0 = background, channel k = defect class k).
"""

import numpy as np
import torch

RGB_CHANNELS = 3

# The share of log(class weight) removed from a class-weighted model's mask logits when sampling
# (MaskPriorCorrection). 1 would give calibrated per-pixel probabilities, but sampling decodes the
# uncertain early predictions towards background and draws too few, too small defects; on the
# magnetic-tile recipe 0.5 came closest to the training masks' shares and areas (docs/results.md).
DEFAULT_CLASS_WEIGHT_CORRECTION = 0.5

# The release's colours for classes 0..10 (scripts/convert_to_color.py), as RGB written through PIL.
RELEASE_PALETTE = (
    (0, 0, 0),
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (128, 0, 0),
    (0, 128, 0),
    (0, 0, 128),
    (128, 128, 128),
)


def num_channels(num_defect):
    """Give the model's in/out channel count for `num_defect` defect classes (RGB + background + K)."""
    if num_defect < 1:
        raise ValueError(f"num_defect must be at least 1, got {num_defect}")
    return RGB_CHANNELS + num_defect + 1


def num_defect_from_channels(channels):
    """Give the number of defect classes a model with `channels` in/out channels encodes."""
    if channels < RGB_CHANNELS + 2:
        raise ValueError(f"a model needs at least {RGB_CHANNELS + 2} channels, got {channels}")
    return channels - RGB_CHANNELS - 1


def check_channels(channels, num_defect, what="model"):
    """Raise ValueError naming both numbers when `channels` does not fit `num_defect` classes."""
    need = num_channels(num_defect)
    if channels != need:
        raise ValueError(
            f"{what} has {channels} in/out channels but num_defect={num_defect} needs {need} "
            f"(3 RGB + 1 background + {num_defect} defect channels)"
        )


def split(x):
    """
    Split a layout tensor into its RGB and mask parts.

    :param x: an [N x (4 + K) x H x W] Tensor.
    :return: (rgb [N x 3 x H x W], mask channels [N x (K + 1) x H x W]).
    """
    return x[:, :RGB_CHANNELS], x[:, RGB_CHANNELS:]


def encode(index_map, num_defect):
    """
    Give the one-hot float mask channels of a class-index map.

    :param index_map: an integer Tensor [... x H x W] with values in 0..num_defect.
    :return: a float Tensor [... x (num_defect + 1) x H x W] with values {0, 1}.
    """
    index_map = torch.as_tensor(index_map).long()
    if index_map.numel() and (index_map.min() < 0 or index_map.max() > num_defect):
        raise ValueError(
            f"mask values must lie in 0..{num_defect}, found {int(index_map.min())}..{int(index_map.max())}"
        )
    onehot = torch.nn.functional.one_hot(index_map, num_defect + 1)
    return onehot.movedim(-1, -3).float()


def decode(x):
    """
    Give the class-index map of a layout tensor: argmax over its mask channels.

    Softmax is monotonic, so this equals the release's softmax-then-argmax.

    :param x: an [N x (4 + K) x H x W] Tensor (image + mask channels).
    :return: an int64 Tensor [N x H x W] with values in 0..K.
    """
    return split(x)[1].argmax(dim=1)


def to_uint8_rgb(rgb):
    """Give [N x H x W x 3] uint8 images from an [N x 3 x H x W] Tensor in [-1, 1]."""
    rgb = ((rgb.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def palette(num_classes):
    """
    Give a [num_classes x 3] uint8 palette: the release's 11 colours, then deterministic extra ones.

    Extra colours walk the hue circle by the golden angle so neighbouring classes stay distinct.
    """
    colours = [list(c) for c in RELEASE_PALETTE[:num_classes]]
    for k in range(len(colours), num_classes):
        hue = (k * 0.618033988749895) % 1.0
        value = 0.95 if k % 2 else 0.7
        colours.append([int(round(255 * c)) for c in _hsv_to_rgb(hue, 0.85, value)])
    return np.array(colours, dtype=np.uint8).reshape(num_classes, 3)


def _hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def colorize(index_map, num_classes=None):
    """Give an [H x W x 3] uint8 palette image of an [H x W] class-index array."""
    index_map = np.asarray(index_map)
    if num_classes is None:
        num_classes = max(int(index_map.max(initial=0)) + 1, len(RELEASE_PALETTE))
    return palette(num_classes)[index_map]


def overlay(image, index_map, alpha=0.5, num_classes=None):
    """
    Give an image with its defect pixels tinted by their class colour; background pixels unchanged.

    :param image: [H x W x 3] uint8 array.
    :param index_map: [H x W] integer array.
    """
    image = np.asarray(image, dtype=np.float32)
    index_map = np.asarray(index_map)
    colours = colorize(index_map, num_classes).astype(np.float32)
    defect = (index_map > 0)[..., None]
    out = np.where(defect, (1 - alpha) * image + alpha * colours, image)
    return out.round().clip(0, 255).astype(np.uint8)


def make_grid(images, ncol=None, pad=2, min_tile=None):
    """
    Give one uint8 [H' x W' x 3] picture tiling a list of equally sized [H x W x 3] images.

    :param min_tile: if given, small images are enlarged by an integer factor (nearest neighbour) until
        they are at least this many pixels high, so that 32 px samples stay legible.
    """
    if not len(images):
        raise ValueError("make_grid needs at least one image")
    if min_tile:
        factor = max(1, -(-min_tile // images[0].shape[0]))
        images = [np.repeat(np.repeat(img, factor, axis=0), factor, axis=1) for img in images]
    n = len(images)
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    h, w = images[0].shape[:2]
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


class MaskPriorCorrection(torch.nn.Module):
    """
    Undo the bias a class-weighted cross-entropy puts into a model's mask logits.

    Trained with per-pixel weight w_y on the true class y, the cross-entropy's minimum is at
    softmax(logits)_k = w_k p_k / sum_j w_j p_j, not at the class probabilities p_k: a class weighted 20
    is drawn as if it were 20 times likelier, so sampled masks grow. Subtracting log w_k from the logits
    (logit adjustment) gives back p_k. Wraps the model; RGB channels pass through unchanged.

    :param model: called as model(x_t, t, **kwargs), output [N x (3 + K + 1) x H x W] with mask logits.
    :param weights: the K + 1 class weights of the training loss (background first), all > 0.
    :param strength: the share of log w_k removed: 1 undoes the bias fully, 0 leaves the logits as
        trained; in between, the classes keep part of their weight (w_k ** (1 - strength)).
    """

    def __init__(self, model, weights, strength=1.0):
        super().__init__()
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if weights.dim() != 1 or not bool((weights > 0).all()):
            raise ValueError(
                f"class weights must be a list of positive numbers, got {weights.tolist()}"
            )
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        self.model = model
        offset = -float(strength) * torch.log(weights)
        self.register_buffer("offset", offset.view(1, -1, 1, 1), persistent=False)

    def forward(self, x, t, **kwargs):
        out = self.model(x, t, **kwargs)
        if out.shape[1] != RGB_CHANNELS + self.offset.shape[1]:
            raise ValueError(
                f"{self.offset.shape[1]} class weights for {out.shape[1] - RGB_CHANNELS} mask channels"
            )
        rgb, logits = out[:, :RGB_CHANNELS], out[:, RGB_CHANNELS:]
        return torch.cat([rgb, logits + self.offset.to(logits.dtype)], dim=1)
