"""Write an evaluation's report.json, report.md and report.png into one folder."""

import json
import math
import os

import numpy as np

from defect_gen.evaluation import figure


def to_jsonable(obj):
    """Give obj with NaN / inf floats as None and numpy scalars / arrays as Python values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def _pm(mean, std, digits=3):
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report):
    """Give the Markdown text of a report dict."""
    cfg, data, seg = report["config"], report["data"], report["segmentation"]
    classes, modes = data["classes"], seg["modes"]
    out = ["# Defect-Gen downstream evaluation", ""]
    out.append(
        f"Data `{cfg['data_dir']}` ({data['layout']} layout): {data['num_defect']} defect classes, "
        f"{data['num_train']} training pairs (first {cfg['num_train_per_type']} per type), "
        f"{data['num_val']} validation pairs, at {cfg['resolution']} px."
    )
    if cfg.get("synthetic"):
        out.append(
            f"Synthetic `{cfg['synthetic']}`: {data['num_synthetic']} pairs, "
            f"{data['num_synthetic_used']} used in mode d (ratio {cfg['synthetic_ratio']:g})."
        )
    train = cfg["train"]
    out += [
        "",
        f"Segmentation net: SegNet, {seg['model']['parameters'] / 1e6:.2f} M parameters; "
        f"{train['iterations']} iterations, batch {train['batch_size']}, AdamW lr {train['lr']:g}, "
        f"{'class-balanced ' if train['class_balance'] else ''}cross-entropy + "
        f"{train['dice_weight']:g} x Dice; seeds {cfg['seed_list']}. "
        f"IoU: {seg['iou_definition']}.",
        "",
        "## Summary (mean ± std over seeds)",
        "",
    ]
    rows = []
    for key, m in modes.items():
        s = m["summary"]
        delta = seg["delta_vs_a"].get(key, {}).get("miou_fg")
        rows.append(
            [
                f"{key}: {m['name']}",
                _pm(s["miou"]["mean"], s["miou"]["std"]),
                _pm(s["miou_fg"]["mean"], s["miou_fg"]["std"]),
                _pm(s["mdice_fg"]["mean"], s["mdice_fg"]["std"]),
                _pm(delta["mean"], delta["std"]) if delta else "-",
            ]
        )
    out.append(
        _table(
            ["mode", "mIoU", "mIoU w/o background", "Dice w/o background", "Δ mIoU w/o bg vs a"],
            rows,
        )
    )
    for metric, title in (("iou", "Per-class IoU"), ("dice", "Per-class Dice")):
        out += ["", f"## {title} (mean ± std over seeds)", ""]
        rows = [
            [f"{k}: {m['name']}"]
            + [
                _pm(mu, sd)
                for mu, sd in zip(m["summary"][f"{metric}_mean"], m["summary"][f"{metric}_std"])
            ]
            for k, m in modes.items()
        ]
        out.append(_table(["mode"] + classes, rows))
    out += ["", "## Per seed", ""]
    rows = [
        [
            f"{k}: {m['name']}",
            r["seed"],
            _fmt(r["miou"]),
            _fmt(r["miou_fg"]),
            _fmt(r["mdice_fg"]),
            f"{r['seconds']:.1f}",
        ]
        for k, m in modes.items()
        for r in m["per_seed"]
    ]
    out.append(_table(["mode", "seed", "mIoU", "mIoU w/o bg", "Dice w/o bg", "seconds"], rows))

    mem = report.get("memorisation")
    out += ["", "## Memorisation", ""]
    if mem:
        out.append(
            f"Feature: {mem['feature']}. Scale m = median distance of a training image to its "
            f"nearest other training image = {_fmt(mem['train_nn_median'], 4)}. A generated image "
            f"is a near-copy when (distance to its nearest training image) / m < "
            f"{mem['threshold']:.3g}"
            + (
                " (training images' mirror images count as training images)."
                if mem["mirror"]
                else "."
            )
        )
        out += [
            "",
            _table(
                ["generated", "near-copies", "share", "min ratio", "median ratio"],
                [
                    [
                        len(mem["ratio"]),
                        len(mem["near_copies"]),
                        _fmt(mem["near_copy_share"]),
                        _fmt(mem["ratio_min"]),
                        _fmt(mem["ratio_median"]),
                    ]
                ],
            ),
        ]
        if mem["near_copies"]:
            shown = mem["near_copies"][:50]
            out += [
                "",
                "Near-copies (generated index → nearest training index, ratio; m = mirrored): "
                + ", ".join(
                    f"{g}→{mem['nn_index'][g]}{'m' if mem['nn_mirrored'][g] else ''} "
                    f"({_fmt(mem['ratio'][g], 2)})"
                    for g in shown
                )
                + (" …" if len(mem["near_copies"]) > len(shown) else ""),
            ]
    else:
        out.append("Not computed (no --synthetic folder, or fewer than 2 training images).")

    div = report.get("diversity")
    out += ["", "## Diversity", ""]
    if div:
        out.append("Mean pairwise distance (same features as memorisation).")
        out += [
            "",
            _table(
                ["generated", "training", "gap (gen - train)", "ratio"],
                [
                    [
                        _fmt(div["generated"], 4),
                        _fmt(div["train"], 4),
                        _fmt(div["gap"], 4),
                        _fmt(div["ratio"]),
                    ]
                ],
            ),
        ]
    else:
        out.append("Not computed (no --synthetic folder).")

    ms = report["mask_stats"]
    out += [
        "",
        "## Masks",
        "",
        "Frequency = share of images containing the class; mean area = mean fraction of the "
        "image the class covers, over images containing it.",
        "",
    ]
    header = ["class", "train frequency", "train mean area"]
    if "synthetic" in ms:
        header += ["synthetic frequency", "synthetic mean area"]
    rows = []
    for k, name in enumerate(classes[1:]):
        row = [name, _fmt(ms["train"]["frequency"][k]), _fmt(ms["train"]["mean_area"][k], 4)]
        if "synthetic" in ms:
            row += [_fmt(ms["synthetic"]["frequency"][k]), _fmt(ms["synthetic"]["mean_area"][k], 4)]
        rows.append(row)
    out.append(_table(header, rows))

    fid = report.get("fid") or {}
    out += ["", "## FID / KID", ""]
    if fid.get("computed"):
        out.append(f"Feature extractor `{fid['weights']}` ({fid['feature_dim']} features).")
        rows = [
            [
                name,
                fid[name]["num_reference"],
                _fmt(fid[name]["fid"], 2),
                _pm(fid[name]["kid"], fid[name]["kid_std"], 4),
            ]
            for name in ("real_train", "real_val")
            if name in fid
        ]
        floor = fid.get("reference_floor")
        if floor:
            rows.append(
                [
                    " vs ".join(floor["between"]) + " (real vs real)",
                    "-",
                    _fmt(floor["fid"], 2),
                    _pm(floor["kid"], floor["kid_std"], 4),
                ]
            )
        out += ["", _table(["generated vs", "reference images", "FID", "KID"], rows)]
    else:
        out.append(f"Not computed: {fid.get('reason', 'no feature extractor')}.")

    out += [
        "",
        "## Timings (seconds)",
        "",
        _table(list(report["timings"]), [[f"{v:.1f}" for v in report["timings"].values()]]),
        "",
    ]
    return "\n".join(out)


def render_figure(result):
    """Give the report picture (PIL image) of an EvaluationResult."""
    seg = result.report["segmentation"]["modes"]
    classes = result.classes
    modes = [(k, f"{k}: {m['name']}") for k, m in seg.items()]
    groups = []
    for c, name in enumerate(classes):
        groups.append(
            (
                name,
                {
                    k: (m["summary"]["iou_mean"][c], m["summary"]["iou_std"][c])
                    for k, m in seg.items()
                },
            )
        )
    for key, label in (("miou", "mIoU"), ("miou_fg", "mIoU w/o bg")):
        groups.append(
            (
                label,
                {k: (m["summary"][key]["mean"], m["summary"][key]["std"]) for k, m in seg.items()},
            )
        )
    parts = [figure.iou_bar_chart(modes, groups)]
    if result.examples:
        mem = result.report.get("memorisation") or {}
        parts.append(
            figure.nearest_strip(
                result.examples, num_classes=len(classes), threshold=mem.get("threshold")
            )
        )
    return figure.stack_vertically(parts)


def write_report(result, out_dir):
    """Write report.json, report.md and report.png of an EvaluationResult; give their paths."""
    os.makedirs(out_dir, exist_ok=True)
    report = to_jsonable(result.report)
    paths = {name: os.path.join(out_dir, f"report.{name}") for name in ("json", "md", "png")}
    _atomic_write_text(paths["json"], json.dumps(report, indent=1, allow_nan=False) + "\n")
    _atomic_write_text(paths["md"], render_markdown(report))
    tmp = paths["png"] + ".tmp.png"
    render_figure(result).save(tmp)
    os.replace(tmp, paths["png"])
    return paths


def _atomic_write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
