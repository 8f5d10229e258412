"""
Small building blocks shared by the large and small UNets, and the precisions they run at.
"""

import math

import torch
import torch.nn as nn

# precision name -> torch.autocast dtype (None: no autocast, fp32), for training and sampling
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype, then cast back."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(channels):
    """Give the UNets' normalisation layer: 32-group GroupNorm in float32."""
    return GroupNorm32(32, channels)


def _by_dims(layers, dims, *args, **kwargs):
    if dims not in layers:
        raise ValueError(f"unsupported dimensions: {dims}")
    return layers[dims](*args, **kwargs)


def conv_nd(dims, *args, **kwargs):
    """Give a 1D, 2D or 3D convolution."""
    return _by_dims({1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}, dims, *args, **kwargs)


def avg_pool_nd(dims, *args, **kwargs):
    """Give a 1D, 2D or 3D average pooling layer."""
    return _by_dims({1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}, dims, *args, **kwargs)


def linear(*args, **kwargs):
    """Give a linear layer."""
    return nn.Linear(*args, **kwargs)


def zero_module(module):
    """Give `module` back with its parameters set to zero (output layers start as the identity path)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps, dim, max_period=10000):
    """
    Give sinusoidal timestep embeddings, cosines first.

    :param timesteps: a 1-D Tensor of N (possibly fractional) timesteps.
    :param dim: the embedding width.
    :return: an [N x dim] float32 Tensor.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


@torch.no_grad()
def update_ema(target_params, source_params, rate=0.99):
    """Move `target_params` towards `source_params` in place: target = rate * target + (1 - rate) * source."""
    target_params = list(target_params)
    source_params = [p.detach().to(t.dtype) for t, p in zip(target_params, source_params)]
    torch._foreach_lerp_(target_params, source_params, 1.0 - rate)


def count_parameters(model):
    """Give the number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
