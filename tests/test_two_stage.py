"""The switch: which model denoises which timestep (the release's bug 1 must not come back)."""

import pytest
import torch

from defect_gen.gaussian_diffusion import GaussianDiffusion
from defect_gen.respace import sampling_timesteps
from defect_gen.two_stage import sample_two_stage


class Recorder(torch.nn.Module):
    """A stand-in model that records the timesteps it is called with and predicts zeros."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, t):
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        assert bool((t == t[0]).all())
        self.calls.append(int(t[0]))
        return torch.zeros_like(x)


def run(switch_t, respacing=None, sampler="cold"):
    diffusion = GaussianDiffusion()
    large, small = Recorder(), Recorder()
    before = (diffusion.num_timesteps, diffusion.alphas_cumprod.copy())
    sample_two_stage(
        diffusion,
        large,
        small,
        (2, 6, 4, 4),
        switch_t,
        sampler=sampler,
        timestep_respacing=respacing,
        generator=torch.Generator().manual_seed(0),
    )
    assert diffusion.num_timesteps == before[0] == 1000
    assert (diffusion.alphas_cumprod == before[1]).all()
    return large.calls, small.calls


def test_switch_400_full_process():
    large, small = run(400)
    assert large == list(range(999, 399, -1))
    assert small == list(range(399, -1, -1))


@pytest.mark.parametrize("sampler", ["cold", "ddim", "ddpm"])
def test_switch_400_respaced(sampler):
    large, small = run(400, "100", sampler)
    assert all(t >= 400 for t in large) and all(t < 400 for t in small)
    assert large + small == sampling_timesteps(1000, "100")
    assert len(large) + len(small) == 100 and len(set(large + small)) == 100


def test_switch_extremes():
    large, small = run(0)
    assert large == list(range(999, -1, -1)) and small == []
    large, small = run(1000)
    assert large == [] and small == list(range(999, -1, -1))


def test_switch_out_of_range_is_refused():
    with pytest.raises(ValueError, match="switch_t"):
        run(1001)


def test_per_sample_generators_make_samples_batch_independent():
    diffusion = GaussianDiffusion()
    model = Recorder()
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    both = sample_two_stage(
        diffusion,
        model,
        model,
        (2, 6, 4, 4),
        400,
        sampler="ddpm",
        timestep_respacing="20",
        generator=gens([7, 8]),
    )
    alone = sample_two_stage(
        diffusion,
        model,
        model,
        (1, 6, 4, 4),
        400,
        sampler="ddpm",
        timestep_respacing="20",
        generator=gens([8]),
    )
    torch.testing.assert_close(both[1:], alone, atol=1e-6, rtol=0)
