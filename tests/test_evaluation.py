"""Tests of defect_gen.evaluation and scripts/evaluate.py (CPU, tiny fixtures built in tmp_path)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image

from defect_gen.data.stats import mask_statistics
from defect_gen.errors import EvaluationError
from defect_gen.evaluation import fid, similarity
from defect_gen.evaluation.augment import CopyPaste, classic_augment, copy_paste
from defect_gen.evaluation.data import load_real_split, load_synthetic
from defect_gen.evaluation.metrics import (
    confusion_matrix,
    mean_std,
    segmentation_scores,
)
from defect_gen.evaluation.plan import EvalConfig
from defect_gen.evaluation.report import to_jsonable
from defect_gen.evaluation.runner import paired_deltas, run_evaluation, summarise
from defect_gen.evaluation.segnet import SegNet
from defect_gen.evaluation.segtrain import TrainSettings, class_weights, train_segmenter
from defect_gen.nn import count_parameters

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "evaluate.py"
SHARED = REPO.parent / "shared"
TYPES = ("dent", "scratch")  # class 1, class 2
TINY = [
    "--resolution",
    "32",
    "--seeds",
    "2",
    "--iterations",
    "2",
    "--batch_size",
    "2",
    "--width",
    "8",
    "--device",
    "cpu",
    "--num_threads",
    "1",
    "--quiet",
]
# --tune trains seed 0 on every fold and refuses --seeds
TINY_TUNE = TINY[: TINY.index("--seeds")] + TINY[TINY.index("--seeds") + 2 :]


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# Fixtures


def _textured(rng, h, w):
    base = rng.integers(60, 120)
    noise = rng.normal(0, 12, (h, w, 1)) + rng.normal(0, 4, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _defect_pair(rng, h, w, class_id):
    image = _textured(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    y, x = rng.integers(2, h - 12), rng.integers(2, w - 12)
    dh, dw = rng.integers(4, 10), rng.integers(4, 10)
    mask[y : y + dh, x : x + dw] = class_id
    colour = (230, 40, 40) if class_id == 1 else (30, 30, 220)
    image[mask == class_id] = colour
    return image, mask


def write_official_dataset(root, per_type=4, size=(40, 36), seed=0):
    """Write `test/<type>/NNN.png` + `converted_ground_truth/<type>/NNN.png` (class-index masks)."""
    rng = np.random.default_rng(seed)
    for class_id, defect_type in enumerate(TYPES, 1):
        for folder in ("test", "converted_ground_truth"):
            (root / folder / defect_type).mkdir(parents=True, exist_ok=True)
        for i in range(per_type):
            image, mask = _defect_pair(rng, size[1], size[0], class_id)
            Image.fromarray(image).save(root / "test" / defect_type / f"{i:03d}.png")
            Image.fromarray(mask, "L").save(
                root / "converted_ground_truth" / defect_type / f"{i:03d}.png"
            )
    return root


def write_generator(root, data_dir, num_image_train, classes=("class_1", "class_2")):
    """
    Write stand-in large / small checkpoints (just what the guard reads: config and classes) and
    give the `generation` part of a sample manifest naming them.
    """
    root.mkdir(parents=True, exist_ok=True)
    generation = {"num_defect": len(classes), "step_inference": 0}
    for role in ("large_recep", "small_recep"):
        cfg = {
            "data": {
                "params": {
                    "dir": str(data_dir),
                    "num_image_train": num_image_train,
                    "num_defect": len(classes),
                    "classes": None,
                }
            }
        }
        path = root / f"{role}.pt"
        torch.save({"config": cfg, "classes": list(classes), "step": 1}, path)
        generation[role] = {"path": str(path), "step": 1}
    return generation


def write_synthetic(root, pairs, manifest=True, generation=None, classes=("class_1", "class_2")):
    """
    Write a sample folder (images/, masks/, manifest.json) holding the (image, mask) pairs; the
    manifest names `generation` (see write_generator) when given.
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(pairs):
        Image.fromarray(image).save(root / "images" / f"{i:06d}.png")
        Image.fromarray(mask.astype(np.uint8), "L").save(root / "masks" / f"{i:06d}.png")
    if manifest:
        content = {"num_samples": len(pairs), "seed": 0, "classes": list(classes)}
        if generation is not None:
            content["generation"] = generation
        (root / "manifest.json").write_text(json.dumps(content))
    return root


def synthetic_pairs(n, seed=1, size=32):
    rng = np.random.default_rng(seed)
    return [_defect_pair(rng, size, size, 1 + i % 2) for i in range(n)]


# ------------------------------------------------------------------------------------------------
# Metrics


def test_iou_dice_hand_computed_with_absent_class():
    gt = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    s = segmentation_scores(confusion_matrix(gt, pred, 4))
    # class 0: TP 1, FP 1, FN 1; class 1: TP 2, FP 1; class 2: TP 1, FN 1; class 3 nowhere.
    np.testing.assert_allclose(s["iou"][:3], [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(s["dice"][:3], [1 / 2, 4 / 5, 2 / 3])
    assert math.isnan(s["iou"][3]) and math.isnan(s["dice"][3])
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["miou_fg"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s["mdice_fg"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)


def test_iou_sums_over_the_whole_set_and_predicted_only_class_scores_zero():
    # image 1: class 1 has 1 of 1 pixels right; image 2: class 1 has 0 of 3 right (predicted 0).
    matrix = confusion_matrix(np.array([[1, 0, 0, 0]]), np.array([[1, 0, 0, 0]]), 3)
    matrix += confusion_matrix(np.array([[1, 1, 1, 0]]), np.array([[0, 0, 0, 2]]), 3)
    s = segmentation_scores(matrix)
    assert s["iou"][1] == pytest.approx(1 / 4)  # sum I / sum U = 1 / 4, not mean(1, 0) = 0.5
    assert s["iou"][2] == 0.0  # predicted but never present: a defined zero, not NaN
    assert s["iou"][0] == pytest.approx(3 / 7)


def test_mean_std_skips_nan_and_uses_sample_std():
    mean, std = mean_std([0.2, float("nan"), 0.4])
    assert mean == pytest.approx(0.3) and std == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert all(math.isnan(v) for v in mean_std([float("nan")]))
    assert math.isnan(mean_std([0.5])[1])


def test_summary_over_seeds_and_paired_deltas():
    nan = float("nan")
    runs = [
        {"seed": 0, "iou": [0.9, 0.2, nan], "dice": [0.9, 0.3, nan], "miou": 0.55, "miou_fg": 0.2},
        {"seed": 1, "iou": [0.8, 0.4, nan], "dice": [0.8, 0.5, nan], "miou": 0.6, "miou_fg": 0.4},
    ]
    for r in runs:
        r.update(mdice=0.0, mdice_fg=0.0, pixel_accuracy=1.0)
    s = summarise(runs, 3)
    np.testing.assert_allclose(s["iou_mean"][:2], [0.85, 0.3])
    np.testing.assert_allclose(
        s["iou_std"][:2], [np.std([0.9, 0.8], ddof=1), np.std([0.2, 0.4], ddof=1)]
    )
    assert math.isnan(s["iou_mean"][2]) and s["miou_fg"]["mean"] == pytest.approx(0.3)
    better = [dict(r, miou_fg=r["miou_fg"] + 0.1 * (1 + r["seed"])) for r in runs]
    deltas = paired_deltas({"a": {"per_seed": runs}, "d": {"per_seed": better}})
    assert deltas["d"]["miou_fg"]["per_seed"] == pytest.approx([0.1, 0.2])


# ------------------------------------------------------------------------------------------------
# Memorisation, diversity, mask statistics


def test_planted_copy_is_memorised_and_a_different_image_is_not():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    near = np.clip(train[5].astype(int) + rng.integers(-3, 4, train[5].shape), 0, 255)
    generated = np.stack([train[2], rng.integers(0, 256, (64, 64, 3)), near]).astype(np.uint8)
    mem = similarity.memorisation(
        similarity.thumbnail_features(generated), similarity.thumbnail_features(train)
    )
    assert mem["ratio"][0] == pytest.approx(0.0, abs=1e-6) and mem["nn_index"][0] == 2
    assert (
        mem["ratio"][1] > 0.5
    )  # as far from the training set as training images are from each other
    assert mem["nn_index"][2] == 5
    assert mem["near_copies"] == [0, 2]
    assert mem["near_copy_share"] == pytest.approx(2 / 3)


def test_mirrored_copy_is_memorised_only_when_mirrors_count():
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    generated = train[3:4, :, ::-1]
    gen_f, train_f = (similarity.thumbnail_features(x) for x in (generated, train))
    mem = similarity.memorisation(gen_f, train_f)
    assert mem["near_copies"] == [0] and mem["nn_index"] == [3] and mem["nn_mirrored"] == [True]
    assert similarity.memorisation(gen_f, train_f, mirror=False)["near_copies"] == []


def test_identical_sets_have_zero_diversity_gap():
    rng = np.random.default_rng(1)
    feats = similarity.thumbnail_features(rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8))
    div = similarity.diversity(feats, feats)
    assert div["gap"] == 0.0 and div["generated"] > 0 and div["ratio"] == pytest.approx(1.0)
    same = np.repeat(feats[:1], 4, axis=0)
    assert similarity.diversity(same, feats)["generated"] == pytest.approx(0.0, abs=1e-9)


def test_pairwise_distance_is_rms_per_pixel():
    a, b = np.zeros((1, 4)), np.array([[1.0, 1.0, 0.0, 0.0]])
    assert similarity.pairwise_distances(a, b)[0, 0] == pytest.approx(math.sqrt(2 / 4))


def test_mask_statistics_hand_case():
    masks = np.zeros((4, 10, 10), np.uint8)
    masks[0, :5, :2] = 1  # 10 % of image 0
    masks[1, :, :3] = 1  # 30 % of image 1
    masks[1, 9, 9] = 3  # 1 % of image 1
    stats = mask_statistics(masks, num_defect=3)
    np.testing.assert_allclose(stats["share_with_class"][1:], [0.5, 0.0, 0.25])
    np.testing.assert_allclose(stats["mean_area_present"][1], 0.2)
    assert stats["mean_area_present"][2] is None
    np.testing.assert_allclose(stats["mean_area"][1:], [0.1, 0.0, 0.0025])
    assert stats["defect_free"] == 0.5


# ------------------------------------------------------------------------------------------------
# Augmentations


def test_copy_paste_mask_lies_exactly_where_pixels_changed():
    target_image = np.full((24, 20, 3), 10, np.uint8)
    target_mask = np.zeros((24, 20), np.int64)
    target_mask[:3, :3] = 1
    source_image = np.full((24, 20, 3), 50, np.uint8)
    source_mask = np.zeros((24, 20), np.int64)
    source_mask[5:12, 4] = 2  # an L-shaped class-2 region
    source_mask[11, 4:9] = 2
    source_image[source_mask == 2] = (200, 100, 0)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image, mask, pasted = copy_paste(target_image, target_mask, source_image, source_mask, rng)
        changed = (image != target_image).any(-1)
        np.testing.assert_array_equal(changed, pasted)
        assert (mask[pasted] == 2).all()
        np.testing.assert_array_equal(mask[~pasted], target_mask[~pasted])
        assert pasted.sum() == (source_mask == 2).sum()
        ys, xs = np.nonzero(pasted)
        sy, sx = np.nonzero(source_mask == 2)
        offset = (ys.min() - sy.min(), xs.min() - sx.min())
        np.testing.assert_array_equal(
            np.stack([ys, xs]), np.stack([sy + offset[0], sx + offset[1]])
        )


def test_copy_paste_pool_never_uses_the_sample_itself():
    masks = np.zeros((3, 8, 8), np.int64)
    masks[0, 1, 1], masks[2, 4:6, 4:6] = 1, 2
    images = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 100, 200)])
    aug = CopyPaste(images, masks, probability=1.0)
    for seed in range(10):
        image, mask = aug(2, images[2], masks[2], np.random.default_rng(seed))
        assert (mask == 1).sum() == 1 and (image == 0).all(-1).sum() == 1  # pasted from sample 0


def test_classic_augmentation_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (12, 12))
    lut = np.array([[20, 200, 0], [80, 150, 0], [140, 100, 0], [200, 50, 0]], np.uint8)
    image = lut[mask]
    moved = 0
    for seed in range(24):
        aug_image, aug_mask = classic_augment(image, mask, np.random.default_rng(seed))
        assert sorted(np.unique(aug_mask)) == sorted(np.unique(mask))
        moved += not np.array_equal(aug_mask, mask)
        # The image still encodes the mask: one value per class, in the classes' order.
        levels = [np.unique(aug_image[aug_mask == k][:, 0]) for k in range(4)]
        assert all(len(v) == 1 for v in levels)
        assert [v[0] for v in levels] == sorted(v[0] for v in levels)
        plain_image, plain_mask = classic_augment(
            image, mask, np.random.default_rng(seed), brightness=0, contrast=0
        )
        np.testing.assert_array_equal(plain_image, lut[plain_mask])
    assert moved >= 18  # flips and rotations do happen


# ------------------------------------------------------------------------------------------------
# FID / KID


def test_sqrtm_and_trace_sqrt_hand_cases():
    np.testing.assert_allclose(fid.sqrtm_psd(np.diag([4.0, 9.0])), np.diag([2.0, 3.0]), atol=1e-12)
    r3 = math.sqrt(3)
    expected = np.array([[r3 + 1, r3 - 1], [r3 - 1, r3 + 1]]) / 2  # eigenvalues 3, 1
    np.testing.assert_allclose(fid.sqrtm_psd([[2.0, 1.0], [1.0, 2.0]]), expected, atol=1e-12)
    assert fid.trace_sqrt_product(np.diag([1.0, 4.0]), np.diag([9.0, 16.0])) == pytest.approx(11.0)
    # 1-D Gaussians N(0, 1) and N(1, 4): 1 + 1 + 4 - 2 * 2 = 2.
    assert fid.frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(2.0)


def test_fid_of_a_set_with_itself_is_zero_and_shift_adds_its_square():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    assert fid.fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
    shift = np.full(16, 0.5)
    assert fid.fid_from_features(feats, feats + shift) == pytest.approx(16 * 0.25, rel=1e-6)
    other = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    assert fid.fid_from_features(feats, other) > 1.0


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same, _ = fid.kid_from_features(a, b, subset_size=100, num_subsets=20)
    shifted, _ = fid.kid_from_features(a, b + 1.0, subset_size=100, num_subsets=20)
    assert abs(same) < 0.05 < shifted


class _TinyExtractor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_extractor_loads_and_gives_features(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.script(_TinyExtractor()).save(str(path))
    model = fid.load_feature_extractor(str(path))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    feats = fid.extract_features(model, images, size=24)
    assert feats.shape == (5, 6)
    out = fid.fid_kid(model, images, {"real_train": images, "real_val": images[::-1]}, size=24)
    assert out["real_train"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert out["reference_floor"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert out["input_range"] == "unit"


def test_fid_inception_state_dict_loads_strictly_and_bad_files_are_one_line_errors(tmp_path):
    from defect_gen.evaluation.inception import FIDInceptionV3

    good = tmp_path / "pt_inception.pth"
    torch.save({"state_dict": FIDInceptionV3().state_dict()}, good)
    model = fid.load_feature_extractor(str(good))
    assert isinstance(model, FIDInceptionV3) and not model.training
    # torchvision's Inception3 without the auxiliary head has these many parameters at 1008 classes.
    assert count_parameters(model) == 23_850_960
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    for path in (bad, junk, tmp_path / "missing.pt"):
        with pytest.raises(EvaluationError) as info:
            fid.load_feature_extractor(str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------
# Segmentation network, data


def test_segnet_parameter_count_and_shapes():
    net = SegNet(num_classes=6)
    assert 2_000_000 <= count_parameters(net) <= 8_000_000
    for h, w in ((32, 32), (37, 50)):
        assert net(torch.randn(2, 3, h, w)).shape == (2, 6, h, w)


def test_class_weights_hand_case():
    masks = np.zeros((1, 10, 10), np.int64)
    masks[0, 0, :4] = 1  # 96 background pixels, 4 of class 1, class 2 absent, class 3 dominant
    masks[0, 5:, :] = 3  # 50 of class 3 -> background 46
    np.testing.assert_allclose(
        class_weights(masks, 4), [1.0, math.sqrt(46 / 4), 50.0, 1.0], rtol=1e-6
    )


def test_training_is_reproducible_per_seed(tmp_path):
    split = load_real_split(
        write_official_dataset(tmp_path / "d"), num_train_per_type=2, resolution=32
    )
    settings = TrainSettings(iterations=3, batch_size=2, width=8)

    def weights(seed, augment=None):
        model = train_segmenter(
            split.train.images,
            split.train.masks,
            num_classes=3,
            settings=settings,
            seed=seed,
            augment=augment,
        )
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    first = weights(0)
    assert torch.equal(first, weights(0))
    assert not torch.equal(first, weights(1))
    jitter = CopyPaste(split.train.images, split.train.masks, probability=1.0)
    assert torch.equal(weights(0, jitter), weights(0, jitter))


def test_real_split_takes_first_sorted_files_per_type(tmp_path):
    root = write_official_dataset(tmp_path / "data", per_type=5)
    split = load_real_split(root, num_train_per_type=2, resolution=24, max_val=2)
    assert split.classes == ["class_1", "class_2"] and split.num_defect == 2
    assert [Path(n).name for n in split.train.names] == ["000.png", "001.png"] * 2
    assert [Path(n).name for n in split.val.names] == ["002.png", "003.png"] * 2
    assert split.train.images.shape == (4, 24, 24, 3) and split.val.masks.shape == (4, 24, 24)
    assert set(np.unique(split.train.masks[:2])) == {0, 1}


def test_synthetic_loader_errors_name_the_file(tmp_path):
    pairs = synthetic_pairs(3)
    cases = {}
    d = write_synthetic(tmp_path / "size", pairs)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "masks" / "000001.png")
    cases[d / "masks" / "000001.png"] = "differs"
    d = write_synthetic(tmp_path / "rgb", pairs)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "masks" / "000002.png")
    cases[d / "masks" / "000002.png"] = "single-channel"
    d = write_synthetic(tmp_path / "extra", pairs)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(d / "masks" / "000009.png")
    cases[d / "masks" / "000009.png"] = "without an image"
    for path, words in cases.items():
        with pytest.raises(EvaluationError) as info:
            load_synthetic(str(path.parents[1]), num_defect=2, resolution=32)
        assert str(path) in str(info.value) and words in str(info.value)
    loaded = load_synthetic(
        str(write_synthetic(tmp_path / "ok", pairs)), num_defect=2, resolution=16
    )
    assert loaded.pairs.images.shape == (3, 16, 16, 3) and loaded.manifest["num_samples"] == 3


# ------------------------------------------------------------------------------------------------
# End to end


def test_evaluate_script_end_to_end(tmp_path):
    data = write_official_dataset(tmp_path / "data")
    gen = synthetic_pairs(5)
    planted = np.asarray(Image.open(data / "test" / "dent" / "001.png"))
    planted_mask = np.asarray(Image.open(data / "converted_ground_truth" / "dent" / "001.png"))
    generation = write_generator(tmp_path / "gen", data, 2)
    write_synthetic(tmp_path / "synth", gen + [(planted, planted_mask)], generation=generation)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--data_dir",
        str(data),
        "--num_train_per_type",
        "2",
        "--synthetic",
        str(tmp_path / "synth"),
        "--out",
        str(out),
    ] + TINY
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    rows = report["segmentation"]["rows"]
    assert list(rows) == ["a", "b", "c", "d:synth", "e:synth"]
    for entry in rows.values():
        assert [r["seed"] for r in entry["per_seed"]] == [0, 1]
        assert len(entry["summary"]["iou_mean"]) == 3
    # ratio 1, balanced: 4 real pairs (2 per class) ask for 4 synthetic pairs, 2 per class.
    assert rows["d:synth"]["synthetic_pool_size"] == 4 and rows["d:synth"]["real_pool_size"] == 4
    sel = report["synthetic"]["synth"]["selection"]["1"]
    assert [c["used"] for c in sel["per_class"]] == [2, 2] and sel["statements"] == []
    assert set(report["segmentation"]["comparisons"]["e:synth"]) == {"a", "c"}
    mem = report["synthetic"]["synth"]["memorisation"]
    assert mem["near_copies"] == [5]
    assert mem["nn_index"][5] == report["data"]["train_files"].index(
        str(data / "test" / "dent" / "001.png")
    )
    fid_entry = report["synthetic"]["synth"]["fid"]
    assert fid_entry["computed"] is False
    assert fid_entry["fid"] is None and fid_entry["kid"] is None
    gens = report["synthetic"]["synth"]["guard"]["generators"]
    assert [g["reported_images_seen"] for g in gens] == [0, 0]
    md = (out / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Rows")
    for needle in (
        "**synth**: d:synth against real (a):",
        "e:synth against copy-paste (c):",
        "a: real",
        "b: real+classic",
        "c: real+copy-paste",
        "d:synth: real+synth",
        "e:synth: real+copy-paste+synth",
        "Memorisation",
        "Diversity",
        "Masks",
    ):
        assert needle in md
    png = Image.open(out / "report.png")
    assert png.size[0] > 300 and png.size[1] > 300


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evaluate_without_synthetic_runs_three_modes_and_fid_with_stand_in(tmp_path, capsys):
    data = write_official_dataset(tmp_path / "data")
    script = load_script("evaluate")
    assert (
        script.main(
            ["--data_dir", str(data), "--num_train_per_type", "2", "--out", str(tmp_path / "o1")]
            + TINY
        )
        == 0
    )
    report = json.loads((tmp_path / "o1" / "report.json").read_text())
    assert list(report["segmentation"]["rows"]) == ["a", "b", "c"]
    assert report["synthetic"] == {} and report["segmentation"]["comparisons"] == {}

    torch.jit.script(_TinyExtractor()).save(str(tmp_path / "tiny.pt"))
    config = EvalConfig(
        data_dir=str(data),
        num_train_per_type=2,
        resolution=32,
        seeds=1,
        modes=("a",),
        synthetic=str(
            write_synthetic(
                tmp_path / "synth",
                synthetic_pairs(4),
                generation=write_generator(tmp_path / "gen", data, 2),
            )
        ),
        inception_weights=str(tmp_path / "tiny.pt"),
        inception_size=32,
        bootstrap_resamples=0,
        train=TrainSettings(iterations=1, batch_size=2, width=8),
    )
    result = run_evaluation(config)
    f = result.report["synthetic"]["synth"]["fid"]
    assert f["computed"] and f["feature_dim"] == 6
    assert f["real_train"]["fid"] > 0 and math.isfinite(f["real_val"]["kid"])
    json.dumps(to_jsonable(result.report), allow_nan=False)


def test_worker_processes_give_the_same_rows_as_one_process(tmp_path):
    data = write_official_dataset(tmp_path / "data")
    synth = write_synthetic(
        tmp_path / "synth",
        synthetic_pairs(4),
        generation=write_generator(tmp_path / "gen", data, 2),
    )
    rows = {}
    for workers in (1, 2):
        config = EvalConfig(
            data_dir=str(data),
            num_train_per_type=2,
            resolution=32,
            seeds=2,
            baselines=("a", "c"),
            regimes=("e",),
            synthetic=str(synth),
            bootstrap_resamples=0,
            workers=workers,
            train=TrainSettings(iterations=3, batch_size=2, width=8),
        )
        rows[workers] = run_evaluation(config).report["segmentation"]["rows"]
    assert list(rows[1]) == list(rows[2]) == ["a", "c", "e:synth"]
    for key in rows[1]:
        for one, two in zip(rows[1][key]["per_seed"], rows[2][key]["per_seed"]):
            assert one["seed"] == two["seed"]
            np.testing.assert_array_equal(one["confusion"], two["confusion"])


def test_first_seed_trains_the_same_seeds_as_a_run_from_seed_0(tmp_path):
    """--first_seed 1 --seeds 1 is seed 1 of a two-seed run: a later run can add seeds to an earlier."""
    data = write_official_dataset(tmp_path / "data")
    rows = {}
    for first, count in ((0, 2), (1, 1)):
        config = EvalConfig(
            data_dir=str(data),
            num_train_per_type=2,
            resolution=32,
            seeds=count,
            first_seed=first,
            modes=("a",),
            bootstrap_resamples=0,
            train=TrainSettings(iterations=3, batch_size=2, width=8),
        )
        report = run_evaluation(config).report
        assert report["config"]["seed_list"] == list(range(first, first + count))
        rows[first] = report["segmentation"]["rows"]["a"]["per_seed"]
    assert [r["seed"] for r in rows[0]] == [0, 1] and [r["seed"] for r in rows[1]] == [1]
    np.testing.assert_array_equal(rows[1][0]["confusion"], rows[0][1]["confusion"])
    assert not np.array_equal(rows[0][0]["confusion"], rows[0][1]["confusion"])


@pytest.mark.parametrize("problem", ["missing", "value"])
def test_bad_synthetic_folder_exits_2_with_one_error_line(tmp_path, problem):
    data = write_official_dataset(tmp_path / "data")
    synth = write_synthetic(tmp_path / "synth", synthetic_pairs(3))
    bad = synth / "masks" / "000001.png"
    if problem == "missing":
        bad.unlink()
    else:
        mask = np.zeros((32, 32), np.uint8)
        mask[3, 3] = 3  # K = 2
        Image.fromarray(mask, "L").save(bad)
    args = ["--data_dir", str(data), "--num_train_per_type", "2", "--synthetic", str(synth)]
    cmd = [sys.executable, str(SCRIPT)] + args + ["--out", str(tmp_path / "out")] + TINY
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2
    assert len(errors) == 1 and str(bad) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.skipif(not (SHARED / "data" / "magnetic_tile_dev").is_dir(), reason="no shared data")
def test_magnetic_tile_split_follows_the_paper_protocol():
    split = load_real_split(
        SHARED / "data" / "magnetic_tile_dev", num_train_per_type=5, resolution=32
    )
    assert split.classes == ["Blowhole", "Break", "Crack", "Fray", "Uneven"]
    assert len(split.train) == 25 and len(split.val) == 50
    assert {Path(n).stem for n in split.train.names} == {f"{i:03d}" for i in range(5)}
