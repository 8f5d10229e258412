"""Schedules and samplers against the release's recorded tensors and against exact oracles."""

import math

import numpy as np
import pytest
import torch

from defect_gen.gaussian_diffusion import GaussianDiffusion
from defect_gen.respace import sampling_timesteps, space_timesteps
from defect_gen.two_stage import sample_two_stage
from defect_gen.unet import UNetModel


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedules_match_release(official_diffusion_reference, schedule):
    diffusion = GaussianDiffusion(schedule=schedule)
    assert diffusion.betas.dtype == np.float64
    ref = official_diffusion_reference
    np.testing.assert_allclose(diffusion.betas, ref[f"{schedule}_betas"].double(), atol=1e-6)
    np.testing.assert_allclose(
        diffusion.alphas_cumprod, ref[f"{schedule}_alphas_cumprod"].double(), atol=1e-6
    )


def test_cold_steps_match_release(official_diffusion_reference, official_unets_tiny):
    ref = official_unets_tiny["large_tiny"]
    model = UNetModel(**ref["params"])
    model.load_state_dict(ref["state_dict"], strict=True)
    model.eval()
    diffusion = GaussianDiffusion(parameterization="x0", schedule="cosine")
    for step in official_diffusion_reference["cold_steps_large_tiny_cosine_x0_clip"]:
        t, x_t = step["t"], step["x_t"]
        with torch.no_grad():
            out = model(x_t, torch.full((x_t.shape[0],), t)) * 20  # as recorded: about half clamped
        x_prev, x0_hat = diffusion.sample_step(out, x_t, t, t - 1, sampler="cold")
        torch.testing.assert_close(x0_hat, step["x0_hat"], atol=1e-3, rtol=0)
        torch.testing.assert_close(x_prev, step["x_prev"], atol=1e-3, rtol=0)


def test_cold_at_step_one_renoises_unlike_release_typo():
    # The release skips the removal of the t-noise at t == 1; the update must treat t = 1 like any t.
    diffusion = GaussianDiffusion()
    x0 = torch.rand(1, 5, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    x1 = diffusion.q_sample(x0, torch.tensor([1]), noise)
    x_prev, _ = diffusion.sample_step(x0, x1, 1, 0, sampler="cold")
    torch.testing.assert_close(
        x_prev, diffusion.q_sample(x0, torch.tensor([0]), noise), atol=1e-5, rtol=0
    )


class Oracle(torch.nn.Module):
    """Returns the true x0 (x0 parameterisation) or the true noise of x_t (eps parameterisation)."""

    def __init__(self, diffusion, x0):
        super().__init__()
        self.diffusion, self.x0 = diffusion, x0
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t):
        if self.diffusion.parameterization.value == "x0":
            return self.x0
        ab = self.diffusion.alpha_bar(int(t[0]))
        return (x_t - math.sqrt(ab) * self.x0) / math.sqrt(1 - ab)


@pytest.mark.parametrize("parameterization", ["x0", "eps"])
@pytest.mark.parametrize("sampler", ["cold", "ddim"])
@pytest.mark.parametrize("respacing", [None, "100", "10"])
def test_deterministic_samplers_end_at_oracle_x0(parameterization, sampler, respacing):
    diffusion = GaussianDiffusion(parameterization=parameterization)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 6, 8, 8, generator=gen) * 1.8 - 0.9
    oracle = Oracle(diffusion, x0)
    out = sample_two_stage(
        diffusion,
        oracle,
        oracle,
        x0.shape,
        400,
        sampler=sampler,
        timestep_respacing=respacing,
        generator=gen,
    )
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_ddpm_ends_at_oracle_x0_within_last_step_noise():
    diffusion = GaussianDiffusion()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 6, 8, 8, generator=gen) * 1.8 - 0.9
    oracle = Oracle(diffusion, x0)
    for respacing, steps in [(None, 1000), ("100", 100)]:
        out = sample_two_stage(
            diffusion,
            oracle,
            oracle,
            x0.shape,
            400,
            sampler="ddpm",
            timestep_respacing=respacing,
            generator=gen,
        )
        # The final step returns x0_hat; the step before adds noise of std sigma, which the oracle
        # removes exactly, so the result is x0 up to rounding, and ddpm differs from ddim only by noise.
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)
        assert steps == len(sampling_timesteps(1000, respacing))


def test_ddpm_is_stochastic_and_ddim_eta_zero_is_not():
    diffusion = GaussianDiffusion()
    x_t = torch.randn(1, 6, 4, 4)
    model_out = torch.zeros_like(x_t)
    a, _ = diffusion.sample_step(
        model_out, x_t, 500, 499, sampler="ddpm", generator=torch.Generator().manual_seed(0)
    )
    b, _ = diffusion.sample_step(
        model_out, x_t, 500, 499, sampler="ddpm", generator=torch.Generator().manual_seed(1)
    )
    c, _ = diffusion.sample_step(model_out, x_t, 500, 499, sampler="ddim", eta=0.0)
    d, _ = diffusion.sample_step(model_out, x_t, 500, 499, sampler="ddim", eta=0.0)
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


@pytest.mark.parametrize("t, t_prev", [(999, 998), (500, 499), (500, 400), (90, 0)])
def test_ddpm_step_is_the_gaussian_posterior(t, t_prev):
    # Oracle: condition the joint Gaussian of (x_t', x_t) given x0 (x_t = sqrt(a) x_t' + sqrt(1 - a) n,
    # a = abar_t / abar_t') on x_t, written from the covariances rather than the sampler's coefficients.
    diffusion = GaussianDiffusion()
    gen = torch.Generator().manual_seed(4)
    x0 = torch.rand(2, 6, 4, 4, generator=gen) * 1.8 - 0.9
    x_t = diffusion.q_sample(x0, torch.tensor([t, t]), torch.randn(x0.shape, generator=gen))
    ab_t, ab_prev = diffusion.alpha_bar(t), diffusion.alpha_bar(t_prev)
    a = ab_t / ab_prev
    cov, var_t = math.sqrt(a) * (1 - ab_prev), 1 - ab_t
    mean = math.sqrt(ab_prev) * x0 + cov / var_t * (x_t - math.sqrt(ab_t) * x0)
    std = math.sqrt((1 - ab_prev) - cov**2 / var_t)
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    out, _ = diffusion.sample_step(
        x0, x_t, t, t_prev, sampler="ddpm", generator=torch.Generator().manual_seed(9)
    )
    torch.testing.assert_close(out, mean + std * z, atol=1e-5, rtol=1e-5)


class Recorder(torch.nn.Module):
    """An oracle that records the (t, x_t) it is called with; `name` tells the two stages apart."""

    def __init__(self, diffusion, x0, name, log):
        super().__init__()
        self.oracle, self.name, self.log = Oracle(diffusion, x0), name, log
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t):
        self.log.append((self.name, int(t[0]), x_t.clone()))
        return self.oracle(x_t, t)


@pytest.mark.parametrize("parameterization", ["x0", "eps"])
@pytest.mark.parametrize("sampler", ["cold", "ddim"])
@pytest.mark.parametrize("respacing", [None, "ddim25", "10"])
@pytest.mark.parametrize("switch", [0, 400, 1000])
def test_each_deterministic_step_lands_on_q_at_the_next_timestep(
    parameterization, sampler, respacing, switch
):
    # From x_t = q(x0, t, eps) a step with an oracle model must give q(x0, t', eps) at the next
    # timestep t' the (respaced) sampler visits, whichever model takes the step, and x0 at the end.
    diffusion = GaussianDiffusion(parameterization=parameterization)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 6, 8, 8, generator=gen) * 1.8 - 0.9
    eps = torch.randn(x0.shape, generator=gen)
    steps = sampling_timesteps(1000, respacing)
    log = []
    large, small = (Recorder(diffusion, x0, name, log) for name in ("large", "small"))
    x_first = diffusion.q_sample(x0, torch.full((2,), steps[0]), eps)
    out = sample_two_stage(
        diffusion, large, small, x0.shape, switch, sampler=sampler, timestep_respacing=respacing,
        noise=x_first,
    )  # fmt: skip
    assert [t for _, t, _ in log] == steps
    assert [name for name, _, _ in log] == ["large" if t >= switch else "small" for t in steps]
    for _, t, x_t in log:
        expected = diffusion.q_sample(x0, torch.full((2,), t), eps)
        # eps-parameterised x0 = x_t / sqrt(abar) - ...: float32 rounding grows as abar -> 0
        tol = 1e-4 if parameterization == "x0" else 2e-3
        torch.testing.assert_close(x_t, expected, atol=tol, rtol=0, msg=f"t = {t}")
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_cold_without_clamp_equals_ddim_eta_zero():
    diffusion = GaussianDiffusion(clip_denoised=False)
    gen = torch.Generator().manual_seed(2)
    x_t = torch.randn(2, 6, 4, 4, generator=gen)
    out = torch.randn(2, 6, 4, 4, generator=gen)
    for t, t_prev in [(999, 998), (500, 480), (10, -1)]:
        a, _ = diffusion.sample_step(out, x_t, t, t_prev, sampler="cold")
        b, _ = diffusion.sample_step(out, x_t, t, t_prev, sampler="ddim", eta=0.0)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_training_loss_matches_release_reductions():
    diffusion = GaussianDiffusion(seperate_channel_loss=True)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.cat(
        [
            torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1,
            torch.nn.functional.one_hot(torch.randint(0, 3, (2, 4, 4), generator=gen), 3)
            .permute(0, 3, 1, 2)
            .float(),
        ],
        1,
    )
    out = torch.randn(2, 6, 4, 4, generator=gen)
    losses = diffusion.training_losses(lambda x, t: out, x0, torch.tensor([3, 700]))
    expect_rgb = torch.nn.functional.mse_loss(out[:, :3], x0[:, :3])
    expect_mask = torch.nn.functional.cross_entropy(out[:, 3:], x0[:, 3:])
    torch.testing.assert_close(losses["loss"].mean(), expect_rgb + 0.2 * expect_mask)
    plain = GaussianDiffusion().training_losses(lambda x, t: out, x0, torch.tensor([3, 700]))
    torch.testing.assert_close(plain["loss"].mean(), torch.nn.functional.mse_loss(out, x0))


def test_separate_loss_requires_x0():
    with pytest.raises(ValueError, match="x0"):
        GaussianDiffusion(parameterization="eps", seperate_channel_loss=True)


@pytest.mark.parametrize(
    "spec, count", [("100", 100), ("ddim50", 50), ("10,20,30", 60), ("25", 25)]
)
def test_respacing_is_exact_and_sized(spec, count):
    kept = space_timesteps(1000, spec)
    assert len(kept) == count and min(kept) >= 0 and max(kept) < 1000
    assert sampling_timesteps(1000, spec) == sorted(kept, reverse=True)
