"""
The report picture, drawn with PIL and numpy only: per-class IoU bars (mean ± std over seeds) for
each mode, and a strip of generated samples above their nearest training images.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from defect_gen import masks as mask_lib

MODE_COLOURS = {
    "a": (120, 120, 120),
    "b": (70, 130, 200),
    "c": (230, 150, 40),
    "d": (200, 40, 60),
}
_INK = (20, 20, 20)
_GRID = (225, 225, 225)


def _font():
    return ImageFont.load_default()


def _text_width(draw, text, font):
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def iou_bar_chart(
    modes, groups, title="per-class IoU on held-out real pairs (mean ± std over seeds)"
):
    """
    Give an RGB PIL image of grouped bars with error bars.

    :param modes: list of (key, label) in drawing order; key picks the colour.
    :param groups: list of (group label, {mode key: (mean, std)}); NaN means are drawn as "n/a".
    """
    font = _font()
    bar_w, gap = 12, 18
    group_w = bar_w * len(modes) + gap
    left, right, top, bottom, plot_h = 44, 16, 46, 40, 220
    width = max(520, left + right + group_w * len(groups))
    height = top + plot_h + bottom
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 6), title, fill=_INK, font=font)

    x_legend = left
    for key, label in modes:
        draw.rectangle([x_legend, 24, x_legend + 10, 34], fill=MODE_COLOURS.get(key, (0, 0, 0)))
        draw.text((x_legend + 14, 23), label, fill=_INK, font=font)
        x_legend += 24 + _text_width(draw, label, font)

    def y_of(v):
        return top + plot_h - v * plot_h

    for tick in np.linspace(0, 1, 6):
        y = y_of(tick)
        draw.line([left, y, width - right, y], fill=_GRID)
        draw.text((6, y - 6), f"{tick:.1f}", fill=_INK, font=font)
    draw.line([left, top, left, top + plot_h], fill=_INK)
    draw.line([left, top + plot_h, width - right, top + plot_h], fill=_INK)

    for g, (label, values) in enumerate(groups):
        x0 = left + gap // 2 + g * group_w
        for b, (key, _) in enumerate(modes):
            mean, std = values.get(key, (float("nan"), float("nan")))
            xb = x0 + b * bar_w
            if mean is None or math.isnan(mean):
                draw.text((xb + 1, y_of(0) - 12), "-", fill=_INK, font=font)
                continue
            mean = min(max(mean, 0.0), 1.0)
            draw.rectangle([xb, y_of(mean), xb + bar_w - 2, y_of(0)], fill=MODE_COLOURS.get(key))
            if std is not None and not math.isnan(std) and std > 0:
                xc = xb + (bar_w - 2) / 2
                lo, hi = y_of(max(mean - std, 0.0)), y_of(min(mean + std, 1.0))
                draw.line([xc, lo, xc, hi], fill=_INK)
                draw.line([xc - 3, lo, xc + 3, lo], fill=_INK)
                draw.line([xc - 3, hi, xc + 3, hi], fill=_INK)
        text = label if len(label) <= 12 else label[:11] + "."
        tw = _text_width(draw, text, font)
        ty = top + plot_h + 6 + (12 if (g % 2 and group_w < tw + 4) else 0)
        draw.text((x0 + (group_w - gap - tw) / 2, ty), text, fill=_INK, font=font)
    return img


def nearest_strip(examples, num_classes, tile=96, threshold=None):
    """
    Give an RGB PIL image: generated samples (top row) above their nearest training images.

    Near-copies (ratio < `threshold`) get a red frame.

    :param examples: list of (gen image, gen mask, train image, train mask, ratio, gen index, train
        index); images uint8 [H x W x 3], masks [H x W]. Masks are overlaid in palette colours.
    """
    font = _font()
    label_w, pad, text_h = 90, 6, 14
    width = max(560, label_w + len(examples) * (tile + pad) + pad)
    height = 22 + 2 * (tile + text_h + pad) + pad
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (pad, 4),
        "generated samples (most copy-like first; red frame = near-copy) and their nearest "
        "training images (r = distance / median train-NN distance)",
        fill=_INK,
        font=font,
    )

    def tile_of(image, mask):
        over = mask_lib.overlay(image, mask, alpha=0.45, num_classes=num_classes)
        return Image.fromarray(over).resize((tile, tile), Image.NEAREST)

    y_gen, y_train = 22, 22 + tile + text_h + pad
    draw.text((pad, y_gen + tile // 2), "generated", fill=_INK, font=font)
    draw.text((pad, y_train + tile // 2), "nearest train", fill=_INK, font=font)
    for i, (gimg, gmask, timg, tmask, ratio, gi, ti) in enumerate(examples):
        x = label_w + pad + i * (tile + pad)
        img.paste(tile_of(gimg, gmask), (x, y_gen))
        if threshold is not None and ratio < threshold:
            draw.rectangle(
                [x - 2, y_gen - 2, x + tile + 1, y_gen + tile + 1], outline=(220, 0, 0), width=2
            )
        draw.text((x, y_gen + tile + 1), f"#{gi} r={ratio:.2f}", fill=_INK, font=font)
        img.paste(tile_of(timg, tmask), (x, y_train))
        draw.text((x, y_train + tile + 1), f"train #{ti}", fill=_INK, font=font)
    return img


def stack_vertically(images, pad=8):
    """Give one white RGB PIL image with the given images one under the other, left-aligned."""
    width = max(im.width for im in images) + 2 * pad
    height = sum(im.height for im in images) + pad * (len(images) + 1)
    out = Image.new("RGB", (width, height), "white")
    y = pad
    for im in images:
        out.paste(im, (pad, y))
        y += im.height + pad
    return out
