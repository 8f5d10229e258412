"""Tests of the fair benchmark: guard, selection, equal exposure, intervals, verdicts, tuning."""

import json
import logging
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import load_script, run_command
from PIL import Image
from test_evaluation import (
    TINY,
    TINY_TUNE,
    synthetic_pairs,
    write_generator,
    write_official_dataset,
    write_synthetic,
)

from defect_gen.evaluation import stats
from defect_gen.evaluation.augment import CopyPaste
from defect_gen.evaluation.data import load_real_split
from defect_gen.evaluation.plan import EvalConfig
from defect_gen.evaluation.report import verdict_sentence
from defect_gen.evaluation.runner import compare, run_evaluation
from defect_gen.evaluation.segtrain import TrainSettings, synthetic_draws, train_segmenter
from defect_gen.evaluation.selection import largest_remainder, select_synthetic
from defect_gen.evaluation.tune import fold_of

pytestmark = pytest.mark.usefixtures("one_thread")


def _run_script(tmp_path, capsys, data, synth_dirs, extra=()):
    args = ["--data_dir", str(data), "--num_train_per_type", "2", "--out", str(tmp_path / "out")]
    for d in synth_dirs:
        args += ["--synthetic", str(d)]
    args += TINY + ["--regimes", "d", "--baselines", "real", "--bootstrap", "50"] + list(extra)
    code = run_command(load_script("evaluate").main, args)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------------------------------------
# Guard


@pytest.mark.parametrize("where", ["same folder", "copied folder", "unreadable folder"])
def test_guard_refuses_a_generator_that_saw_a_validation_image(tmp_path, capsys, caplog, where):
    data = write_official_dataset(tmp_path / "data")  # 4 per type; first 2 train, 2 validate
    gen_data = data
    if where == "copied folder":
        gen_data = tmp_path / "elsewhere"
        shutil.copytree(data, gen_data)
    elif where == "unreadable folder":
        gen_data = tmp_path / "gone"  # trained on a machine whose folder is not here
    synth = write_synthetic(
        tmp_path / "synth",
        synthetic_pairs(4),
        generation=write_generator(tmp_path / "gen", gen_data, 3),  # 3 > 2: saw file 002
    )
    code, errors = _run_script(tmp_path, capsys, data, [synth])
    assert code == 2 and len(errors) == 1
    assert str(tmp_path / "gen" / "large_recep.pt") in errors[0]
    assert "002.png" in errors[0] and errors[0].endswith(
        "pass --allow_overlap to evaluate it anyway"
    )
    assert not (tmp_path / "out" / "report.json").exists()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="defect_gen.evaluation"):
        code, errors = _run_script(tmp_path, capsys, data, [synth], ["--allow_overlap"])
    assert code == 0 and not errors
    warnings = [r.getMessage() for r in caplog.records if "002.png" in r.getMessage()]
    assert warnings and all(w.startswith("synthetic set synth: ") for w in warnings)
    allowed = "; the set is evaluated anyway because --allow_overlap was given"
    assert all(w.endswith(allowed) and "pass --allow_overlap" not in w for w in warnings)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**Warning (--allow_overlap)**, set synth:" in md and "002.png" in md
    assert allowed in md and "pass --allow_overlap" not in md
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    seen = [g["reported_images_seen"] for g in report["synthetic"]["synth"]["guard"]["generators"]]
    assert seen == [2, 2]  # 002.png of each type


def test_guard_accepts_a_generator_of_the_training_side_only(tmp_path, capsys):
    data = write_official_dataset(tmp_path / "data")
    gen = write_generator(tmp_path / "gen", data, 2)
    synth = write_synthetic(tmp_path / "synth", synthetic_pairs(4), generation=gen)
    code, errors = _run_script(tmp_path, capsys, data, [synth])
    assert code == 0 and not errors


@pytest.mark.parametrize("problem", ["manifest classes", "checkpoint classes", "num_defect"])
def test_guard_refuses_a_generator_whose_classes_differ(tmp_path, capsys, problem):
    data = write_official_dataset(tmp_path / "data")
    right = ("class_1", "class_2")
    gen_classes = ("class_1", "crack") if problem == "checkpoint classes" else right
    if problem == "num_defect":
        gen_classes = ("class_1", "class_2", "class_3")
    # The manifest repeats the checkpoint's classes, except in the first case.
    manifest_classes = ("dent", "scratch") if problem == "manifest classes" else right
    synth = write_synthetic(
        tmp_path / "synth",
        synthetic_pairs(4),
        generation=write_generator(tmp_path / "gen", data, 2, classes=gen_classes),
        classes=manifest_classes,
    )
    code, errors = _run_script(tmp_path, capsys, data, [synth])
    assert code == 2 and len(errors) == 1
    named = synth / "manifest.json" if problem != "checkpoint classes" else tmp_path / "gen"
    assert str(named) in errors[0] and "differ" in errors[0]


def test_guard_refuses_a_manifest_without_generator_and_a_validation_mask_source(tmp_path, capsys):
    data = write_official_dataset(tmp_path / "data")
    bare = write_synthetic(tmp_path / "bare", synthetic_pairs(3))
    code, errors = _run_script(tmp_path, capsys, data, [bare])
    assert code == 2 and str(bare / "manifest.json") in errors[0] and "checkpoint" in errors[0]
    # A mask-conditioned set whose per-sample record names a validation mask.
    gen = write_generator(tmp_path / "gen", data, 2)
    synth = write_synthetic(tmp_path / "synth", synthetic_pairs(3), generation=gen)
    manifest = json.loads((synth / "manifest.json").read_text())
    val_mask = data / "converted_ground_truth" / "scratch" / "003.png"
    manifest["samples"] = [{"mask": {"path": str(val_mask), "flip": False}}]
    (synth / "manifest.json").write_text(json.dumps(manifest))
    code, errors = _run_script(tmp_path, capsys, data, [synth])
    assert code == 2 and str(val_mask) in errors[0] and "samples[0].mask.path" in errors[0]


# ------------------------------------------------------------------------------------------------
# Selection


def _mask(class_id, pixels=4, size=8):
    m = np.zeros((size, size), np.uint8)
    m.flat[:pixels] = class_id
    return m


def test_balanced_selection_fills_hand_computed_quotas():
    # Real training: 3 pairs of class 1, 1 of class 2, 0 of class 3 -> shares 3/4, 1/4, 0.
    real = np.stack([_mask(1), _mask(1), _mask(1), _mask(2)])
    # Synthetic in file order: empty, 2, 1, 1, 3, 2, 1, 1, 1, 2 (one mask holds 1 and more 2).
    syn = [_mask(0), _mask(2), _mask(1), _mask(1), _mask(3), _mask(2), _mask(1), _mask(1)]
    mixed = _mask(1, pixels=2)
    mixed[4, :5] = 2  # dominant class 2
    syn += [_mask(1), mixed]
    # want 6: quotas 4.5 -> 4 (+1 by largest remainder... tie 0.5 vs 0.5 goes to class 1) and 1.5.
    assert largest_remainder(6, [3, 1, 0]) == [5, 1, 0]
    assert largest_remainder(7, [1, 1, 1]) == [3, 2, 2]
    indices, record = select_synthetic(np.stack(syn), real, num_defect=3, want=6, how="balanced")
    assert indices == [1, 2, 3, 6, 7, 8]  # five of class 1, the first class-2 pair
    assert [c["quota"] for c in record["per_class"]] == [5, 1, 0]
    assert [c["used"] for c in record["per_class"]] == [5, 1, 0]
    assert [c["available"] for c in record["per_class"]] == [5, 3, 1]
    assert record["shortfalls"] == []
    # want 12: quotas 9 and 3; class 1 has only 5 -> said plainly, not refilled from class 2.
    indices, record = select_synthetic(np.stack(syn), real, num_defect=3, want=12, how="balanced")
    assert [c["used"] for c in record["per_class"]] == [5, 3, 0] and len(indices) == 8
    assert record["shortfalls"] == [(1, 9, 5)]
    first, _ = select_synthetic(np.stack(syn), real, num_defect=3, want=3, how="first")
    defect, _ = select_synthetic(np.stack(syn), real, num_defect=3, want=3, how="defect")
    assert first == [0, 1, 2] and defect == [1, 2, 3]
    # scored: the same quotas (5 and 1), each filled with the class's best scores. Class 1 pairs
    # are 2, 3, 6, 7, 8; the worst of them (7) stays out when the quota is 4; class 2's best is 9.
    scores = [None, 1.0, 5.0, 4.0, 9.0, 0.5, 7.0, -2.0, 6.0, 3.0]
    indices, record = select_synthetic(
        np.stack(syn), real, num_defect=3, want=5, how="scored", scores=scores
    )
    assert [c["quota"] for c in record["per_class"]] == [4, 1, 0]
    assert indices == [2, 3, 6, 8, 9]
    # a defect pair with no score ranks below every scored one: unscoring 6 lets 7 in
    unscored = scores[:6] + [None] + scores[7:]
    indices, _ = select_synthetic(
        np.stack(syn), real, num_defect=3, want=5, how="scored", scores=unscored
    )
    assert indices == [2, 3, 7, 8, 9]
    with pytest.raises(ValueError, match="one score per"):
        select_synthetic(np.stack(syn), real, num_defect=3, want=5, how="scored")


def test_unfilled_class_is_stated_in_the_report(tmp_path):
    data = write_official_dataset(tmp_path / "data")
    only_dents = [p for p in synthetic_pairs(6) if p[1].max() == 1]  # no class-2 pairs
    synth = write_synthetic(
        tmp_path / "synth", only_dents, generation=write_generator(tmp_path / "gen", data, 2)
    )
    config = EvalConfig(
        data_dir=str(data),
        num_train_per_type=2,
        resolution=16,
        seeds=1,
        baselines=(),
        regimes=("d",),
        synthetic=[("dents", str(synth))],
        bootstrap_resamples=0,
        train=TrainSettings(iterations=1, batch_size=2, width=8),
    )
    report = run_evaluation(config).report
    sel = report["synthetic"]["dents"]["selection"]["1"]
    assert [c["quota"] for c in sel["per_class"]] == [2, 2]
    assert [c["used"] for c in sel["per_class"]] == [2, 0]
    assert sel["statements"] == [
        "class class_2 cannot be filled: quota 2, only 0 synthetic pair(s) of that class available"
    ]


# ------------------------------------------------------------------------------------------------
# Equal exposure


def test_every_regime_draws_each_real_pair_equally_often(tmp_path):
    split = load_real_split(
        write_official_dataset(tmp_path / "d"), num_train_per_type=2, resolution=16
    )
    n = len(split.train)
    rng = np.random.default_rng(5)
    syn_images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    syn_masks = rng.integers(0, 3, (6, 16, 16)).astype(np.uint8)
    settings = TrainSettings(iterations=40, batch_size=3, width=4, channel_mult=(1, 2))
    copy_paste = CopyPaste(split.train.images, split.train.masks, probability=1.0)
    regimes = {
        "a": dict(augment=None, synthetic=None),
        "c": dict(augment=copy_paste, synthetic=None),
        "d": dict(augment=None, synthetic=(syn_images, syn_masks)),
        "e": dict(augment=copy_paste, synthetic=(syn_images, syn_masks)),
    }
    real_counts, syn_counts = {}, {}
    for key, kwargs in regimes.items():
        real = np.zeros(n, np.int64)
        syn = np.zeros(len(syn_images), np.int64)

        def count(step, idx, syn_idx, real=real, syn=syn):
            np.add.at(real, idx, 1)
            np.add.at(syn, syn_idx, 1)

        train_segmenter(
            split.train.images,
            split.train.masks,
            num_classes=3,
            settings=settings,
            seed=7,
            on_batch=count,
            **kwargs,
        )
        real_counts[key], syn_counts[key] = real, syn
    for key in "cde":
        np.testing.assert_array_equal(real_counts[key], real_counts["a"])
    assert real_counts["a"].sum() == 40 * 3
    # Synthetic stream: 3 * 6 / 4 = 4.5 draws per step on average, exactly 180 over 40 steps, so
    # the mean draws per synthetic pair equal the mean draws per real pair.
    for key in "de":
        assert syn_counts[key].sum() == 40 * 3 * 6 // n
        assert syn_counts[key].sum() / len(syn_images) == pytest.approx(real_counts[key].mean())
    assert [synthetic_draws(s, 3, 6, 4) for s in range(4)] == [4, 5, 4, 5]


# ------------------------------------------------------------------------------------------------
# Intervals and verdicts


def test_paired_interval_hand_case_and_t_quantiles():
    ci = stats.paired_interval([0.1, 0.2, 0.3, 0.4, 0.5])
    half = 2.776 * np.std([0.1, 0.2, 0.3, 0.4, 0.5], ddof=1) / math.sqrt(5)
    assert ci["mean"] == pytest.approx(0.3) and ci["lo"] == pytest.approx(0.3 - half)
    assert ci["hi"] == pytest.approx(0.3 + half) and ci["n"] == 5
    assert stats.t_quantile_975(1) == 12.706 and stats.t_quantile_975(120) == pytest.approx(
        1.98, abs=0.01
    )
    one = stats.paired_interval([0.2])
    assert (
        one["mean"] == 0.2 and math.isnan(one["lo"]) and stats.verdict(one["lo"], one["hi"]) is None
    )


def test_intervals_of_two_identical_regimes_contain_zero(tmp_path):
    data = write_official_dataset(tmp_path / "data")
    synth = write_synthetic(
        tmp_path / "synth",
        synthetic_pairs(6),
        generation=write_generator(tmp_path / "gen", data, 2),
    )
    config = EvalConfig(
        data_dir=str(data),
        num_train_per_type=2,
        resolution=16,
        seeds=3,
        baselines=("a",),
        regimes=("d",),
        synthetic=[("x", str(synth)), ("y", str(synth))],
        bootstrap_resamples=200,
        train=TrainSettings(iterations=3, batch_size=2, width=4, channel_mult=(1, 2)),
    )
    result = run_evaluation(config)
    rows = result.report["segmentation"]["rows"]
    x, y = rows["d:x"]["per_seed"], rows["d:y"]["per_seed"]
    assert [r["miou_fg"] for r in x] == [r["miou_fg"] for r in y]
    confusions = np.stack([r["confusion"] for r in x])[:, None]  # whole-set matrices as one image
    same = compare(x, y, confusions, confusions, num_classes=3, resamples=100)
    assert same["seeds"]["lo"] <= 0 <= same["seeds"]["hi"]
    assert same["bootstrap"]["lo"] <= 0 <= same["bootstrap"]["hi"]
    assert same["verdict"] == "no measurable effect"
    comps = result.report["segmentation"]["comparisons"]
    assert comps["d:x"]["a"]["seeds"]["mean"] == pytest.approx(comps["d:y"]["a"]["seeds"]["mean"])
    assert set(comps) == {"d:x", "d:y"} and set(comps["d:x"]) == {"a"}


def test_bootstrap_interval_brackets_a_known_shift():
    # Base: class 1 half right on every image; row: fully right -> delta 1 - 1/3 everywhere.
    base = np.zeros((2, 5, 2, 2), np.int64)
    base[..., 0, 0], base[..., 1, 1], base[..., 1, 0], base[..., 0, 1] = 10, 2, 2, 2
    row = np.zeros_like(base)
    row[..., 0, 0], row[..., 1, 1] = 10, 4
    boot = stats.bootstrap_interval(row, base, num_resamples=50)
    # IoU base = 2 / (2 + 2 + 2) = 1/3 per image and in any sum; row IoU = 1.
    assert boot["lo"] == pytest.approx(2 / 3) and boot["hi"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "lo, hi, words",
    [(0.01, 0.05, "helps"), (-0.02, 0.04, "no measurable effect"), (-0.06, -0.01, "hurts")],
)
def test_verdict_wording_follows_the_interval(lo, hi, words):
    assert stats.verdict(lo, hi) == words
    comparison = {
        "seeds": {"mean": (lo + hi) / 2, "lo": lo, "hi": hi},
        "bootstrap": {"mean": (lo + hi) / 2, "lo": lo, "hi": hi},
        "verdict": stats.verdict(lo, hi),
        "bootstrap_verdict": stats.verdict(lo, hi),
    }
    text = verdict_sentence("d:joint", "a", comparison)
    assert text.startswith(f"d:joint against real (a): {words}, by ")
    assert f"[{lo:+.3f}, {hi:+.3f}]".replace("+-", "-") in text
    other = dict(comparison, bootstrap_verdict="no measurable effect")
    assert ("could change" in verdict_sentence("d:joint", "c", other)) == (
        words != "no measurable effect"
    )


# ------------------------------------------------------------------------------------------------
# Ratio sweep, names, tuning


def test_ratio_sweep_gives_one_row_per_ratio_and_a_plot(tmp_path):
    data = write_official_dataset(tmp_path / "data")
    synth = write_synthetic(
        tmp_path / "s", synthetic_pairs(12), generation=write_generator(tmp_path / "gen", data, 2)
    )
    script = load_script("evaluate")
    out = tmp_path / "out"
    args = ["--data_dir", str(data), "--num_train_per_type", "2", "--out", str(out)]
    args += ["--synthetic", f"joint={synth}", "--synthetic_ratio", "0.5,1,2"]
    args += ["--baselines", "real,copy_paste", "--bootstrap", "20"] + TINY
    args[args.index("--seeds") + 1] = "1"
    assert script.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["segmentation"]["rows"]
    assert list(rows) == [
        "a", "c", "d:joint@0.5", "d:joint@1", "d:joint@2", "e:joint@0.5", "e:joint@1", "e:joint@2"
    ]  # fmt: skip
    assert [rows[f"d:joint@{r}"]["synthetic_pool_size"] for r in ("0.5", "1", "2")] == [2, 4, 8]
    png = Image.open(out / "report.png")
    assert png.size[1] > 600  # delta chart, ratio plot, bars, strip


def test_bad_ratio_and_select_values_are_one_line_errors(tmp_path, capsys):
    data = write_official_dataset(tmp_path / "data")
    code, errors = _run_script(tmp_path, capsys, data, [], ["--synthetic_ratio", "1,x"])
    assert code == 2 and len(errors) == 1 and "--synthetic_ratio" in errors[0]
    code, errors = _run_script(tmp_path, capsys, data, [], ["--synthetic_ratio", "0.5,1"])
    assert code == 2 and "need --synthetic" in errors[0]


def test_tuning_folds_hold_every_type_and_never_read_validation_images(
    tmp_path, capsys, monkeypatch
):
    assert fold_of(["x", "x", "x", "y", "y", "y"], 2).tolist() == [0, 1, 0, 0, 1, 0]
    data = write_official_dataset(tmp_path / "data", per_type=5)
    import defect_gen.evaluation.data as data_mod

    opened = []
    real_read = data_mod.read_pair

    def spy(pair, index):
        opened.append(str(pair.image))
        return real_read(pair, index)

    monkeypatch.setattr(data_mod, "read_pair", spy)
    args = ["--data_dir", str(data), "--num_train_per_type", "2", "--out", str(tmp_path / "t")]
    args += ["--tune", "--tune_folds", "2", "--tune_grid", "lr=1e-3,2e-3"] + TINY_TUNE
    assert load_script("evaluate").main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("tuned: --lr ")
    assert sorted({n.rsplit("/", 1)[1] for n in opened}) == ["000.png", "001.png"]
    record = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert len(record["candidates"]) == 2 and record["folds"] == 2


def test_compare_rows_pairs_seeds_across_reports(tmp_path, capsys):
    module = load_script("compare_rows", "benchmarks")
    config = {"data_dir": "d", "num_train_per_type": 5, "resolution": 128, "train": {"lr": 1e-3}}

    def report(path, key, values, **changes):
        runs = [{"seed": s, "miou_fg": v} for s, v in enumerate(values)]
        rows = {key: {"per_seed": runs}}
        body = {"config": dict(config, **changes), "segmentation": {"rows": rows}}
        path.write_text(json.dumps(body))
        return str(path)

    # deltas 0.1, 0.2, 0.3: mean 0.2, std 0.1, t(2) = 4.303 -> half width 0.248.
    top = report(tmp_path / "a.json", "d:top", [0.5, 0.6, 0.7])
    base = report(tmp_path / "b.json", "d:all", [0.4, 0.4, 0.4])
    assert module.main([top, "d:top", base, "d:all"]) == 0
    assert "+0.200 mIoU w/o background, 95% interval [-0.048, +0.448]" in capsys.readouterr().out
    other = report(tmp_path / "c.json", "d:all", [0.4, 0.4, 0.4], resolution=64)
    with pytest.raises(SystemExit, match="differ in resolution"):
        module.main([top, "d:top", other, "d:all"])
    # --seeds keeps a range: seeds 1-2 give deltas 0.2, 0.3, mean 0.25, std 0.0707, t(1) = 12.706.
    assert module.main([top, "d:top", base, "d:all", "--seeds", "1-2"]) == 0
    out = capsys.readouterr().out
    assert "+0.250 mIoU w/o background, 95% interval [-0.385, +0.885] over seeds 1-2 (2)" in out
    with pytest.raises(SystemExit, match="seeds 3, 4 are not in both rows"):
        module.main([top, "d:top", base, "d:all", "--seeds", "2-4"])
    with pytest.raises(SystemExit):
        module.main([top, "d:top", base, "d:all", "--seeds", "4-2"])
    with pytest.raises(SystemExit, match="no row 'e'"):
        module.main([top, "e", base, "d:all"])
    with pytest.raises(SystemExit, match="missing.json: cannot read"):
        module.main([str(tmp_path / "missing.json"), "d:top", base, "d:all"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="bad.json: not a report.json"):
        module.main([top, "d:top", str(tmp_path / "bad.json"), "d:all"])


def test_pool_runs_t_quantile_matches_the_table_and_pools_both_runs(tmp_path, capsys):
    module = load_script("pool_runs", "benchmarks")
    for df in (1, 2, 5, 9, 19, 30):  # the 95% table stats.py ships, to its 3 decimals
        assert module.t_quantile(0.975, df) == pytest.approx(stats.t_quantile_975(df), abs=6e-4)
    assert module.t_quantile(0.995, 10) == pytest.approx(3.169, abs=6e-4)  # a 99% table value
    seeds = range(20, 23)
    rows = {
        key: {"per_seed": [{"seed": s, "miou_fg": v} for s, v in zip(seeds, values)]}
        for key, values in (("a+good", [0.1] * 3), ("c", [0.2] * 3), ("d:x", [0.2, 0.3, 0.4]))
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"config": {}, "segmentation": {"rows": rows}}))
    assert module.main([str(path), "d:x", "--confidence", "0.95"]) == 0
    out = capsys.readouterr().out
    # run 8 alone: deltas 0.1, 0.2, 0.3 against a+good -> +0.200 +- 4.303 * 0.1 / sqrt(3)
    assert "d - a+good run 8 alone n= 3  +0.200 [-0.048, +0.448]" in out
    pooled = [d - b for d, b in zip(module.RUN7["d"], module.RUN7["c"])] + [0.0, 0.1, 0.2]
    assert f"d - c      runs 7 + 8  n=23  {np.mean(pooled):+.3f}" in out
    del rows["c"]
    path.write_text(json.dumps({"config": {}, "segmentation": {"rows": rows}}))
    with pytest.raises(SystemExit, match="no row 'c'"):
        module.main([str(path), "d:x"])


def test_pair_realism_figure_puts_each_class_first_pairs_in_its_row():
    module = load_script("pair_realism", "benchmarks")
    side, gap = 16, 4

    def pair(cls, value):
        index_map = np.zeros((side, side), np.uint8)
        index_map[4:12, 4:12] = cls
        return np.full((side, side, 3), value, np.uint8), index_map

    def pair_set(pairs):
        return SimpleNamespace(images=[p[0] for p in pairs], masks=[p[1] for p in pairs])

    real = pair_set([pair(1, 10), pair(2, 20), pair(1, 11), pair(1, 12)])
    drawn = pair_set([pair(2, 30)] + [pair(1, 40 + j) for j in range(5)])
    figure = module.class_figure([("real", real), ("drawn", drawn)], 2, per_class=3, gap=gap)
    assert figure.shape == (2 * side + gap, 2 * 3 * side + gap, 3)

    def cell(row, source, j):  # the top-left pixel of a pair's tile
        return figure[row * (side + gap), source * (3 * side + gap) + j * side, 0]

    assert [cell(0, 0, j) for j in range(3)] == [10, 11, 12]  # class 1: in order, the first three
    assert [cell(0, 1, j) for j in range(3)] == [40, 41, 42]
    # one real class-2 pair: the rest of its block stays black
    assert [cell(1, 0, j) for j in range(3)] == [20, 0, 0]
    assert [cell(1, 1, j) for j in range(3)] == [30, 0, 0]
    assert (figure[side : side + gap] == 255).all()  # the gaps are white
    assert (figure[:, 3 * side : 3 * side + gap] == 255).all()
