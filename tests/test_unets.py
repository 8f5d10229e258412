"""The two UNets against the release: state_dict keys, shapes, outputs, parameter counts, receptive fields."""

import re

import pytest
import torch
from conftest import shared_path

from defect_gen.nn import count_parameters
from defect_gen.patch_unet import PatchUNetModel, receptive_field
from defect_gen.unet import UNetModel

# The model params of the release's shipped large_recep.yml / small_recep.yml.
LARGE = dict(
    image_size=256,
    in_channels=9,
    out_channels=9,
    model_channels=128,
    attention_downsample=[8, 16, 32],
    num_res_blocks=2,
    num_head_channels=16,
    channel_mult=[1, 1, 2, 2, 4, 4],
)
SMALL = dict(
    image_size=256,
    in_channels=6,
    out_channels=6,
    model_channels=192,
    attention_resolutions=2,
    num_res_blocks=2,
    num_head_channels=16,
    channel_mult=[1, 2, 4],
)


def read_param_listing(name):
    rows = []
    for line in shared_path("reference", name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            rows.append((key, tuple(int(v) for v in re.findall(r"\d+", shape))))
    return rows


@pytest.mark.parametrize("name, cls", [("large_tiny", UNetModel), ("small_tiny", PatchUNetModel)])
@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_official_tiny_weights_reproduce_outputs(official_unets_tiny, name, cls, backend):
    ref = official_unets_tiny[name]
    model = cls(**ref["params"], attention_backend=backend)
    model.load_state_dict(ref["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        out = model(ref["x"], ref["t"])
    assert out.shape == ref["x"].shape
    torch.testing.assert_close(out, ref["out"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "params, cls, listing, count",
    [
        (LARGE, UNetModel, "official_large_recep_params.txt", 125_385_481),
        (SMALL, PatchUNetModel, "official_small_recep_params.txt", 98_213_382),
    ],
)
def test_shipped_configs_match_release_parameters(params, cls, listing, count):
    model = cls(**params)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == read_param_listing(listing)
    assert count_parameters(model) == count


def test_large_model_at_nine_channels_has_release_parameter_count():
    assert count_parameters(UNetModel(**LARGE)) == 125_385_481


def test_small_model_receptive_field_is_157_px():
    # The receptive field depends on kernel sizes and strides only, not on width: the shipped topology at
    # a narrower width keeps the probe to a second on CPU.
    model = PatchUNetModel(**{**SMALL, "model_channels": 32})
    assert receptive_field(model, 256) == (157, 157)


def test_large_model_receptive_field_is_whole_image():
    model = UNetModel(**{**LARGE, "model_channels": 32})
    assert receptive_field(model, 64) == (64, 64)


def test_sdpa_and_math_attention_agree_in_training_mode():
    torch.manual_seed(0)
    params = dict(
        image_size=16,
        in_channels=6,
        out_channels=6,
        model_channels=32,
        num_res_blocks=1,
        attention_downsample=[1, 2],
        num_head_channels=16,
        channel_mult=[1, 2],
    )
    a = UNetModel(**params, attention_backend="sdpa")
    b = UNetModel(**params, attention_backend="math")
    for p in a.parameters():
        torch.nn.init.normal_(p, std=0.05)
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(2, 6, 16, 16), torch.tensor([5, 900])
    torch.testing.assert_close(a(x, t), b(x, t), atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    params = dict(
        image_size=16,
        in_channels=6,
        out_channels=6,
        model_channels=32,
        num_res_blocks=1,
        attention_downsample=[2],
        num_head_channels=16,
        channel_mult=[1, 2],
    )
    plain = UNetModel(**params)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ckpt = UNetModel(**params, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, 6, 16, 16), torch.tensor([3, 500])
    plain(x, t).square().mean().backward()
    ckpt(x, t).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)
