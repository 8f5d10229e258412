"""Training-recipe options: EMA warm-up, consistent mask numerics, class weights, crops, good images."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from PIL import Image

from defect_gen import masks
from defect_gen.data.dataset import DefectDataset, defect_crop_window
from defect_gen.data.files import read_masks
from defect_gen.data.layouts import find_good_pairs, find_pairs
from defect_gen.data.stats import mask_class_weights, mask_statistics
from defect_gen.data.toy import write_dataset
from defect_gen.errors import ConfigError, DatasetError
from defect_gen.gaussian_diffusion import GaussianDiffusion
from defect_gen.patch_unet import receptive_field
from defect_gen.training.config import load_config
from defect_gen.training.factory import build_diffusion, build_model
from defect_gen.training.loop import TrainLoop, ema_rate_at
from defect_gen.two_stage import sample_two_stage

TINY = [
    "data.params.resolution=16",
    "model.params.image_size=16",
    "data.bs_per_gpu=2",
    "train.max_images=0",
]


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


# ------------------------------------------------------------------------------------------------
# EMA warm-up


def test_ema_warmup_formula():
    assert ema_rate_at(0.999, 0, True) == pytest.approx(0.1)
    assert ema_rate_at(0.999, 8, True) == pytest.approx(0.5)
    assert ema_rate_at(0.999, 80, True) == pytest.approx(0.9)
    assert ema_rate_at(0.999, 890, True) == pytest.approx(0.99)
    assert ema_rate_at(0.999, 8991, True) == 0.999  # (1 + s) / (10 + s) > 0.999 from s = 8991 on
    assert ema_rate_at(0.999, 8989, True) < 0.999
    assert ema_rate_at(0.999, 0, False) == 0.999


def _random_batches(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    while True:
        rgb = torch.rand(shape[0], 3, *shape[2:], generator=gen) * 2 - 1
        index = torch.randint(0, shape[1] - 3, (shape[0], *shape[2:]), generator=gen)
        yield torch.cat([rgb, masks.encode(index, shape[1] - 4)], 1), {}


def _loop(tmp_path, *overrides, stats=None):
    cfg = load_config(REPO / "configs/tiny_small.yaml", [*TINY, *overrides], num_defect=4)
    torch.manual_seed(0)
    shape = (2, cfg["model"]["params"]["in_channels"], 16, 16)
    return TrainLoop(
        cfg=cfg, model=build_model(cfg), diffusion=build_diffusion(cfg),
        make_data=lambda start: _random_batches(shape), work_dir=str(tmp_path),
        device=torch.device("cpu"), data_stats=stats,
    )  # fmt: skip


def test_ema_after_warmup_steps_equals_hand_computation(tmp_path):
    loop = _loop(tmp_path, "train.ema_warmup=true", "train.ema_rate=0.995")
    ema = [p.detach().clone() for p in loop.model.parameters()]  # the EMA starts at the init
    for step in range(4):
        loop._train_step(next(loop.data)[0])
        loop.step += 1
        rate = min(0.995, (1 + step) / (10 + step))
        ema = [rate * e + (1 - rate) * p.detach() for e, p in zip(ema, loop.model.parameters())]
    for e, p in zip(ema, loop.ema.parameters()):
        torch.testing.assert_close(p, e, atol=1e-6, rtol=1e-5)
    # Without the warm-up the same steps leave the EMA near the random initial weights.
    cold = _loop(tmp_path, "train.ema_warmup=false", "train.ema_rate=0.995")
    start = [p.detach().clone() for p in cold.model.parameters()]
    for _ in range(4):
        cold._train_step(next(cold.data)[0])
        cold.step += 1

    def dist(a, b):
        return sum(((x - y) ** 2).sum() for x, y in zip(a, b)).sqrt().item()

    warm_lag = dist(loop.ema.parameters(), loop.model.parameters())
    cold_lag = dist(cold.ema.parameters(), cold.model.parameters())
    assert cold_lag > 3 * warm_lag
    assert dist(cold.ema.parameters(), start) < 0.05 * dist(cold.model.parameters(), start)


# ------------------------------------------------------------------------------------------------
# Consistent mask numerics


def test_consistent_mode_softmax_and_clamps_on_hand_made_tensors():
    ce = GaussianDiffusion(seperate_channel_loss=True, mask_mode="consistent")
    out = torch.zeros(1, 6, 1, 2)
    out[0, :3, 0, 0] = torch.tensor([1.5, -2.0, 0.5])  # RGB beyond [-1, 1] is clamped
    out[0, 3:, 0, 0] = torch.tensor([0.0, 2.0, 4.0])  # logits
    out[0, 3:, 0, 1] = torch.tensor([9.0, 1.0, -3.0])
    x0 = ce.model_x0(out)
    torch.testing.assert_close(x0[0, 3:, 0, 0], torch.softmax(torch.tensor([0.0, 2.0, 4.0]), 0))
    torch.testing.assert_close(x0[0, 3:].sum(0), torch.ones(1, 2))
    hat = ce.clamp_x0(x0)
    assert hat[0, :3, 0, 0].tolist() == [1.0, -1.0, 0.5]
    # The update uses the probabilities: a t -> t_prev step equals the step of a model that had
    # predicted them as x0 directly.
    x_t = torch.randn(1, 6, 1, 2, generator=torch.Generator().manual_seed(0))
    plain = GaussianDiffusion(mask_mode="consistent")
    a, _ = ce.sample_step(out, x_t, 500, 400, sampler="ddim")
    b, _ = plain.sample_step(x0, x_t, 500, 400, sampler="ddim")
    torch.testing.assert_close(a, b)
    # The last step gives the one-hot of the logits' argmax.
    final, _ = ce.sample_step(out, x_t, 5, -1, sampler="cold")
    assert masks.decode(final).tolist() == [[[2, 0]]]
    assert final[0, 3:].sum(0).tolist() == [[1.0, 1.0]]

    # An MSE-trained model in the consistent mode: mask channels clamped to [0, 1], not [-1, 1];
    # the final mask comes from the unclamped prediction, so 1.5 vs 2.0 (both 1.0 once clamped) is
    # class 2, not a tie resolved to background.
    mse = GaussianDiffusion(mask_mode="consistent")
    out = torch.tensor([0.2, 0.3, 0.4, 1.5, -0.5, 2.0]).reshape(1, 6, 1, 1)
    assert mse.clamp_x0(out).flatten().tolist() == pytest.approx([0.2, 0.3, 0.4, 1.0, 0.0, 1.0])
    final, _ = mse.sample_step(out, torch.zeros(1, 6, 1, 1), 3, -1, sampler="ddim")
    assert masks.decode(final).item() == 2
    faithful = GaussianDiffusion()
    assert faithful.clamp_x0(out).flatten().tolist() == pytest.approx([0.2, 0.3, 0.4, 1, -0.5, 1])


def test_consistent_mode_is_validated():
    with pytest.raises(ValueError, match="mask_mode"):
        GaussianDiffusion(mask_mode="logit")


@pytest.mark.parametrize("sampler", ["cold", "ddim"])
def test_ce_trained_tiny_model_samples_valid_masks_only_in_consistent_mode(tmp_path, sampler):
    loop = _loop(
        tmp_path, "train.seperate_channel_loss=true", "diffusion.params.mask_mode=consistent",
        "optimizer.params.lr=0.003",
    )  # fmt: skip
    for _ in range(8):
        loop._train_step(next(loop.data)[0])
        loop.step += 1
    model = loop.model.eval()
    shape = (3, 8, 16, 16)
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x, t):
            seen.append(x[:, 3:].abs().max().item())
            return self.model(x, t)

    probe = Probe()
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    x = sample_two_stage(
        loop.diffusion, probe, probe, shape, 500, sampler=sampler, timestep_respacing="6",
        generator=gens,
    )  # fmt: skip
    mask = x[:, 3:]
    assert mask.min() >= 0 and mask.max() <= 1
    decoded = masks.decode(x)
    assert decoded.min() >= 0 and decoded.max() <= 4
    assert torch.equal(mask, masks.encode(decoded, 4))  # a valid one-hot mask
    assert max(seen) < 6  # x_t's mask channels stay at the scale of the noised one-hot data
    # The same model read faithfully (logits as x0) leaves the [0, 1] range of masks.
    faithful = copy.copy(loop.diffusion)
    faithful.mask_mode = "faithful"
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    y = sample_two_stage(
        faithful, model, model, shape, 500, sampler=sampler, timestep_respacing="6", generator=gens
    )
    assert y[:, 3:].min() < 0


# ------------------------------------------------------------------------------------------------
# Class-weighted mask loss


def test_class_weights_from_hand_made_masks(tmp_path):
    # Two 10 x 10 masks: class 1 covers 4 + 0 pixels, class 2 covers 0 + 1, background the rest.
    a, b = np.zeros((10, 10)), np.zeros((10, 10))
    a[0:2, 0:2] = 1
    b[5, 5] = 2
    for name, m in (("a", a), ("b", b)):
        save(tmp_path / "test" / "t" / f"{name}.png", np.zeros((10, 10, 3)))
        save(tmp_path / "converted_ground_truth" / "t" / f"{name}.png", m)
    index = find_pairs(tmp_path, num_defect=3)
    stats = mask_statistics(read_masks(index, 3), num_defect=3)
    assert stats["mean_area"] == pytest.approx([0.975, 0.02, 0.005, 0.0])
    weights = mask_class_weights(stats["mean_area"], 0.5, 10)
    # sqrt(0.975 / 0.02) = 6.98; sqrt(0.975 / 0.005) = 13.96 capped at 10; class 3 has no pixels.
    assert weights == pytest.approx([1.0, 6.98212, 10.0, 1.0], rel=1e-5)
    assert mask_class_weights(stats["mean_area"], 1.0, 100) == pytest.approx(
        [1.0, 48.75, 100.0, 1.0]
    )


@pytest.mark.parametrize("separate", [True, False])
def test_weighted_mask_loss_equals_hand_computation(separate):
    gen = torch.Generator().manual_seed(3)
    index = torch.randint(0, 3, (2, 4, 4), generator=gen)
    x0 = torch.cat([torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1, masks.encode(index, 2)], 1)
    out = torch.randn(2, 6, 4, 4, generator=gen)
    weights = torch.tensor([1.0, 3.0, 7.0])
    diffusion = GaussianDiffusion(seperate_channel_loss=separate)
    t = torch.tensor([3, 700])
    got = diffusion.training_losses(lambda x, t: out, x0, t, mask_class_weights=weights.tolist())
    pixel_weight = weights[index]  # [2 x 4 x 4]
    if separate:
        ce = torch.nn.functional.cross_entropy(out[:, 3:], index, reduction="none")
        expect_mask = (ce * pixel_weight).mean(dim=(1, 2))
        expect = ((out[:, :3] - x0[:, :3]) ** 2).mean(dim=(1, 2, 3)) + 0.2 * expect_mask
    else:
        sq = (out - x0) ** 2
        expect_mask = (sq[:, 3:] * pixel_weight[:, None]).mean(dim=(1, 2, 3))
        expect = (sq[:, :3].sum(dim=(1, 2, 3)) + expect_mask * 3 * 16) / (6 * 16)
    torch.testing.assert_close(got["loss_mask"], expect_mask)
    torch.testing.assert_close(got["loss"], expect)
    ones = diffusion.training_losses(lambda x, t: out, x0, t, mask_class_weights=[1.0] * 3)
    torch.testing.assert_close(
        ones["loss"], diffusion.training_losses(lambda x, t: out, x0, t)["loss"]
    )


def test_class_weights_are_stored_and_used_by_the_loop(tmp_path):
    stats = {"mean_area": [0.9, 0.09, 0.01, 0.0, 0.0]}
    loop = _loop(tmp_path, "train.mask_class_weight_power=0.5", stats=stats)
    assert loop.mask_class_weights == pytest.approx([1.0, 10**0.5, 3 * 10**0.5, 1.0, 1.0])
    assert _loop(tmp_path, stats=stats).mask_class_weights is None


# ------------------------------------------------------------------------------------------------
# Defect-centred crops


def test_defect_crop_holds_its_pixel_and_has_the_size():
    rng = np.random.default_rng(0)
    index_map = np.zeros((40, 30), np.int64)
    index_map[1, 28] = 2  # a one-pixel defect near a corner
    index_map[20:30, 5:9] = 1
    classes = set()
    for _ in range(300):
        size = int(rng.integers(1, 31))
        u = rng.random(5)
        top, left, centre = defect_crop_window(index_map, size, u, random_share=0.25)
        assert 0 <= top <= 40 - size and 0 <= left <= 30 - size
        if u[0] < 0.25:
            assert centre is None
            continue
        row, col = centre
        assert index_map[row, col] > 0
        assert top <= row < top + size and left <= col < left + size
        classes.add(int(index_map[row, col]))
    assert classes == {1, 2}  # the one-pixel class is drawn as often as the large one
    # No defect: a random crop.
    assert defect_crop_window(np.zeros((8, 8), np.int64), 4, [0.9, 0, 0, 0.5, 0.5])[2] is None


def test_dataset_crops_to_the_configured_size_around_defects(tmp_path):
    m = np.zeros((32, 32))
    m[2:4, 28:30] = 1
    save(tmp_path / "test" / "t" / "a.png", np.zeros((32, 32, 3)))
    save(tmp_path / "converted_ground_truth" / "t" / "a.png", m)
    index = find_pairs(tmp_path, num_defect=1)
    data = DefectDataset(index, resolution=32, num_defect=1, crop=8, crop_random=0.0)
    for seed in range(20):
        x, info = data[(0, seed)]
        assert x.shape == (5, 8, 8)
        assert masks.decode(x[None]).max() == 1 and info["class_ids"].tolist() == [1]
    # Uniform random crops mostly miss the 2 x 2 defect in the corner.
    random = DefectDataset(index, resolution=32, num_defect=1, crop=8, crop_random=1.0)
    hits = sum(random[(0, seed)][1]["class_ids"].numel() for seed in range(20))
    assert hits < 10
    full = DefectDataset(index, resolution=32, num_defect=1)
    assert full[(0, 3)][0].shape == (5, 32, 32)


def test_cpu_small_stays_a_patch_model():
    cfg = load_config(REPO / "configs/cpu_small.yaml")
    torch.manual_seed(0)
    rf = receptive_field(build_model(cfg), 64)
    assert rf == (45, 45) and max(rf) < cfg["data"]["params"]["resolution"]
    assert cfg["data"]["params"]["crop"] >= max(rf)


# ------------------------------------------------------------------------------------------------
# Good images


def test_good_images_join_with_background_masks(tmp_path):
    write_dataset(tmp_path / "mv", layout="mvtec", num_per_type=1, size=16, seed=0, num_good=3)
    good = find_good_pairs(tmp_path / "mv", 5)  # fewer than asked: those found
    assert [p.image.rsplit("/", 1)[1] for p in good] == ["000.png", "001.png", "002.png"]
    assert all(p.mask is None and p.class_id == 0 for p in good)
    index = find_pairs(tmp_path / "mv", num_image_train=1)
    both = index.subset(index.pairs + good[:2])
    data = DefectDataset(both, resolution=16, num_defect=index.num_defect)
    x, info = data[len(index.pairs)]
    assert masks.decode(x[None]).max() == 0 and info["class_ids"].numel() == 0
    # A good folder beside the defect types (official layout).
    official = tmp_path / "official"
    write_dataset(official, layout="official", num_per_type=1, size=16, seed=0)
    with pytest.raises(DatasetError, match="num_good=2 but no good images found"):
        find_good_pairs(official, 2)
    save(official / "test" / "good" / "g.png", np.zeros((16, 16, 3)))
    assert [p.image for p in find_good_pairs(official, 2)] == [str(official / "test/good/g.png")]


def test_num_good_without_good_images_is_one_error_line(tmp_path):
    write_dataset(tmp_path / "data", layout="official", num_per_type=1, size=16, seed=0)
    cmd = [sys.executable, str(REPO / "scripts/train.py"), "--config",
           str(REPO / "configs/tiny_large.yaml"), "--work_dir", str(tmp_path / "run"),
           "--data_dir", str(tmp_path / "data"), *TINY, "data.params.num_good=3"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "num_good=3 but no good images" in line, line
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# Config keys


@pytest.mark.parametrize(
    "override, message",
    [
        ("diffusion.params.mask_mode=logits", "diffusion.params.mask_mode must be one of"),
        ("data.params.crop_random=0.5", "crop_random is set but data.params.crop is not"),
        ("data.params.crop=64", "data.params.crop must be an integer in 1..32"),
        ("data.params.crop=15", "data.params.crop 15 must be a multiple of 4"),
        ("train.mask_class_weight_cap=5", "mask_class_weight_power is 0"),
        ("train.mask_class_weight_power=-1", r"mask_class_weight_power must be a number in \[0, 100\]"),
        ("data.params.num_good=-2", r"num_good must be an integer in \[0, 1000000000\]"),
        ("train.ema_warmup=maybe", "train.ema_warmup must be true or false"),
    ],
)
def test_bad_recipe_keys_are_refused(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(REPO / "configs/tiny_large.yaml", [override], num_defect=4)
    # a bad value names where it came from; a bad combination names the config file
    assert "tiny_large.yaml" in str(info.value) or "command line" in str(info.value)


def test_release_configs_keep_the_release_behaviour():
    for name in ("large", "small"):
        cfg = load_config(REPO / f"configs/{name}.yaml")
        assert cfg["diffusion"]["params"]["mask_mode"] == "faithful"
        assert cfg["train"]["ema_warmup"] is False and cfg["train"]["mask_class_weight_power"] == 0
        assert cfg["data"]["params"]["crop"] is None and cfg["data"]["params"]["num_good"] == 0
    for name in ("cpu_large", "cpu_small"):
        cfg = load_config(REPO / f"configs/{name}.yaml")
        assert cfg["diffusion"]["params"]["mask_mode"] == "consistent"
        assert cfg["train"]["ema_warmup"] and cfg["train"]["seperate_channel_loss"]
        assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg


def test_models_of_a_pair_must_share_the_mask_numerics():
    from defect_gen.errors import CheckpointError
    from defect_gen.sampling.pair import LoadedModel, check_compatible

    def loaded(name, kind, *overrides):
        cfg = load_config(REPO / f"configs/{name}.yaml", list(overrides))
        return LoadedModel(f"{name}.pt", kind, None, cfg, name, 1, None, None, "ema", None)

    large = loaded("cpu_large", "large")
    check_compatible(large, loaded("cpu_small", "small"))
    with pytest.raises(CheckpointError, match="diffusion mask_mode consistent vs faithful"):
        check_compatible(large, loaded("cpu_small", "small", "diffusion.params.mask_mode=faithful"))
    with pytest.raises(CheckpointError, match="train.seperate_channel_loss True vs False"):
        check_compatible(large, loaded("cpu_small", "small", "train.seperate_channel_loss=false"))
