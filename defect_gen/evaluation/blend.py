"""
Blending a pasted region into a target image: a feathered alpha edge, or Poisson image editing.

Both work on numpy arrays only (no scipy): the distance behind the feather is the chessboard
distance of repeated 3 x 3 erosions, and the Poisson equation is solved by conjugate gradients over
the region's bounding box.
"""

import numpy as np


def _erode(region):
    """Give bool [H x W]: the pixels whose whole 3 x 3 neighbourhood lies in `region`."""
    padded = np.pad(region, 1, constant_values=False)
    h, w = region.shape
    out = np.ones_like(region)
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy : dy + h, dx : dx + w]
    return out


def dilate(region, width):
    """Give bool [H x W]: `region` grown by `width` pixels (chessboard distance, 3 x 3 steps)."""
    region = np.asarray(region, dtype=bool)
    h, w = region.shape
    for _ in range(int(width)):
        padded = np.pad(region, 1, constant_values=False)
        grown = np.zeros_like(region)
        for dy in range(3):
            for dx in range(3):
                grown |= padded[dy : dy + h, dx : dx + w]
        region = grown
    return region


def feather_alpha(region, width):
    """
    Give float32 [H x W] alpha in [0, 1]: 0 outside `region`, rising linearly with the chessboard
    distance d to the nearest pixel outside it (d = 1 on its edge) as min(1, d / width), so pixels
    at least `width` deep are 1. Monotone in d; `width` <= 1 gives the hard region (1 inside).

    :param region: bool [H x W]; :param width: feather width in pixels (float, >= 0).
    """
    region = np.asarray(region, dtype=bool)
    width = float(width)
    if width <= 1:
        return region.astype(np.float32)
    depth = np.zeros(region.shape, np.float32)
    current = region
    # depth = 1 + erosions a pixel survives, counted up to ceil(width): deeper pixels reach 1.
    for _ in range(int(np.ceil(width))):
        if not current.any():
            break
        depth += current
        current = _erode(current)
    return np.minimum(1.0, depth / width).astype(np.float32)


def _neighbours(valid):
    """Give the four (shift function, has-neighbour bool map) pairs of a [h x w] box."""
    h, w = valid.shape

    def shift(a, dy, dx):
        # out[y, x] = a[y + dy, x + dx], zero where that lies outside the box.
        out = np.zeros_like(a)
        ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
        xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
        out[yd, xd] = a[ys, xs]
        return out

    dirs = ((-1, 0), (1, 0), (0, -1), (0, 1))
    return [(lambda a, d=d: shift(a, *d), shift(valid, *d)) for d in dirs]


def poisson_blend(target, source, region, iterations=300, tol=1e-4):
    """
    Give the target with `region` replaced by the Poisson-edited source (Pérez et al. 2003): inside
    the region the result f solves the discrete Poisson equation whose guidance is the source's
    gradients, with the target's pixels as the boundary (Dirichlet), i.e. for each region pixel p
    with image neighbours N(p):  |N(p)| f_p - sum_{q in N(p) & region} f_q
    = sum_{q in N(p)} (s_p - s_q) + sum_{q in N(p) - region} t_q.
    Neighbours outside the image are left out (Neumann). Solved per channel by conjugate gradients
    on the region's bounding box grown by 1 px; pixels outside the region are the target's exactly.

    :param target, source: [H x W x C] or [H x W], uint8 or float (same shape).
    :param region: bool [H x W]; an empty region gives the target unchanged.
    :param iterations: at most this many CG steps; :param tol: stop when the residual's RMS (in
        pixel units) is below it.
    :return: an array of the target's shape and dtype (uint8 results are rounded and clipped).
    """
    target = np.asarray(target)
    source = np.asarray(source)
    region = np.asarray(region, dtype=bool)
    out = target.copy()
    if not region.any():
        return out
    squeeze = target.ndim == 2
    t_all = target[..., None] if squeeze else target
    s_all = source[..., None] if squeeze else source
    H, W = region.shape
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    y0, y1 = max(0, rows[0] - 1), min(H, rows[-1] + 2)
    x0, x1 = max(0, cols[0] - 1), min(W, cols[-1] + 2)
    R = region[y0:y1, x0:x1]
    T = t_all[y0:y1, x0:x1].astype(np.float64)
    S = s_all[y0:y1, x0:x1].astype(np.float64)
    nbrs = _neighbours(np.ones(R.shape, dtype=bool))
    Rf = R[..., None].astype(np.float64)
    degree = sum(has for _, has in nbrs).astype(np.float64)[..., None]
    b = np.zeros_like(T)
    for shift, has in nbrs:
        h = has[..., None]
        b += h * (S - shift(S))  # guidance: the source's gradient along every in-image edge
        b += h * (1.0 - shift(Rf)) * shift(T)  # the target's pixels next to the region
    b *= Rf

    def apply(x):
        # x is zero outside the region, so shifted x only brings in region neighbours.
        y = degree * x
        for shift, _ in nbrs:
            y -= shift(x)
        return y * Rf

    x = T * Rf
    r = b - apply(x)
    p = r.copy()
    rs = (r * r).sum(axis=(0, 1))
    n = max(1, int(R.sum()))
    for _ in range(int(iterations)):
        if np.sqrt(rs.max() / n) < tol:
            break
        Ap = apply(p)
        denom = (p * Ap).sum(axis=(0, 1))
        alpha = np.where(denom > 0, rs / np.where(denom > 0, denom, 1.0), 0.0)
        x += alpha * p
        r -= alpha * Ap
        rs_new = (r * r).sum(axis=(0, 1))
        beta = np.where(rs > 0, rs_new / np.where(rs > 0, rs, 1.0), 0.0)
        p = r + beta * p
        rs = rs_new
    if np.issubdtype(target.dtype, np.integer):
        info = np.iinfo(target.dtype)
        x = np.clip(np.round(x), info.min, info.max)
    box = t_all[y0:y1, x0:x1].copy()
    box[R] = x[R].astype(target.dtype)
    if squeeze:
        out[y0:y1, x0:x1] = box[..., 0]
    else:
        out[y0:y1, x0:x1] = box
    return out
