"""
Defect-Gen's two-stage sampler: the large model denoises the noisy timesteps, the small one the rest.
"""

import math

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
    known=None,
    known_weight=None,
    known_generator=None,
    resample=0,
):
    """
    Give samples [N x C x H x W] (float32, RGB and mask channels) from the two-model reverse process.

    Timesteps are original ones, 0..T-1. The large model is called as ``large_model(x_t, t)`` for every
    visited t >= `switch_t` and the small one for every t < `switch_t`, each step exactly once, in
    descending order; `switch_t` = 0 is large only, `switch_t` = T small only. `diffusion` is not mutated.
    `large_model` may be None when `switch_t` = T: it would never be called.

    :param shape: (N, C, H, W).
    :param sampler: "cold" (the release's), "ddim" or "ddpm".
    :param timestep_respacing: None for all T steps, or e.g. "100", "ddim50", "10,20,30".
    :param noise: the initial x_T; default: drawn from `generator`.
    :param generator: a torch.Generator or a list of N (one per sample) for x_T and sampler noise.
    :param progress: show a tqdm bar.
    :param eta: DDIM stochasticity.
    :param autocast_dtype: run the models under autocast to this dtype (e.g. torch.bfloat16); the sampler's
        own arithmetic stays in float32.
    :param known: conditioning (see :mod:`defect_gen.sampling.conditioning`): the known clean values [N x C x H x W]
        (RGB in [-1, 1], one-hot mask channels); None (the default) samples unconditionally.
    :param known_weight: how much of each value is known, same shape, in [0, 1]. x_T and the result of
        every step become ``w * q_sample(known, t_prev) + (1 - w) * x``, the clean `known` after the
        last step. An all-zero map gives the unconditional samples bit for bit.
    :param known_generator: a torch.Generator or a list of N, for the forward noise of the known part and
        of resampling; kept apart from `generator` so that the unconditional noise stream is unchanged.
    :param resample: RePaint resampling: after each step (but the last), go back to t by re-noising and
        repeat the step, `resample` times (each repeat calls the model again).
    """
    if large_model is None and switch_t != diffusion.num_timesteps:
        raise ValueError(
            f"no large model, so switch_t must be T = {diffusion.num_timesteps}, got {switch_t}"
        )
    device = next((small_model if large_model is None else large_model).parameters()).device
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
    if int(resample) < 0:
        raise ValueError(f"resample must be at least 0, got {resample}")
    conditioned = known is not None
    if conditioned:
        known = known.to(device).float()
        known_weight = known_weight.to(device).float()
        for name, value in (("known", known), ("known_weight", known_weight)):
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        if steps:
            x = _impose(diffusion, x, known, known_weight, steps[0], known_generator)
    elif resample:
        raise ValueError("resample needs known values (conditioning)")

    for i, t in enumerate(tqdm(steps, desc="sampling", disable=not progress, leave=False)):
        model = large_model if t >= switch_t else small_model
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        repeats = int(resample) if t_prev >= 0 else 0
        for r in range(repeats + 1):
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                out = model(x, t_batch)
            x_prev, _ = diffusion.sample_step(
                out.float(), x, t, t_prev, sampler=sampler, eta=eta, generator=generator
            )
            if conditioned:
                x_prev = _impose(diffusion, x_prev, known, known_weight, t_prev, known_generator)
            if r < repeats:  # back from t_prev to t: x_t ~ q(x_t | x_t_prev)
                ratio = diffusion.alpha_bar(t) / diffusion.alpha_bar(t_prev)
                noise = per_sample_randn(x.shape, known_generator, device)
                x = math.sqrt(ratio) * x_prev + math.sqrt(1.0 - ratio) * noise
            else:
                x = x_prev
    return x


def _impose(diffusion, x, known, weight, t, generator):
    """Give ``w * known_t + (1 - w) * x``: known_t the forward-noised `known` at t (clean for t < 0)."""
    if t < 0:
        known_t = known
    else:
        noise = per_sample_randn(known.shape, generator, known.device)
        t_batch = torch.full((known.shape[0],), t, device=known.device, dtype=torch.long)
        known_t = diffusion.q_sample(known, t_batch, noise)
    return weight * known_t + (1 - weight) * x
