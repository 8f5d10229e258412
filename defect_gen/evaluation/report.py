"""Write an evaluation's report.json, report.md and report.png into one folder."""

import json
import math
import os

import numpy as np

from ..fileio import atomic_write_text, write_png
from . import figure


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


def _interval(ci, digits=3):
    if not ci or ci.get("lo") is None or ci.get("hi") is None:
        return "n/a"
    if any(isinstance(v, float) and math.isnan(v) for v in (ci["lo"], ci["hi"])):
        return "n/a"
    return f"[{_signed(ci['lo'], digits)}, {_signed(ci['hi'], digits)}]"


def _signed(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = _fmt(value, digits)
    return text if text.startswith("-") else "+" + text


BASE_NAMES = {"a": "real (a)", "c": "copy-paste (c)"}


def verdict_sentence(row_key, base, comparison):
    """
    Give one sentence "<row> against <base>: helps / no measurable effect / hurts, by X [lo, hi]"
    whose words follow the per-seed t interval (and mention the bootstrap interval).
    """
    ci, boot = comparison["seeds"], comparison.get("bootstrap")
    words = comparison.get("verdict")
    base_row = comparison.get("base_row")
    if base_row and base_row != base:
        base = f"{base} = row {base_row}"
    by = f"by {_signed(ci['mean'])} {_interval(ci)} mIoU w/o background"
    if words is None:
        text = f"{row_key} against {BASE_NAMES.get(base, base)}: cannot be judged (one seed), {by}"
    else:
        text = f"{row_key} against {BASE_NAMES.get(base, base)}: {words}, {by}"
    if boot:
        text += f" (bootstrap over validation images {_interval(boot)}"
        bv = comparison.get("bootstrap_verdict")
        if words in ("helps", "hurts") and bv != words:
            text += ": other validation images could change this"
        text += ")"
    return text + "."


def verdict_paragraphs(report):
    """Give one Markdown paragraph per synthetic set: its rows' verdicts against (a) and (c)."""
    seg = report["segmentation"]
    n = len(report["config"]["seed_list"])
    out = []
    for name in report["synthetic"]:
        sentences = []
        for key, entry in seg["rows"].items():
            if entry["set"] != name:
                continue
            for base, comparison in seg["comparisons"].get(key, {}).items():
                sentences.append(verdict_sentence(key, base, comparison))
        if not sentences:
            sentences = ["no row compares it with real (a) or copy-paste (c)."]
        best = seg.get("best_baseline_a")
        if best:
            sentences.append(f"Baseline (a) is row {best}, the better of the (a) rows.")
        out.append(
            f"**{name}**: " + " ".join(sentences) + f" Intervals: 95%, paired over {n} seeds (t)."
        )
    return out


def render_markdown(report):
    """Give the Markdown text of a report dict."""
    classes = report["data"]["classes"]
    out = ["# Defect-Gen downstream evaluation", ""]
    out += _intro_lines(report)
    out += _rows_lines(report)
    out += _delta_lines(report)
    out += _used_lines(report)
    out += _per_class_lines(report)
    for name, entry in report["synthetic"].items():
        out += _set_sections(name, entry, classes, report["mask_stats"]["train"])
    out += [
        "",
        "## Timings (seconds)",
        "",
        _table(list(report["timings"]), [[f"{v:.1f}" for v in report["timings"].values()]]),
        "",
    ]
    return "\n".join(out)


def _intro_lines(report):
    """The verdict, overlap warnings, and what was compared with which settings."""
    cfg, data, seg = report["config"], report["data"], report["segmentation"]
    out = []
    if report["synthetic"]:
        out += ["## Verdict", ""]
        for paragraph in verdict_paragraphs(report):
            out += [paragraph, ""]
    for name, entry in report["synthetic"].items():
        for problem in entry["guard"]["problems"]:
            out += [f"**Warning (--allow_overlap)**, set {name}: {problem}", ""]
    out.append(
        f"Data `{cfg['data_dir']}` ({data['layout']} layout): {data['num_defect']} defect classes, "
        f"{data['num_train']} training pairs (first {cfg['num_train_per_type']} per type), "
        f"{data['num_val']} validation pairs, at {cfg['resolution']} px."
    )
    for name, entry in report["synthetic"].items():
        out.append(
            f"Synthetic set **{name}** `{entry['folder']}`: {entry['num_pairs']} pairs, selection "
            f"`{cfg['synthetic_select']}`."
        )
    train = cfg["train"]
    out += [
        "",
        f"Segmentation net: SegNet, {seg['model']['parameters'] / 1e6:.2f} M parameters; "
        f"{train['iterations']} iterations, batch {train['batch_size']} real pairs, AdamW lr "
        f"{train['lr']:g}, {'class-balanced ' if train['class_balance'] else ''}cross-entropy + "
        f"{train['dice_weight']:g} x Dice; seeds {cfg['seed_list']}, the same initial weights "
        f"and real batches in every row. Exposure: {seg['exposure']}. "
        f"IoU: {seg['iou_definition']}.",
        "",
        "## Rows (mean ± std over seeds)",
        "",
    ]
    out[-2:-2] = _good_lines(report)
    return out


def _rows_lines(report):
    """The table of rows: mean ± std over seeds."""
    rows = report["segmentation"]["rows"]
    out = []
    table = []
    for key, m in rows.items():
        s = m["summary"]
        table.append(
            [
                f"{key}: {m['name']}",
                m["real_pool_size"],
                m["synthetic_pool_size"],
                _pm(s["miou"]["mean"], s["miou"]["std"]),
                _pm(s["miou_fg"]["mean"], s["miou_fg"]["std"]),
                _pm(s["mdice_fg"]["mean"], s["mdice_fg"]["std"]),
            ]
        )
    header = ["row", "real pairs", "synthetic pairs", "mIoU", "mIoU w/o background"]
    out.append(_table(header + ["Dice w/o background"], table))
    return out


def _delta_lines(report):
    """The paired deltas against the baselines, with their intervals."""
    cfg, seg = report["config"], report["segmentation"]
    out = []
    comps = seg["comparisons"]
    if comps:
        out += [
            "",
            "## Paired deltas of mIoU w/o background (95% intervals)",
            "",
            "Per seed: row minus baseline with the same seed; t interval over seeds. Bootstrap: "
            "the validation images resampled with replacement "
            f"({cfg['bootstrap_resamples']} resamples, the same for both rows and every seed), "
            "2.5 / 97.5 percentiles of the seed-mean delta.",
            "",
        ]
        table = [
            [
                key,
                BASE_NAMES.get(base, base)
                + (f" = row {c['base_row']}" if c.get("base_row", base) != base else ""),
                _signed(c["seeds"]["mean"]),
                _interval(c["seeds"]),
                _interval(c["bootstrap"]) if c["bootstrap"] else "-",
                c["verdict"] or "n/a",
            ]
            for key, by_base in comps.items()
            for base, c in by_base.items()
        ]
        out.append(
            _table(["row", "against", "Δ", "t interval", "bootstrap interval", "verdict"], table)
        )
    return out


def _used_lines(report):
    """How many synthetic pairs each set gave, per class."""
    classes = report["data"]["classes"]
    out = []
    if report["synthetic"]:
        out += ["", "## Synthetic pairs used (per class: used / available, quota)", ""]
        for name, entry in report["synthetic"].items():
            for ratio, sel in entry["selection"].items():
                label = ratio if "=" in ratio else f"ratio {ratio}"  # n=COUNT,share=S keys as is
                head = (
                    f"Set {name}, {label}: {sel['used']} of {sel['available']} pairs used "
                    f"(asked {sel['want']}); defect-free pairs available "
                    f"{sel['defect_free_available']}, used {sel['defect_free_used']}."
                )
                out += [head, ""]
                table = [
                    [
                        classes[c["class"]],
                        c["used"],
                        c["available"],
                        "-" if c["quota"] is None else c["quota"],
                    ]
                    for c in sel["per_class"]
                ]
                out += [_table(["class", "used", "available", "quota"], table), ""]
                for sentence in sel["statements"]:
                    out += [f"- {sentence[0].upper()}{sentence[1:]}."]
                if sel["statements"]:
                    out.append("")
    return out


def _per_class_lines(report):
    """Per-class IoU and Dice of every row, then every row's per-seed scores."""
    classes, rows = report["data"]["classes"], report["segmentation"]["rows"]
    out = []
    for metric, title in (("iou", "Per-class IoU"), ("dice", "Per-class Dice")):
        out += ["", f"## {title} (mean ± std over seeds)", ""]
        table = [
            [f"{k}: {m['name']}"]
            + [
                _pm(mu, sd)
                for mu, sd in zip(m["summary"][f"{metric}_mean"], m["summary"][f"{metric}_std"])
            ]
            for k, m in rows.items()
        ]
        out.append(_table(["row"] + classes, table))
    out += ["", "## Per seed", ""]
    table = [
        [
            f"{k}: {m['name']}",
            r["seed"],
            _fmt(r["miou"]),
            _fmt(r["miou_fg"]),
            _fmt(r["mdice_fg"]),
            f"{r['seconds']:.1f}",
        ]
        for k, m in rows.items()
        for r in m["per_seed"]
    ]
    out.append(_table(["row", "seed", "mIoU", "mIoU w/o bg", "Dice w/o bg", "seconds"], table))
    return out


def _set_sections(name, entry, classes, train_stats):
    """The sections of one synthetic set: guard, memorisation, diversity, masks, FID / KID."""
    out = ["", f"## Synthetic set {name}", "", "### Guard", ""]
    out += _guard_lines(entry)
    out += _memorisation_lines(entry)
    out += _diversity_lines(entry)
    out += _mask_lines(entry, classes, train_stats)
    out += _fid_lines(entry)
    return out


def _guard_lines(entry):
    """The guard section: the generators' checkpoints and what they saw."""
    out = []
    gens = entry["guard"]["generators"]
    if gens:
        for g in gens:
            out.append(
                f"- {g['role']} `{g['checkpoint']}`: data `{g['data_dir']}`, num_image_train "
                f"{g['num_image_train']}, checked by {g.get('checked_by', 'n/a')}: "
                f"{g.get('reported_images_seen', 'n/a')} reported image(s) seen."
            )
    else:
        out.append("- No generator checkpoint could be checked.")
    return out


def _memorisation_lines(entry):
    """The memorisation section: near-copies of training images."""
    mem = entry.get("memorisation")
    out = ["", "### Memorisation", ""]
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
        out.append("Not computed (fewer than 2 training images).")
    return out


def _diversity_lines(entry):
    """The diversity section: mean pairwise distances."""
    div = entry.get("diversity")
    out = ["", "### Diversity", ""]
    if div:
        out += [
            "Mean pairwise distance (same features as memorisation).",
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
    return out


def _mask_lines(entry, classes, train_stats):
    """The masks section: class frequencies and areas, training vs synthetic."""
    ms = entry["mask_stats"]
    out = [
        "",
        "### Masks",
        "",
        "Frequency = share of images containing the class; mean area = mean fraction of the "
        "image the class covers, over images containing it.",
        "",
    ]
    header = ["class", "train frequency", "train mean area", "synthetic frequency"]
    table = [
        [
            cname,
            _fmt(train_stats["share_with_class"][k]),
            _fmt(train_stats["mean_area_present"][k], 4),
            _fmt(ms["share_with_class"][k]),
            _fmt(ms["mean_area_present"][k], 4),
        ]
        for k, cname in enumerate(classes[1:], 1)
    ]
    out.append(_table(header + ["synthetic mean area"], table))
    return out


def _fid_lines(entry):
    """The FID / KID section."""
    fid = entry.get("fid") or {}
    out = ["", "### FID / KID", ""]
    if fid.get("computed"):
        out.append(f"Feature extractor `{fid['weights']}` ({fid['feature_dim']} features).")
        table = [
            [
                ref,
                fid[ref]["num_reference"],
                _fmt(fid[ref]["fid"], 2),
                _pm(fid[ref]["kid"], fid[ref]["kid_std"], 4),
            ]
            for ref in ("real_train", "real_val")
            if ref in fid
        ]
        floor = fid.get("reference_floor")
        if floor:
            table.append(
                [
                    " vs ".join(floor["between"]) + " (real vs real)",
                    "-",
                    _fmt(floor["fid"], 2),
                    _pm(floor["kid"], floor["kid_std"], 4),
                ]
            )
        out += ["", _table(["generated vs", "reference images", "FID", "KID"], table)]
    else:
        out.append(f"Not computed: {fid.get('reason', 'no feature extractor')}.")
    return out


def render_figure(result):
    """Give the report picture (PIL image) of an EvaluationResult."""
    report = to_jsonable(result.report)
    seg = report["segmentation"]
    rows = seg["rows"]
    classes = result.classes
    parts = []
    if seg["comparisons"]:
        parts.append(figure.delta_chart(seg["comparisons"], classes))
    sweep = figure.ratio_sweep_chart(rows, seg["comparisons"])
    if sweep is not None:
        parts.append(sweep)
    keys = [(k, f"{k}: {m['name']}") for k, m in rows.items()]
    groups = []
    for c, name in enumerate(classes):
        groups.append(
            (
                name,
                {
                    k: (m["summary"]["iou_mean"][c], m["summary"]["iou_std"][c])
                    for k, m in rows.items()
                },
            )
        )
    for key, label in (("miou", "mIoU"), ("miou_fg", "mIoU w/o bg")):
        groups.append(
            (
                label,
                {k: (m["summary"][key]["mean"], m["summary"][key]["std"]) for k, m in rows.items()},
            )
        )
    parts.append(figure.iou_bar_chart(keys, groups))
    for name, examples in result.examples.items():
        if examples:
            mem = report["synthetic"][name].get("memorisation") or {}
            parts.append(
                figure.nearest_strip(
                    examples,
                    num_classes=len(classes),
                    threshold=mem.get("threshold"),
                    title=f"set {name}: ",
                )
            )
    return figure.stack_vertically(parts)


def write_report(result, out_dir):
    """Write report.json, report.md and report.png of an EvaluationResult; give their paths."""
    os.makedirs(out_dir, exist_ok=True)
    report = to_jsonable(result.report)
    paths = {name: os.path.join(out_dir, f"report.{name}") for name in ("json", "md", "png")}
    atomic_write_text(paths["json"], json.dumps(report, indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths["md"], render_markdown(report))
    write_png(paths["png"], render_figure(result))
    return paths


def _good_lines(report):
    """Give the Markdown lines on the good images and the chosen baseline (a) (issue 20)."""
    seg, good = report["segmentation"], report.get("good_images")
    lines = []
    if good is not None:
        lines.append(
            f"Good images: {good['count']} ({good['source']}); copy-paste target "
            f"`{good['copy_paste_target']}`."
        )
    best = seg.get("best_baseline_a")
    if best:
        means = ", ".join(
            f"{k} {_fmt(v)}" for k, v in (seg.get("best_baseline_a_means") or {}).items()
        )
        lines.append(
            f"Baseline (a) = row **{best}**, the best (a) row by mean mIoU w/o background "
            f"({means}); every synthetic row is compared with it."
        )
    return lines + [""] if lines else []
