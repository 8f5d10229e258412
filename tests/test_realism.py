"""Tests of the realism measures and of --synthetic_select realistic, against hand-built oracles."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script, run_command, run_error
from test_evaluation import write_generator, write_official_dataset, write_synthetic

from defect_gen.errors import SampleFolderError
from defect_gen.evaluation.data import load_real_split
from defect_gen.evaluation.plan import EvalConfig
from defect_gen.evaluation.realism import (
    MIN_STEP_SPREAD,
    class_references,
    pair_measures,
    realism_distances,
)
from defect_gen.evaluation.runner import run_evaluation
from defect_gen.evaluation.segtrain import TrainSettings
from defect_gen.evaluation.selection import select_synthetic
from defect_gen.sampling.folder import check_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 64


def _surface(seed=0):
    return np.random.default_rng(seed).integers(90, 170, size=(SIDE, SIDE)).astype(np.uint8)


def _rgb(gray):
    return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=2)


def _square(cls, top=20, side=20):
    index_map = np.zeros((SIDE, SIDE), np.uint8)
    index_map[top : top + side, top : top + side] = cls
    return index_map


def _shifted(surface, index_map, offset):
    """The surface with its own texture, `offset` gray levels darker or lighter under the mask."""
    out = surface.astype(np.int64)
    out[index_map > 0] += offset
    return np.clip(out, 0, 255).astype(np.uint8)


def test_pair_measures_step_and_texture_against_oracles():
    surface = _surface()
    index_map = _square(2)
    index_map[20, 20] = 1  # a minority class does not decide the pair's class
    # The surface itself under the mask: no step, the surface's own texture (ratio near 1).
    cls, _, step, texture = pair_measures(_rgb(surface), index_map)
    assert cls == 2 and abs(step) < 5 and 0.85 < texture < 1.15
    # The region drawn flat and 30 levels darker than the surface's mean: texture 0, step about -30.
    flat = surface.copy()
    flat[index_map > 0] = round(surface.mean()) - 30
    _, score, step, texture = pair_measures(_rgb(flat), index_map)
    assert texture < 0.15 and abs(step + 30) < 5 and score > 20
    assert pair_measures(_rgb(surface), np.zeros_like(index_map)) is None


def test_realism_distance_is_the_step_and_texture_gap_in_real_spreads():
    surface = _surface()
    square = _square(1)
    # Real class-1 pairs: the surface's texture, 30 +- 4 levels darker (median -30, MAD 4). One
    # surface for all, so that its own difference between mask and ring is the same in every pair.
    real = [_shifted(surface, square, off) for off in (-26, -30, -34)]
    refs = class_references([_rgb(g) for g in real], [square] * 3, num_defect=2)
    assert set(refs) == {1}  # class 2 has no real pair, so no reference
    step_med, step_spread, log_med, log_spread = refs[1]
    own = pair_measures(_rgb(surface), square)[2]  # the surface's own step under this mask
    assert step_med == pytest.approx(-30 + own, abs=0.01)
    assert step_spread == pytest.approx(1.4826 * 4, abs=0.01)
    assert abs(log_med) < 0.15 and log_spread >= 0.1  # the surface's own texture: log ratio 0
    flat = surface.copy()
    flat[square > 0] = round(surface.mean()) - 30
    drawn = [
        _shifted(surface, square, -30),  # as the real ones: near 0
        _shifted(surface, square, -5),  # too faint: 25 levels off
        _shifted(surface, square, -60),  # a caricature: 30 levels off
        flat,  # the right step, no texture: far by its texture alone
        _shifted(surface, _square(2), -30),  # a class without a reference
        surface,  # with an empty mask: no defect
    ]
    masks = [square] * 4 + [_square(2), np.zeros((SIDE, SIDE), np.uint8)]
    d = realism_distances([_rgb(g) for g in drawn], masks, refs)
    assert d[4] is None and d[5] is None
    assert d[0] < 0.1  # the texture is the real pairs' own
    # the step's part exactly, plus a little texture: a sharper or softer border changes the fine
    # texture of the pixels next to it
    assert 25 / step_spread - 0.01 < d[1] < 25 / step_spread + 0.5
    assert 30 / step_spread - 0.01 < d[2] < 30 / step_spread + 0.5
    assert d[3] > 10  # log(texture near 0) lies many log spreads from the surface's 0


def test_spread_has_a_floor_when_the_real_pairs_agree():
    square = _square(1)
    surface = _surface()
    real = [_shifted(surface, square, off) for off in (-30, -30, -31)]
    refs = class_references([_rgb(g) for g in real], [square] * 3, num_defect=1)
    assert refs[1][1] == MIN_STEP_SPREAD  # a MAD of 0: the floor, not a zero spread
    d = realism_distances([_rgb(_shifted(surface, square, -40))], [square], refs)
    assert d[0] == pytest.approx(10 / MIN_STEP_SPREAD, abs=0.1)


def _mask(cls):
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 2:5] = cls
    return m


def test_realistic_selection_fills_quotas_with_the_nearest_pairs():
    real = np.stack([_mask(1), _mask(1), _mask(2), _mask(2)])  # shares 1/2, 1/2
    syn = np.stack([_mask(k) for k in (1, 1, 1, 2, 2, 2, 0)])
    distances = [3.0, 0.5, None, 2.0, 9.0, 1.0, None]
    indices, record = select_synthetic(
        syn, real, num_defect=2, want=4, how="realistic", distances=distances
    )
    # class 1: 1 (0.5) then 0 (3.0), never the unmeasured 2; class 2: 5 (1.0) then 3 (2.0)
    assert indices == [0, 1, 3, 5]
    assert [c["used"] for c in record["per_class"]] == [2, 2]
    # a quota larger than the measured pairs takes the unmeasured ones last
    indices, _ = select_synthetic(syn, real, num_defect=2, want=6, how="realistic", distances=distances)
    assert indices == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="one realism distance per"):
        select_synthetic(syn, real, num_defect=2, want=4, how="realistic")


def test_evaluate_selects_realistic_pairs_by_the_training_pairs_only(tmp_path):
    data = write_official_dataset(tmp_path / "data", per_type=4, size=(SIDE, SIDE))
    split = load_real_split(data, num_train_per_type=2, resolution=SIDE)
    refs = class_references(split.train.images, split.train.masks, split.num_defect)
    # Candidates per class: each real training pair's own image (near its class's reference) and
    # the same mask on a surface shifted 80 levels under it (far from it), in mixed order.
    pairs = []
    for rgb, index_map in zip(split.train.images, split.train.masks):
        gray = rgb[..., 0].astype(np.int64)
        far = np.clip(gray + 80 * (index_map > 0), 0, 255).astype(np.uint8)
        pairs += [(_rgb(far), index_map), (rgb, index_map)]
    synth = write_synthetic(
        tmp_path / "synth", pairs, generation=write_generator(tmp_path / "gen", data, 2)
    )
    config = EvalConfig(
        data_dir=str(data),
        num_train_per_type=2,
        resolution=SIDE,
        seeds=1,
        baselines=(),
        regimes=("d",),
        synthetic=[("s", str(synth))],
        synthetic_select="realistic",
        bootstrap_resamples=0,
        train=TrainSettings(iterations=1, batch_size=2, width=8),
    )
    sel = run_evaluation(config).report["synthetic"]["s"]["selection"]["1"]
    # want = ratio 1 x 4 training pairs, quotas 2 + 2: every real-looking copy (odd file index)
    expected = realism_distances([p[0] for p in pairs], [p[1] for p in pairs], refs)
    assert all(expected[i] < expected[i - 1] for i in (1, 3, 5, 7))
    kept = [int(Path(name).stem) for name in sel["files"]]
    assert kept == [1, 3, 5, 7]
    assert sel["realism_distances"] == [expected[i] for i in kept]


def _candidate_pool(tmp_path, data):
    """A sample folder of 8 candidates (4 per class): real-looking copies at odd indices."""
    split = load_real_split(data, num_train_per_type=2, resolution=SIDE)
    pairs = []
    for rgb, index_map in zip(split.train.images, split.train.masks):
        gray = rgb[..., 0].astype(np.int64)
        far = np.clip(gray + 80 * (index_map > 0), 0, 255).astype(np.uint8)
        pairs += [(_rgb(far), index_map), (rgb, index_map)]
    return split, pairs, write_synthetic(
        tmp_path / "pool", pairs, generation=write_generator(tmp_path / "gen", data, 2)
    )


def test_select_pairs_copies_what_evaluate_would_train_on(tmp_path):
    data = write_official_dataset(tmp_path / "data", per_type=4, size=(SIDE, SIDE))
    split, pairs, pool = _candidate_pool(tmp_path, data)
    manifest = json.loads((pool / "manifest.json").read_text())
    manifest["scores"] = [float(i) for i in range(len(pairs))]
    manifest["samples"] = [{"index": i, "mask": {"source": f"m{i}"}} for i in range(len(pairs))]
    (pool / "manifest.json").write_text(json.dumps(manifest))
    dest = tmp_path / "kept"
    args = ["--source", str(pool), "--dest", str(dest), "--count", "4", "--data_dir", str(data),
            "--num_train_per_type", "2", "--resolution", str(SIDE)]  # fmt: skip
    assert run_command(load_script("select_pairs").main, args) == 0
    # the pairs evaluate --synthetic_select realistic picks, by its own code path
    refs = class_references(split.train.images, split.train.masks, split.num_defect)
    d = realism_distances([p[0] for p in pairs], [p[1] for p in pairs], refs)
    expected, _ = select_synthetic(
        np.stack([p[1] for p in pairs]), split.train.masks, num_defect=2, want=4,
        how="realistic", distances=d,
    )  # fmt: skip
    assert expected == [1, 3, 5, 7]
    for i, j in enumerate(expected):  # byte for byte, renumbered 0..3
        for sub in ("images", "masks"):
            name = f"{sub}/{i:06d}.png"
            assert (dest / name).read_bytes() == (pool / f"{sub}/{j:06d}.png").read_bytes()
    assert sorted(p.name for p in (dest / "images").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    kept = json.loads((dest / "manifest.json").read_text())
    assert kept["num_samples"] == 4 and kept["generation"] == manifest["generation"]
    assert kept["scores"] == [float(j) for j in expected]
    assert [s["mask"]["source"] for s in kept["samples"]] == [f"m{j}" for j in expected]
    assert [s["index"] for s in kept["samples"]] == [0, 1, 2, 3]
    record = kept["selected_from"]
    assert [k["source_index"] for k in record["kept"]] == expected
    assert [k["seed"] for k in record["kept"]] == expected  # seed 0 + j
    assert [k["distance"] for k in record["kept"]] == [d[j] for j in expected]
    assert [k["class"] for k in record["kept"]] == ["class_1", "class_1", "class_2", "class_2"]
    # the sampler refuses to add samples to it
    with pytest.raises(SampleFolderError, match="selected from .*select_pairs.py"):
        check_folder(str(dest), kept["generation"])


def test_select_pairs_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    data = write_official_dataset(tmp_path / "data", per_type=4, size=(SIDE, SIDE))
    _, _, pool = _candidate_pool(tmp_path, data)
    main = load_script("select_pairs").main

    def run(dest, *extra):
        args = ["--source", str(pool), "--dest", str(dest), "--data_dir", str(data),
                "--num_train_per_type", "2", "--resolution", str(SIDE), *extra]  # fmt: skip
        code, lines = run_error(main, args, capsys)
        assert code == 2
        return [line for line in lines if line.startswith("error:")]

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert run(busy, "--count", "2") == [
        f"error: {busy}: exists and is not an empty folder; give a new --dest"
    ]
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]
    assert run(tmp_path / "new", "--count", "9") == [f"error: --count 9: {pool} holds only 8 pairs"]
    assert not (tmp_path / "new").exists()
    (pool / "masks" / "000003.png").unlink()
    (error,) = run(tmp_path / "new", "--count", "2")
    assert "000003.png: mask missing" in error and not (tmp_path / "new").exists()


def test_select_pairs_stopped_midway_leaves_no_dest(tmp_path, capsys, monkeypatch):
    data = write_official_dataset(tmp_path / "data", per_type=4, size=(SIDE, SIDE))
    _, _, pool = _candidate_pool(tmp_path, data)
    from defect_gen.sampling import folder

    def full_disk(sample_dir, indices, num_defect):
        raise OSError(28, "No space left on device", str(sample_dir))

    monkeypatch.setattr(folder, "write_grid", full_disk)
    dest = tmp_path / "kept"
    args = ["--source", str(pool), "--dest", str(dest), "--count", "4", "--data_dir", str(data),
            "--num_train_per_type", "2", "--resolution", str(SIDE)]  # fmt: skip
    code, lines = run_error(load_script("select_pairs").main, args, capsys)
    assert code == 2 and [line for line in lines if "No space left" in line]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "gen", "pool"]  # no dest, no partial
    # a source of other classes than the real data's is refused by name
    manifest = json.loads((pool / "manifest.json").read_text())
    manifest["classes"] = ["dent", "scratch"]
    (pool / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.undo()
    code, lines = run_error(load_script("select_pairs").main, args, capsys)
    assert code == 2 and "differ from the real data's" in lines[-1] and not dest.exists()
