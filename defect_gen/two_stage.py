"""
Defect-Gen's two-stage sampler: the large model denoises the noisy timesteps, the small one the rest.
"""

import torch
from tqdm.auto import tqdm

from .gaussian_diffusion import per_sample_randn
from .respace import sampling_timesteps


def stage_timesteps(num_timesteps, switch_t, timestep_respacing=None):
    """
    Give (large_steps, small_steps): the original timesteps each model denoises, in descending order.

    The large model takes every visited t >= switch_t, the small one every t < switch_t.
    """
    if not 0 <= switch_t <= num_timesteps:
        raise ValueError(f"switch_t must lie in 0..{num_timesteps}, got {switch_t}")
    steps = sampling_timesteps(num_timesteps, timestep_respacing)
    return [t for t in steps if t >= switch_t], [t for t in steps if t < switch_t]


@torch.no_grad()
def sample_two_stage(
    diffusion,
    large_model,
    small_model,
    shape,
    switch_t,
    *,
    sampler="cold",
    timestep_respacing=None,
    noise=None,
    generator=None,
    progress=False,
    eta=0.0,
    autocast_dtype=None,
):
    """
    Give samples [N x C x H x W] (float32, RGB and mask channels) from the two-model reverse process.

    Timesteps are original ones, 0..T-1. The large model is called as ``large_model(x_t, t)`` for every
    visited t >= `switch_t` and the small one for every t < `switch_t`, each step exactly once, in
    descending order; `switch_t` = 0 is large only, `switch_t` = T small only. `diffusion` is not mutated.

    :param shape: (N, C, H, W).
    :param sampler: "cold" (the release's), "ddim" or "ddpm".
    :param timestep_respacing: None for all T steps, or e.g. "100", "ddim50", "10,20,30".
    :param noise: the initial x_T; default: drawn from `generator`.
    :param generator: a torch.Generator or a list of N (one per sample) for x_T and sampler noise.
    :param progress: show a tqdm bar.
    :param eta: DDIM stochasticity.
    :param autocast_dtype: run the models under autocast to this dtype (e.g. torch.bfloat16); the sampler's
        own arithmetic stays in float32.
    """
    device = next(large_model.parameters()).device
    large_steps, small_steps = stage_timesteps(
        diffusion.num_timesteps, switch_t, timestep_respacing
    )
    steps = large_steps + small_steps
    x = (
        noise.to(device).float()
        if noise is not None
        else per_sample_randn(shape, generator, device)
    )
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(x.shape)}, expected {tuple(shape)}")

    for i, t in enumerate(tqdm(steps, desc="sampling", disable=not progress, leave=False)):
        model = large_model if t >= switch_t else small_model
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(x, t_batch)
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        x, _ = diffusion.sample_step(
            out.float(), x, t, t_prev, sampler=sampler, eta=eta, generator=generator
        )
    return x
