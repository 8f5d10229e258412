"""Tests of the procedural toy defect data: determinism, layouts, and masks that match visible changes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defect_gen import masks
from defect_gen.data.toy import (
    ALL_TYPES,
    SURFACES,
    defect_classes,
    generate_sample,
    generate_surface,
    write_dataset,
)
from defect_gen.errors import ToyDataError

REPO = Path(__file__).resolve().parents[1]


def _tree(root):
    """Give {relative path: bytes} of every file under `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _load(path):
    return np.asarray(Image.open(path))


def test_classes_sorted_order_is_class_order():
    assert defect_classes() == ["crack", "pit", "scratch", "stain"] == list(ALL_TYPES)
    assert defect_classes(3) == ["pit", "scratch", "stain"]
    assert defect_classes(1) == ["scratch"]
    for k in range(1, 5):
        assert defect_classes(k) == sorted(defect_classes(k))
    for bad in (0, 5, 2.0):
        with pytest.raises(ToyDataError):
            defect_classes(bad)


def test_generate_sample_is_deterministic():
    a = generate_sample(np.random.default_rng(3), size=32, defect_type="stain", return_clean=True)
    b = generate_sample(np.random.default_rng(3), size=32, defect_type="stain", return_clean=True)
    c = generate_sample(np.random.default_rng(4), size=32, defect_type="stain", return_clean=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (32, 32, 3) and a[0].dtype == np.uint8
    assert a[1].shape == (32, 32) and a[1].dtype == np.uint8


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("kind", ALL_TYPES)
def test_mask_covers_exactly_the_visible_change(kind, surface, size):
    cls_id = defect_classes().index(kind) + 1
    for i in range(4):
        rgb, index, clean = generate_sample(
            np.random.default_rng([size, i]),
            size=size,
            defect_type=kind,
            surface=surface,
            multi_defect_p=0.0,
            return_clean=True,
        )
        assert set(np.unique(index)) == {0, cls_id}
        mask = index > 0
        diff = np.abs(rgb.astype(np.int16) - clean.astype(np.int16)).mean(axis=-1)
        # outside the mask the surface is untouched, bit for bit
        assert np.all(diff[~mask] == 0)
        # inside, every pixel changed visibly (>= 10 of 255 grey levels), the mean much more
        assert diff[mask].min() >= 10
        assert diff[mask].mean() >= 20
        # large enough to see at low resolution: >= 0.4% of the image and >= 3 pixels
        assert mask.sum() >= max(3, 0.004 * size * size)


def test_multi_defect_marks_two_classes_without_overlap_loss():
    classes = defect_classes()
    for kind in classes:
        for i in range(3):
            rgb, index, clean = generate_sample(
                np.random.default_rng(i),
                size=48,
                defect_type=kind,
                multi_defect_p=1.0,
                return_clean=True,
            )
            ids = set(np.unique(index).tolist())
            assert len(ids) == 3 and 0 in ids and classes.index(kind) + 1 in ids
            diff = np.abs(rgb.astype(np.int16) - clean.astype(np.int16)).mean(axis=-1)
            assert np.all(diff[index == 0] == 0)
            assert diff[index > 0].min() >= 10
    # with one class there is no other class to add
    _, index = generate_sample(
        np.random.default_rng(0), size=32, defect_type="scratch", num_defect=1, multi_defect_p=1.0
    )
    assert set(np.unique(index).tolist()) == {0, 1}


def test_index_map_encodes_with_masks_module():
    _, index = generate_sample(np.random.default_rng(0), size=32, defect_type="pit", num_defect=3)
    onehot = masks.encode(index, 3)
    assert onehot.shape == (4, 32, 32)
    np.testing.assert_array_equal(onehot.argmax(0).numpy(), index)


def test_generate_surface_and_bad_values():
    clean = generate_surface(np.random.default_rng(0), size=20, surface="fabric")
    assert clean.shape == (20, 20, 3) and clean.dtype == np.uint8
    rng = np.random.default_rng(0)
    with pytest.raises(ToyDataError, match="defect_type"):
        generate_sample(rng, size=32, defect_type="crack", num_defect=3)
    with pytest.raises(ToyDataError, match="size"):
        generate_sample(rng, size=8, defect_type="pit")
    with pytest.raises(ToyDataError, match="surface"):
        generate_sample(rng, size=32, defect_type="pit", surface="glass")
    with pytest.raises(ToyDataError, match="multi_defect_p"):
        generate_sample(rng, size=32, defect_type="pit", multi_defect_p=1.5)


def test_official_layout(tmp_path):
    classes = write_dataset(tmp_path / "d", num_per_type=3, size=40, seed=1, multi_defect_p=0.5)
    root = tmp_path / "d"
    assert classes == defect_classes()
    assert sorted(p.name for p in (root / "test").iterdir()) == classes
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "converted_ground_truth", "test"]
    seen_multi = False
    for cls_id, kind in enumerate(classes, start=1):
        images = sorted(p.name for p in (root / "test" / kind).iterdir())
        assert images == ["000.png", "001.png", "002.png"]
        assert sorted(p.name for p in (root / "converted_ground_truth" / kind).iterdir()) == images
        for name in images:
            rgb = _load(root / "test" / kind / name)
            mask = _load(root / "converted_ground_truth" / kind / name)
            assert rgb.shape == (40, 40, 3) and mask.shape == (40, 40) and mask.dtype == np.uint8
            ids = set(np.unique(mask).tolist())
            assert cls_id in ids and ids <= set(range(len(classes) + 1))
            seen_multi |= len(ids) > 2
    assert seen_multi  # 12 images at p = 0.5: some hold a second class
    readme = (root / "README.md").read_text()
    assert all(f"| {k} | {c} |" in readme for k, c in enumerate(classes, start=1))


def test_mvtec_layout(tmp_path):
    root = tmp_path / "m"
    classes = write_dataset(
        root, layout="mvtec", num_per_type=2, size=32, num_defect=3, multi_defect_p=1.0, num_good=3
    )
    assert classes == ["pit", "scratch", "stain"]
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "ground_truth", "test", "train"]
    assert sorted(p.name for p in (root / "train" / "good").iterdir()) == [
        "000.png",
        "001.png",
        "002.png",
    ]
    for kind in classes:
        assert sorted(p.name for p in (root / "test" / kind).iterdir()) == ["000.png", "001.png"]
        for name in ("000", "001"):
            mask = _load(root / "ground_truth" / kind / f"{name}_mask.png")
            assert mask.shape == (32, 32) and set(np.unique(mask).tolist()) == {0, 255}
    # the binary mask marks exactly the folder's own class of the official index map
    rng = np.random.default_rng([0, ALL_TYPES.index("pit"), 1])
    surface = SURFACES[rng.integers(len(SURFACES))]
    rgb, index = generate_sample(
        rng, size=32, defect_type="pit", num_defect=3, surface=surface, multi_defect_p=1.0
    )
    np.testing.assert_array_equal(_load(root / "test" / "pit" / "001.png"), rgb)
    np.testing.assert_array_equal(
        _load(root / "ground_truth" / "pit" / "001_mask.png") > 0, index == 1
    )
    assert (
        len(np.unique(index)) == 3
    )  # the second defect is in the image but not in the binary mask


def test_write_dataset_is_byte_deterministic(tmp_path):
    kwargs = dict(layout="mvtec", num_per_type=2, size=24, seed=5)
    write_dataset(tmp_path / "a", **kwargs)
    write_dataset(tmp_path / "b", **kwargs)
    write_dataset(tmp_path / "c", **{**kwargs, "seed": 6})
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys()
    assert a["test/crack/000.png"] != c["test/crack/000.png"]
    # rewriting into the same toy folder replaces it and gives the same bytes
    write_dataset(tmp_path / "a", **{**kwargs, "num_per_type": 4})
    write_dataset(tmp_path / "a", **kwargs)
    assert _tree(tmp_path / "a") == b


def test_more_images_keep_the_first_ones(tmp_path):
    write_dataset(tmp_path / "small", num_per_type=2, size=24)
    write_dataset(tmp_path / "big", num_per_type=4, size=24)
    small, big = _tree(tmp_path / "small"), _tree(tmp_path / "big")
    for name, data in small.items():
        if name != "README.md":
            assert big[name] == data


def test_write_dataset_refuses_foreign_folder_and_bad_values(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ToyDataError, match="not empty"):
        write_dataset(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ToyDataError, match="layout"):
        write_dataset(tmp_path / "x", layout="coco")
    with pytest.raises(ToyDataError, match="num_per_type"):
        write_dataset(tmp_path / "x", num_per_type=-1)
    with pytest.raises(ToyDataError, match="surface"):
        write_dataset(tmp_path / "x", surfaces=["wood"])


def test_script_from_another_folder(tmp_path):
    out = tmp_path / "toy"
    script = REPO / "scripts" / "make_toy_data.py"
    cmd = [sys.executable, str(script), "--out", str(out), "--num_per_type", "2", "--size", "32"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1=crack, 2=pit, 3=scratch, 4=stain" in done.stdout
    assert len(list((out / "test").rglob("*.png"))) == 8
    assert len(list((out / "converted_ground_truth").rglob("*.png"))) == 8

    bad = subprocess.run(
        cmd[:2] + ["--out", str(tmp_path / "y"), "--num_defect", "7"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr
