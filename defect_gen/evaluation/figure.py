"""
The report picture, drawn with PIL and numpy only: paired deltas with their 95% intervals per class
(each synthetic row against real and against copy-paste), the ratio sweep, per-class IoU bars (mean
± std over seeds) for each row, and strips of generated samples above their nearest training
images.
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
# Synthetic rows (d:NAME, e:NAME, ...) take these in order of appearance.
_PALETTE = [
    (200, 40, 60),
    (40, 150, 80),
    (140, 60, 170),
    (20, 160, 170),
    (190, 110, 150),
    (110, 90, 40),
    (90, 90, 220),
    (220, 90, 20),
]


def colour_of(key, order=()):
    """Give the RGB colour of a row key: fixed for a-d, else by position in `order`."""
    if key in MODE_COLOURS:
        return MODE_COLOURS[key]
    order = [k for k in order if k not in MODE_COLOURS]
    i = order.index(key) if key in order else 0
    return _PALETTE[i % len(_PALETTE)]


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

    order = [k for k, _ in modes]
    x_legend, y_legend = left, 24
    for key, label in modes:
        w = 24 + _text_width(draw, label, font)
        if x_legend + w > width - right and x_legend > left:
            x_legend, y_legend = left, y_legend + 12
        draw.rectangle(
            [x_legend, y_legend, x_legend + 10, y_legend + 10], fill=colour_of(key, order)
        )
        draw.text((x_legend + 14, y_legend - 1), label, fill=_INK, font=font)
        x_legend += w
    top += y_legend - 24
    height = top + plot_h + bottom
    img = img.crop((0, 0, width, height)) if height <= img.height else _grow(img, height)
    draw = ImageDraw.Draw(img)

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
            std = float("nan") if std is None else std
            xb = x0 + b * bar_w
            if mean is None or math.isnan(mean):
                draw.text((xb + 1, y_of(0) - 12), "-", fill=_INK, font=font)
                continue
            mean = min(max(mean, 0.0), 1.0)
            draw.rectangle([xb, y_of(mean), xb + bar_w - 2, y_of(0)], fill=colour_of(key, order))
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


def nearest_strip(examples, num_classes, tile=96, threshold=None, title=""):
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
        title + "generated samples (most copy-like first; red frame = near-copy) and their nearest "
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


def _grow(img, height):
    out = Image.new("RGB", (img.width, height), "white")
    out.paste(img, (0, 0))
    return out


def _finite(v):
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def delta_chart(comparisons, classes):
    """
    Give an RGB PIL image: per class (defect classes and mIoU w/o bg), each synthetic row's paired
    IoU delta against real (a) and copy-paste (c), a dot at the mean and a bar over its 95% t
    interval, around a zero line.

    :param comparisons: {row key: {base: runner.compare(...) dict}} (NaN may be None).
    :param classes: class names, background first.
    """
    series = [(k, b, c) for k, by_base in comparisons.items() for b, c in by_base.items()]
    groups = [(name, k) for k, name in enumerate(classes) if k > 0] + [("mIoU w/o bg", None)]

    def ci_of(comp, k):
        return comp["seeds"] if k is None else comp["per_class_iou"][k]

    ends = [0.05]
    for _, _, comp in series:
        for _, k in groups:
            ci = ci_of(comp, k)
            ends += [abs(v) for v in (ci["lo"], ci["hi"], ci["mean"]) if _finite(v)]
    span = min(1.0, max(ends) * 1.1)
    font = _font()
    slot, gap = 10, 16
    group_w = slot * len(series) + gap
    left, right, plot_h, bottom = 52, 16, 220, 40
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [f"{k} vs {b}" for k, b, _ in series]
    width = max(560, left + right + group_w * len(groups))
    legend_rows, x = 1, left
    for label in labels:
        w = 24 + _text_width(probe, label, font)
        if x + w > width - right and x > left:
            legend_rows, x = legend_rows + 1, left
        x += w
    top = 24 + 12 * legend_rows + 10
    img = Image.new("RGB", (width, top + plot_h + bottom), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (left, 6),
        "paired IoU delta per class vs real (a) / copy-paste (c): mean, 95% t interval over seeds",
        fill=_INK,
        font=font,
    )
    order = list(comparisons)
    x, y = left, 24
    for (key, base, _), label in zip(series, labels):
        w = 24 + _text_width(draw, label, font)
        if x + w > width - right and x > left:
            x, y = left, y + 12
        colour = colour_of(key, order)
        if base == "a":
            draw.ellipse([x, y, x + 9, y + 9], fill=colour)
        else:
            draw.rectangle([x, y, x + 9, y + 9], outline=colour, width=2)
        draw.text((x + 14, y - 1), label, fill=_INK, font=font)
        x += w

    def y_of(v):
        return top + plot_h / 2 - v / span * plot_h / 2

    for tick in np.linspace(-span, span, 5):
        yy = y_of(tick)
        draw.line([left, yy, width - right, yy], fill=_GRID)
        draw.text((4, yy - 6), f"{tick:+.2f}", fill=_INK, font=font)
    draw.line([left, y_of(0), width - right, y_of(0)], fill=_INK)
    for g, (label, k) in enumerate(groups):
        x0 = left + gap // 2 + g * group_w
        for s, (key, base, comp) in enumerate(series):
            ci = ci_of(comp, k)
            xc = x0 + s * slot + slot // 2
            colour = colour_of(key, order)
            if not _finite(ci["mean"]):
                draw.text((xc - 2, y_of(0) - 12), "-", fill=_INK, font=font)
                continue
            if _finite(ci["lo"]) and _finite(ci["hi"]):
                lo = y_of(max(-span, ci["lo"]))
                hi = y_of(min(span, ci["hi"]))
                draw.line([xc, lo, xc, hi], fill=colour, width=2)
            yc = y_of(max(-span, min(span, ci["mean"])))
            if base == "a":
                draw.ellipse([xc - 3, yc - 3, xc + 3, yc + 3], fill=colour)
            else:
                draw.rectangle([xc - 3, yc - 3, xc + 3, yc + 3], outline=colour, width=2)
        text = label if len(label) <= 12 else label[:11] + "."
        tw = _text_width(draw, text, font)
        draw.text((x0 + (group_w - gap - tw) / 2, top + plot_h + 6), text, fill=_INK, font=font)
    return img


def ratio_sweep_chart(rows, comparisons):
    """
    Give an RGB PIL image of mIoU w/o background against the synthetic ratio (mean and 95% t
    interval over seeds) per (regime, set), with real (a) and copy-paste (c) as flat lines; None
    when no set runs more than one ratio.

    :param rows: the report's rows (NaN may be None).
    """
    lines = {}
    for key, m in rows.items():
        if m.get("set") is not None and m.get("ratio") is not None:
            lines.setdefault(f"{m['family']}:{m['set']}", []).append((m["ratio"], key, m))
    lines = {k: sorted(v, key=lambda t: t[0]) for k, v in lines.items() if len(v) > 1}
    if not lines:
        return None
    from .stats import paired_interval

    def point(m):
        values = [r["miou_fg"] for r in m["per_seed"]]
        values = [float("nan") if v is None else v for v in values]
        ci = paired_interval(values)  # mean ± t interval of the score itself
        return ci["mean"], ci["lo"], ci["hi"]

    all_ratios = sorted({r for v in lines.values() for r, _, _ in v})
    values = [p for v in lines.values() for _, _, m in v for p in point(m) if _finite(p)]
    flat = {b: point(rows[b])[0] for b in ("a", "c") if b in rows}
    values += [v for v in flat.values() if _finite(v)]
    lo_v, hi_v = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, (hi_v - lo_v) * 0.1)
    lo_v, hi_v = max(0.0, lo_v - pad), min(1.0, hi_v + pad)
    font = _font()
    left, right, top, plot_w, plot_h = 52, 180, 28, 360, 200
    img = Image.new("RGB", (left + plot_w + right, top + plot_h + 40), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (left, 6), "mIoU w/o bg vs synthetic ratio (mean, 95% t interval)", fill=_INK, font=font
    )
    x_min, x_max = all_ratios[0], all_ratios[-1]

    def x_of(r):
        return left + 10 + (r - x_min) / max(1e-9, x_max - x_min) * (plot_w - 20)

    def y_of(v):
        return top + plot_h - (v - lo_v) / max(1e-9, hi_v - lo_v) * plot_h

    for tick in np.linspace(lo_v, hi_v, 5):
        draw.line([left, y_of(tick), left + plot_w, y_of(tick)], fill=_GRID)
        draw.text((4, y_of(tick) - 6), f"{tick:.3f}", fill=_INK, font=font)
    for r in all_ratios:
        draw.text((x_of(r) - 6, top + plot_h + 6), f"{r:g}", fill=_INK, font=font)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=_INK)
    y_legend = top
    for b, v in flat.items():
        if _finite(v):
            colour = colour_of(b)
            for xx in range(left, left + plot_w, 8):
                draw.line([xx, y_of(v), xx + 4, y_of(v)], fill=colour)
            draw.text((left + plot_w + 8, y_legend), f"{b} (flat)", fill=colour, font=font)
            y_legend += 14
    order = list(rows)
    for name, pts in lines.items():
        colour = colour_of(pts[0][1], order)
        prev = None
        for r, _, m in pts:
            mean, lo, hi = point(m)
            if not _finite(mean):
                continue
            xc, yc = x_of(r), y_of(mean)
            if _finite(lo) and _finite(hi):
                draw.line([xc, y_of(max(lo_v, lo)), xc, y_of(min(hi_v, hi))], fill=colour)
            draw.ellipse([xc - 3, yc - 3, xc + 3, yc + 3], fill=colour)
            if prev:
                draw.line([prev, (xc, yc)], fill=colour, width=2)
            prev = (xc, yc)
        draw.text((left + plot_w + 8, y_legend), name, fill=colour, font=font)
        y_legend += 14
    return img
