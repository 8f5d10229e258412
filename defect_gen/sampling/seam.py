"""
Inpainting without visible seams: a round band around the defect, a harmonic correction that makes the
drawn band meet the good image at its border, and the measure of what is left of the seam.

The band is the region the models draw around an inpainted defect; outside it every pixel is the good
image. A band drawn a little lighter or darker than its surroundings shows as a square patch, and a
segmenter can learn the patch instead of the defect. :func:`harmonize` adds to the drawn band the smooth
(harmonic) offset that takes it to the good image's values along its border: the band keeps its own
texture and defect, the good image keeps every pixel outside, and the step between them goes.
:func:`add_good_texture` (``--good_texture``) gives a band drawn too smooth the surface's fine grain back.
"""

import numpy as np
import torch
import torch.nn.functional as F

_CROSS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def disk_dilate(region, radius):
    """
    Give the boolean [N x H x W] `region` grown by a disk of `radius` pixels (Euclidean distance).

    A square structuring element turns every small defect into a square band; a disk follows its shape.
    """
    if radius <= 0:
        return region
    r = int(radius)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    disk = ((yy**2 + xx**2) <= r * r + r).float()[None, None]  # + r: the discrete disk's rim
    grown = F.conv2d(region[:, None].float(), disk, padding=r)
    return grown[:, 0] > 0.5


def _neighbour_sum(x):
    """Give the sum of each pixel's 4 neighbours inside the image; x: [N x C x H x W]."""
    n, c, h, w = x.shape
    out = F.conv2d(x.reshape(n * c, 1, h, w), _CROSS.to(x)[None, None], padding=1)
    return out.reshape(n, c, h, w)


def harmonize(image, good, region, *, max_iterations=None, tol=1e-6):
    """
    Give `image` inside `region` plus the harmonic offset that meets `good` at the region's border, and
    `good` exactly outside it.

    The result F minimises the squared differences between F's neighbour steps and the guidance steps:
    `image`'s inside the region, `good`'s across its border, with F = `good` outside. So F = image + D,
    with D harmonic inside and D = good - image at the border. Solved by conjugate gradients, per sample
    and channel. Two exact properties: an image equal to `good` is returned unchanged, and an image equal
    to `good` plus a constant inside the region becomes `good`.

    :param image, good: float [N x C x H x W] Tensors.
    :param region: a bool [N x H x W] Tensor, the drawn band (the pixels that may change).
    :return: a float [N x C x H x W] Tensor.
    """
    image, good = image.float(), good.float()
    if not region.any():
        return good.clone()
    # Solve on the region's bounding box grown by one pixel: nothing outside it takes part.
    rows, cols = region.any(dim=(0, 2)).nonzero()[:, 0], region.any(dim=(0, 1)).nonzero()[:, 0]
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, region.shape[1])
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, region.shape[2])
    if (y1 - y0, x1 - x0) != tuple(region.shape[1:]):
        out = good.clone()
        out[:, :, y0:y1, x0:x1] = harmonize(
            image[:, :, y0:y1, x0:x1], good[:, :, y0:y1, x0:x1], region[:, y0:y1, x0:x1],
            max_iterations=max_iterations, tol=tol,
        )  # fmt: skip
        return out
    inside = region[:, None].float().expand_as(image)
    outside = 1.0 - inside
    degree = _neighbour_sum(torch.ones_like(image))
    n_out = _neighbour_sum(outside) * inside
    b = n_out * (good - image)

    def apply(d):
        return inside * (degree * d - _neighbour_sum(d * inside))

    d = torch.zeros_like(image)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(dim=(2, 3), keepdim=True)
    scale = rr.clamp_min(1e-30)
    iterations = max_iterations or 4 * max(image.shape[-2:]) + 50
    for _ in range(iterations):
        if bool((rr <= tol * tol * scale).all()):
            break
        ap = apply(p)
        alpha = rr / (p * ap).sum(dim=(2, 3), keepdim=True).clamp_min(1e-30)
        d = d + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum(dim=(2, 3), keepdim=True)
        p = r + (rr_new / rr.clamp_min(1e-30)) * p
        rr = rr_new
    return torch.where(inside > 0, image + d, good)


def seam_step(image, good, region):
    """
    Give the mean absolute step across the region's border, per sample: |image_p - good_q| over pixel
    pairs p inside the region and q its 4-neighbour outside, averaged over channels.

    Computed with `good` for `image` it is the good image's own texture across the same border: the
    level a seamless band would show. Images in any range; uint8-like values give gray levels.

    :param image, good: float [N x C x H x W]; :param region: bool [N x H x W].
    :return: a float [N] Tensor (0 where the region has no border).
    """
    image, good = image.float(), good.float()
    inside = region.float()
    total = torch.zeros(image.shape[0])
    count = torch.zeros(image.shape[0])
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        shifted_good = torch.roll(good, (dy, dx), dims=(2, 3))
        shifted_in = torch.roll(inside, (dy, dx), dims=(1, 2))
        valid = torch.ones_like(inside)
        if dy:
            valid[:, 0 if dy > 0 else -1, :] = 0
        if dx:
            valid[:, :, 0 if dx > 0 else -1] = 0
        pairs = inside * (1 - shifted_in) * valid
        step = (image - shifted_good).abs().mean(dim=1)
        total += (step * pairs).sum(dim=(1, 2))
        count += pairs.sum(dim=(1, 2))
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


def fine_detail(x):
    """
    Give x minus its 3 x 3 box mean (edges replicated), per channel: the fine texture, signed.

    :param x: a float numpy array [H x W] or [H x W x C].
    """
    x = np.asarray(x, dtype=np.float64)
    h, w = x.shape[:2]
    pad = ((1, 1), (1, 1)) + ((0, 0),) * (x.ndim - 2)
    padded = np.pad(x, pad, mode="edge")
    box = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
    return x - box


def add_good_texture(image, good, band):
    """
    Give `image` with the good image's fine texture (:func:`fine_detail`) added inside `band`, rounded
    and clipped to 0..255; every pixel outside the band is `image`'s.

    A model short of training draws defects and the band around them smoother than the surface (run 4
    of docs/results.md measures a third of the surface's fine texture inside inpainted uneven regions);
    a segmenter can then learn "smooth" instead of the defect. The drawn band keeps its shape, its gray
    levels and its own detail, and gets the surface's grain on top. It works on the written uint8
    pixels, so applying it to a folder sampled without it gives the same bytes as sampling with it.

    :param image, good: uint8 [H x W x 3]; :param band: bool [H x W].
    :return: uint8 [H x W x 3].
    """
    image = np.asarray(image)
    if image.shape != np.shape(good) or image.shape[:2] != np.shape(band):
        raise ValueError(
            f"image {image.shape}, good image {np.shape(good)} and band {np.shape(band)} differ in size"
        )
    grain = np.rint(image.astype(np.float64) + fine_detail(good)).clip(0, 255).astype(np.uint8)
    return np.where(np.asarray(band, bool)[..., None], grain, image)
