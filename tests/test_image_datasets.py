"""Dataset layouts, pairing by name, validation errors, joint augmentation and deterministic loading."""

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from defect_gen import masks
from defect_gen.data.dataset import DefectDataset, ShardBatchSampler, load_data
from defect_gen.data.files import read_masks, read_pair
from defect_gen.data.layouts import find_pairs
from defect_gen.data.stats import mask_statistics
from defect_gen.errors import DatasetError

H, W = 12, 16


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)


def gray_image(i):
    """A grayscale image whose pixels all hold 20 * i + 10 (so each image is recognisable)."""
    return np.full((H, W), 20 * i + 10, dtype=np.uint8)


def box(i):
    """A boolean [H x W] mask: a box whose place and size depend on i."""
    m = np.zeros((H, W), dtype=bool)
    m[i : i + 3, 2 : 4 + i] = True
    return m


def make_mvtec(root, types=("scratch", "crack"), n=3):
    for t in types:
        for i in range(n):
            save(root / "test" / t / f"{i:03d}.png", gray_image(i))
            save(root / "ground_truth" / t / f"{i:03d}_mask.png", box(i) * 255)
    save(root / "train" / "good" / "000.png", gray_image(0))
    save(root / "test" / "good" / "000.png", gray_image(0))
    return root


# Official-layout masks: class index maps with known content.
OFFICIAL_MASKS = {
    ("a", "000"): {1: (slice(0, 6), slice(0, 8)), 2: (slice(8, 10), slice(0, 2))},  # 48 px vs 4 px
    ("a", "001"): {2: (slice(0, 2), slice(0, 3))},
    ("b", "000"): {3: (slice(4, 8), slice(4, 8))},
}


def official_mask(key):
    m = np.zeros((H, W), dtype=np.uint8)
    for value, region in OFFICIAL_MASKS[key].items():
        m[region] = value
    return m


def make_official(root):
    for i, (t, name) in enumerate(OFFICIAL_MASKS):
        rgb = np.zeros((H, W, 3), dtype=np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10 * i, 100, 200
        save(root / "test" / t / f"{name}.png", rgb)
        save(root / "converted_ground_truth" / t / f"{name}.png", official_mask((t, name)))
    return root


def one_line_naming(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message
    assert str(path) in message, message


# ----------------------------------------------------------------------------------------------
# Layouts


def test_mvtec_layout(tmp_path):
    root = make_mvtec(tmp_path)
    index = find_pairs(root)
    assert index.layout == "mvtec"
    assert index.classes == ["crack", "scratch"]  # sorted type names; "good" skipped
    assert index.num_defect == 2
    assert index.counts == {"crack": (3, 3), "scratch": (3, 3)}
    assert [(p.defect_type, p.image.rsplit("/", 1)[1], p.class_id) for p in index.pairs] == [
        ("crack", "000.png", 1),
        ("crack", "001.png", 1),
        ("crack", "002.png", 1),
        ("scratch", "000.png", 2),
        ("scratch", "001.png", 2),
        ("scratch", "002.png", 2),
    ]
    assert index.pairs[4].mask == str(root / "ground_truth" / "scratch" / "001_mask.png")
    rgb, index_map = read_pair(index.pairs[4], index)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert (rgb == 30).all()  # grayscale 30 copied to three channels
    assert index_map.dtype == np.int64
    np.testing.assert_array_equal(index_map, box(1) * 2)


def test_mvtec_classes_argument_sets_class_ids(tmp_path):
    root = make_mvtec(tmp_path)
    index = find_pairs(root, classes=["scratch", "other", "crack"])
    assert index.classes == ["scratch", "other", "crack"] and index.num_defect == 3
    assert {p.defect_type: p.class_id for p in index.pairs} == {"scratch": 1, "crack": 3}
    _, index_map = read_pair(index.pairs[0], index)
    assert set(np.unique(index_map)) == {0, 3}
    with pytest.raises(DatasetError) as exc:
        find_pairs(root, classes=["scratch"])
    one_line_naming(exc, root / "test" / "crack")


def test_official_layout(tmp_path):
    root = make_official(tmp_path)
    index = find_pairs(root)
    assert index.layout == "official"
    assert index.num_defect == 3  # the largest mask value
    assert index.classes == ["class_1", "class_2", "class_3"]
    # class_id: the mask's dominant defect class
    assert [(p.defect_type, p.class_id) for p in index.pairs] == [("a", 1), ("a", 2), ("b", 3)]
    for pair, key in zip(index.pairs, OFFICIAL_MASKS):
        rgb, index_map = read_pair(pair, index)
        np.testing.assert_array_equal(index_map, official_mask(key))
    assert tuple(rgb[0, 0]) == (20, 100, 200)
    named = find_pairs(root, num_defect=4, classes=["x", "y", "z", "w"])
    assert named.classes == ["x", "y", "z", "w"] and named.num_defect == 4


def test_official_layout_accepts_palette_masks(tmp_path):
    root = make_official(tmp_path)
    path = root / "converted_ground_truth" / "b" / "000.png"
    image = Image.fromarray(official_mask(("b", "000")), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] * 64)
    image.save(path)
    index = find_pairs(root, num_defect=3)
    np.testing.assert_array_equal(read_pair(index.pairs[2], index)[1], official_mask(("b", "000")))


@pytest.mark.parametrize("flat", [False, True])
def test_defect_spectrum_layout(tmp_path, flat):
    types = ["all"] if flat else ["hole", "stain"]
    for k, t in enumerate(types):
        image_dir = tmp_path / "image" if flat else tmp_path / "image" / t
        mask_dir = tmp_path / "mask" if flat else tmp_path / "mask" / t
        for i in range(2):
            save(image_dir / f"{i}.bmp", np.full((H, W, 3), 40 * i + k, np.uint8))  # ext differs
            save(mask_dir / f"{i}_mask.png", box(i) * (k + 1 + i))
    index = find_pairs(tmp_path)
    assert index.layout == "defect_spectrum"
    assert [p.defect_type for p in index.pairs] == [t for t in types for _ in range(2)]
    assert index.num_defect == len(types) + 1
    for pair in index.pairs:
        rgb, index_map = read_pair(pair, index)
        i, k = int(rgb[0, 0, 0]) // 40, int(rgb[0, 0, 0]) % 40
        np.testing.assert_array_equal(index_map, box(i) * (k + 1 + i))
        assert pair.class_id == k + 1 + i


def test_num_image_train_takes_first_sorted_files(tmp_path):
    root = make_mvtec(tmp_path, types=("crack",), n=4)
    index = find_pairs(root, num_image_train=2)
    assert [p.image.rsplit("/", 1)[1] for p in index.pairs] == ["000.png", "001.png"]
    assert index.counts == {"crack": (4, 2)}
    assert len(find_pairs(root, num_image_train=10).pairs) == 4


def test_magnetic_tile_dev():
    root = shared_path("data", "magnetic_tile_dev")
    index = find_pairs(root, num_image_train=5)
    assert index.layout == "mvtec"
    expected = {"Blowhole": 1, "Break": 2, "Crack": 3, "Fray": 4, "Uneven": 5}
    assert index.classes == list(expected)
    assert len(index.pairs) == 25
    assert {p.defect_type: p.class_id for p in index.pairs} == expected
    assert all(index.counts[t] == (15, 5) for t in expected)
    for t, k in expected.items():
        pair = next(p for p in index.pairs if p.defect_type == t)
        assert pair.image.endswith(f"{t}/000.png") and pair.mask.endswith(f"{t}/000_mask.png")
        rgb, index_map = read_pair(pair, index)
        assert rgb.shape == index_map.shape + (3,)
        assert set(np.unique(index_map).tolist()) == {0, k}


# ----------------------------------------------------------------------------------------------
# Errors: one line naming the offending file


def test_error_image_without_mask(tmp_path):
    root = make_mvtec(tmp_path)
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, root / "test" / "crack" / "001.png")


def test_error_mask_without_image(tmp_path):
    root = make_mvtec(tmp_path)
    save(root / "ground_truth" / "crack" / "007_mask.png", box(0) * 255)
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, root / "ground_truth" / "crack" / "007_mask.png")


@pytest.mark.parametrize("which", ["image", "mask"])
def test_error_unreadable_file(tmp_path, which):
    root = make_mvtec(tmp_path)
    path = root / (
        "test/scratch/002.png" if which == "image" else "ground_truth/scratch/002_mask.png"
    )
    path.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, path)
    # the selection decides what is opened: the broken file is not among the first two
    assert len(find_pairs(root, num_image_train=2).pairs) == 4


def test_error_truncated_file(tmp_path):
    root = make_mvtec(tmp_path)
    path = root / "test" / "scratch" / "001.png"
    save(path, np.random.default_rng(0).integers(0, 255, (H, W)))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, path)


def test_error_size_mismatch(tmp_path):
    root = make_mvtec(tmp_path)
    path = root / "ground_truth" / "crack" / "000_mask.png"
    save(path, np.zeros((H, W + 1)))
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, path)
    assert str(root / "test" / "crack" / "000.png") in str(exc.value)


def test_error_mask_value_above_num_defect(tmp_path):
    root = make_official(tmp_path)
    with pytest.raises(DatasetError, match="mask value 3 > num_defect=2") as exc:
        find_pairs(root, num_defect=2)
    one_line_naming(exc, root / "converted_ground_truth" / "b" / "000.png")


def test_error_mvtec_class_id_above_num_defect(tmp_path):
    root = make_mvtec(tmp_path)
    with pytest.raises(DatasetError, match="class id 2 > num_defect=1") as exc:
        find_pairs(root, num_defect=1)
    one_line_naming(exc, root / "test" / "scratch")


def test_error_no_pairs(tmp_path):
    save(tmp_path / "test" / "good" / "000.png", gray_image(0))
    (tmp_path / "ground_truth").mkdir()
    with pytest.raises(DatasetError, match="no image/mask pairs") as exc:
        find_pairs(tmp_path)
    one_line_naming(exc, tmp_path / "test")


def test_error_empty_type_folder(tmp_path):
    root = make_mvtec(tmp_path)
    (root / "test" / "dent").mkdir()
    (root / "ground_truth" / "dent").mkdir()
    with pytest.raises(DatasetError, match="empty") as exc:
        find_pairs(root)
    one_line_naming(exc, root / "test" / "dent")


def test_error_missing_mask_folder(tmp_path):
    root = make_mvtec(tmp_path)
    save(root / "test" / "dent" / "000.png", gray_image(0))
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, root / "ground_truth" / "dent")


@pytest.mark.parametrize("make", ["missing", "no_layout"])
def test_error_data_dir(tmp_path, make):
    root = tmp_path / "nowhere"
    if make == "no_layout":
        save(root / "images" / "000.png", gray_image(0))
    with pytest.raises(DatasetError) as exc:
        find_pairs(root)
    one_line_naming(exc, root)


# ----------------------------------------------------------------------------------------------
# Pairing by name, never by position


@pytest.mark.parametrize("check_files", [True, False])
def test_extra_and_missing_files_are_named_not_shifted(tmp_path, check_files):
    root = make_mvtec(tmp_path, types=("crack",), n=3)
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    save(root / "ground_truth" / "crack" / "003_mask.png", box(0) * 255)
    with pytest.raises(DatasetError) as exc:
        find_pairs(root, check_files=check_files)
    problems = exc.value.problems
    assert len(problems) == 2
    assert any(str(root / "test" / "crack" / "001.png") in p for p in problems)
    assert any(str(root / "ground_truth" / "crack" / "003_mask.png") in p for p in problems)
    assert "and 1 more" in str(exc.value)


def test_pairing_by_name_where_sort_order_differs(tmp_path):
    # Sorted, the masks are [a_b_mask, a_mask]; pairing two sorted lists would cross them.
    image_dir, mask_dir = tmp_path / "test" / "crack", tmp_path / "ground_truth" / "crack"
    save(image_dir / "a.png", gray_image(0))
    save(image_dir / "a_b.png", gray_image(1))
    save(mask_dir / "a_mask.png", box(0) * 255)
    save(mask_dir / "a_b_mask.png", box(1) * 255)
    index = find_pairs(tmp_path)
    for pair in index.pairs:
        rgb, index_map = read_pair(pair, index)
        i = (int(rgb[0, 0, 0]) - 10) // 20
        np.testing.assert_array_equal(index_map, box(i).astype(np.int64))


def test_two_masks_for_one_image_is_an_error(tmp_path):
    root = make_mvtec(tmp_path, types=("crack",), n=2)
    save(root / "ground_truth" / "crack" / "000.png", box(0) * 255)
    with pytest.raises(DatasetError, match="second mask") as exc:
        find_pairs(root)
    assert str(root / "test" / "crack" / "000.png") in str(exc.value)


# ----------------------------------------------------------------------------------------------
# DefectDataset


@pytest.mark.parametrize("resolution", [8, 32])
def test_dataset_sample_layout(tmp_path, resolution):
    index = find_pairs(make_official(tmp_path))
    dataset = DefectDataset(index, resolution=resolution, num_defect=4)
    assert len(dataset) == 3
    for idx, key in enumerate(OFFICIAL_MASKS):
        x, info = dataset[idx]
        assert x.shape == (4 + 4, resolution, resolution) and x.dtype == torch.float32
        assert x[:3].min() >= -1 and x[:3].max() <= 1
        onehot = x[3:]
        assert set(onehot.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(onehot.sum(0), torch.ones(resolution, resolution))
        decoded = masks.decode(x[None])[0]
        present = set(np.unique(official_mask(key)).tolist())
        assert set(decoded.unique().tolist()) <= present  # nearest: no invented classes
        assert info["index"] == idx
        assert info["class_ids"].tolist() == sorted(set(decoded.unique().tolist()) - {0})
        if resolution == 32:  # upsampling keeps every class
            assert set(decoded.unique().tolist()) == present
    # rgb: a constant colour stays that colour through the bilinear resize
    x, _ = dataset[2]
    expected = torch.tensor([20, 100, 200]) / 127.5 - 1
    assert torch.allclose(x[:3, 0, 0], expected, atol=1e-6)
    assert torch.equal(dataset[1][0], dataset[(1, 0)][0])


def make_encoded(root, height, width):
    """One pair whose pixels spell their own row, column and class: R = 100*class, G = 5*row, B = 5*col."""
    rows, cols = np.mgrid[0:height, 0:width]
    index_map = ((rows // 4) + (cols // 4)) % 3
    rgb = np.stack([100 * index_map, 5 * rows, 5 * cols], axis=-1)
    save(root / "test" / "t" / "0.png", rgb)
    save(root / "converted_ground_truth" / "t" / "0.png", index_map)
    return find_pairs(root, num_defect=2)


@pytest.mark.parametrize("shape", [(16, 40), (40, 16)])
def test_keep_aspect_crop_and_flip_apply_to_image_and_mask_alike(tmp_path, shape):
    index = make_encoded(tmp_path, *shape)
    dataset = DefectDataset(index, resolution=16, num_defect=2, keep_aspect=True, random_flip=True)
    offsets, flips = set(), set()
    for seed in range(24):
        x, _ = dataset[(0, seed)]
        assert torch.equal(x, dataset[(0, seed)][0])  # a pure function of (idx, aug_seed)
        rgb = torch.round((x[:3] + 1) * 127.5).long()
        cls, rows, cols = rgb[0] // 100, rgb[1] // 5, rgb[2] // 5
        label = masks.decode(x[None])[0]
        assert torch.equal(label, cls)
        assert torch.equal(label, ((rows // 4) + (cols // 4)) % 3)
        # a crop of whole rows and columns, columns possibly reversed
        assert torch.equal(rows, rows[:, :1].expand(16, 16))
        assert torch.equal(rows[:, 0], rows[0, 0] + torch.arange(16))
        step = cols[0, 1] - cols[0, 0]
        assert step in (1, -1)
        assert torch.equal(cols[0], cols[0, 0] + step * torch.arange(16))
        offsets.add((int(rows.min()), int(cols.min())))
        flips.add(int(step))
    assert len(offsets) > 3 and flips == {1, -1}


def test_plain_resize_without_augmentation_is_deterministic(tmp_path):
    index = make_encoded(tmp_path, 16, 40)
    dataset = DefectDataset(index, resolution=8, num_defect=2)
    first = dataset[(0, 0)][0]
    assert all(torch.equal(first, dataset[(0, seed)][0]) for seed in range(5))


def test_dataset_refuses_class_above_num_defect(tmp_path):
    index = find_pairs(make_official(tmp_path))
    dataset = DefectDataset(index, resolution=8, num_defect=2)
    with pytest.raises(DatasetError) as exc:
        dataset[2]
    one_line_naming(exc, tmp_path / "converted_ground_truth" / "b" / "000.png")


# ----------------------------------------------------------------------------------------------
# load_data


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def same_batches(a, b):
    return len(a) == len(b) and all(
        torch.equal(xa, xb)
        and torch.equal(ia["index"], ib["index"])
        and torch.equal(ia["aug_seed"], ib["aug_seed"])
        for (xa, ia), (xb, ib) in zip(a, b)
    )


@pytest.fixture
def seven_pairs(tmp_path):
    root = tmp_path / "data"
    make_mvtec(root, types=("crack", "scratch"), n=4)
    (root / "test" / "scratch" / "003.png").unlink()
    (root / "ground_truth" / "scratch" / "003_mask.png").unlink()
    return find_pairs(root)


def loader(index, **kwargs):
    params = dict(
        index=index, batch_size=3, resolution=8, num_defect=2, keep_aspect=True, random_flip=True
    )
    params.update(kwargs)
    return load_data(**params)


def test_load_data_is_deterministic_and_resumable(seven_pairs):
    reference = take(loader(seven_pairs, seed=5), 6)
    assert reference[0][0].shape == (3, 6, 8, 8)
    assert same_batches(reference, take(loader(seven_pairs, seed=5), 6))
    assert same_batches(reference[3:], take(loader(seven_pairs, seed=5, start_step=3), 3))
    assert not same_batches(reference, take(loader(seven_pairs, seed=6), 6))


def test_load_data_epochs_are_permutations(seven_pairs):
    batches = take(loader(seven_pairs), 7)  # 21 samples = 3 epochs of 7
    order = torch.cat([info["index"] for _, info in batches]).tolist()
    for epoch in range(3):
        assert sorted(order[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert order[:7] != order[7:14]
    seeds = torch.cat([info["aug_seed"] for _, info in batches]).tolist()
    assert len(set(seeds)) == len(seeds)


def test_load_data_without_drop_last_ends_batches_at_epoch_ends(seven_pairs):
    sizes = [len(x) for x, _ in take(loader(seven_pairs, drop_last=False), 6)]
    assert sizes == [3, 3, 1, 3, 3, 1]


def test_load_data_shards_draw_different_pairs(seven_pairs):
    drawn = []
    for shard in range(2):
        batches = take(loader(seven_pairs, shard=shard, num_shards=2), 4)
        drawn.append(set(torch.cat([info["index"] for _, info in batches]).tolist()))
    assert drawn == [{0, 2, 4, 6}, {1, 3, 5}]


def test_load_data_wraps_an_empty_shard(seven_pairs):
    sampler = ShardBatchSampler(7, batch_size=2, shard=7, num_shards=8)
    assert {idx for idx, _ in sampler.batch(0) + sampler.batch(5)} == {0}


def test_load_data_workers_give_the_same_batches(seven_pairs):
    reference = take(loader(seven_pairs, seed=1, start_step=2), 4)
    assert same_batches(
        reference, take(loader(seven_pairs, seed=1, start_step=2, num_workers=2), 4)
    )


def test_load_data_from_data_dir(seven_pairs):
    x, info = next(loader(None, data_dir=seven_pairs.root, num_image_train=2))
    assert x.shape == (3, 6, 8, 8)
    assert set(info["class_id"].tolist()) <= {1, 2}


# ----------------------------------------------------------------------------------------------
# mask_statistics of a dataset's masks (read_masks)


def test_mask_statistics_by_hand(tmp_path):
    index = find_pairs(make_official(tmp_path))
    stats = mask_statistics(read_masks(index, 4), num_defect=4)
    pixels = H * W
    assert stats["num_images"] == 3
    assert stats["share_with_class"] == pytest.approx([1, 1 / 3, 2 / 3, 1 / 3, 0])
    area_1 = 48 / pixels / 3
    area_2 = (4 + 6) / pixels / 3
    area_3 = 16 / pixels / 3
    expected = [1 - area_1 - area_2 - area_3, area_1, area_2, area_3, 0]
    assert stats["mean_area"] == pytest.approx(expected)


def test_mask_statistics_mvtec(tmp_path):
    index = find_pairs(make_mvtec(tmp_path, types=("crack",), n=2))
    stats = mask_statistics(read_masks(index, 1), num_defect=1)
    area = (box(0).sum() + box(1).sum()) / (2 * H * W)
    assert stats["mean_area"] == pytest.approx([1 - area, area])
    assert stats["share_with_class"] == [1.0, 1.0]


def test_read_masks_names_the_mask_with_a_value_above_num_defect(tmp_path):
    index = find_pairs(make_official(tmp_path))
    assert index.num_defect == 3
    with pytest.raises(
        DatasetError, match=r"converted_ground_truth/.*: mask value 3 > num_defect=2"
    ):
        mask_statistics(read_masks(index, 2), num_defect=2)
