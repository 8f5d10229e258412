"""
Tests of issue 20's benchmark part: good images, copy-paste onto them (alpha / Poisson blending),
the best baseline (a), synthetic count / share rows and the baselines' tuning (CPU, seconds each).
"""

import json
import shutil

import numpy as np
import pytest
from conftest import load_script, run_error
from test_evaluation import TINY, TINY_TUNE, synthetic_pairs, write_generator, write_synthetic

from defect_gen.data import toy as toy_data
from defect_gen.evaluation import amount
from defect_gen.evaluation.baselines import best_row
from defect_gen.evaluation.blend import dilate, feather_alpha, poisson_blend
from defect_gen.evaluation.good import (
    PasteOnto,
    load_good,
    manifest_good_paths,
    paste_region,
)
from defect_gen.evaluation.guard import ValidationIdentity, good_source_problems
from defect_gen.evaluation.plan import EvalConfig
from defect_gen.evaluation.segtrain import TrainSettings, train_segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_mvtec(root, num_good=3, per_type=4):
    """A toy MVTec dataset (2 types: pit, scratch) with `num_good` train/good images; give root."""
    toy_data.write_dataset(
        root, layout="mvtec", num_per_type=per_type, size=32, num_defect=2, num_good=num_good
    )
    return root


def _run(tmp_path, capsys, args):
    return run_error(load_script("evaluate").main, args, capsys)


# ------------------------------------------------------------------------------------------------
# Good images and the guard


def test_good_images_come_from_the_training_side_only(tmp_path):
    data = toy_mvtec(tmp_path / "d", num_good=3)
    # A good folder on the test side too (MVTec has one): train/good must win.
    (data / "test" / "good").mkdir()
    shutil.copy(data / "test" / "pit" / "003.png", data / "test" / "good" / "000.png")
    good = load_good(data, resolution=24)
    assert len(good) == 3 and good.images.shape == (3, 24, 24, 3)
    assert all("/train/good/" in n for n in good.names) and not good.masks.any()
    real = EvalConfig(data_dir=str(data), num_train_per_type=2, resolution=24).real_split()
    assert not set(good.names) & set(real.val.names) & set(real.train.names)
    assert load_good(data, resolution=24, num_good=2).names == good.names[:2]
    assert len(load_good(data, resolution=24, num_good=0)) == 0


def test_guard_refuses_a_good_image_equal_to_a_reported_image(tmp_path, capsys):
    data = toy_mvtec(tmp_path / "d", num_good=2)
    # pit/003 is a validation image (first 2 per type train); a copy under train/good leaks it.
    shutil.copy(data / "test" / "pit" / "003.png", data / "train" / "good" / "009.png")
    args = ["--data_dir", str(data), "--num_train_per_type", "2", "--out", str(tmp_path / "o")]
    code, err = _run(tmp_path, capsys, args + TINY)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "pit/003.png" in err[0] and "good images" in err[0]
    assert not (tmp_path / "o").exists()
    # A synthetic manifest whose samples were inpainted into that image is refused as well.
    real = EvalConfig(data_dir=str(data), num_train_per_type=2, resolution=24).real_split()
    identity = ValidationIdentity(data, real.val.names)
    manifest = {"samples": [{"good": {"path": str(data / "train" / "good" / "009.png")}}]}
    assert manifest_good_paths(manifest) == [str(data / "train" / "good" / "009.png")]
    problems = good_source_problems(manifest, "m.json", identity)
    assert len(problems) == 1 and "pit/003.png" in problems[0]
    clean = {"samples": [{"good": {"path": str(data / "train" / "good" / "000.png")}}]}
    assert good_source_problems(clean, "m.json", identity) == []


# ------------------------------------------------------------------------------------------------
# Blending


def test_feather_alpha_is_one_deep_inside_zero_outside_and_monotone():
    region = np.zeros((21, 21), bool)
    region[3:18, 3:18] = True
    alpha = feather_alpha(region, 4)
    assert alpha[~region].max() == 0 and alpha[10, 10] == 1 and alpha.max() == 1
    line = alpha[10, :11]  # from outside towards the centre
    assert (np.diff(line) >= 0).all() and 0 < line[3] < 1
    assert np.array_equal(feather_alpha(region, 0), region.astype(np.float32))
    # Grown by the width, the original region is entirely at alpha 1 (paste_region relies on it).
    assert (feather_alpha(dilate(region, 3), 3)[region] == 1).all()


def test_poisson_blend_oracles():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 200, (30, 34, 3)).astype(np.uint8)
    region = np.zeros((30, 34), bool)
    region[6:20, 8:25] = True
    region[0:3, 0:5] = True  # touching the image border (Neumann there)
    # Source = target + constant: the same gradients, so the target itself solves the equation.
    shifted = (target.astype(np.int64) + 40).astype(np.uint8)
    assert np.array_equal(poisson_blend(target, shifted, region), target)
    # An empty region changes nothing.
    noise = rng.integers(0, 255, target.shape).astype(np.uint8)
    assert np.array_equal(poisson_blend(target, noise, np.zeros_like(region)), target)
    # Outside the region the target is untouched; inside it changed.
    out = poisson_blend(target, noise, region)
    assert np.array_equal(out[~region], target[~region]) and not np.array_equal(out, target)
    # A flat source (zero guidance) gives the harmonic fill: discrete Laplacian ~ 0 inside.
    smooth = np.tile(np.linspace(0, 100, 34), (30, 1))
    inner = np.zeros_like(region)
    inner[8:18, 10:22] = True
    filled = poisson_blend(smooth + 0.0, np.zeros_like(smooth), inner, iterations=500, tol=1e-9)
    lap = 4 * filled[1:-1, 1:-1] - filled[:-2, 1:-1] - filled[2:, 1:-1]
    lap -= filled[1:-1, :-2] + filled[1:-1, 2:]
    assert np.abs(lap[inner[1:-1, 1:-1]]).max() < 1e-6
    assert np.allclose(filled, smooth)  # a linear ramp is harmonic: it is its own fill


@pytest.mark.parametrize("blend", ["alpha", "poisson"])
def test_copy_paste_onto_good_keeps_outside_the_box_and_labels_the_region(blend):
    rng = np.random.default_rng(3)
    good = rng.integers(90, 110, (32, 32, 3)).astype(np.uint8)
    blank = np.zeros((32, 32), np.uint8)
    source = np.full((32, 32, 3), 100, np.uint8)
    source_mask = np.zeros((32, 32), np.uint8)
    source_mask[10:14, 5:15] = 2  # a 4 x 10 rectangle of class 2
    source[source_mask == 2] = (230, 40, 40)
    sizes = set()
    for _ in range(20):
        image, mask, box = paste_region(
            good, blank, source, source_mask, rng, blend=blend, feather=2
        )
        y0, y1, x0, x1 = box
        assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32
        outside = np.ones((32, 32), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(image[outside], good[outside])
        assert not mask[outside].any() and set(np.unique(mask)) == {0, 2}
        # The labelled pixels are the transformed rectangle: a rectangle of its scaled sides,
        # 4 x 10 or 10 x 4 (k * 90°), times 0.75..1.25.
        ys, xs = np.nonzero(mask == 2)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        sides = [[a, b] for a in range(3, 7) for b in range(7, 15)]  # nearest: +-1 px
        assert len(ys) == h * w and sorted((h, w)) in sides
        sizes.add((h, w))
        if blend == "alpha":
            # The region is pasted at alpha 1: away from its edge (where bilinear scaling mixes in
            # the surroundings) its pixels are the source's colour.
            inner = ~dilate(mask != 2, 1)
            assert inner.any()
            assert np.abs(image[inner].astype(int) - (230, 40, 40)).max() <= 1
    assert len(sizes) > 1  # rotations / scales vary


def test_paste_augmenter_respects_probability():
    rng = np.random.default_rng(0)
    images = np.full((2, 16, 16, 3), 50, np.uint8)
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[:, 4:8, 4:8] = 1
    good = np.full((16, 16, 3), 120, np.uint8)
    never = PasteOnto(images, masks, probability=0.0)
    always = PasteOnto(images, masks, probability=1.0)
    blank = np.zeros((16, 16), np.uint8)
    assert not never(-1, good, blank, rng)[1].any()
    assert all(always(-1, good, blank, rng)[1].any() for _ in range(5))


# ------------------------------------------------------------------------------------------------
# Best baseline, counts and shares


def _row(mean):
    return {"summary": {"miou_fg": {"mean": mean}}}


def test_best_baseline_is_the_higher_a_row():
    assert best_row({"a": _row(0.2), "a+good": _row(0.3)}) == "a+good"
    assert best_row({"a": _row(0.4), "a+good": _row(0.3)}) == "a"
    assert best_row({"a": _row(0.3), "a+good": _row(0.3)}) == "a"  # ties: the earlier row
    assert best_row({"a": _row(None), "a+good": _row(0.1)}) == "a+good"  # NaN ranks lowest
    assert best_row({"a": _row(0.1), "c": _row(0.9)}) == "a"  # only (a) rows compete
    assert best_row({"b": _row(0.1)}) is None


@pytest.mark.parametrize("share,num_good", [(0.5, 0), (0.25, 0), (0.25, 3)])
def test_synthetic_share_is_the_fraction_of_each_batch(share, num_good):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 16, 16, 3)).astype(np.uint8)
    masks = (rng.random((4, 16, 16)) < 0.1).astype(np.uint8)
    syn = (images[:3].copy(), masks[:3].copy())
    good = images[:num_good].copy() if num_good else None
    settings = TrainSettings(iterations=12, batch_size=4, width=8, channel_mult=(1, 2))
    counts = {}

    def on_batch(step, idx, syn_idx):
        counts.setdefault(step, [0, 0, 0])[0:2] = [len(idx), len(syn_idx)]

    def on_good(step, good_idx):
        counts.setdefault(step, [0, 0, 0])[2] = len(good_idx)

    train_segmenter(
        images, masks, num_classes=2, settings=settings, seed=0, synthetic=syn, good=good,
        synthetic_share=share, on_batch=on_batch, on_good=on_good,
    )  # fmt: skip
    real, synthetic, goods = (sum(c[i] for c in counts.values()) for i in range(3))
    total = real + synthetic + goods
    assert real == 12 * 4 and (goods > 0) == bool(num_good)
    assert abs(synthetic / total - share) <= 1 / total  # the run's share is exact to one sample
    for r, k, g in counts.values():
        exact = share / (1 - share) * (r + g)
        assert np.floor(exact) - 1 <= k <= np.ceil(exact) + 1  # and so is every batch's
    if share == 0.5 and not num_good:
        assert all(k == r for r, k, _ in counts.values())


def test_count_and_share_rows_and_refusals(tmp_path, capsys):
    data = toy_mvtec(tmp_path / "d", num_good=2)
    generation = write_generator(tmp_path / "gen", data, 2, classes=("pit", "scratch"))
    synth = write_synthetic(
        tmp_path / "s", synthetic_pairs(6), generation=generation, classes=("pit", "scratch")
    )
    base = ["--data_dir", str(data), "--num_train_per_type", "2", "--synthetic", f"gen={synth}"]
    base += ["--baselines", "real,copy_paste", "--regimes", "d", "--bootstrap", "0"]
    out = tmp_path / "o"
    for extra, needle in (
        (["--synthetic_count", "7"], "set gen"),
        (["--synthetic_count", "0"], "--synthetic_count"),
        (["--synthetic_count", "2.5"], "--synthetic_count"),
        (["--synthetic_share", "1"], "--synthetic_share"),
        (["--synthetic_share", "nan"], "--synthetic_share"),
        (["--synthetic_share", "0.5", "--synthetic_ratio", "1"], "--synthetic_ratio"),
        (["--num_good", "-1"], "--num_good"),
        (["--copy_paste_feather", "inf"], "--copy_paste_feather"),
        (["--copy_paste_probability", "1.5"], "--copy_paste_probability"),
        (["--first_seed", "-1"], "--first_seed"),
    ):
        code, err = _run(tmp_path, capsys, base + extra + ["--out", str(out)] + TINY)
        assert code == 2 and len(err) == 1 and needle in err[0], (extra, err)
        assert not out.exists()
    args = base + ["--synthetic_count", "2,4", "--synthetic_share", "0.25,0.5", "--out", str(out)]
    assert load_script("evaluate").main(args + TINY) == 0
    report = json.loads((out / "report.json").read_text())
    seg = report["segmentation"]
    rows = seg["rows"]
    assert list(rows) == ["a", "a+good", "c"] + [
        f"d:gen@n={n},share={s}" for n in (2, 4) for s in ("0.25", "0.5")
    ]
    assert rows["d:gen@n=4,share=0.5"]["synthetic_pool_size"] == 4
    assert rows["a+good"]["good_images"] == 2 and rows["a"]["good_images"] == 0
    best = seg["best_baseline_a"]
    means = {k: rows[k]["summary"]["miou_fg"]["mean"] for k in ("a", "a+good")}
    assert best == max(("a", "a+good"), key=lambda k: (means[k], k == "a"))
    comp = seg["comparisons"]["d:gen@n=2,share=0.25"]["a"]
    assert comp["base_row"] == best
    row_runs, base_runs = rows["d:gen@n=2,share=0.25"]["per_seed"], rows[best]["per_seed"]
    assert comp["per_seed"] == pytest.approx(
        [r["miou_fg"] - b["miou_fg"] for r, b in zip(row_runs, base_runs)]
    )
    md = (out / "report.md").read_text()
    assert f"Baseline (a) = row **{best}**" in md
    # --tune trains seed 0 on every fold: a seed setting given with it is refused, not ignored
    tune = ["--data_dir", str(data), "--num_train_per_type", "2", "--tune"]
    for extra in (["--first_seed", "3"], ["--seeds", "10"]):
        args = tune + extra + ["--out", str(tmp_path / "t")] + TINY_TUNE
        code, err = _run(tmp_path, capsys, args)
        assert code == 2 and len(err) == 1 and extra[0] + ":" in err[0], (extra, err)
        assert not (tmp_path / "t").exists()


def test_amount_parsing():
    assert amount.parse_counts("25,100,400") == (25, 100, 400)
    assert amount.parse_shares("0.25, 0.5") == (0.25, 0.5)
    assert amount.share_draws(4, 0, 0.5) == 4 and amount.share_draws(8, 4, 0.5) == 4
    assert [amount.share_draws(4 * (s + 1), [0, 1, 2][s], 0.25) for s in range(3)] == [1, 1, 2]


# ------------------------------------------------------------------------------------------------
# Tuning


def test_tuning_of_the_baselines_reads_training_data_only(tmp_path, capsys, monkeypatch):
    data = toy_mvtec(tmp_path / "d", num_good=2, per_type=5)
    real = EvalConfig(data_dir=str(data), num_train_per_type=3, resolution=16).real_split()
    reported = set(real.val.names)
    import defect_gen.evaluation.data as data_mod

    opened = []
    real_read = data_mod.read_pair

    def guarded(pair, index):
        if str(pair.image) in reported:
            raise AssertionError(f"tuning read the reported image {pair.image}")
        opened.append(str(pair.image))
        return real_read(pair, index)

    monkeypatch.setattr(data_mod, "read_pair", guarded)
    out = tmp_path / "t"
    args = ["--data_dir", str(data), "--num_train_per_type", "3", "--out", str(out), "--tune"]
    args += ["--tune_folds", "3", "--tune_grid", "lr=1e-3"]
    args += ["--tune_baseline_grid", "with_good=0,1;copy_paste_blend=alpha,poisson"] + TINY_TUNE
    assert load_script("evaluate").main(args) == 0
    printed = capsys.readouterr().out
    assert "tuned baselines: --with_good " in printed
    assert any("/train/good/" in n for n in opened)
    record = json.loads((out / "tune.json").read_text())["baselines"]
    assert [c["settings"]["with_good"] for c in record["a"]["candidates"]] == [0, 1]
    assert [c["settings"]["copy_paste_blend"] for c in record["c"]["candidates"]] == [
        "alpha",
        "poisson",
    ]
    assert "## Baselines" in (out / "tune.md").read_text()
    # The main run takes the tuned values as defaults; a flag given on the command line wins.
    script = load_script("evaluate")
    tuned = ["--data_dir", "x", "--out", "y", "--tuned", str(out / "tune.json")]
    args = script.parse_args(tuned)
    assert args.copy_paste_blend == record["c"]["best"]["settings"]["copy_paste_blend"]
    assert args.with_good == record["a"]["best"]["settings"]["with_good"]
    assert script.parse_args(tuned + ["--copy_paste_blend", "alpha"]).copy_paste_blend == "alpha"


# ------------------------------------------------------------------------------------------------
# The results cache: an interrupted benchmark resumes, and only what is missing trains


def _count_trainings(monkeypatch):
    import defect_gen.evaluation.jobs as jobs_mod

    calls = []
    real_train = jobs_mod.segtrain.train_and_score

    def counted(*args, **kwargs):
        calls.append(
            (kwargs["seed"], "good_augment" in kwargs, kwargs.get("synthetic") is not None)
        )
        return real_train(*args, **kwargs)

    monkeypatch.setattr(jobs_mod.segtrain, "train_and_score", counted)
    return calls


def test_a_rerun_takes_finished_trainings_from_the_cache(tmp_path, monkeypatch, capsys):
    data = toy_mvtec(tmp_path / "d", num_good=2)
    generation = write_generator(tmp_path / "gen", data, 2, classes=("pit", "scratch"))
    synth = write_synthetic(
        tmp_path / "s", synthetic_pairs(4), generation=generation, classes=("pit", "scratch")
    )
    cache = tmp_path / "cache"
    base = ["--data_dir", str(data), "--num_train_per_type", "2", "--bootstrap", "0"]
    base += ["--cache", str(cache)] + TINY
    calls = _count_trainings(monkeypatch)
    script = load_script("evaluate")
    # First the baselines alone (a, a+good, c: 2 seeds each), as a stopped run would leave them.
    assert (
        script.main(base + ["--baselines", "real,copy_paste", "--out", str(tmp_path / "o1")]) == 0
    )
    baseline_entries = sorted(cache.rglob("*.npz"))
    assert len(calls) == 6 and len(baseline_entries) == 6
    first = json.loads((tmp_path / "o1" / "report.json").read_text())["segmentation"]["rows"]
    # The full run trains only the synthetic rows; the baselines' numbers are the cached ones.
    calls.clear()
    full = base + ["--baselines", "real,copy_paste", "--synthetic", f"gen={synth}"]
    assert script.main(full + ["--regimes", "d,e", "--out", str(tmp_path / "o2")]) == 0
    assert len(calls) == 4 and all(synthetic for _, _, synthetic in calls)
    report = json.loads((tmp_path / "o2" / "report.json").read_text())
    assert report["results_cache"] == {"folder": str(cache), "trainings": 10, "reused": 6}
    rows = report["segmentation"]["rows"]
    for key in ("a", "a+good", "c"):
        assert rows[key]["per_seed"] == first[key]["per_seed"]
    # A changed setting is another training: c with another paste probability trains again.
    calls.clear()
    assert (
        script.main(
            base
            + [
                "--baselines",
                "copy_paste",
                "--copy_paste_probability",
                "1",
                "--out",
                str(tmp_path / "o3"),
            ]
        )
        == 0
    )
    assert len(calls) == 2 and all(good_augment for _, good_augment, _ in calls)
    # A cache that is a file is refused before any training.
    (tmp_path / "file").write_text("x")
    bad = base[: -len(TINY)] + ["--cache", str(tmp_path / "file")] + TINY
    code, err = run_error(script.main, bad + ["--out", str(tmp_path / "o6")], capsys)
    assert code == 2 and len(err) == 1 and "--cache" in err[0] and len(calls) == 2
    assert not (tmp_path / "o6").exists()
    # A damaged entry is reported and trained again; --cache none trains everything.
    victim = baseline_entries[0]  # one of the rows the next run needs
    victim.write_bytes(b"not an npz")
    calls.clear()
    assert (
        script.main(base + ["--baselines", "real,copy_paste", "--out", str(tmp_path / "o4")]) == 0
    )
    assert len(calls) == 1
    with np.load(victim) as entry:  # written again, whole
        assert entry["per_image"].ndim == 3
    calls.clear()
    args = base[: -len(TINY)] + ["--cache", "none"] + TINY
    assert script.main(args + ["--baselines", "real", "--out", str(tmp_path / "o5")]) == 0
    assert len(calls) == 4 and not (tmp_path / "o5" / "runs").exists()


def test_job_digest_follows_every_input():
    from defect_gen.evaluation.data import PairSet
    from defect_gen.evaluation.jobs import job_digest

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (3, 8, 8), dtype=np.uint8)
    val = PairSet(images=images[:1], masks=masks[:1], names=["v"])
    paste = PasteOnto(images, masks, probability=0.5)

    default = TrainSettings()

    def digest(images=images, settings=default, seed=0, augment=paste, val=val):
        kwargs = dict(
            num_classes=2, settings=settings, seed=seed, device="cpu", good_augment=augment
        )
        return job_digest((images, masks, val), kwargs, code="c")

    d0 = digest()
    assert d0 == digest(images=images.copy(), augment=PasteOnto(images, masks, probability=0.5))
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    others = [
        digest(images=changed),
        digest(settings=TrainSettings(lr=2e-3)),
        digest(seed=1),
        digest(augment=PasteOnto(images, masks, probability=1.0)),
        digest(augment=PasteOnto(images, masks, blend="poisson")),
        digest(val=PairSet(images=images[:1], masks=masks[:1], names=["w"])),
    ]
    assert len({d0, *others}) == 1 + len(others)
    kwargs = dict(num_classes=2, settings=TrainSettings(), seed=0, device="cpu")
    assert job_digest((images, masks, val), kwargs, code="c") != job_digest(
        (images, masks, val), kwargs, code="d"
    )


def test_tuning_the_baselines_alone_resumes_from_the_cache(tmp_path, capsys, monkeypatch):
    data = toy_mvtec(tmp_path / "d", num_good=2, per_type=5)
    calls = _count_trainings(monkeypatch)
    args = ["--data_dir", str(data), "--num_train_per_type", "3", "--tune", "--tune_folds", "3"]
    args += ["--tune_grid", "none", "--tune_baseline_grid", "copy_paste_probability=0.5,1"]
    args += ["--cache", str(tmp_path / "cache")] + TINY_TUNE
    script = load_script("evaluate")
    assert script.main(args + ["--out", str(tmp_path / "t1")]) == 0
    # No segmenter grid and no with_good values: only (c)'s two points x 3 folds train.
    assert len(calls) == 6 and all(good_augment for _, good_augment, _ in calls)
    printed = capsys.readouterr().out
    assert "segmenter not tuned" in printed
    assert "tuned baselines: --copy_paste_probability" in printed
    record = json.loads((tmp_path / "t1" / "tune.json").read_text())
    assert record["candidates"] == [] and record["flags"] == ""
    assert "a" not in record["baselines"] and len(record["baselines"]["c"]["candidates"]) == 2
    calls.clear()
    assert script.main(args + ["--out", str(tmp_path / "t2")]) == 0
    assert calls == []
    again = json.loads((tmp_path / "t2" / "tune.json").read_text())
    assert again["baselines"]["c"] == record["baselines"]["c"]
    assert "not tuned (`--tune_grid none`)" in (tmp_path / "t2" / "tune.md").read_text()
