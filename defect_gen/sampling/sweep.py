"""
Switch sweep figures: a grid of samples, one row per seed and one column per switch S, with labels.

scripts/switch_sweep.py and scripts/conditioning_figure.py draw theirs with :func:`sweep_figure` and
write them with :func:`defect_gen.fileio.write_png`.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..two_stage import stage_timesteps

# layout (pixels)
SWEEP_MIN_CELL = 96  # tiles are enlarged by an integer factor to at least this side, so labels fit
SWEEP_PAD = 2
SWEEP_TOP = 30  # two lines of column labels
SWEEP_LEFT = 48  # row labels


def sweep_figure(tiles, col_labels, row_labels):
    """
    Give a uint8 [H x W x 3] figure: a grid of tiles with a two-line label over each column and one
    left of each row.

    Tiles are enlarged (nearest neighbour) by the smallest integer factor that makes them at least
    SWEEP_MIN_CELL pixels wide. H = SWEEP_TOP + rows * (cell + SWEEP_PAD) + SWEEP_PAD and
    W = SWEEP_LEFT + cols * (cell + SWEEP_PAD) + SWEEP_PAD.

    :param tiles: rows of equally sized [h x w x 3] uint8 arrays (rows x cols).
    :param col_labels: per column, one or two text lines ("\\n"-separated).
    """
    nrow, ncol = len(tiles), len(tiles[0])
    h, w = tiles[0][0].shape[:2]
    scale = max(1, math.ceil(SWEEP_MIN_CELL / min(h, w)))
    ch, cw = h * scale, w * scale
    height = SWEEP_TOP + nrow * (ch + SWEEP_PAD) + SWEEP_PAD
    width = SWEEP_LEFT + ncol * (cw + SWEEP_PAD) + SWEEP_PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, label in enumerate(col_labels):
        x = SWEEP_LEFT + SWEEP_PAD + c * (cw + SWEEP_PAD)
        draw.multiline_text((x + 2, 2), label, fill=(0, 0, 0), font=font, spacing=2)
    for r, row in enumerate(tiles):
        y = SWEEP_TOP + SWEEP_PAD + r * (ch + SWEEP_PAD)
        draw.text((2, y + ch // 2 - 6), row_labels[r], fill=(0, 0, 0), font=font)
        for c, tile in enumerate(row):
            x = SWEEP_LEFT + SWEEP_PAD + c * (cw + SWEEP_PAD)
            big = np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8))
            canvas.paste(Image.fromarray(big), (x, y))
    return np.asarray(canvas)


def sweep_column_label(num_timesteps, switch_t, timestep_respacing):
    """Give the label of a sweep column: the switch and how many steps each model runs."""
    large, small = stage_timesteps(num_timesteps, switch_t, timestep_respacing or None)
    if not small:
        head = f"S={switch_t} large only"
    elif not large:
        head = f"S={switch_t} small only"
    else:
        head = f"S={switch_t}"
    return f"{head}\nL {len(large)} / s {len(small)} steps"
