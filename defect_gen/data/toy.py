"""
Procedural toy defect data: textured industrial surfaces with exact multi-class defect masks.

A newcomer can try Defect-Gen on this before owning a dataset. Everything is numpy; PIL only writes PNGs.

Surfaces: ``metal`` (brushed, anisotropic streaks), ``fabric`` (plain weave), ``ceramic`` (mottled,
speckled glaze), each with its own brightness and mild tint per image.

Defect types, in class order (``1..4`` for the default ``num_defect = 4``)::

    1 crack    jagged dark line with one or two branches
    2 pit      one to three small dark roundish spots
    3 scratch  thin curved line, bright or dark
    4 stain    larger irregular tinted blob with a soft inner edge

The type names are chosen so that their *sorted* order is the class order, which is how the MVTec
layout reader numbers classes when no ``classes:`` list is given. A smaller ``num_defect`` keeps the
first types of ``scratch, pit, stain, crack`` (so 3 drops ``crack``) and numbers them in sorted order.

Each defect is drawn as an alpha map; its mask is ``alpha > MASK_THRESHOLD`` and the change is applied
only where the mask is set, so every masked pixel visibly changed and every other pixel is exactly the
clean surface.
"""

import logging
import shutil
from pathlib import Path

import numpy as np

from ..errors import ToyDataError
from ..fileio import write_png

logger = logging.getLogger(__name__)

ALL_TYPES = ("crack", "pit", "scratch", "stain")  # sorted: this order is the class order
_KEEP_ORDER = ("scratch", "pit", "stain", "crack")  # which types a smaller num_defect keeps
DEFAULT_NUM_DEFECT = 4
SURFACES = ("metal", "fabric", "ceramic")
MASK_THRESHOLD = 0.5
DEFAULT_MULTI_DEFECT_P = 0.25
LAYOUTS = ("official", "mvtec")
README_MARKER = "# Defect-Gen toy dataset"
_MIN_SIZE = 16
_GOOD_STREAM = len(ALL_TYPES)  # rng stream id of the defect-free images


def defect_classes(num_defect=DEFAULT_NUM_DEFECT):
    """Give the defect type names of classes ``1..num_defect``, in class order (sorted)."""
    if not isinstance(num_defect, (int, np.integer)) or not 1 <= num_defect <= len(ALL_TYPES):
        raise ToyDataError(
            f"num_defect must be an integer in 1..{len(ALL_TYPES)}, got {num_defect!r}"
        )
    return sorted(_KEEP_ORDER[:num_defect])


def generate_surface(rng, *, size, surface=None):
    """
    Give a defect-free textured surface.

    :param rng: a numpy Generator; the draw is a deterministic function of its state.
    :param size: image side in pixels (square images).
    :param surface: one of SURFACES, or None to draw one.
    :return: an [H x W x 3] uint8 RGB array.
    """
    return _to_uint8(_surface(rng, _check_size(size), _check_surface(surface, rng)))


def generate_sample(
    rng,
    *,
    size,
    defect_type,
    num_defect=DEFAULT_NUM_DEFECT,
    surface=None,
    multi_defect_p=DEFAULT_MULTI_DEFECT_P,
    return_clean=False,
):
    """
    Give one defective image and its class-index mask.

    The image holds a defect of `defect_type`; with probability `multi_defect_p` it also holds one
    defect of another class (drawn on pixels the first one leaves free), and the mask marks both.

    :param rng: a numpy Generator; the draw is a deterministic function of its state.
    :param size: image side in pixels (square images, at least 16).
    :param defect_type: a name from ``defect_classes(num_defect)``.
    :param num_defect: number of defect classes K (mask values 0..K).
    :param surface: one of SURFACES, or None to draw one.
    :param multi_defect_p: probability of a second defect of another class.
    :param return_clean: also give the defect-free surface the defects were drawn on.
    :return: (rgb [H x W x 3] uint8, index map [H x W] uint8 with values 0..K), plus the clean
        [H x W x 3] uint8 surface when `return_clean`.
    """
    size = _check_size(size)
    classes = defect_classes(num_defect)
    if defect_type not in classes:
        raise ToyDataError(
            f"defect_type {defect_type!r} is not one of {classes} (num_defect={num_defect})"
        )
    if not 0.0 <= multi_defect_p <= 1.0:
        raise ToyDataError(f"multi_defect_p must lie in [0, 1], got {multi_defect_p}")
    surface = _check_surface(surface, rng)

    clean = _surface(rng, size, surface)
    image = clean.copy()
    index = np.zeros((size, size), dtype=np.uint8)
    free = np.ones((size, size), dtype=bool)
    kinds = [defect_type]
    others = [c for c in classes if c != defect_type]
    if others and rng.random() < multi_defect_p:
        kinds.append(others[rng.integers(len(others))])
    for kind in kinds:
        image, mask = _add_defect(rng, image, kind, free)
        index[mask] = classes.index(kind) + 1
        free &= ~mask

    out = (_to_uint8(image), index)
    return out + (_to_uint8(clean),) if return_clean else out


def write_dataset(
    out_dir,
    *,
    layout="official",
    num_per_type=8,
    size=64,
    seed=0,
    num_defect=DEFAULT_NUM_DEFECT,
    surfaces=None,
    multi_defect_p=DEFAULT_MULTI_DEFECT_P,
    num_good=4,
):
    """
    Give the class names after writing a toy dataset folder in the official or MVTec AD layout.

    official: ``test/<type>/NNN.png`` and ``converted_ground_truth/<type>/NNN.png`` (class index
    0..K; an image with a second defect marks both classes).
    mvtec: ``test/<type>/NNN.png``, ``ground_truth/<type>/NNN_mask.png`` (0/255, only the folder's
    own type is marked: a second defect, if any, stays visible but unmarked) and `num_good`
    defect-free ``train/good/NNN.png``. Pass ``multi_defect_p=0`` for masks that mark every defect.

    Image ``i`` of a type comes from its own random stream ``(seed, type, i)``: the same call writes
    byte-identical files, and a larger `num_per_type` keeps the first images unchanged. An existing
    toy dataset folder (one whose README.md this function wrote) is replaced; any other non-empty
    folder is refused.

    :return: the list of defect type names, class ``k`` being entry ``k - 1``.
    """
    if layout not in LAYOUTS:
        raise ToyDataError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ToyDataError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in (("num_per_type", num_per_type), ("num_good", num_good)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ToyDataError(f"{name} must be a non-negative integer, got {value!r}")
    size = _check_size(size)
    classes = defect_classes(num_defect)
    surfaces = tuple(SURFACES if surfaces is None else surfaces)
    if not surfaces:
        raise ToyDataError("surfaces must name at least one of " + ", ".join(SURFACES))
    for s in surfaces:
        _check_surface(s, None)

    out_dir = Path(out_dir)
    _prepare_folder(out_dir)
    for cls_id, kind in enumerate(classes, start=1):
        img_dir = out_dir / "test" / kind
        mask_dir = (
            out_dir / ("converted_ground_truth" if layout == "official" else "ground_truth") / kind
        )
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i in range(num_per_type):
            rng = np.random.default_rng([seed, ALL_TYPES.index(kind), i])
            surface = surfaces[rng.integers(len(surfaces))]
            rgb, index = generate_sample(
                rng,
                size=size,
                defect_type=kind,
                num_defect=num_defect,
                surface=surface,
                multi_defect_p=multi_defect_p,
            )
            write_png(img_dir / f"{i:03d}.png", rgb)
            if layout == "official":
                write_png(mask_dir / f"{i:03d}.png", index)
            else:
                binary = np.where(index == cls_id, 255, 0).astype(np.uint8)
                write_png(mask_dir / f"{i:03d}_mask.png", binary)
    if layout == "mvtec":
        good_dir = out_dir / "train" / "good"
        good_dir.mkdir(parents=True, exist_ok=True)
        for i in range(num_good):
            rng = np.random.default_rng([seed, _GOOD_STREAM, i])
            surface = surfaces[rng.integers(len(surfaces))]
            write_png(good_dir / f"{i:03d}.png", generate_surface(rng, size=size, surface=surface))
    (out_dir / "README.md").write_text(
        _readme(classes, layout, num_per_type, size, seed, surfaces, multi_defect_p, num_good)
    )
    logger.info(
        "wrote %d %s-layout toy images per type for classes %s to %s",
        num_per_type,
        layout,
        ", ".join(f"{k}={c}" for k, c in enumerate(classes, start=1)),
        out_dir,
    )
    return classes


# ----------------------------------------------------------------------------- checks and I/O


def _check_size(size):
    if not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ToyDataError(f"size must be an integer of at least {_MIN_SIZE} pixels, got {size!r}")
    return int(size)


def _check_surface(surface, rng):
    if surface is None:
        return SURFACES[rng.integers(len(SURFACES))]
    if surface not in SURFACES:
        raise ToyDataError(f"surface must be one of {SURFACES}, got {surface!r}")
    return surface


def _prepare_folder(out_dir):
    """Make `out_dir` ready: create it, or clear an earlier toy dataset, or refuse other content."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ToyDataError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        readme = out_dir / "README.md"
        is_toy = readme.is_file() and readme.read_text().startswith(README_MARKER)
        if not is_toy:
            raise ToyDataError(
                f"{out_dir}: folder is not empty and holds no toy dataset; pick a new one"
            )
        for sub in ("test", "converted_ground_truth", "ground_truth", "train"):
            if (out_dir / sub).is_dir():
                shutil.rmtree(out_dir / sub)
    out_dir.mkdir(parents=True, exist_ok=True)


def _readme(classes, layout, num_per_type, size, seed, surfaces, multi_defect_p, num_good):
    lines = [
        README_MARKER,
        "",
        "Procedural surfaces with synthetic defects, written by `defect_gen.toy_data.write_dataset`",
        f"(layout={layout}, num_per_type={num_per_type}, size={size}, seed={seed},",
        f"surfaces={','.join(surfaces)}, multi_defect_p={multi_defect_p}). Not real data.",
        "",
        f"num_defect: {len(classes)}",
        "",
        "| class id | type folder |",
        "|---|---|",
        "| 0 | background |",
    ]
    lines += [f"| {k} | {c} |" for k, c in enumerate(classes, start=1)]
    lines.append("")
    if layout == "official":
        lines += [
            "Images: `test/<type>/NNN.png`; masks: `converted_ground_truth/<type>/NNN.png`, 8-bit class",
            "index (0 = background). About a fraction multi_defect_p of the images hold a second defect",
            "of another class, and their masks mark both class ids.",
        ]
    else:
        lines += [
            "Images: `test/<type>/NNN.png`; masks: `ground_truth/<type>/NNN_mask.png`, 0/255 marking",
            "only the folder's own type (a second defect, if any, is visible but unmarked); the class id",
            "of a type is its position in the sorted type names, as in the table above.",
            f"Defect-free images: `train/good/NNN.png` ({num_good}).",
        ]
    return "\n".join(lines) + "\n"


def _to_uint8(image):
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- surfaces


def _value_noise(rng, h, w, gh, gw):
    """Give an [h x w] smooth noise field: a (gh x gw) normal grid, smoothstep-interpolated."""
    grid = rng.standard_normal((max(gh, 2), max(gw, 2)))
    gh, gw = grid.shape

    def coords(n, g):
        pos = np.linspace(0.0, g - 1.0, n)
        lo = np.minimum(np.floor(pos).astype(int), g - 2)
        f = pos - lo
        return lo, f * f * (3.0 - 2.0 * f)

    y0, fy = coords(h, gh)
    x0, fx = coords(w, gw)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def _surface(rng, size, surface):
    """Give an [H x W x 3] float image in [0.2, 0.92] of the named surface."""
    h = w = size
    if surface == "metal":
        base = rng.uniform(0.42, 0.68)
        streaks = 0.05 * _value_noise(rng, h, w, h, 4) + 0.025 * _value_noise(rng, h, w, h // 2, 10)
        grey = base + streaks + 0.05 * _value_noise(rng, h, w, 3, 3)
        if rng.random() < 0.5:  # brushed along x or along y
            grey = grey.T
        tint = np.array([0.97, 1.0, 1.04]) + rng.normal(0.0, 0.015, 3)
        rgb = grey[..., None] * tint
    elif surface == "fabric":
        period = max(4, int(round(size / rng.uniform(9.0, 14.0))))
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = yy // period, xx // period
        fy, fx = (yy % period + 0.5) / period, (xx % period + 0.5) / period
        weft_up = (cy + cx) % 2 == 0  # plain weave: the horizontal thread is on top here
        yarn_row = rng.normal(0.0, 0.03, cy.max() + 1)[cy]
        yarn_col = rng.normal(0.0, 0.03, cx.max() + 1)[cx]
        profile = np.where(weft_up, np.sin(np.pi * fy), np.sin(np.pi * fx))
        yarn = np.where(weft_up, yarn_row, yarn_col)
        base = rng.uniform(0.5, 0.78)
        grey = base * (0.72 + 0.28 * profile) + yarn + 0.02 * rng.standard_normal((h, w))
        grey = grey + 0.03 * _value_noise(rng, h, w, 3, 3)
        tints = ([1.0, 0.95, 0.84], [0.86, 0.92, 1.0], [0.97, 0.97, 0.97])
        tint = np.array(tints[rng.integers(len(tints))]) + rng.normal(0.0, 0.015, 3)
        rgb = grey[..., None] * tint
    else:  # ceramic
        base = rng.uniform(0.66, 0.84)
        grey = (
            base
            + 0.035 * _value_noise(rng, h, w, 4, 4)
            + 0.015 * _value_noise(rng, h, w, max(2, h // 4), max(2, w // 4))
        )
        grey = grey + 0.012 * rng.standard_normal((h, w))
        n_speck = max(4, size * size // 120)
        ys, xs = rng.integers(0, h, n_speck), rng.integers(0, w, n_speck)
        grey[ys, xs] += rng.choice([-1.0, 1.0], n_speck, p=[0.7, 0.3]) * rng.uniform(
            0.05, 0.12, n_speck
        )
        tints = ([1.0, 0.98, 0.93], [0.95, 0.98, 1.0], [1.0, 0.97, 0.97])
        tint = np.array(tints[rng.integers(len(tints))]) + rng.normal(0.0, 0.01, 3)
        rgb = grey[..., None] * tint
    return np.clip(rgb, 0.2, 0.92)


# ----------------------------------------------------------------------------- defects


def _add_defect(rng, image, kind, free):
    """
    Give (image with one defect of `kind`, its boolean mask), drawn only on `free` pixels.

    Outside the mask the image is returned unchanged bit for bit.
    """
    size = image.shape[0]
    mean = float(image.mean())
    for _ in range(20):  # a defect squeezed out by an earlier one is redrawn elsewhere
        alpha, target = _DEFECTS[kind](rng, image, size, mean)
        mask = (alpha > MASK_THRESHOLD) & free
        if mask.sum() >= 3:
            break
    a = np.where(mask, alpha, 0.0)[..., None]
    return image + a * (target - image), mask


def _edge_alpha(inside_px, ramp_px):
    """Give alpha from a signed distance (px, > 0 inside): 0.5 at the edge, 1 `ramp_px` inside."""
    return np.clip(0.5 + 0.5 * inside_px / ramp_px, 0.0, 1.0)


def _polyline_distance(size, points):
    """Give the [size x size] distance of each pixel centre to a polyline of [N x 2] (y, x) points."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dist = np.full((size, size), np.inf)
    for (ay, ax), (by, bx) in zip(points[:-1], points[1:]):
        dy, dx = by - ay, bx - ax
        t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(yy - ay - t * dy, xx - ax - t * dx))
    return dist


def _darken(image, depth, tint=(1.0, 1.0, 1.0)):
    return image * (1.0 - depth * np.asarray(tint))


def _scratch(rng, image, size, mean):
    half = max(1.0, size * rng.uniform(0.0125, 0.02))  # width 2.5-4% of the side, >= 2 px
    length = size * rng.uniform(0.45, 0.85)
    centre = rng.uniform(0.3, 0.7, 2) * size
    angle = rng.uniform(0.0, np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([direction[1], -direction[0]])
    p0, p2 = centre - direction * length / 2, centre + direction * length / 2
    p1 = centre + normal * rng.uniform(-0.3, 0.3) * length
    t = np.linspace(0.0, 1.0, 40)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    alpha = _edge_alpha(half - _polyline_distance(size, curve), 0.75)
    bright = rng.random() < (0.6 if mean < 0.65 else 0.0)
    target = image + 0.8 * (1.0 - image) if bright else _darken(image, 0.6)
    return alpha, target


def _pit(rng, image, size, mean):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    alpha = np.zeros((size, size))
    centres = []
    for _ in range(int(rng.integers(1, 4))):
        r = max(1.6, size * rng.uniform(0.03, 0.05))  # diameter 6-10% of the side
        ry, rx = r, r * rng.uniform(0.75, 1.0)
        theta = rng.uniform(0.0, np.pi)
        for _ in range(10):  # keep pits apart
            c = rng.uniform(r + 1, size - r - 1, 2)
            if all(np.hypot(*(c - o)) > r + ro + 2 for o, ro in centres):
                break
        centres.append((c, r))
        u = (yy - c[0]) * np.cos(theta) + (xx - c[1]) * np.sin(theta)
        v = -(yy - c[0]) * np.sin(theta) + (xx - c[1]) * np.cos(theta)
        q = np.hypot(u / ry, v / rx)
        alpha = np.maximum(alpha, _edge_alpha((1.0 - q) * r, 0.5 * r))
    return alpha, _darken(image, 0.7)


def _stain(rng, image, size, mean):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = size * rng.uniform(0.12, 0.2)
    c = rng.uniform(radius * 1.2, size - radius * 1.2, 2)
    theta = np.arctan2(yy - c[0], xx - c[1])
    boundary = np.ones_like(theta)
    for k in range(2, 6):
        boundary += rng.uniform(0.0, 0.22 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    inside = radius * boundary - np.hypot(yy - c[0], xx - c[1])
    alpha = _edge_alpha(inside, 0.4 * radius)
    depth = rng.uniform(0.45, 0.6) * (1.0 + 0.15 * _value_noise(rng, size, size, 5, 5))
    tints = ([0.6, 0.8, 1.0], [0.55, 0.7, 1.0], [0.9, 0.9, 0.9])
    tint = tints[rng.integers(len(tints))]
    return alpha, _darken(image, depth[..., None], tint)


def _crack(rng, image, size, mean):
    half = max(1.0, size * rng.uniform(0.01, 0.015))
    step = size * 0.05
    start = rng.uniform(0.3, 0.7, 2) * size
    heading = rng.uniform(0.0, 2 * np.pi)
    # grow both ways from a central point so the crack stays mostly inside the image
    back = _random_walk(rng, start, heading + np.pi, step, int(rng.integers(4, 8)))
    main = np.concatenate(
        [back[::-1], _random_walk(rng, start, heading, step, int(rng.integers(4, 8)))[1:]]
    )
    dist = _polyline_distance(size, main)
    for _ in range(int(rng.integers(1, 3))):
        at = main[rng.integers(2, len(main) - 1)]
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)
        branch = _random_walk(rng, at, heading + turn, step, int(rng.integers(3, 6)))
        dist = np.minimum(dist, _polyline_distance(size, branch))
    return _edge_alpha(half - dist, 0.75), _darken(image, 0.72)


def _random_walk(rng, start, heading, step, n):
    """Give an [(n + 1) x 2] jagged polyline from `start` heading roughly along `heading`."""
    points = [np.asarray(start, dtype=np.float64)]
    for _ in range(n):
        heading = heading + rng.normal(0.0, 0.35)
        points.append(points[-1] + step * np.array([np.sin(heading), np.cos(heading)]))
    return np.stack(points)


_DEFECTS = {"scratch": _scratch, "pit": _pit, "stain": _stain, "crack": _crack}
