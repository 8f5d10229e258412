"""
Every speed or memory option gives the reference mode's numbers (fp32, math attention, NCHW, no
checkpointing) within a stated tolerance; FLOP counting is exact.

torch.compile has no test here: compiling even a tiny UNet took minutes on the 2-core CPU of CI.
"""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from benchmarks.perf import (
    flops_per_forward,
    flops_per_train_step,
    randomize_zero_parameters_,
    suggest_batch_size,
)
from defect_gen.gaussian_diffusion import GaussianDiffusion
from defect_gen.patch_unet import PatchUNetModel
from defect_gen.training.config import load_config
from defect_gen.training.factory import build_model
from defect_gen.two_stage import sample_two_stage
from defect_gen.unet import UNetModel

REPO = Path(__file__).resolve().parents[1]
CHANNELS, SIZE = 8, 16
LARGE = dict(
    image_size=SIZE, in_channels=CHANNELS, out_channels=CHANNELS, model_channels=32,
    num_res_blocks=1, attention_downsample=[2], num_head_channels=16, channel_mult=[1, 2],
)  # fmt: skip
SMALL = dict(
    image_size=SIZE, in_channels=CHANNELS, out_channels=CHANNELS, model_channels=32,
    num_res_blocks=1, channel_mult=[1, 2],
)  # fmt: skip


def make(cls, params, seed=0, **options):
    """A tiny model with random weights, zero-initialised layers redrawn, so every layer matters."""
    torch.manual_seed(seed)
    model = cls(**params, **options)
    return randomize_zero_parameters_(model, std=0.1, generator=torch.Generator().manual_seed(seed))


def twin(model, cls, params, **options):
    """The same weights in a model built with other options."""
    other = cls(**params, **options)
    other.load_state_dict(model.state_dict(), strict=True)
    return other


def inputs(n=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, CHANNELS, SIZE, SIZE, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)
    return x, t


def forward_and_grads(model, x, t, memory_format=torch.contiguous_format):
    """Give (output, {name: grad}, input grad) of a fixed scalar loss of the model's output."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone(memory_format=memory_format).requires_grad_(True)
    out = model(x, t)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return out.detach(), grads, x.grad.detach()


def assert_same(a, b, *, rel):
    """
    Assert that two (output, grads, input grad) agree to `rel` of each one's largest entry.

    Parameter gradients are measured against the largest entry over all of them: float32 sums in
    another order differ at that scale, and the gradients of conv biases that the next GroupNorm
    (one channel per group here) cancels are zero in exact arithmetic: they are rounding noise.
    """
    out_a, grads_a, xg_a = a
    out_b, grads_b, xg_b = b
    torch.testing.assert_close(out_b, out_a, atol=rel * out_a.abs().max().item(), rtol=0)
    torch.testing.assert_close(xg_b, xg_a, atol=rel * xg_a.abs().max().item(), rtol=0)
    assert grads_a.keys() == grads_b.keys()
    scale = max(g.abs().max().item() for g in grads_a.values())
    assert scale > 0
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], atol=rel * scale, rtol=0, msg=k)


@pytest.mark.parametrize("new_order", [False, True])
def test_sdpa_attention_matches_math_forward_and_gradients(new_order):
    ref = make(UNetModel, LARGE, attention_backend="math", use_new_attention_order=new_order)
    sdpa = twin(ref, UNetModel, LARGE, attention_backend="sdpa", use_new_attention_order=new_order)
    x, t = inputs()
    a, b = forward_and_grads(ref, x, t), forward_and_grads(sdpa, x, t)
    assert a[0].abs().max() > 0.1  # the redrawn output layers make the output depend on the input
    assert_same(a, b, rel=1e-5)


@pytest.mark.parametrize("cls, params", [(UNetModel, LARGE), (PatchUNetModel, SMALL)])
def test_channels_last_matches_nchw_forward_and_gradients(cls, params):
    ref = make(cls, params)
    cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
    convs = [p for p in cl.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    x, t = inputs()
    a = forward_and_grads(ref, x, t)
    b = forward_and_grads(cl, x, t, memory_format=torch.channels_last)
    assert_same(a, b, rel=1e-5)


@pytest.mark.parametrize("cls, params", [(UNetModel, LARGE), (PatchUNetModel, SMALL)])
def test_gradient_checkpointing_gives_the_same_gradients(cls, params):
    ref = make(cls, params)
    ckpt = twin(ref, cls, params, use_checkpoint=True)
    x, t = inputs()
    assert_same(forward_and_grads(ref, x, t), forward_and_grads(ckpt, x, t), rel=1e-6)
    # and it does save memory: far fewer activations are kept for the backward pass
    assert saved_bytes(ckpt, x, t) < 0.5 * saved_bytes(ref, x, t)


def saved_bytes(model, x, t):
    """Give the bytes of the tensors autograd saves for the backward pass of one forward."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x.requires_grad_(False), t)
    return total


@pytest.mark.parametrize("cls, params", [(UNetModel, LARGE), (PatchUNetModel, SMALL)])
def test_bf16_autocast_forward_is_close_to_fp32(cls, params):
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 0.2% per operation); through a dozen
    # layers the output's relative error stays well below 2%.
    model = make(cls, params).eval()
    x, t = inputs(n=4)
    with torch.no_grad():
        ref = model(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t)
    assert low.dtype == torch.float32  # the models give their input's dtype back
    rel = (low - ref).norm() / ref.norm()
    assert 0 < rel < 2e-2


def test_two_stage_sampling_with_sdpa_matches_math():
    diffusion = GaussianDiffusion()
    shape = (2, CHANNELS, SIZE, SIZE)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    samples = []
    for backend in ("math", "sdpa"):
        large = make(UNetModel, LARGE, seed=0, attention_backend=backend).eval()
        small = make(PatchUNetModel, SMALL, seed=1).eval()
        samples.append(
            sample_two_stage(
                diffusion, large, small, shape, 400, timestep_respacing="10", noise=noise
            )
        )
    assert not torch.allclose(samples[0], noise)  # the sampler moved away from the noise
    torch.testing.assert_close(samples[1], samples[0], atol=1e-4, rtol=0)


def test_flops_of_a_convolution_are_hand_counted():
    cin, cout, k, h, w = 3, 5, 3, 8, 6
    conv = nn.Conv2d(cin, cout, k, padding=1)
    assert flops_per_forward(conv, (1, cin, h, w)) == 2 * cin * cout * k * k * h * w
    assert flops_per_forward(conv, (4, cin, h, w)) == 4 * 2 * cin * cout * k * k * h * w
    # backward: one product for the input gradient and one for the weight gradient, each as costly
    assert flops_per_train_step(conv, (1, cin, h, w)) == 3 * 2 * cin * cout * k * k * h * w
    assert conv.weight.device.type == "cpu"  # counting ran on meta copies


def test_meta_flop_count_equals_a_real_forward():
    from torch.utils.flop_counter import FlopCounterMode

    model = make(UNetModel, LARGE)
    x, t = inputs()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, t)
    assert flops_per_forward(model, tuple(x.shape)) == counter.get_total_flops() > 0


def test_suggest_batch_size_on_cpu_gives_the_default_within_bounds():
    model = make(PatchUNetModel, SMALL)
    assert suggest_batch_size(model, (CHANNELS, SIZE, SIZE), "cpu") == 8
    assert suggest_batch_size(model, (CHANNELS, SIZE, SIZE), "cpu", max_batch=3) == 3
    assert (
        suggest_batch_size(model, (CHANNELS, SIZE, SIZE), torch.device("cpu"), cpu_default=0) == 1
    )


def test_randomize_zero_parameters_redraws_only_all_zero_tensors():
    torch.manual_seed(0)
    model = UNetModel(**LARGE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    zero = [k for k, v in before.items() if not v.any()]
    assert zero  # the output convolutions start at zero
    randomize_zero_parameters_(model, std=0.1)
    after = model.state_dict()
    for k, v in before.items():
        if k in zero:
            assert after[k].any() and 0.05 < after[k].std() < 0.2
        else:
            assert torch.equal(after[k], v)


def test_shipped_configs_have_the_release_notes_flops():
    # UPSTREAM_NOTES: 507.6 GFLOP (large) and 2113 GFLOP (small) per forward at 256 px, 9 channels.
    counts = {}
    for name in ("large", "small"):
        cfg = load_config(str(REPO / "configs" / f"{name}.yaml"))
        with torch.device("meta"):
            model = build_model(cfg)
        counts[name] = flops_per_forward(model, (1, 9, 256, 256)) / 1e9
    assert counts["large"] == pytest.approx(507.6, abs=0.05)
    assert counts["small"] == pytest.approx(2113.2, abs=0.05)


def test_bench_script_runs_its_flop_count():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--preset", "tiny", "--flops-only"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    pattern = r"(\d+) channels, (\d+) px.*forward large ([\d.]+), small ([\d.]+)"
    found = re.search(pattern, out.stdout)
    assert found, out.stdout
    channels, size = int(found.group(1)), int(found.group(2))
    # What the bench prints is the count of the tiny configs' models (4 defect classes).
    for name, printed in (("large", found.group(3)), ("small", found.group(4))):
        cfg = load_config(str(REPO / "configs" / f"tiny_{name}.yaml"), num_defect=4)
        assert cfg["model"]["params"]["in_channels"] == channels
        with torch.device("meta"):
            model = build_model(cfg)
        expected = flops_per_forward(model, (1, channels, size, size)) / 1e9
        assert float(printed) == pytest.approx(expected, abs=0.0005)
